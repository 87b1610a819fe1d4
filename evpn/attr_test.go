package evpn

import (
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestExtCommunityGolden(t *testing.T) {
	tests := []struct {
		name string
		ec   ExtCommunity
		hex  string
		str  string
	}{
		{"rt type0", RTCommunity(NewRT0(65000, 100)), "0002 fde8 00000064", "RT:65000:100"},
		{"rt type1", RTCommunity(NewRT1(netip.MustParseAddr("10.0.0.1"), 7)), "0102 0a000001 0007", "RT:10.0.0.1:7"},
		{"rt type2", RTCommunity(NewRT2(4200000001, 100)), "0202 fa56ea01 0064", "RT:4200000001:100"},
		{"encap vxlan", EncapCommunity(EncapVXLAN), "030c 00000000 0008", "ET:8"},
		{"mobility", MobilityCommunity(Mobility{Seq: 0x01020304}), "0600 00 00 01020304", "MM:16909060"},
		{"mobility sticky", MobilityCommunity(Mobility{Seq: 1, Sticky: true}), "0600 01 00 00000001", "MM:1, sticky MAC"},
		{"router mac", RouterMACCommunity(net.HardwareAddr{0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}), "0603 aabbccddeeff", "Rmac:aa:bb:cc:dd:ee:ff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if want := mustHex(t, tt.hex); !reflect.DeepEqual(tt.ec[:], want) {
				t.Fatalf("bytes %x, want %x", tt.ec[:], want)
			}
			if got := tt.ec.String(); got != tt.str {
				t.Fatalf("String() = %q, want %q", got, tt.str)
			}
		})
	}
}

func TestRouteExtCommunitiesRoundTrip(t *testing.T) {
	routes := []Route{
		{},
		{RTs: []RT{NewRT0(65000, 100)}, Encap: EncapVXLAN},
		{
			RTs:       []RT{NewRT0(65000, 100), NewRT1(netip.MustParseAddr("10.0.0.1"), 3), NewRT2(4200000001, 9)},
			Encap:     EncapVXLAN,
			Mobility:  &Mobility{Seq: 7, Sticky: true},
			RouterMAC: net.HardwareAddr{2, 0, 0, 0, 0, 9},
		},
		{Mobility: &Mobility{}},
	}
	for i, want := range routes {
		b := MarshalExtCommunities(want.ExtCommunities())
		ecs, err := ParseExtCommunities(b)
		if err != nil {
			t.Fatalf("route %d: %v", i, err)
		}
		var got Route
		got.SetExtCommunities(ecs)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("route %d:\n got %+v\nwant %+v", i, got, want)
		}
	}
}

func TestSetExtCommunitiesIgnoresUnknownAndResets(t *testing.T) {
	r := Route{
		RTs:       []RT{NewRT0(1, 1)},
		Encap:     9,
		Mobility:  &Mobility{Seq: 1},
		RouterMAC: net.HardwareAddr{1, 2, 3, 4, 5, 6},
	}
	unknown := []ExtCommunity{
		{0x06, 0x01}, // ESI label
		{0x06, 0x04}, // default gateway
		{0x40, 0x02}, // non-transitive two-octet AS, not an RT we import
		{0x03, 0x0b}, // color
		{0x80, 0x06}, // flowspec
	}
	rt := NewRT0(65000, 200)
	r.SetExtCommunities(append(unknown, RTCommunity(rt)))
	want := Route{RTs: []RT{rt}}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("got %+v, want %+v", r, want)
	}
}

func TestParseExtCommunitiesErrors(t *testing.T) {
	for _, n := range []int{1, 7, 9, 15} {
		_, err := ParseExtCommunities(make([]byte, n))
		if err == nil || !strings.Contains(err.Error(), "not a multiple of 8") {
			t.Errorf("length %d: error %v, want a multiple-of-8 error", n, err)
		}
	}
	ecs, err := ParseExtCommunities(nil)
	if err != nil || len(ecs) != 0 {
		t.Errorf("empty attribute: %v, %v", ecs, err)
	}
}

func TestPMSIGolden(t *testing.T) {
	tests := []struct {
		name string
		p    PMSI
		hex  string
	}{
		{"ingress replication ipv4", PMSI{Type: PMSIIngressReplication, Label: 100, Endpoint: netip.MustParseAddr("192.0.2.1")},
			"00 06 000064 c0000201"},
		{"leaf info flag, 24-bit vni, ipv6", PMSI{Flags: 1, Type: PMSIIngressReplication, Label: 0xABCDEF, Endpoint: netip.MustParseAddr("2001:db8::1")},
			"01 06 abcdef 20010db8000000000000000000000001"},
		{"no tunnel identifier", PMSI{Type: 0, Label: 5}, "00 00 000005"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := mustHex(t, tt.hex)
			got := tt.p.Marshal()
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Marshal:\n got %x\nwant %x", got, want)
			}
			p, err := ParsePMSI(got)
			if err != nil {
				t.Fatalf("ParsePMSI: %v", err)
			}
			if p != tt.p {
				t.Fatalf("ParsePMSI = %+v, want %+v", p, tt.p)
			}
		})
	}
}

