package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/evpnd/evpnd/evpn"
)

func TestGracefulRestartMapping(t *testing.T) {
	peer := PeerConfig{Address: netip.MustParseAddr("10.0.0.254"), ASN: 65000}
	for _, tc := range []struct {
		name        string
		gr          GracefulRestart
		restarting  bool
		wantSeconds uint32
	}{
		{"off", GracefulRestart{}, false, 0},
		{"default time", GracefulRestart{Enabled: true}, false, 120},
		{"restarting", GracefulRestart{Enabled: true, RestartTime: 30 * time.Second}, true, 30},
		{"capped at 12 bits", GracefulRestart{Enabled: true, RestartTime: 2 * time.Hour}, false, 4095},
	} {
		s := New(testLogger())
		s.cfg.GracefulRestart = tc.gr
		p := s.apiPeerRestarting(peer, tc.restarting)
		g := p.GetGracefulRestart()
		if g.GetEnabled() != tc.gr.Enabled || g.GetRestartTime() != tc.wantSeconds || g.GetLocalRestarting() != tc.restarting {
			t.Errorf("%s: graceful restart %+v, want enabled %v restart-time %d local-restarting %v",
				tc.name, g, tc.gr.Enabled, tc.wantSeconds, tc.restarting)
		}
		if tc.gr.Enabled && g.GetDeferralTime() == 0 {
			// 0 ends the deferral at once: a restarting speaker would
			// advertise before its peers' End-of-RIB.
			t.Errorf("%s: no selection deferral time", tc.name)
		}
		for _, af := range p.GetAfiSafis() {
			if got := af.GetMpGracefulRestart().GetConfig().GetEnabled(); got != tc.gr.Enabled {
				t.Errorf("%s: family %v graceful restart %v, want %v", tc.name, af.GetConfig().GetFamily(), got, tc.gr.Enabled)
			}
		}
	}
}

// grPeerConf reads back what GoBGP holds for peer.
func grPeerConf(t *testing.T, s *Server, peer netip.Addr) *api.Peer {
	t.Helper()
	var got *api.Peer
	err := s.bgp.ListPeer(context.Background(), &api.ListPeerRequest{Address: peer.String()}, func(p *api.Peer) { got = p })
	if err != nil {
		t.Fatal(err)
	}
	if got == nil {
		t.Fatalf("gobgp has no peer %s", peer)
	}
	return got
}

func startGR(t *testing.T, dir string, peer PeerConfig) *Server {
	t.Helper()
	s := New(testLogger())
	err := s.Start(context.Background(), Config{
		RouterID:        netip.MustParseAddr("127.0.0.41"),
		ASN:             65041,
		NextHop:         netip.MustParseAddr("10.0.0.41"),
		ListenAddresses: []netip.Addr{netip.MustParseAddr("127.0.0.41")},
		ListenPort:      freePort(t),
		Peers:           []PeerConfig{peer},
		GracefulRestart: GracefulRestart{Enabled: true, RestartTime: 45 * time.Second, StateDir: dir},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// GoBGP holds the capability for every family, and the restarting state
// follows the marker: a clean stop removes it, a stop for a restart (or a
// crash) leaves it, and the next start announces the restart.
func TestGracefulRestartInGoBGP(t *testing.T) {
	dir := t.TempDir()
	peer := PeerConfig{Address: netip.MustParseAddr("127.0.0.99"), ASN: 65099, Port: uint16(freePort(t))}
	marker := filepath.Join(dir, restartMarker)

	check := func(s *Server, restarting bool) {
		t.Helper()
		p := grPeerConf(t, s, peer.Address)
		g := p.GetGracefulRestart()
		if !g.GetEnabled() || g.GetRestartTime() != 45 || g.GetLocalRestarting() != restarting {
			t.Errorf("gobgp graceful restart %+v, want enabled, restart-time 45, local-restarting %v", g, restarting)
		}
		families := map[string]bool{}
		for _, af := range p.GetAfiSafis() {
			if af.GetMpGracefulRestart().GetConfig().GetEnabled() {
				families[fmt.Sprint(af.GetConfig().GetFamily().GetAfi(), "/", af.GetConfig().GetFamily().GetSafi())] = true
			}
		}
		for _, f := range []*api.Family{evpnFamily, ipv4Family, ipv6Family} {
			if !families[fmt.Sprint(f.GetAfi(), "/", f.GetSafi())] {
				t.Errorf("family %v lacks graceful restart in gobgp (has %v)", f, families)
			}
		}
		if s.Restarting() != restarting {
			t.Errorf("Restarting() = %v, want %v", s.Restarting(), restarting)
		}
	}

	first := startGR(t, dir, peer)
	check(first, false)
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("a running speaker leaves no marker for a crash to be seen: %v", err)
	}
	first.Stop()
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Errorf("a clean stop left the restart marker (%v)", err)
	}

	second := startGR(t, dir, peer)
	check(second, false)
	second.StopForRestart()
	second.bgp.Stop() // what the process's exit would do
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("a stop for a restart removed the marker: %v", err)
	}

	third := startGR(t, dir, peer)
	t.Cleanup(third.Stop)
	check(third, true)
}

