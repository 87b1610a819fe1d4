package bgp

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"regexp"
	"runtime"
	"slices"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	gobgp "github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/evpnd/evpnd/evpn"
)

// gobgpAccepts is GoBGP's ExtCommunityCondition for one route target: the
// pattern against the printed form of the community GoBGP parses it into.
func gobgpAccepts(t *testing.T, re *regexp.Regexp, rt evpn.RT) bool {
	t.Helper()
	ec, err := gobgp.ParseExtended(rt[:])
	if err != nil {
		t.Fatalf("gobgp cannot parse %x: %v", rt[:], err)
	}
	typ, sub := ec.GetTypes()
	if typ >= 0x3f || sub != gobgp.EC_SUBTYPE_ROUTE_TARGET {
		return false
	}
	return re.MatchString(ec.String())
}

// ribImports is evpn.RIB's rule (importInto): exact RT, or ImportVNI.
func ribImports(f ImportFilter, rt evpn.RT) (explicit, byVNI bool) {
	return slices.Contains(f.RTs, rt), slices.Contains(f.VNIs, rt.ImportVNI())
}

// rfc8365Form reports whether a type-0 RT's local administrator has upper
// bits the filter knows: none, or RFC 8365's A=0 Type=1 with any D-ID.
func rfc8365Form(rt evpn.RT) bool {
	if rt[0]&0x3F != 0 {
		return true // 16-bit local administrator: no upper bits
	}
	top := rt[4]
	return top == 0 || top&0xF0 == 0x10
}

func rt0(asn uint16, la uint32) evpn.RT { return evpn.NewRT0(asn, la) }

func TestGoBGPRTString(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	rts := []evpn.RT{
		rt0(65000, 100), rt0(0, 0), rt0(65535, 0xFFFFFFFF),
		evpn.NewRT1(netip.MustParseAddr("10.0.0.1"), 100), evpn.NewRT1(netip.MustParseAddr("255.255.255.255"), 65535),
		evpn.NewRT2(4200000000, 7), evpn.NewRT2(65536, 0), evpn.NewRT2(65000, 100),
	}
	for range 1000 {
		var rt evpn.RT
		binary.BigEndian.PutUint64(rt[:], rng.Uint64())
		rt[0], rt[1] = byte(rng.IntN(3)), 0x02
		rts = append(rts, rt)
	}
	for _, rt := range rts {
		ec, err := gobgp.ParseExtended(rt[:])
		if err != nil {
			t.Fatal(err)
		}
		if got, want := gobgpRTString(rt), ec.String(); got != want {
			t.Errorf("%x: printed %q, GoBGP prints %q", rt[:], got, want)
		}
	}
}

// The filter accepts exactly what the RIB imports, except type-0 RTs whose
// local administrator has upper bits other than RFC 8365's: those the RIB
// would import by VNI and the filter rejects (documented on ImportFilter).
func TestImportFilterMatchesRIB(t *testing.T) {
	f := ImportFilter{
		VNIs: []evpn.VNI{100, 70000, 10, evpn.MaxVNI},
		RTs: []evpn.RT{rt0(65000, 777), evpn.NewRT1(netip.MustParseAddr("10.0.0.1"), 5),
			evpn.NewRT2(4200000000, 7), rt0(1, 0x80000000|300)},
	}.normal()
	re := regexp.MustCompile(f.pattern())

	var rts []evpn.RT
	ip := netip.MustParseAddr("192.0.2.1")
	for _, v := range []uint32{0, 1, 10, 100, 101, 1000, 1001, 300, 7, 5, 777, 70000, 65535, 100100, uint32(evpn.MaxVNI), 16777214} {
		for top := range uint32(256) {
			rts = append(rts, rt0(65000, top<<24|v), rt0(1, top<<24|v))
		}
		if v <= 0xFFFF {
			rts = append(rts, evpn.NewRT1(ip, uint16(v)), evpn.NewRT1(netip.MustParseAddr("10.0.0.1"), uint16(v)),
				evpn.NewRT2(4200000000, uint16(v)), evpn.NewRT2(65536, uint16(v)))
		}
	}
	rts = append(rts, f.RTs...)
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		var rt evpn.RT
		binary.BigEndian.PutUint64(rt[:], rng.Uint64())
		rt[0], rt[1] = byte(rng.IntN(3)), 0x02
		rts = append(rts, rt)
	}

	exceptions := 0
	for _, rt := range rts {
		explicit, byVNI := ribImports(f, rt)
		want := explicit || byVNI && rfc8365Form(rt)
		if byVNI && !explicit && !rfc8365Form(rt) {
			exceptions++
		}
		if got := gobgpAccepts(t, re, rt); got != want {
			t.Errorf("RT %s (% x): filter accepts %v, want %v (rib: explicit %v, by vni %v)", rt, rt[:], got, want, explicit, byVNI)
		}
	}
	if exceptions == 0 {
		t.Fatal("no RT exercised the documented exception")
	}

	if p := (ImportFilter{}).pattern(); p != "" {
		t.Fatalf("empty filter has pattern %q", p)
	}
}