func TestParsePMSIErrors(t *testing.T) {
	tests := []struct {
		hex, wantErr string
	}{
		{"", "shorter than the minimum 5"},
		{"0006 0000", "shorter than the minimum 5"},
		{"0006 000064 c00002", "identifier of 3 bytes"},
		{"0006 000064 c000020100", "identifier of 5 bytes"},
	}
	for _, tt := range tests {
		_, err := ParsePMSI(mustHex(t, tt.hex))
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParsePMSI(%s): error %v, want %q", tt.hex, err, tt.wantErr)
		}
	}
}

func TestRDRoundTrip(t *testing.T) {
	tests := []struct {
		in   string
		typ  uint16
		hex  string
		back string
	}{
		{"10.0.0.1:5", 1, "0001 0a000001 0005", "10.0.0.1:5"},
		{"65000:4294967295", 0, "0000 fde8 ffffffff", "65000:4294967295"},
		{"4200000001:65535", 2, "0002 fa56ea01 ffff", "4200000001:65535"},
		{"0:0", 0, "0000 0000 00000000", "0:0"},
		{"007:1", 0, "0000 0007 00000001", "7:1"},
	}
	for _, tt := range tests {
		rd, err := ParseRD(tt.in)
		if err != nil {
			t.Fatalf("ParseRD(%q): %v", tt.in, err)
		}
		if rd.Type() != tt.typ || !reflect.DeepEqual(rd[:], mustHex(t, tt.hex)) {
			t.Errorf("ParseRD(%q) = type %d %x, want type %d %s", tt.in, rd.Type(), rd[:], tt.typ, tt.hex)
		}
		if got := rd.String(); got != tt.back {
			t.Errorf("ParseRD(%q).String() = %q, want %q", tt.in, got, tt.back)
		}
	}
	for _, bad := range []string{"", "10.0.0.1", "10.0.0.1:65536", "::1:5", "2001:db8::1", "65000:4294967296",
		"4200000001:65536", "4294967296:1", "x:1", "1:-1", "1:", ":1"} {
		if rd, err := ParseRD(bad); err == nil {
			t.Errorf("ParseRD(%q) = %s, want error", bad, rd)
		}
	}
}

func TestRTRoundTrip(t *testing.T) {
	tests := []struct {
		in   string
		hex  string
		back string
	}{
		{"65000:100", "0002 fde8 00000064", "65000:100"},
		{"10.0.0.1:7", "0102 0a000001 0007", "10.0.0.1:7"},
		{"4200000001:100", "0202 fa56ea01 0064", "4200000001:100"},
		{"65535:4294967295", "0002 ffff ffffffff", "65535:4294967295"},
	}
	for _, tt := range tests {
		rt, err := ParseRT(tt.in)
		if err != nil {
			t.Fatalf("ParseRT(%q): %v", tt.in, err)
		}
		if !reflect.DeepEqual(rt[:], mustHex(t, tt.hex)) {
			t.Errorf("ParseRT(%q) = %x, want %s", tt.in, rt[:], tt.hex)
		}
		if got := rt.String(); got != tt.back {
			t.Errorf("ParseRT(%q).String() = %q, want %q", tt.in, got, tt.back)
		}
	}
	for _, bad := range []string{"", "100", "10.0.0.1:65536", "::1:1", "4200000001:65536", "a:b", "1:1:1"} {
		if rt, err := ParseRT(bad); err == nil {
			t.Errorf("ParseRT(%q) = %s, want error", bad, rt)
		}
	}
}

func TestAutoRT(t *testing.T) {
	const vni VNI = 10100
	tests := []struct {
		preset Preset
		asn    uint32
		want   string // wire bytes
		str    string
	}{
		{PresetFRR, 65001, "0002 fde9 00002774", "65001:10100"},
		{PresetFRR, 4200000001, "0002 ea01 00002774", "59905:10100"}, // 4200000001 & 0xFFFF = 59905
		{PresetNXOS, 65001, "0002 fde9 00002774", "65001:10100"},
		{PresetNXOS, 4200000001, "0002 5ba0 00002774", "23456:10100"},
		// RFC 8365 s5.1.2.1: A=0 (auto), type=1 (VXLAN), D-ID=0, VNI.
		{PresetRFC8365, 65001, "0002 fde9 10002774", "65001:268445556"},
		{PresetRFC8365, 4200000001, "0002 ea01 10002774", "59905:268445556"},
	}
	for _, tt := range tests {
		rt := AutoRT(tt.preset, tt.asn, vni)
		if !reflect.DeepEqual(rt[:], mustHex(t, tt.want)) {
			t.Errorf("AutoRT(%s, %d) = %x, want %s", tt.preset, tt.asn, rt[:], tt.want)
		}
		if rt.String() != tt.str {
			t.Errorf("AutoRT(%s, %d) = %s, want %s", tt.preset, tt.asn, rt, tt.str)
		}
		if rt.ImportVNI() != vni {
			t.Errorf("AutoRT(%s, %d).ImportVNI() = %d, want %d", tt.preset, tt.asn, rt.ImportVNI(), vni)
		}
	}
}