func TestRestartMarkerIsPerBoot(t *testing.T) {
	boot := filepath.Join(t.TempDir(), "boot_id")
	old := bootIDPath
	bootIDPath = boot
	t.Cleanup(func() { bootIDPath = old })
	dir := t.TempDir()

	if err := os.WriteFile(boot, []byte("aaaa-1111\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := readRestartMarker(dir); err != nil || got {
		t.Fatalf("no marker: restarting %v, err %v", got, err)
	}
	if err := writeRestartMarker(dir); err != nil {
		t.Fatal(err)
	}
	if got, err := readRestartMarker(dir); err != nil || !got {
		t.Fatalf("marker of this boot: restarting %v, err %v", got, err)
	}
	if err := os.WriteFile(boot, []byte("bbbb-2222\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := readRestartMarker(dir); err != nil || got {
		t.Errorf("marker of another boot: restarting %v, err %v; the forwarding state it speaks for is gone", got, err)
	}
}

// A restarting speaker holds its routes back until its peer's End-of-RIB,
// then sends them; convergence comes from the End-of-RIB itself, which
// graceful restart makes both sides send.
func TestGracefulRestartConvergesOnEOR(t *testing.T) {
	port := freePort(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	if err := writeRestartMarker(dirA); err != nil {
		t.Fatal(err)
	}
	start := func(n int, dir string, peer int) *speaker {
		s := New(testLogger().With("speaker", n))
		cfg := pairConfig(n, peer, port)
		cfg.GracefulRestart = GracefulRestart{Enabled: true, StateDir: dir}
		err := s.Start(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Stop)
		return &speaker{Server: s, got: map[string]evpn.Route{}}
	}
	a := start(51, dirA, 52)
	if !a.Restarting() {
		t.Fatal("A found its marker but does not restart")
	}
	seg := evpn.NewSegment(netip.MustParseAddr("127.0.0.51"), 65000, evpn.PresetFRR, 100, "blue", "web", 100, nil, nil)
	imet := seg.IMETRoute(netip.MustParseAddr("10.0.0.51"))
	if err := a.Advertise(context.Background(), []evpn.Route{imet}); err != nil {
		t.Fatal(err)
	}
	b := start(52, dirB, 51)

	for _, s := range []*speaker{a, b} {
		select {
		case <-s.Converged():
		case <-time.After(30 * time.Second):
			t.Fatalf("%s never converged", s.cfg.RouterID)
		}
	}
	for _, s := range []*speaker{a, b} {
		s.mu.Lock()
		peer := s.cfg.Peers[0].Address
		eor, promised := s.eor[peer], s.promised[peer]
		s.mu.Unlock()
		if !eor {
			// Converged by the quiet rule: a peer that negotiated graceful
			// restart must be waited for.
			t.Errorf("%s converged without End-of-RIB from %s (promised %v)", s.cfg.RouterID, peer, promised)
		}
	}
	b.waitFor(t, "A's route at B after the deferral", func() bool { _, ok := b.got[imet.NLRI.Key()]; return ok })
	if a.Restarting() {
		t.Error("A still restarting after convergence")
	}
}
