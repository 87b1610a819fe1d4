package bgp

import (
	"net"
	"net/netip"
	"reflect"
	"testing"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	apb "google.golang.org/protobuf/types/known/anypb"

	"github.com/evpnd/evpnd/evpn"
)

// watchedPath is p as GoBGP's watch hands it over: toPathApi builds the
// Any fields with apiutil.MarshalNLRI and MarshalPathAttributes from the
// native path.
func watchedPath(tb testing.TB, r evpn.Route, neighbor string) *api.Path {
	tb.Helper()
	p, err := toAPIPath(r, netip.MustParseAddr("192.0.2.1"))
	if err != nil {
		tb.Fatal(err)
	}
	nlri, err := apiutil.GetNativeNlri(p)
	if err != nil {
		tb.Fatal(err)
	}
	attrs, err := apiutil.GetNativePathAttributes(p)
	if err != nil {
		tb.Fatal(err)
	}
	anyNLRI, err := apiutil.MarshalNLRI(nlri)
	if err != nil {
		tb.Fatal(err)
	}
	anyAttrs, err := apiutil.MarshalPathAttributes(attrs)
	if err != nil {
		tb.Fatal(err)
	}
	return &api.Path{
		Nlri:       anyNLRI,
		Pattrs:     anyAttrs,
		Family:     &api.Family{Afi: api.Family_Afi(nlri.AFI()), Safi: api.Family_Safi(nlri.SAFI())},
		IsWithdraw: r.Withdraw,
		NeighborIp: neighbor,
	}
}

