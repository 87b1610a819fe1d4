package bgp

import (
	"context"
	"flag"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"

	"github.com/evpnd/evpnd/evpn"
)

// benchRoutesFlag sets the route counts BenchmarkIngest runs, as B1 of
// issue #6 does: go test -bench Ingest -benchroutes 10000,100000,250000.
var benchRoutesFlag = flag.String("benchroutes", "10000,100000", "comma-separated route counts for BenchmarkIngest")

// benchHeapFlag names a file for a heap profile taken when the receiver
// has every route, before anything is stopped (go test's -memprofile is
// written after the speakers are gone).
var benchHeapFlag = flag.String("benchheap", "", "write a heap profile of BenchmarkIngest's last run with all routes received")

// ingestRoutes is what a rack of hosts advertises in B1: MAC-only type-2s
// of one L2VNI behind ten VTEPs, each with its own RD, plus one type-3 per
// VTEP.
func ingestRoutes(n int) []evpn.Route {
	const vteps = 10
	segs := make([]evpn.Segment, vteps)
	addrs := make([]netip.Addr, vteps)
	routes := make([]evpn.Route, 0, n+vteps)
	for i := range segs {
		addrs[i] = netip.AddrFrom4([4]byte{10, 0, 0, byte(100 + i)})
		segs[i] = evpn.NewSegment(addrs[i], 65000, evpn.PresetFRR, 100, "bench", "bench", 100, nil, nil)
		routes = append(routes, segs[i].IMETRoute(addrs[i]))
	}
	for i := range n {
		j := i % vteps
		mac := net.HardwareAddr{0x02, 0xbe, 0, byte(i >> 16), byte(i >> 8), byte(i)}
		routes = append(routes, segs[j].MACIPRoute(addrs[j], mac, netip.Addr{}, 0))
	}
	return routes
}

func benchSpeaker(b *testing.B, n int, asn uint32, port int32, peers ...PeerConfig) *Server {
	b.Helper()
	addr := netip.AddrFrom4([4]byte{127, 0, 0, byte(n)})
	s := New(testLogger().With("speaker", n))
	err := s.Start(context.Background(), Config{
		RouterID:        addr,
		ASN:             asn,
		NextHop:         netip.AddrFrom4([4]byte{10, 0, 0, byte(n)}),
		ListenAddresses: []netip.Addr{addr},
		ListenPort:      port,
		Peers:           peers,
	})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkIngest is B1 in process: a sender loaded with n routes peers
// with a fresh receiver, and one op is the time from the sender adding the
// peer until the receiver's Events has delivered every route. Both GoBGP
// servers share the process, so ns/op is an upper bound on the receiver's
// own cost. heap-MB is the live heap the receiver added, measured after a
// GC with the routes delivered and still in its RIB.
func BenchmarkIngest(b *testing.B) {
	for _, f := range strings.Split(*benchRoutesFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			b.Fatalf("-benchroutes: %q is not a positive count", f)
		}
		b.Run(strconv.Itoa(n), func(b *testing.B) { benchIngest(b, n) })
	}
}

