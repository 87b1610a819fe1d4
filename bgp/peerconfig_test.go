package bgp

import (
	"context"
	"net/netip"
	"testing"

	api "github.com/osrg/gobgp/v3/api"
)

func TestTTLSecurityMapping(t *testing.T) {
	for _, tc := range []struct {
		hops    uint8
		enabled bool
		min     uint32
	}{
		{0, false, 0},
		{1, true, 255}, // directly connected: only TTL 255 passes
		{2, true, 254},
		{254, true, 2},
	} {
		s := New(testLogger())
		p := s.apiPeer(PeerConfig{Address: netip.MustParseAddr("10.0.0.254"), ASN: 65000, TTLSecurity: tc.hops})
		got := p.GetTtlSecurity()
		if got.GetEnabled() != tc.enabled || got.GetTtlMin() != tc.min {
			t.Errorf("ttl-security %d: enabled %v ttl-min %d, want %v %d", tc.hops, got.GetEnabled(), got.GetTtlMin(), tc.enabled, tc.min)
		}
	}
}

func TestPassiveMapping(t *testing.T) {
	s := New(testLogger())
	for _, passive := range []bool{false, true} {
		p := s.apiPeer(PeerConfig{Address: netip.MustParseAddr("10.0.0.254"), ASN: 65000, Passive: passive})
		if got := p.GetTransport().GetPassiveMode(); got != passive {
			t.Errorf("passive %v: gobgp transport passive-mode %v", passive, got)
		}
	}
}

// GoBGP keeps what apiPeer hands it, on add and on a live update, and the
// password travels the same way.
func TestPeerSecurityInGoBGP(t *testing.T) {
	peer := netip.MustParseAddr("127.0.0.99")
	pc := PeerConfig{Address: peer, ASN: 65099, Password: "s3cret", TTLSecurity: 1}
	s := startSpeaker(t, 31, 65031, freePort(t), pc)

	check := func(wantEnabled bool, wantMin uint32) {
		t.Helper()
		var got *api.Peer
		err := s.bgp.ListPeer(context.Background(), &api.ListPeerRequest{Address: peer.String()}, func(p *api.Peer) { got = p })
		if err != nil {
			t.Fatal(err)
		}
		if got == nil {
			t.Fatalf("gobgp has no peer %s", peer)
		}
		if ts := got.GetTtlSecurity(); ts.GetEnabled() != wantEnabled || ts.GetTtlMin() != wantMin {
			t.Errorf("gobgp ttl-security %+v, want enabled %v ttl-min %d", ts, wantEnabled, wantMin)
		}
		if pw := got.GetConf().GetAuthPassword(); pw != "s3cret" {
			t.Errorf("gobgp auth password %q, want s3cret", pw)
		}
	}
	check(true, 255)

	pc.TTLSecurity = 3
	if err := s.SetPeers(context.Background(), []PeerConfig{pc}); err != nil {
		t.Fatal(err)
	}
	check(true, 253)

	pc.TTLSecurity = 0
	if err := s.SetPeers(context.Background(), []PeerConfig{pc}); err != nil {
		t.Fatal(err)
	}
	check(false, 0)
}
