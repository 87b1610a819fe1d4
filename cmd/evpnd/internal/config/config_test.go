package config

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/evpnd/evpnd/evpn"
	"github.com/evpnd/evpnd/policy"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestLoadGood(t *testing.T) {
	cfg, err := Load("testdata/good.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RouterID != netip.MustParseAddr("10.0.0.1") || cfg.ASN != 65001 || cfg.VTEP != netip.MustParseAddr("10.0.0.1") {
		t.Errorf("globals: %+v", cfg)
	}
	if got := len(cfg.BGP.Peers); got != 1 {
		t.Fatalf("peers: %d", got)
	}
	p := cfg.BGP.Peers[0]
	if p.Address != netip.MustParseAddr("10.0.0.254") || p.ASN != 65000 || p.Password != "s3cret" || p.HoldTime.Seconds() != 9 || p.Description != "rr1" {
		t.Errorf("peer: %+v", p)
	}
	if cfg.BGP.NextHop != cfg.VTEP {
		t.Errorf("next hop %s, want the vtep", cfg.BGP.NextHop)
	}
	db := cfg.Tenants[0].Segments[1]
	if db.VNI != 65636 || db.MTU != 1450 || len(db.Import) != 1 || len(db.Export) != 2 || db.Export[1].String() != "10.0.0.1:7" {
		t.Errorf("segment db: %+v", db)
	}
	if cfg.LogFormat != "json" {
		t.Errorf("log format %q", cfg.LogFormat)
	}

	// RD indexes: VNI 100 and 65636 share their low 16 bits; the lower VNI
	// keeps 100, the other takes the next free index.
	segs := cfg.Segments()
	rd := map[evpn.VNI]string{}
	for _, s := range segs {
		rd[s.VNI] = s.RD.String()
	}
	want := map[evpn.VNI]string{100: "10.0.0.1:100", 200: "10.0.0.1:200", 65636: "10.0.0.1:101"}
	for v, w := range want {
		if rd[v] != w {
			t.Errorf("vni %d: rd %s, want %s", v, rd[v], w)
		}
	}
	fc := cfg.Fabric()
	if fc.NetnsPrefix != "evpn-" || len(fc.Tenants) != 2 || fc.Tenants[0].Segments[0].Ports[0] != "tap-vm1" {
		t.Errorf("fabric config: %+v", fc)
	}
}

// TestLoadBad checks that one message lists every problem, with path, value
// and rule; the golden file is the operator-facing text.
func TestLoadBad(t *testing.T) {
	_, err := Load("testdata/bad.yaml", nil)
	if err == nil {
		t.Fatal("bad config accepted")
	}
	cerr, ok := err.(*Error)
	if !ok {
		t.Fatalf("error type %T: %v", err, err)
	}
	got := cerr.Error() + "\n"
	golden := filepath.Join("testdata", "bad.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if got != string(want) {
		t.Errorf("message differs from %s:\n--- got\n%s--- want\n%s", golden, got, want)
	}
	for _, must := range []string{
		`tenants[0].segments[1].vni: 16777216 is out of range 1..16777215`,
		`peers[0].colour: unknown key`,
		`tenants[1].segments[0].vni: 100 is already used by tenants[0].segments[0]`,
		`tenants[1].name: "../etc" cannot be part of a namespace name`,
		`router-id: "10.0.0.300" is not an IPv4 address`,
		`peers[1].address: "10.0.0.254" duplicates peers[0].address`,
		`tenants[0].segments[1].ports[0]: "tap-vm1" is already attached at tenants[0].segments[0].ports[0]`,
	} {
		if !strings.Contains(got, must) {
			t.Errorf("message lacks %q", must)
		}
	}
}