// ingestCases are routes of every form evpnd reads, and the RD and ESI
// forms of other vendors.
func ingestCases() []evpn.Route {
	vtep := netip.MustParseAddr("10.0.0.7")
	seg := evpn.NewSegment(netip.MustParseAddr("10.0.0.7"), 65001, evpn.PresetFRR, 100, "blue", "web", 100, nil, nil)
	l3 := evpn.NewSegment(netip.MustParseAddr("10.0.0.7"), 65001, evpn.PresetFRR, 101, "red", "app", 200, nil, nil)
	l3.L3 = &evpn.L3{VNI: 5000, Export: []evpn.RT{evpn.AutoRT(evpn.PresetFRR, 65001, 5000)}, RouterMAC: net.HardwareAddr{0x02, 0x52, 1, 2, 3, 4}}
	mac := net.HardwareAddr{0x02, 0xAB, 0xcd, 0xEF, 0, 0x01}

	withdrawn := seg.MACIPRoute(vtep, mac, netip.Addr{}, 0)
	withdrawn.Withdraw = true
	sticky := seg.MACIPRoute(vtep, mac, netip.MustParseAddr("172.16.0.9"), 7)
	sticky.Mobility.Sticky = true
	esi := seg.MACIPRoute(vtep, mac, netip.Addr{}, 0)
	esi.NLRI.(*evpn.MACIP).ESI = evpn.ESI{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	esi.NLRI.(*evpn.MACIP).EthTag = 42
	rd0 := seg.MACIPRoute(vtep, mac, netip.Addr{}, 0)
	rd0.NLRI.(*evpn.MACIP).RD = evpn.RD{0, 0, 0xfd, 0xe9, 0, 0, 0, 100}
	rd2 := seg.IMETRoute(vtep)
	rd2.NLRI.(*evpn.IMET).RD = evpn.RD{0, 2, 0, 1, 0, 1, 0, 100}
	v6 := seg.MACIPRoute(netip.MustParseAddr("2001:db8::7"), mac, netip.MustParseAddr("2001:db8:1::9"), 0)
	noRT := seg.MACIPRoute(vtep, mac, netip.Addr{}, 0)
	noRT.RTs, noRT.Encap = nil, 0
	prefix := evpn.Route{
		NLRI:    &evpn.Prefix{RD: seg.RD, Prefix: netip.MustParsePrefix("198.51.100.0/24"), Label: 5000},
		NextHop: vtep, RTs: seg.Export, Encap: evpn.EncapVXLAN,
	}
	return []evpn.Route{
		seg.IMETRoute(vtep),
		seg.MACIPRoute(vtep, mac, netip.Addr{}, 0),
		seg.MACIPRoute(vtep, mac, netip.MustParseAddr("172.16.0.9"), 3),
		l3.MACIPRoute(vtep, mac, netip.MustParseAddr("172.16.1.9"), 0),
		withdrawn, sticky, esi, rd0, rd2, v6, noRT, prefix,
	}
}

// TestIngestMatchesGeneralConversion holds the fast conversion to the
// general one, route by route, including the cached second sight of each
// attribute.
func TestIngestMatchesGeneralConversion(t *testing.T) {
	in := newIngest()
	for round := range 2 {
		for _, r := range ingestCases() {
			for _, neighbor := range []string{"127.0.0.1", "<nil>", "2001:db8::1"} {
				p := watchedPath(t, r, neighbor)
				want, wantOK, wantErr := fromAPIPath(p)
				got, ok, err := in.route(p)
				if err != nil || wantErr != nil || !ok || !wantOK {
					t.Fatalf("round %d, %s: fast (%v, %v), general (%v, %v)", round, r.NLRI, ok, err, wantOK, wantErr)
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("round %d, %s from %s:\n got %+v\nwant %+v", round, r.NLRI, neighbor, got, want)
				}
				if r.NLRI.Type() != evpn.TypePrefix {
					if _, fast := in.fast(p); !fast {
						t.Errorf("%s went the general way", r.NLRI)
					}
				}
			}
		}
	}
}

// TestIngestKeepsGeneralErrors: what the general conversion rejects,
// ingest rejects with the same error.
func TestIngestKeepsGeneralErrors(t *testing.T) {
	p := watchedPath(t, ingestCases()[1], "127.0.0.1")
	p.Nlri = &apb.Any{TypeUrl: p.Nlri.TypeUrl, Value: []byte{0x22, 0x03, 'b', 'a', 'd'}} // mac_address "bad"
	_, _, wantErr := fromAPIPath(p)
	_, ok, err := newIngest().route(p)
	if wantErr == nil || err == nil || err.Error() != wantErr.Error() || ok {
		t.Errorf("ingest: ok %v, err %v; general: %v", ok, err, wantErr)
	}
}

func TestIngestIgnoresOtherFamilies(t *testing.T) {
	p := &api.Path{Family: ipv4Family}
	if _, ok, err := newIngest().route(p); ok || err != nil {
		t.Errorf("ipv4 unicast path: ok %v, err %v", ok, err)
	}
}

// FuzzIngestNLRI mutates the NLRI message GoBGP hands over: whatever the
// fast decoder accepts, the general conversion must accept and read the
// same way.
func FuzzIngestNLRI(f *testing.F) {
	for _, r := range ingestCases() {
		p := watchedPath(f, r, "127.0.0.1")
		f.Add(p.Nlri.TypeUrl == urlIMET, p.Nlri.Value)
	}
	base := watchedPath(f, ingestCases()[1], "127.0.0.1")
	f.Fuzz(func(t *testing.T, imet bool, b []byte) {
		p := &api.Path{Nlri: &apb.Any{TypeUrl: urlMACIP, Value: b}, Pattrs: base.Pattrs, Family: base.Family, NeighborIp: base.NeighborIp}
		if imet {
			p.Nlri.TypeUrl = urlIMET
		}
		got, ok := newIngest().fast(p)
		if !ok {
			return
		}
		want, wantOK, err := fromAPIPath(p)
		if err != nil || !wantOK {
			t.Fatalf("fast decoder accepted %x, general conversion: ok %v, err %v", b, wantOK, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%x:\n got %+v\nwant %+v", b, got, want)
		}
	})
}
