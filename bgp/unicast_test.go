package bgp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	gobgp "github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/evpnd/evpnd/evpn"
)

func TestUnicastNextHop(t *testing.T) {
	v4, v6 := netip.MustParsePrefix("203.0.113.10/32"), netip.MustParsePrefix("2001:db8:f::10/128")
	for _, tc := range []struct {
		cfg      Config
		want4    string // empty: an error
		want6    string
		describe string
	}{
		{Config{NextHop: netip.MustParseAddr("10.0.0.1")}, "10.0.0.1", "::ffff:10.0.0.1", "ipv4 underlay"},
		{Config{NextHop: netip.MustParseAddr("10.0.0.1"), NextHop6: netip.MustParseAddr("2001:db8::1")}, "10.0.0.1", "2001:db8::1", "explicit ipv6 next hop"},
		{Config{NextHop: netip.MustParseAddr("2001:db8::1")}, "", "2001:db8::1", "ipv6 underlay"},
		{Config{NextHop: netip.MustParseAddr("::ffff:10.0.0.1")}, "10.0.0.1", "::ffff:10.0.0.1", "mapped next hop"},
	} {
		for _, c := range []struct {
			prefix netip.Prefix
			want   string
		}{{v4, tc.want4}, {v6, tc.want6}} {
			got, err := tc.cfg.unicastNextHop(c.prefix)
			switch {
			case c.want == "" && err == nil:
				t.Errorf("%s: %v: next hop %v, want an error", tc.describe, c.prefix, got)
			case c.want != "" && (err != nil || got.String() != c.want):
				t.Errorf("%s: %v: next hop %v (%v), want %s", tc.describe, c.prefix, got, err, c.want)
			}
		}
	}
}