func TestNewSegment(t *testing.T) {
	rid := netip.MustParseAddr("10.0.0.1")
	s := NewSegment(rid, 4200000001, PresetFRR, 3, "acme", "web", 100, nil, nil)
	if s.RD != NewRD1(rid, 3) || s.RD.String() != "10.0.0.1:3" {
		t.Errorf("RD = %s, want 10.0.0.1:3", s.RD)
	}
	if !reflect.DeepEqual(s.Export, []RT{NewRT0(59905, 100)}) {
		t.Errorf("Export = %v, want the frr auto RT 59905:100", s.Export)
	}
	if !s.AutoImport || len(s.Import) != 0 {
		t.Errorf("AutoImport = %v, Import = %v: want import by VNI", s.AutoImport, s.Import)
	}
	if !s.Imports([]RT{NewRT0(65099, 100)}) || !s.Imports([]RT{NewRT2(4200000099, 100)}) {
		t.Error("auto import must take any ASN with local admin 100")
	}
	if s.Imports([]RT{NewRT0(59905, 101)}) {
		t.Error("auto import took another VNI")
	}

	imp := []RT{NewRT0(1, 1)}
	exp := []RT{NewRT0(2, 2)}
	e := NewSegment(rid, 65000, PresetNXOS, 1, "acme", "db", 200, imp, exp)
	if e.AutoImport || !reflect.DeepEqual(e.Import, imp) || !reflect.DeepEqual(e.Export, exp) {
		t.Errorf("explicit RTs not kept: %+v", e)
	}
	if e.Imports([]RT{NewRT0(65000, 200)}) || !e.Imports([]RT{NewRT0(9, 9), NewRT0(1, 1)}) {
		t.Error("explicit import must match exactly the listed RTs")
	}
	imp[0] = NewRT0(3, 3)
	if e.Import[0] != NewRT0(1, 1) {
		t.Error("NewSegment kept the caller's slice")
	}
}

func TestSegmentRoutes(t *testing.T) {
	vtep := netip.MustParseAddr("192.0.2.10")
	s := NewSegment(netip.MustParseAddr("10.0.0.1"), 65000, PresetFRR, 1, "acme", "web", 100, nil, nil)

	imet := s.IMETRoute(vtep)
	want := Route{
		NLRI:    &IMET{RD: s.RD, Originator: vtep},
		NextHop: vtep,
		RTs:     []RT{NewRT0(65000, 100)},
		Encap:   EncapVXLAN,
		PMSI:    &PMSI{Type: PMSIIngressReplication, Label: 100, Endpoint: vtep},
	}
	if !reflect.DeepEqual(imet, want) {
		t.Errorf("IMETRoute:\n got %+v\nwant %+v", imet, want)
	}
	if _, err := MarshalNLRI(imet.NLRI); err != nil {
		t.Errorf("IMETRoute NLRI does not encode: %v", err)
	}

	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	ip := netip.MustParseAddr("10.1.1.1")
	r := s.MACIPRoute(vtep, mac, ip, 0)
	wantR := Route{
		NLRI:    &MACIP{RD: s.RD, MAC: mac, IP: ip, Labels: []VNI{100}},
		NextHop: vtep,
		RTs:     []RT{NewRT0(65000, 100)},
		Encap:   EncapVXLAN,
	}
	if !reflect.DeepEqual(r, wantR) {
		t.Errorf("MACIPRoute:\n got %+v\nwant %+v", r, wantR)
	}
	if _, err := MarshalNLRI(r.NLRI); err != nil {
		t.Errorf("MACIPRoute NLRI does not encode: %v", err)
	}
	r = s.MACIPRoute(vtep, mac, netip.Addr{}, 3)
	if r.Mobility == nil || *r.Mobility != (Mobility{Seq: 3}) {
		t.Errorf("MACIPRoute seq 3: Mobility = %v", r.Mobility)
	}
	if ecs := r.ExtCommunities(); len(ecs) != 3 || ecs[2] != MobilityCommunity(Mobility{Seq: 3}) {
		t.Errorf("MACIPRoute seq 3: communities %v", ecs)
	}
}