func TestLoadEnvAndFlags(t *testing.T) {
	t.Setenv("EVPND_NETNS_PREFIX", "lab1-h1-")
	t.Setenv("EVPND_API_LISTEN", "unix:///tmp/x/evpnd.sock")
	t.Setenv("EVPND_ASN", "65123")
	fs := pflag.NewFlagSet("evpnd", pflag.ContinueOnError)
	Flags(fs)
	if err := fs.Parse([]string{"--state-dir", "/tmp/state", "--asn", "65222"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load("testdata/good.yaml", fs)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NetnsPrefix != "lab1-h1-" || cfg.APIListen != "unix:///tmp/x/evpnd.sock" {
		t.Errorf("env not applied: %q %q", cfg.NetnsPrefix, cfg.APIListen)
	}
	if cfg.StateDir != "/tmp/state" || cfg.ASN != 65222 {
		t.Errorf("flags not applied (flags beat env): %q %d", cfg.StateDir, cfg.ASN)
	}
}

func TestLoadDefaults(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "min.yaml")
	if err := os.WriteFile(p, []byte("router-id: 10.0.0.9\nasn: 65009\nvtep-address: 10.0.0.9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NetnsPrefix != DefaultNetnsPrefix || cfg.RTPreset != DefaultRTPreset || cfg.BGP.ListenPort != DefaultListenPort ||
		cfg.APIListen != DefaultAPIListen || cfg.StateDir != DefaultStateDir || cfg.LogFormat != "text" {
		t.Errorf("defaults: %+v", cfg)
	}
}

func TestLoadTypeErrors(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "types.yaml")
	body := "router-id: 10.0.0.9\nasn: many\nvtep-address: 10.0.0.9\ntenants:\n  - name: a\n    segments:\n      - {name: s, vni: lots}\n"
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p, nil)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, must := range []string{"asn", "tenants[0].segments[0].vni"} {
		if !strings.Contains(err.Error(), must) {
			t.Errorf("error lacks %q:\n%v", must, err)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("testdata/does-not-exist.yaml", nil)
	if err == nil || !strings.Contains(err.Error(), "does-not-exist.yaml") {
		t.Fatalf("error %v", err)
	}
}

func TestLoadRouted(t *testing.T) {
	cfg, err := Load("testdata/routed.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	blue, red := cfg.Tenants[0], cfg.Tenants[1]
	if blue.L3 == nil || blue.L3.VNI != 5000 || !blue.L3.AdvertiseConnected || blue.L3.AnycastMAC.String() != DefaultAnycastMAC {
		t.Fatalf("blue l3: %+v", blue.L3)
	}
	if got := fmt.Sprint(blue.Segments[0].Gateways); got != "[172.31.1.254/24 2001:db8:1::1/64]" {
		t.Errorf("gateways %s", got)
	}
	if got := fmt.Sprint(blue.Segments[1].Gateways); got != "[172.31.2.254/24]" {
		t.Errorf("a single gateway string: %s", got)
	}
	if r := blue.L3.Routes; len(r) != 1 || r[0].Prefix.String() != "0.0.0.0/0" || r[0].Via.String() != "172.31.1.10" {
		t.Errorf("routes %+v", r)
	}
	if red.L3.AdvertiseConnected || red.L3.AnycastMAC.String() != "02:00:00:00:00:02" {
		t.Errorf("red l3: %+v", red.L3)
	}
	if cfg.RouterMAC.String() != "02:52:0a:00:00:01" {
		t.Errorf("derived router mac %s", cfg.RouterMAC)
	}

	l3 := cfg.L3()
	if len(l3) != 2 || l3[0].RD.String() != "10.0.0.1:5000" || l3[0].Export[0].String() != "65000:5000" {
		t.Fatalf("l3: %+v", l3)
	}
	if got := fmt.Sprint(l3[0].Local); got != "[172.31.1.0/24 2001:db8:1::/64 172.31.2.0/24 0.0.0.0/0]" {
		t.Errorf("local prefixes %s", got)
	}
	for _, s := range cfg.Segments() {
		if s.L3 == nil || s.L3.Tenant != s.Tenant {
			t.Errorf("segment %s/%s lacks its tenant's L3", s.Tenant, s.Name)
		}
	}
	fc := cfg.Fabric()
	fb := fc.Tenants[0]
	if fb.L3 == nil || fb.L3.VNI != 5000 || fb.L3.RouterMAC.String() != "02:52:0a:00:00:01" || len(fb.L3.Routes) != 1 {
		t.Errorf("fabric l3 %+v", fb.L3)
	}
	if fb.Segments[0].GatewayMAC.String() != DefaultAnycastMAC || fc.Tenants[1].Segments[0].GatewayMAC.String() != "02:00:00:00:00:02" {
		t.Errorf("gateway MACs %s %s", fb.Segments[0].GatewayMAC, fc.Tenants[1].Segments[0].GatewayMAC)
	}
}

func TestLoadRoutedBad(t *testing.T) {
	_, err := Load("testdata/routed-bad.yaml", nil)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, must := range []string{
		`router-mac: "01:00:5e:00:00:01" is a multicast MAC`,
		`tenants[0].segments[0].vni: 100 is already used by tenants[0].l3vni`,
		`tenants[0].segments[0].gateway[0]: "172.31.1.0/24" is the subnet's own address; give the gateway's address, e.g. 172.31.1.254/24`,
		`tenants[0].segments[0].gateway[2]: "nonsense" is not an address with its subnet length`,
		`tenants[0].routes[0].prefix: "10.1.1.1/24" has host bits set; did you mean 10.1.1.0/24?`,
		`tenants[0].routes[1].via: "192.168.99.1" is on none of the tenant's gateway subnets`,
		`tenants[0].routes[2].via: "172.31.1.10" is not of the same family as prefix 2001:db8::/32`,
		`tenants[1].routes: "(set)" needs tenants[1].l3vni`,
		`tenants[1].segments[0].gateway[0]: "172.31.1.254/24" needs tenants[1].l3vni`,
	} {
		if !strings.Contains(err.Error(), must) {
			t.Errorf("error lacks %q", must)
		}
	}
	if t.Failed() {
		t.Log(err)
	}
}

func TestLoadPolicy(t *testing.T) {
	cfg, err := Load("testdata/policy.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Policies) != 1 {
		t.Fatalf("policies: %d", len(cfg.Policies))
	}
	p := cfg.Policies[0]
	if got := fmt.Sprint(p.AddressGroups[0].Prefixes); got != "[198.51.100.0/24 2001:db8:f::/48 192.0.2.7/32]" {
		t.Errorf("address group %s", got)
	}
	r := p.Rules[0]
	if r.Direction != policy.Ingress || r.Target.PortGroup != "web" || r.Protocol != policy.ProtoTCP || r.Action != policy.ActionAllow ||
		!r.Log || r.DSCP == nil || *r.DSCP != 46 || r.Class != "gold" || fmt.Sprint(r.Ports) != "[{80 80} {443 443} {8000 8080}]" {
		t.Errorf("rule 0: %+v", r)
	}
	if r := p.Rules[1]; r.Target.Segment != "web" || r.Protocol != policy.ProtoICMP || fmt.Sprint(r.ICMPTypes) != "[8]" {
		t.Errorf("rule 1: %+v", r)
	}
	if d := p.Segments[0]; d.Ingress != policy.ActionDeny || d.Egress != policy.ActionAllow {
		t.Errorf("segment default %+v (an unset direction allows)", d)
	}
	q := p.QoS[0]
	if q.EgressRate != 100_000_000 || q.EgressBurst != 64<<10 || q.IngressRate != 2_500_000_000 || q.IngressBurst != 1<<20 ||
		q.Classes[0].Rate != 20_000_000 || q.Classes[0].Ceil != 100_000_000 || q.Classes[0].Priority != 1 {
		t.Errorf("qos %+v", q)
	}
	if got := fmt.Sprint(p.PublicAddresses()); got != "[203.0.113.1 203.0.113.10 203.0.113.11]" {
		t.Errorf("public addresses %s", got)
	}
	if pf := p.NAT.PortForwards[0]; pf.Protocol != policy.ProtoTCP || pf.Port != 8080 || pf.InternalPort != 80 {
		t.Errorf("port forward %+v", pf)
	}
}

func TestLoadPolicyBad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "bad.yaml")
	body := `router-id: 10.0.0.1
asn: 65000
vtep-address: 10.0.0.1
tenants: [{name: blue, segments: [{name: web, vni: 100}]}]
policies:
  - tenant: green
  - tenant: blue
    rules:
      - {name: r, direction: sideways, action: maybe, protocol: sctp, ports: ["80-x"], dscp: 64, remote: {prefixes: [10.1.1.1/24]}}
    nat: {snat: not-an-ip}
    qos:
      - {port: tap-vm1, egress: {rate: fast, burst: 64kib}}
`
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p, nil)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, must := range []string{
		`policies[0].tenant: "green" is not a configured tenant`,
		`policies[1].rules[0].direction: "sideways" is not one of ingress`,
		`policies[1].rules[0].action: "maybe" is not one of allow, deny, reject`,
		`policies[1].rules[0].protocol: "sctp" is not one of any, tcp, udp, icmp, icmpv6`,
		`policies[1].rules[0].ports[0]: "80-x" is not a port`,
		`policies[1].rules[0].dscp: 64 is out of range 0..63`,
		`policies[1].rules[0].remote.prefixes[0]: "10.1.1.1/24" has host bits set; did you mean 10.1.1.0/24?`,
		`policies[1].nat.snat: "not-an-ip" is not an IP address`,
		`policies[1].nat: "(set)" needs tenant "blue" to be routed`,
		`policies[1].qos[0].egress.rate: "fast" is not a rate`,
		`policies[1].qos[0].egress.burst: "64kib" is not a size`,
	} {
		if !strings.Contains(err.Error(), must) {
			t.Errorf("error lacks %q", must)
		}
	}
	if t.Failed() {
		t.Log(err)
	}
}

// TestLoadPolicySemantics checks that the policy package's own validation
// runs at load time, with config paths in front of its field paths.
func TestLoadPolicySemantics(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sem.yaml")
	body := `router-id: 10.0.0.1
asn: 65000
vtep-address: 10.0.0.1
tenants: [{name: blue, segments: [{name: web, vni: 100, ports: [tap-vm1]}]}]
policies:
  - tenant: blue
    rules:
      - {name: r1, direction: ingress, port: tap-nope, action: allow}
      - {name: r1, direction: ingress, segment: web, port-group: ghosts, action: deny}
`
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p, nil)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, must := range []string{"policies[0].rules[0].target.port", "tap-nope", "policies[0].rules[1]"} {
		if !strings.Contains(err.Error(), must) {
			t.Errorf("error lacks %q:\n%v", must, err)
		}
	}
}