// receivedUnicast is what s's peers sent it of unicast routes (its
// Adj-RIB-In, before the import policy that keeps them out of its RIB):
// prefix to next hop.
func receivedUnicast(t *testing.T, s *Server) map[netip.Prefix]netip.Addr {
	t.Helper()
	out := map[netip.Prefix]netip.Addr{}
	s.mu.Lock()
	var peers []netip.Addr
	for a := range s.peers {
		peers = append(peers, a)
	}
	s.mu.Unlock()
	for _, peer := range peers {
		for _, fam := range []*api.Family{ipv4Family, ipv6Family} {
			if err := listUnicast(t, s, api.TableType_ADJ_IN, peer.String(), fam, out); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

// ribUnicast is what s's RIB holds of unicast routes from peers.
func ribUnicast(t *testing.T, s *Server) map[netip.Prefix]netip.Addr {
	t.Helper()
	out := map[netip.Prefix]netip.Addr{}
	for _, fam := range []*api.Family{ipv4Family, ipv6Family} {
		if err := listUnicast(t, s, api.TableType_GLOBAL, "", fam, out); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func listUnicast(t *testing.T, s *Server, table api.TableType, name string, fam *api.Family, out map[netip.Prefix]netip.Addr) error {
	t.Helper()
	{
		err := s.bgp.ListPath(context.Background(), &api.ListPathRequest{TableType: table, Name: name, Family: fam}, func(d *api.Destination) {
			for _, p := range d.GetPaths() {
				if a, err := netip.ParseAddr(p.GetNeighborIp()); err != nil || a.IsUnspecified() {
					continue
				}
				attrs, err := apiutil.GetNativePathAttributes(p)
				if err != nil {
					t.Errorf("%s: attributes: %v", d.GetPrefix(), err)
					continue
				}
				var nh netip.Addr
				for _, a := range attrs {
					switch a := a.(type) {
					case *gobgp.PathAttributeNextHop:
						nh, _ = netip.AddrFromSlice(a.Value)
					case *gobgp.PathAttributeMpReachNLRI:
						nh, _ = netip.AddrFromSlice(a.Nexthop)
					}
				}
				out[netip.MustParsePrefix(d.GetPrefix())] = nh
			}
		})
		return err
	}
}

// eventuallyUnicast polls s's received unicast routes until cond holds.
func eventuallyUnicast(t *testing.T, s *Server, what string, cond func(map[netip.Prefix]netip.Addr) bool) map[netip.Prefix]netip.Addr {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := receivedUnicast(t, s)
		if cond(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; have %v", what, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestUnicast runs A - B - C as TestRoundTrip does: A's public addresses
// reach B as unicast routes via A's next hop, go when withdrawn, never
// appear on B's Events, and B does not pass them on to C.
func TestUnicast(t *testing.T) {
	ctx := context.Background()
	port := freePort(t)
	a := startSpeaker(t, 21, 65021, port, peerAt(22, 65022, port))
	b := startSpeaker(t, 22, 65022, port, peerAt(21, 65021, port), peerAt(23, 65023, port))
	c := startSpeaker(t, 23, 65023, port, peerAt(22, 65022, port))

	pub4, pub6 := netip.MustParsePrefix("203.0.113.10/32"), netip.MustParsePrefix("2001:db8:f::10/128")
	if err := a.AdvertiseUnicast(ctx, []netip.Prefix{pub4, pub6}, false); err != nil {
		t.Fatal(err)
	}
	got := eventuallyUnicast(t, b.Server, "both routes at B", func(m map[netip.Prefix]netip.Addr) bool { return len(m) == 2 })
	if rib := ribUnicast(t, b.Server); len(rib) != 0 {
		t.Errorf("B's RIB holds peers' unicast routes %v; a host must drop them at import", rib)
	}
	if _, ok := got[pub4]; !ok {
		t.Fatalf("B holds %v, want %v and %v", got, pub4, pub6)
	}
	nhA := netip.MustParseAddr("10.0.0.21")
	if got[pub4] != nhA {
		t.Errorf("B: %v via %v, want %v", pub4, got[pub4], nhA)
	}
	if want := netip.AddrFrom16(nhA.As16()); got[pub6] != want {
		t.Errorf("B: %v via %v, want %v", pub6, got[pub6], want)
	}
	if mine, err := a.UnicastRoutes(ctx); err != nil || !slices.Equal(mine, []netip.Prefix{pub4, pub6}) {
		t.Errorf("A advertises %v (%v), want %v", mine, err, []netip.Prefix{pub4, pub6})
	}
	if theirs, err := b.UnicastRoutes(ctx); err != nil || len(theirs) != 0 {
		t.Errorf("B lists received routes %v (%v) as its own", theirs, err)
	}
	// The families were negotiated: B counts nothing else as received.
	peers, err := b.Peers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		if p.Address == netip.MustParseAddr("127.0.0.21") && p.Received != 0 {
			t.Errorf("B counts %d unicast paths as EVPN", p.Received)
		}
	}

	// B is a host, not transit: C hears B's own route but never A's.
	ownB := netip.MustParsePrefix("198.51.100.22/32")
	if err := b.AdvertiseUnicast(ctx, []netip.Prefix{ownB}, false); err != nil {
		t.Fatal(err)
	}
	atC := eventuallyUnicast(t, c.Server, "B's own route at C", func(m map[netip.Prefix]netip.Addr) bool { return m[ownB].IsValid() })
	if len(atC) != 1 || atC[ownB] != netip.MustParseAddr("10.0.0.22") {
		t.Errorf("C holds %v from B, want only %v via 10.0.0.22", atC, ownB)
	}
	if err := b.AdvertiseUnicast(ctx, []netip.Prefix{ownB}, true); err != nil {
		t.Fatal(err)
	}

	// Withdraw one, then the other.
	if err := a.AdvertiseUnicast(ctx, []netip.Prefix{pub6}, true); err != nil {
		t.Fatal(err)
	}
	eventuallyUnicast(t, b.Server, "ipv6 withdrawal at B", func(m map[netip.Prefix]netip.Addr) bool { _, ok := m[pub6]; return !ok && len(m) == 1 })
	if mine, _ := a.UnicastRoutes(ctx); !slices.Equal(mine, []netip.Prefix{pub4}) {
		t.Errorf("A advertises %v after withdrawing %v", mine, pub6)
	}

	// EVPN is unaffected, and Events carried no unicast path: the first
	// and only route B delivers is A's EVPN route, advertised after the
	// unicast ones.
	seg := evpn.NewSegment(netip.MustParseAddr("127.0.0.21"), 65021, evpn.PresetFRR, 100, "blue", "web", 100, nil, nil)
	imet := seg.IMETRoute(nhA)
	if err := a.Advertise(ctx, []evpn.Route{imet}); err != nil {
		t.Fatal(err)
	}
	b.waitFor(t, "the EVPN route at B", func() bool { return len(b.got) == 1 })
	if _, ok := b.got[imet.NLRI.Key()]; !ok || b.Received() != 1 {
		t.Errorf("B delivered %d routes on Events (%v), want only %s", b.Received(), b.got, imet.NLRI)
	}
	if err := a.AdvertiseUnicast(ctx, []netip.Prefix{pub4}, true); err != nil {
		t.Fatal(err)
	}
	eventuallyUnicast(t, b.Server, "all withdrawn at B", func(m map[netip.Prefix]netip.Addr) bool { return len(m) == 0 })
	if rs, err := b.Routes(ctx); err != nil || len(rs) != 1 {
		t.Errorf("B's EVPN RIB %v (%v), want A's one route", rs, err)
	}
	if b.Received() != 1 {
		t.Errorf("B delivered %d routes on Events, want 1", b.Received())
	}
}

func TestAdvertiseUnicastRejects(t *testing.T) {
	port := freePort(t)
	s := startSpeaker(t, 24, 65024, port)
	s.cfg.NextHop = netip.MustParseAddr("2001:db8::24")
	err := s.AdvertiseUnicast(context.Background(), []netip.Prefix{netip.MustParsePrefix("203.0.113.1/32"), {}}, false)
	if err == nil {
		t.Fatal("advertised an ipv4 prefix with an ipv6 next hop and an invalid prefix")
	}
	for _, want := range []string{"203.0.113.1/32", "invalid prefix"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}

// frrChildEnv names, in the re-executed test binary, the FRR directory of
// TestPrivilegedUnicastFRR; the child runs inside the test's namespace.
const frrChildEnv = "EVPND_TEST_FRR_DIR"

// TestPrivilegedUnicastFRR checks interop with FRR 8.4 bgpd: the IPv4 and
// IPv6 unicast routes of a Server reach an FRR peer with the Server's
// next hops, and go when withdrawn. GoBGP opens its sockets from whatever
// thread runs, so the test re-executes itself inside a fresh namespace
// (`ip netns exec`), where the child runs both bgpd and the Server.
func TestPrivilegedUnicastFRR(t *testing.T) {
	if dir := os.Getenv(frrChildEnv); dir != "" {
		unicastFRRChild(t, dir)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("privileged test: needs root to create a network namespace")
	}
	if _, err := os.Stat("/usr/lib/frr/bgpd"); err != nil {
		t.Skip("needs FRR: /usr/lib/frr/bgpd is missing (apt-get install frr)")
	}
	b := make([]byte, 3)
	rand.Read(b)
	ns := "bgpfrr-" + hex.EncodeToString(b)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	if out, err := exec.Command("ip", "-n", ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v\n%s", err, out)
	}
	dir, err := os.MkdirTemp("", "bgpfrr-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	u, err := user.Lookup("frr")
	if err != nil {
		t.Fatalf("frr user: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	conf := `frr defaults datacenter
hostname frr
router bgp 65100
 bgp router-id 127.0.0.1
 no bgp ebgp-requires-policy
 neighbor 127.0.0.2 remote-as 65200
 neighbor 127.0.0.2 disable-connected-check
 neighbor 127.0.0.2 timers connect 1
 address-family ipv4 unicast
  neighbor 127.0.0.2 activate
 exit-address-family
 address-family ipv6 unicast
  neighbor 127.0.0.2 activate
 exit-address-family
`
	if err := os.WriteFile(filepath.Join(dir, "frr.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, filepath.Join(dir, "frr.conf")} {
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"netns", "exec", ns, os.Args[0], "-test.run", "^TestPrivilegedUnicastFRR$", "-test.count", "1"}
	if testing.Verbose() {
		args = append(args, "-test.v")
	}
	cmd := exec.Command("ip", args...)
	cmd.Env = append(os.Environ(), frrChildEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	t.Logf("inside %s:\n%s", ns, out)
	if err != nil {
		t.Fatalf("interop test inside %s: %v", ns, err)
	}
}

// frrRoutes is FRR's `show bgp <family> unicast json`, as far as read.
type frrRoutes struct {
	Routes map[string][]struct {
		Valid    bool `json:"valid"`
		Nexthops []struct {
			IP string `json:"ip"`
		} `json:"nexthops"`
	} `json:"routes"`
}

// unicastFRRChild runs inside the namespace: FRR bgpd on 127.0.0.1, a
// Server on 127.0.0.2.
func unicastFRRChild(t *testing.T, dir string) {
	ctx := context.Background()
	bgpd := exec.Command("/usr/lib/frr/bgpd", "-Z", "-u", "frr", "-g", "frr",
		"-i", filepath.Join(dir, "bgpd.pid"), "--vty_socket", dir, "-z", filepath.Join(dir, "zserv.api"),
		"-f", filepath.Join(dir, "frr.conf"), "-A", "127.0.0.1", "-P", "0", "--log", "stdout")
	var logs strings.Builder
	bgpd.Stdout, bgpd.Stderr = &logs, &logs
	if err := bgpd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		bgpd.Process.Kill()
		bgpd.Wait()
		if t.Failed() {
			t.Logf("bgpd:\n%s", logs.String())
		}
	})
	show := func(fam string) frrRoutes {
		var r frrRoutes
		out, err := exec.Command("vtysh", "--vty_socket", dir, "-c", "show bgp "+fam+" unicast json").Output()
		if err == nil {
			json.Unmarshal(out, &r)
		}
		return r
	}

	s := New(testLogger())
	err := s.Start(ctx, Config{
		RouterID:        netip.MustParseAddr("127.0.0.2"),
		ASN:             65200,
		NextHop:         netip.MustParseAddr("10.0.0.2"),
		ListenAddresses: []netip.Addr{netip.MustParseAddr("127.0.0.2")},
		ListenPort:      -1,
		Peers:           []PeerConfig{{Address: netip.MustParseAddr("127.0.0.1"), ASN: 65100, HoldTime: 9 * time.Second, KeepaliveInterval: 3 * time.Second}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	waitEstablished(t, s, netip.MustParseAddr("127.0.0.1"))

	pub4, pub6 := netip.MustParsePrefix("203.0.113.10/32"), netip.MustParsePrefix("2001:db8:f::10/128")
	if err := s.AdvertiseUnicast(ctx, []netip.Prefix{pub4, pub6}, false); err != nil {
		t.Fatal(err)
	}
	hop := func(fam string, p netip.Prefix) string {
		for _, path := range show(fam).Routes[p.String()] {
			for _, nh := range path.Nexthops {
				return nh.IP
			}
		}
		return ""
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; FRR has ipv4 %+v ipv6 %+v", what, show("ipv4"), show("ipv6"))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	wait("both routes at FRR", func() bool { return hop("ipv4", pub4) != "" && hop("ipv6", pub6) != "" })
	// FRR prints the IPv4-mapped next hop as ::ffff:a00:2.
	for _, c := range []struct {
		fam    string
		prefix netip.Prefix
		want   netip.Addr
	}{
		{"ipv4", pub4, netip.MustParseAddr("10.0.0.2")},
		{"ipv6", pub6, netip.MustParseAddr("::ffff:10.0.0.2")},
	} {
		if got, err := netip.ParseAddr(hop(c.fam, c.prefix)); err != nil || got != c.want {
			t.Errorf("FRR: %v via %v (%v), want %v", c.prefix, got, err, c.want)
		}
	}
	t.Logf("FRR ipv4: %+v", show("ipv4"))
	t.Logf("FRR ipv6: %+v", show("ipv6"))
	if err := s.AdvertiseUnicast(ctx, []netip.Prefix{pub4, pub6}, true); err != nil {
		t.Fatal(err)
	}
	wait("withdrawal at FRR", func() bool { return hop("ipv4", pub4) == "" && hop("ipv6", pub6) == "" })
}