func TestImportFilterOf(t *testing.T) {
	id := netip.MustParseAddr("10.0.0.1")
	rmac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	exp := rt0(65000, 9)
	segs := []evpn.Segment{
		evpn.NewSegment(id, 65000, evpn.PresetFRR, 1, "a", "x", 200, nil, nil),
		evpn.NewSegment(id, 65000, evpn.PresetFRR, 2, "a", "y", 100, []evpn.RT{rt0(65000, 5), exp}, nil),
		evpn.NewSegment(id, 65000, evpn.PresetFRR, 3, "b", "x", 200, nil, nil),
	}
	l3s := []evpn.L3{
		evpn.NewL3(id, 65000, evpn.PresetFRR, 4, "a", 5000, nil, nil, rmac, nil),
		evpn.NewL3(id, 65000, evpn.PresetFRR, 5, "b", 5001, []evpn.RT{exp}, nil, rmac, nil),
	}
	got := ImportFilterOf(segs, l3s)
	want := ImportFilter{RTs: []evpn.RT{rt0(65000, 5), exp}, VNIs: []evpn.VNI{200, 5000}}
	if !got.equal(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if !ImportFilterOf(nil, nil).empty() {
		t.Fatal("no segments: filter not empty")
	}
}

// sessionSince is when peer's session at s was established, as GoBGP
// keeps it.
func sessionSince(t *testing.T, s *Server, peer netip.Addr) time.Time {
	t.Helper()
	var since time.Time
	err := s.bgp.ListPeer(context.Background(), &api.ListPeerRequest{Address: peer.String()}, func(p *api.Peer) {
		if p.GetState().GetSessionState() == api.PeerState_ESTABLISHED {
			since = p.GetTimers().GetState().GetUptime().AsTime()
		}
	})
	if err != nil || since.IsZero() {
		t.Fatalf("session with %s: not established (%v)", peer, err)
	}
	return since
}

// waitReceived waits until s holds n EVPN paths from peer in its
// adj-RIB-in: GoBGP has then run each through the import policy.
func waitReceived(t *testing.T, s *Server, peer netip.Addr, n uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ps, err := s.Peers(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if p.Address == peer && p.Received == n {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never received %d paths from %s: %+v", s.cfg.RouterID, n, peer, ps)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ribKeys(t *testing.T, s *Server) []string {
	t.Helper()
	rs, err := s.Routes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, r := range rs {
		keys = append(keys, r.NLRI.Key())
	}
	slices.Sort(keys)
	return keys
}

func keysOf(routes ...[]evpn.Route) []string {
	var keys []string
	for _, rs := range routes {
		for _, r := range rs {
			keys = append(keys, r.NLRI.Key())
		}
	}
	slices.Sort(keys)
	return keys
}

func (s *speaker) keys() []string {
	keys := make([]string, 0, len(s.got))
	for k := range s.got {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// TestSetImport: a receiver whose filter (set before Start) wants VNI 100
// by VNI and one explicit RT gets only the matching type-2, 3 and 5 paths,
// in its RIB and on Events; widening the filter delivers the paths it
// rejected, narrowing it withdraws them, both on the running session; its
// own routes are advertised whatever it imports.
func TestSetImport(t *testing.T) {
	ctx := context.Background()
	port := freePort(t)
	a := startSpeaker(t, 81, 65081, port, peerAt(82, 65082, port))
	addrA, addrB := netip.MustParseAddr("127.0.0.81"), netip.MustParseAddr("127.0.0.82")
	vtep := netip.MustParseAddr("10.0.0.81")
	rmac := net.HardwareAddr{2, 0, 0, 0, 0x81, 1}
	index := uint16(0)
	seg := func(vni evpn.VNI, p evpn.Preset, exp ...evpn.RT) evpn.Segment {
		index++
		return evpn.NewSegment(addrA, 65000, p, index, "t", fmt.Sprint(index), vni, nil, exp)
	}
	l3 := func(vni evpn.VNI, exp ...evpn.RT) evpn.L3 {
		index++
		return evpn.NewL3(addrA, 65000, evpn.PresetFRR, index, "t", vni, nil, exp, rmac, nil)
	}
	mac := func(i byte) net.HardwareAddr { return net.HardwareAddr{2, 0xaa, 0, 0, 0, i} }
	explicit := rt0(65000, 777)

	s100 := seg(100, evpn.PresetFRR)
	l3100, l3exp := l3(100), l3(5000, explicit)
	accepted := []evpn.Route{
		s100.IMETRoute(vtep),
		s100.MACIPRoute(vtep, mac(1), netip.Addr{}, 0),
		s100.MACIPRoute(vtep, mac(1), netip.MustParseAddr("172.16.0.1"), 0),
		seg(100, evpn.PresetRFC8365).IMETRoute(vtep),                          // 65000:268435556
		seg(100, evpn.PresetFRR, rt0(65000, 1<<28|3<<24|100)).IMETRoute(vtep), // RFC 8365, D-ID 3
		seg(100, evpn.PresetFRR, evpn.NewRT2(4200000000, 100)).IMETRoute(vtep),
		seg(100, evpn.PresetFRR, evpn.NewRT1(netip.MustParseAddr("10.9.9.9"), 100)).IMETRoute(vtep),
		seg(300, evpn.PresetFRR, rt0(65000, 300), explicit).MACIPRoute(vtep, mac(2), netip.Addr{}, 0),
		l3100.PrefixRoute(vtep, netip.MustParsePrefix("192.0.2.0/24")),
		l3exp.PrefixRoute(vtep, netip.MustParsePrefix("192.0.3.0/24")),
	}
	s200 := seg(200, evpn.PresetFRR)
	vni200 := []evpn.Route{s200.IMETRoute(vtep), s200.MACIPRoute(vtep, mac(3), netip.Addr{}, 0)}
	rejected := []evpn.Route{
		seg(300, evpn.PresetFRR).IMETRoute(vtep),
		seg(1000, evpn.PresetFRR).IMETRoute(vtep), // "1000" begins with "100"
		seg(10, evpn.PresetFRR).IMETRoute(vtep),   // "100" begins with "10"
		seg(100, evpn.PresetFRR, rt0(65000, 0x20<<24|100)).IMETRoute(vtep),
		seg(100, evpn.PresetFRR, rt0(65000, 778)).MACIPRoute(vtep, mac(4), netip.Addr{}, 0),
		l3(5001).PrefixRoute(vtep, netip.MustParsePrefix("198.51.100.0/24")),
	}
	total := len(accepted) + len(vni200) + len(rejected)
	if err := a.Advertise(ctx, slices.Concat(accepted, vni200, rejected)); err != nil {
		t.Fatal(err)
	}

	b := &speaker{Server: New(testLogger().With("speaker", 82)), got: map[string]evpn.Route{}}
	narrow := ImportFilter{VNIs: []evpn.VNI{100}, RTs: []evpn.RT{explicit}}
	if err := b.SetImport(ctx, narrow); err != nil {
		t.Fatal(err)
	}
	err := b.Start(ctx, Config{
		RouterID: addrB, ASN: 65082, NextHop: netip.MustParseAddr("10.0.0.82"),
		ListenAddresses: []netip.Addr{addrB}, ListenPort: port,
		Peers: []PeerConfig{peerAt(81, 65081, port)},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Stop)

	waitReceived(t, b.Server, addrA, uint64(total))
	if got, want := ribKeys(t, b.Server), keysOf(accepted); !slices.Equal(got, want) {
		t.Fatalf("B's RIB with the filter set before Start:\n got %q\nwant %q", got, want)
	}
	// A route advertised after all the others is on Events after every
	// path the filter let through before it.
	marker := seg(100, evpn.PresetFRR).IMETRoute(vtep)
	if err := a.Advertise(ctx, []evpn.Route{marker}); err != nil {
		t.Fatal(err)
	}
	b.waitFor(t, "marker", func() bool { _, ok := b.got[marker.NLRI.Key()]; return ok })
	accepted = append(accepted, marker)
	total++
	if got, want := b.keys(), keysOf(accepted); !slices.Equal(got, want) {
		t.Fatalf("B's Events with the filter:\n got %q\nwant %q", got, want)
	}

	since := sessionSince(t, b.Server, addrA)
	received := b.Received()
	wide := ImportFilter{VNIs: []evpn.VNI{200, 100}, RTs: []evpn.RT{explicit}}
	if err := b.SetImport(ctx, wide); err != nil {
		t.Fatal(err)
	}
	b.waitFor(t, "VNI 200 routes after widening", func() bool {
		return slices.Equal(b.keys(), keysOf(accepted, vni200))
	})
	if got, want := ribKeys(t, b.Server), keysOf(accepted, vni200); !slices.Equal(got, want) {
		t.Fatalf("B's RIB after widening:\n got %q\nwant %q", got, want)
	}
	t.Logf("widening delivered %d routes on Events for %d new ones", b.Received()-received, len(vni200))
	gen := b.imp.gen
	if err := b.SetImport(ctx, wide); err != nil || b.imp.gen != gen {
		t.Fatalf("same filter again: err %v, generation %d -> %d", err, gen, b.imp.gen)
	}

	if err := b.SetImport(ctx, narrow); err != nil {
		t.Fatal(err)
	}
	b.waitFor(t, "VNI 200 routes withdrawn after narrowing", func() bool {
		return slices.Equal(b.keys(), keysOf(accepted))
	})
	if got, want := ribKeys(t, b.Server), keysOf(accepted); !slices.Equal(got, want) {
		t.Fatalf("B's RIB after narrowing:\n got %q\nwant %q", got, want)
	}
	if now := sessionSince(t, b.Server, addrA); !now.Equal(since) {
		t.Fatalf("session with A re-established (%v, was %v): the filter change must not reset it", now, since)
	}

	// B's own routes are not subject to its import filter.
	own := evpn.NewSegment(addrB, 65000, evpn.PresetFRR, 1, "t", "own", 999, nil, nil).IMETRoute(netip.MustParseAddr("10.0.0.82"))
	if err := b.Advertise(ctx, []evpn.Route{own}); err != nil {
		t.Fatal(err)
	}
	a.waitFor(t, "B's own route at A", func() bool { _, ok := a.got[own.NLRI.Key()]; return ok })

	// No segments: no EVPN path from a peer.
	if err := b.SetImport(ctx, ImportFilter{}); err != nil {
		t.Fatal(err)
	}
	b.waitFor(t, "every route withdrawn with an empty filter", func() bool { return len(b.got) == 0 })
	if got, want := ribKeys(t, b.Server), keysOf([]evpn.Route{own}); !slices.Equal(got, want) {
		t.Fatalf("B's RIB with an empty filter:\n got %q\nwant %q", got, want)
	}
	waitReceived(t, b.Server, addrA, uint64(total))
	if now := sessionSince(t, b.Server, addrA); !now.Equal(since) {
		t.Fatalf("session with A re-established (%v, was %v)", now, since)
	}
}

// A speaker whose filter was never set accepts every path; SetImport
// after Stop fails instead of reaching a stopped GoBGP.
func TestSetImportUnsetAndStopped(t *testing.T) {
	ctx := context.Background()
	port := freePort(t)
	a := startSpeaker(t, 83, 65000, port, peerAt(84, 65000, port))
	b := startSpeaker(t, 84, 65000, port, peerAt(83, 65000, port))
	routes := []evpn.Route{
		evpn.NewSegment(netip.MustParseAddr("127.0.0.83"), 65000, evpn.PresetFRR, 1, "t", "s", 4242, nil, nil).IMETRoute(netip.MustParseAddr("10.0.0.83")),
	}
	if err := a.Advertise(ctx, routes); err != nil {
		t.Fatal(err)
	}
	b.waitFor(t, "route at B without a filter", func() bool { return len(b.got) == 1 })

	// iBGP paths are rejected as eBGP ones are.
	if err := b.SetImport(ctx, ImportFilter{VNIs: []evpn.VNI{1}}); err != nil {
		t.Fatal(err)
	}
	b.waitFor(t, "route withdrawn at B", func() bool { return len(b.got) == 0 })

	b.Stop()
	if err := b.SetImport(ctx, ImportFilter{}); err == nil {
		t.Fatal("SetImport after Stop succeeded")
	}
}

// b7Routes is one host's share of B7 in process: ten VTEPs, each with
// every one of vnis VNIs, a type-3 and perVNI-1 MAC-only type-2s per VNI
// and VTEP.
func b7Routes(vnis, perVNI int) []evpn.Route {
	const vteps = 10
	routes := make([]evpn.Route, 0, vteps*vnis*perVNI)
	for h := range vteps {
		addr := netip.AddrFrom4([4]byte{10, 0, 1, byte(h + 1)})
		for v := range vnis {
			seg := evpn.NewSegment(addr, 65000, evpn.PresetFRR, uint16(v+1), "bench", "bench", evpn.VNI(1000+v), nil, nil)
			routes = append(routes, seg.IMETRoute(addr))
			for m := range perVNI - 1 {
				mac := net.HardwareAddr{0x02, 0xb7, byte(h), byte(v >> 8), byte(v), byte(m)}
				routes = append(routes, seg.MACIPRoute(addr, mac, netip.Addr{}, 0))
			}
		}
	}
	return routes
}

// BenchmarkImportFilter is the receiving end of B7 in process: a peer
// sends 12,000 EVPN paths over 100 VNIs, of which the receiver's segments
// import 10 (1,200 paths, 10%). One op is the time from the session being
// configured until the receiver has run every path through its import
// policy (the peer's End-of-RIB is on the watch) and has delivered every
// path it imports on Events. "unfiltered" never calls SetImport, as
// before; "filtered" sets the 10 VNIs before Start; "rejectall" has no
// segments, the part of the cost the filter cannot remove. heap-MB is the live
// heap the receiver added, after a GC with every path received.
func BenchmarkImportFilter(b *testing.B) {
	const vnis, perVNI, wanted = 100, 12, 10
	routes := b7Routes(vnis, perVNI)
	var filter ImportFilter
	for v := range wanted {
		filter.VNIs = append(filter.VNIs, evpn.VNI(1000+v*(vnis/wanted)))
	}
	b.Run("unfiltered", func(b *testing.B) { benchImport(b, routes, nil, uint64(len(routes))) })
	b.Run("filtered", func(b *testing.B) {
		benchImport(b, routes, &filter, uint64(len(routes)*wanted/vnis))
	})
	// The floor: every path still parsed into the adj-RIB-in, none kept.
	b.Run("rejectall", func(b *testing.B) { benchImport(b, routes, &ImportFilter{}, 0) })
}

func benchImport(b *testing.B, routes []evpn.Route, filter *ImportFilter, want uint64) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := int32(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	ctx := context.Background()
	gr := GracefulRestart{Enabled: true} // both send End-of-RIB
	start := func(n int, port int32, f *ImportFilter, peers ...PeerConfig) *Server {
		addr := netip.AddrFrom4([4]byte{127, 0, 0, byte(n)})
		s := New(testLogger().With("speaker", n))
		if f != nil {
			if err := s.SetImport(ctx, *f); err != nil {
				b.Fatal(err)
			}
		}
		err := s.Start(ctx, Config{
			RouterID: addr, ASN: 65000, NextHop: netip.AddrFrom4([4]byte{10, 0, 0, byte(n)}),
			ListenAddresses: []netip.Addr{addr}, ListenPort: port, Peers: peers, GracefulRestart: gr,
		})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	sender := start(211, -1, nil)
	defer sender.Stop()
	if err := sender.Advertise(ctx, routes); err != nil {
		b.Fatal(err)
	}
	senderAddr := netip.AddrFrom4([4]byte{127, 0, 0, 211})

	b.ReportAllocs()
	b.ResetTimer()
	var heap, peak, took, ingest, cpu float64
	for range b.N {
		b.StopTimer()
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		recv := start(212, port, filter, PeerConfig{Address: senderAddr, ASN: 65000})
		stopSampling, peakHeap := sampleHeap()
		cpu0 := cpuTime(b)
		b.StartTimer()

		t0 := time.Now()
		if err := sender.SetPeers(ctx, []PeerConfig{{Address: netip.AddrFrom4([4]byte{127, 0, 0, 212}), ASN: 65000, Port: uint16(port)}}); err != nil {
			b.Fatal(err)
		}
		var got uint64
		var up time.Time
		deadline := time.After(5 * time.Minute)
		tick := time.NewTicker(time.Millisecond)
		for eor := false; got < want || !eor; {
			select {
			case batch := <-recv.Events():
				got += uint64(len(batch))
			case <-tick.C:
				recv.mu.Lock()
				eor = recv.eor[senderAddr]
				if since, ok := recv.up[senderAddr]; ok && up.IsZero() {
					up = since
				}
				recv.mu.Unlock()
			case <-deadline:
				b.Fatalf("receiver has %d of %d routes after 5 minutes", got, want)
			}
		}
		tick.Stop()
		end := time.Now()
		b.StopTimer()
		took += end.Sub(t0).Seconds()
		ingest += end.Sub(up).Seconds()
		cpu += (cpuTime(b) - cpu0).Seconds()
		stopSampling()
		peak += float64(*peakHeap-before.HeapAlloc) / (1 << 20)
		if got != want {
			b.Fatalf("receiver delivered %d routes, want %d", got, want)
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		heap += float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)
		recv.Stop()
		if err := sender.SetPeers(ctx, nil); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(took/float64(b.N), "s-to-all")
	b.ReportMetric(ingest/float64(b.N), "s-established-to-all")
	b.ReportMetric(heap/float64(b.N), "heap-MB")
	b.ReportMetric(peak/float64(b.N), "peak-heap-MB")
	b.ReportMetric(cpu/float64(b.N), "cpu-s")
}

// BenchmarkImportPattern is GoBGP's per-community cost of the filter: one
// match of the compiled pattern against a printed route target, for
// filters of 10 to 4,000 VNIs imported by VNI plus 10 explicit RTs.
func BenchmarkImportPattern(b *testing.B) {
	for _, n := range []int{10, 100, 1000, 4000} {
		var f ImportFilter
		for i := range n {
			f.VNIs = append(f.VNIs, evpn.VNI(10000+7*i))
		}
		for i := range 10 {
			f.RTs = append(f.RTs, rt0(65000, uint32(900000+i)))
		}
		f = f.normal()
		t0 := time.Now()
		re := regexp.MustCompile(f.pattern())
		compile := time.Since(t0)
		for _, c := range []struct {
			name, s string
		}{
			{"miss", "65000:500123"},
			{"hit-auto", fmt.Sprintf("65000:%d", 10000+7*(n/2))},
			{"hit-rfc8365", fmt.Sprintf("65000:%d", 1<<28|10000+7*(n-1))},
			{"hit-explicit", "65000:900009"},
		} {
			b.Run(fmt.Sprintf("vnis=%d/%s", n, c.name), func(b *testing.B) {
				b.ReportMetric(float64(compile.Microseconds())/1000, "compile-ms")
				want := c.name != "miss"
				for range b.N {
					if re.MatchString(c.s) != want {
						b.Fatalf("%s: match %v", c.s, !want)
					}
				}
			})
		}
	}
}