// TestReadmePolicyExample keeps the README's worked policy example valid.
func TestReadmePolicyExample(t *testing.T) {
	readme, err := os.ReadFile("../../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	i := strings.Index(s, "policies:\n  - tenant: blue")
	if i < 0 {
		t.Fatal("README has no policy example starting with `policies:\\n  - tenant: blue`")
	}
	j := strings.Index(s[i:], "```")
	head := `router-id: 10.0.0.1
asn: 65000
vtep-address: 10.0.0.1
tenants:
  - name: blue
    l3vni: 5000
    segments:
      - {name: web, vni: 100, gateway: 172.31.1.254/24, ports: [tap-w1, tap-w2]}
      - {name: db, vni: 120, gateway: 172.31.3.254/24, ports: [tap-d1]}
`
	p := filepath.Join(t.TempDir(), "readme.yaml")
	if err := os.WriteFile(p, []byte(head+s[i:i+j]), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(p, nil)
	if err != nil {
		t.Fatalf("the README's policy example is refused:\n%v", err)
	}
	if n := len(cfg.Policies[0].Rules); n != 6 {
		t.Errorf("example has %d rules, want 6", n)
	}
}

func TestLoadPeerSecurity(t *testing.T) {
	p := filepath.Join(t.TempDir(), "peers.yaml")
	body := `router-id: 10.0.0.1
asn: 65000
vtep-address: 10.0.0.1
peers:
  - {address: 10.0.0.254, asn: 65000, password: s3cret, ttl-security: 1}
  - {address: 10.0.0.253, asn: 65001, ttl-security: 254}
  - {address: 10.0.0.252, asn: 65002}
`
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		password string
		ttl      uint8
	}{{"s3cret", 1}, {"", 254}, {"", 0}}
	for i, w := range want {
		got := cfg.BGP.Peers[i]
		if got.Password != w.password || got.TTLSecurity != w.ttl {
			t.Errorf("peers[%d]: password %q ttl-security %d, want %q %d", i, got.Password, got.TTLSecurity, w.password, w.ttl)
		}
	}
}

func TestLoadPeerSecurityBad(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.yaml")
	body := `router-id: 10.0.0.1
asn: 65000
vtep-address: 10.0.0.1
peers:
  - {address: 10.0.0.254, asn: 65000, ttl-security: 255}
  - {address: 10.0.0.253, asn: 65000, ttl-security: -1}
  - {address: 10.0.0.252, asn: 65000, ttl-security: 300}
  - {address: 10.0.0.251, asn: 65000, password: ` + strings.Repeat("k", 81) + `}
`
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p, nil)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, must := range []string{
		`peers[0].ttl-security: 255 is out of range 1..254 hops (0: off)`,
		`peers[1].ttl-security: -1 is out of range 1..254 hops (0: off)`,
		`peers[2].ttl-security: 300 is out of range 1..254 hops (0: off)`,
		`peers[3].password: "(hidden)" is longer than 80 bytes`,
	} {
		if !strings.Contains(err.Error(), must) {
			t.Errorf("error lacks %q", must)
		}
	}
	if strings.Contains(err.Error(), strings.Repeat("k", 81)) {
		t.Error("error shows the password")
	}
	if t.Failed() {
		t.Log(err)
	}
}