func benchIngest(b *testing.B, n int) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := int32(l.Addr().(*net.TCPAddr).Port)
	l.Close()

	ctx := context.Background()
	// The sender only connects out, as the B1 injector does: two GoBGP
	// speakers connecting to each other collide for a long while.
	sender := benchSpeaker(b, 201, 65201, -1)
	defer sender.Stop()
	routes := ingestRoutes(n)
	if err := sender.Advertise(ctx, routes); err != nil {
		b.Fatal(err)
	}
	want := uint64(len(routes))

	b.ReportAllocs()
	b.ResetTimer()
	var heap, peak, establish, ingest, cpu float64
	for range b.N {
		b.StopTimer()
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		recv := benchSpeaker(b, 202, 65202, port, PeerConfig{Address: netip.AddrFrom4([4]byte{127, 0, 0, 201}), ASN: 65201})
		var got uint64
		stopSampling, peakHeap := sampleHeap()
		cpu0 := cpuTime(b)
		b.StartTimer()

		start := time.Now()
		if err := sender.SetPeers(ctx, []PeerConfig{{Address: netip.AddrFrom4([4]byte{127, 0, 0, 202}), ASN: 65202, Port: uint16(port)}}); err != nil {
			b.Fatal(err)
		}
		deadline := time.After(5 * time.Minute)
		first := time.Time{}
		for got < want {
			select {
			case batch := <-recv.Events():
				if first.IsZero() {
					first = time.Now()
				}
				got += uint64(len(batch))
			case <-deadline:
				b.Fatalf("receiver has %d of %d routes after 5 minutes", got, want)
			}
		}

		end := time.Now()
		b.StopTimer()
		cpu += (cpuTime(b) - cpu0).Seconds()
		stopSampling()
		establish += first.Sub(start).Seconds()
		ingest += end.Sub(first).Seconds()
		peak += float64(*peakHeap-before.HeapAlloc) / (1 << 20)
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		heap += float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)
		if *benchHeapFlag != "" {
			writeHeapProfile(b, *benchHeapFlag)
		}
		recv.Stop()
		if err := sender.SetPeers(ctx, nil); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(heap/float64(b.N), "heap-MB")
	b.ReportMetric(peak/float64(b.N), "peak-heap-MB")
	b.ReportMetric(establish/float64(b.N), "s-to-first")
	b.ReportMetric(ingest/float64(b.N), "s-ingest")
	// CPU time of the whole process (both speakers): on a shared
	// two-core machine it varies far less than wall time.
	b.ReportMetric(cpu/float64(b.N), "cpu-s")
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sampleHeap records the largest heap (live and garbage: what the process
// must hold in memory) every 10 ms until stopped.
func sampleHeap() (stop func(), peak *uint64) {
	peak = new(uint64)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		// runtime/metrics, unlike ReadMemStats, does not stop the world.
		sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		for {
			metrics.Read(sample)
			*peak = max(*peak, sample[0].Value.Uint64())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); <-finished }, peak
}

func writeHeapProfile(b *testing.B, path string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		b.Fatal(err)
	}
}

// benchPaths builds the api.Paths GoBGP's watch hands to onEvent for
// routes: the same calls toPathApi makes (MarshalNLRI and
// MarshalPathAttributes of the native path).
func benchPaths(b *testing.B, routes []evpn.Route) []*api.Path {
	b.Helper()
	paths := make([]*api.Path, len(routes))
	for i, r := range routes {
		p, err := toAPIPath(r, r.NextHop)
		if err != nil {
			b.Fatal(err)
		}
		nlri, err := apiutil.GetNativeNlri(p)
		if err != nil {
			b.Fatal(err)
		}
		attrs, err := apiutil.GetNativePathAttributes(p)
		if err != nil {
			b.Fatal(err)
		}
		anyNLRI, err := apiutil.MarshalNLRI(nlri)
		if err != nil {
			b.Fatal(err)
		}
		anyAttrs, err := apiutil.MarshalPathAttributes(attrs)
		if err != nil {
			b.Fatal(err)
		}
		paths[i] = &api.Path{
			Nlri:       anyNLRI,
			Pattrs:     anyAttrs,
			Family:     &api.Family{Afi: api.Family_Afi(nlri.AFI()), Safi: api.Family_Safi(nlri.SAFI())},
			NeighborIp: "127.0.0.201",
			SourceAsn:  65201,
		}
	}
	return paths
}

// BenchmarkConvert is the per-route cost of turning a watched path into an
// evpn.Route: the general conversion and ingest.
func BenchmarkConvert(b *testing.B) {
	paths := benchPaths(b, ingestRoutes(1000))
	run := func(b *testing.B, conv func(*api.Path) (evpn.Route, bool, error)) {
		b.ReportAllocs()
		for i := range b.N {
			if _, ok, err := conv(paths[i%len(paths)]); err != nil || !ok {
				b.Fatalf("path %d: ok %v, err %v", i, ok, err)
			}
		}
	}
	b.Run("general", func(b *testing.B) { run(b, fromAPIPath) })
	b.Run("ingest", func(b *testing.B) { run(b, newIngest().route) })
}