// TestLoadRuntimeDefaults checks the defaults of the run-time features:
// graceful restart on (120 s), drift repair every 30 s, duplicate MAC
// detection at 5 moves in 180 s; and their range checks.
func TestLoadRuntimeDefaults(t *testing.T) {
	dir := t.TempDir()
	base := "router-id: 10.0.0.9\nasn: 65009\nvtep-address: 10.0.0.9\n"
	p := filepath.Join(dir, "min.yaml")
	if err := os.WriteFile(p, []byte(base), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.BGP.GracefulRestart.Enabled || cfg.BGP.GracefulRestart.RestartTime != 120*time.Second ||
		cfg.RepairInterval != 30*time.Second || cfg.DupMaxMoves != 5 || cfg.DupWindow != 180*time.Second ||
		cfg.MetricsListen != DefaultMetricsListen {
		t.Errorf("run-time defaults: gr %+v repair %v dup %d/%v metrics %q", cfg.BGP.GracefulRestart,
			cfg.RepairInterval, cfg.DupMaxMoves, cfg.DupWindow, cfg.MetricsListen)
	}
	off := base + "graceful-restart: {enabled: false}\nrepair-interval: 0\nmac-duplicate-detection: {max-moves: 0}\n"
	if err := os.WriteFile(p, []byte(off), 0o644); err != nil {
		t.Fatal(err)
	}
	if cfg, err = Load(p, nil); err != nil || cfg.BGP.GracefulRestart.Enabled || cfg.RepairInterval != 0 || cfg.DupMaxMoves != 0 {
		t.Errorf("everything off: %v, %+v", err, cfg)
	}
	bad := base + "graceful-restart: {restart-time: 5000}\nrepair-interval: -1\nmac-duplicate-detection: {max-moves: 5, window: 0}\n"
	if err := os.WriteFile(p, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(p, nil)
	for _, want := range []string{"graceful-restart.restart-time: 5000", "repair-interval: -1", "mac-duplicate-detection.window: 0"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bad run-time settings: %v; want a problem %q", err, want)
		}
	}
}

func TestLoadMaxPrefixes(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	base := "router-id: 10.0.0.9\nasn: 65009\nvtep-address: 10.0.0.9\npeers:\n  - {address: 10.0.0.254, asn: 65000, max-prefixes: %s}\n"
	if err := os.WriteFile(p, []byte(fmt.Sprintf(base, "20000")), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(p, nil)
	if err != nil || cfg.BGP.Peers[0].MaxPrefixes != 20000 {
		t.Fatalf("max-prefixes 20000: %v, %+v", err, cfg)
	}
	if err := os.WriteFile(p, []byte(fmt.Sprintf(base, "-1")), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p, nil); err == nil || !strings.Contains(err.Error(), "peers[0].max-prefixes: -1 is out of range") {
		t.Fatalf("max-prefixes -1: %v", err)
	}
}

func TestLoadPassive(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	base := "router-id: 10.0.0.9\nasn: 65009\nvtep-address: 10.0.0.9\npeers:\n  - {address: 10.0.0.254, asn: 65000, passive: %s}\n"
	for _, tc := range []struct {
		value string
		want  bool
	}{{"true", true}, {"false", false}} {
		if err := os.WriteFile(p, []byte(fmt.Sprintf(base, tc.value)), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(p, nil)
		if err != nil || cfg.BGP.Peers[0].Passive != tc.want {
			t.Fatalf("passive %s: %v, %+v", tc.value, err, cfg)
		}
	}
	if err := os.WriteFile(p, []byte(fmt.Sprintf(base, "sometimes")), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p, nil); err == nil || !strings.Contains(err.Error(), "passive") {
		t.Fatalf("passive sometimes: %v", err)
	}
}
