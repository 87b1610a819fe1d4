package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"

	evpndv1 "github.com/evpnd/evpnd/api/evpnd/v1"
)

// cli runs evpnctl against socket.
func cli(socket string, args ...string) (stdout, stderr string, code int) {
	return evpnctl(nil, append([]string{"--socket", socket}, args...)...)
}

// writeFile writes a test input file and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// mutations are the requests that change something, in order.
func mutations(s *apiServer) []proto.Message {
	var out []proto.Message
	for _, r := range s.sentRequests() {
		name := string(r.ProtoReflect().Descriptor().Name())
		if !strings.HasPrefix(name, "Get") && !strings.HasPrefix(name, "List") && !strings.HasPrefix(name, "Watch") {
			out = append(out, r)
		}
	}
	return out
}

func wantRequests(t *testing.T, got, want []proto.Message) {
	t.Helper()
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("requests sent (-want +got):\n%s", diff)
	}
}

func TestResourceGolden(t *testing.T) {
	s := newAPIServer()
	socket, _ := s.serve(t)
	for _, tc := range []struct {
		golden string
		args   []string
	}{
		{"tenant-list.table", []string{"tenant", "list"}},
		{"tenant-list.json", []string{"tenant", "list", "-o", "json"}},
		{"tenant-list.yaml", []string{"tenant", "list", "-o", "yaml"}},
		{"tenant-get.table", []string{"tenant", "get", "blue"}},
		{"tenant-get.json", []string{"tenant", "get", "blue", "-o", "json"}},
		{"tenant-get.yaml", []string{"tenant", "get", "blue", "-o", "yaml"}},
		{"segment-list.table", []string{"segment", "list"}},
		{"segment-list-blue.json", []string{"segment", "list", "--tenant", "blue", "-o", "json"}},
		{"segment-get.yaml", []string{"segment", "get", "blue", "web", "-o", "yaml"}},
		{"segment-get.table", []string{"segment", "get", "red", "lan"}},
		{"port-list.table", []string{"port", "list"}},
		{"port-list-blue-web.table", []string{"port", "list", "--tenant", "blue", "--segment", "web"}},
		{"port-list.yaml", []string{"port", "list", "-o", "yaml"}},
		{"port-get.json", []string{"port", "get", "tap-vm1", "-o", "json"}},
		{"policy-list.table", []string{"policy", "list"}},
		{"policy-get.table", []string{"policy", "get", "blue"}},
		{"policy-get.json", []string{"policy", "get", "blue", "-o", "json"}},
		{"policy-get.yaml", []string{"policy", "get", "blue", "-o", "yaml"}},
		{"policy-counters.table", []string{"policy", "counters"}},
		{"policy-counters-blue.json", []string{"policy", "counters", "--tenant", "blue", "-o", "json"}},
		{"neighbors.table", []string{"show", "neighbors"}},
		{"neighbors-remote.table", []string{"show", "neighbors", "--origin", "remote"}},
		{"neighbors-blue-vni100.json", []string{"show", "neighbors", "--tenant", "blue", "--vni", "100", "-o", "json"}},
		{"neighbors.yaml", []string{"show", "neighbors", "-o", "yaml"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			stdout, stderr, code := cli(socket, tc.args...)
			if code != exitOK || stderr != "" {
				t.Fatalf("evpnctl %s: exit %d, stderr %q", strings.Join(tc.args, " "), code, stderr)
			}
			checkGolden(t, tc.golden, tc.args, stdout)
		})
	}
	// Lists follow next_page_token to the end.
	var tokens []string
	for _, r := range s.sentRequests() {
		if r, ok := r.(*evpndv1.ListTenantsRequest); ok {
			tokens = append(tokens, r.GetPageToken())
		}
	}
	if want := []string{"", "2", "", "2", "", "2"}; !slicesEqual(tokens, want) {
		t.Errorf("ListTenants page tokens %q, want %q", tokens, want)
	}
}

func slicesEqual(a, b []string) bool { return strings.Join(a, "\x00") == strings.Join(b, "\x00") }

// The neighbor filters reach the server as the API's typed filters.
func TestNeighborsRequest(t *testing.T) {
	s := newAPIServer()
	socket, _ := s.serve(t)
	if _, stderr, code := cli(socket, "show", "neighbors", "--tenant", "blue", "--vni", "100", "--origin", "local"); code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	wantRequests(t, s.sentRequests(), []proto.Message{&evpndv1.ListNeighborsRequest{Tenant: "blue", Vni: proto.Uint32(100), Origin: evpndv1.MacOrigin_MAC_ORIGIN_LOCAL}})
	_, stderr, code := cli(socket, "show", "neighbors", "--vni", "0")
	if want := "evpnctl: invalid --vni: 0 is out of range 1..16777215\nRun 'evpnctl show neighbors --help' for usage.\n"; code != exitUsage || stderr != want {
		t.Errorf("--vni 0: exit %d, stderr %q, want %q", code, stderr, want)
	}
}

func TestTenantCreateFlags(t *testing.T) {
	s := newAPIServer()
	socket, _ := s.serve(t)
	stdout, stderr, code := cli(socket, "tenant", "create", "orange", "--l3vni", "7000", "--anycast-gateway-mac", "02:00:00:00:00:07",
		"--advertise-connected=false", "--route", "10.9.0.0/16,via=10.7.0.254", "--route", "10.8.0.0/16,via=10.7.0.253",
		"--import-rt", "65000:7000,65000:7001", "--export-rt", "65000:7000")
	if code != exitOK || stdout != "tenant orange: created\n" || stderr != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// Created again with the same settings: nothing changes.
	stdout, _, code = cli(socket, "tenant", "create", "green")
	if code != exitOK || stdout != "tenant green: unchanged (an equal tenant exists)\n" {
		t.Errorf("create existing equal: exit %d, stdout %q", code, stdout)
	}
	wantRequests(t, mutations(s), []proto.Message{
		&evpndv1.CreateTenantRequest{Tenant: &evpndv1.Tenant{Name: "orange", L3Vni: 7000, AnycastGatewayMac: "02:00:00:00:00:07",
			AdvertiseConnected: proto.Bool(false),
			Routes:             []*evpndv1.StaticRoute{{Prefix: "10.9.0.0/16", Via: "10.7.0.254"}, {Prefix: "10.8.0.0/16", Via: "10.7.0.253"}},
			RouteTargets:       &evpndv1.RouteTargets{Import: []string{"65000:7000", "65000:7001"}, Export: []string{"65000:7000"}}}},
		&evpndv1.CreateTenantRequest{Tenant: &evpndv1.Tenant{Name: "green"}},
	})
}

// update with flags sends the object read with only the flags' fields
// changed and the generation read.
func TestTenantUpdateFlags(t *testing.T) {
	s := newAPIServer()
	stored := proto.Clone(s.tenants["blue"]).(*evpndv1.Tenant)
	socket, _ := s.serve(t)
	stdout, stderr, code := cli(socket, "tenant", "update", "blue", "--l3vni", "5001")
	if code != exitOK || stdout != "tenant blue: updated (generation 4)\n" || stderr != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	want := proto.Clone(stored).(*evpndv1.Tenant)
	want.L3Vni = 5001
	wantRequests(t, mutations(s), []proto.Message{&evpndv1.UpdateTenantRequest{Tenant: want}})
	if want.GetMeta().GetGeneration() != 3 {
		t.Fatalf("the canned tenant changed: generation %d", want.GetMeta().GetGeneration())
	}

	// Clearing a list and changing one route target side keeps the other.
	s.requests = nil
	if _, stderr, code := cli(socket, "tenant", "update", "blue", "--import-rt", "", "--route", ""); code != exitOK {
		t.Fatalf("clearing: exit %d, stderr %q", code, stderr)
	}
	want = proto.Clone(s.tenants["blue"]).(*evpndv1.Tenant)
	want.Meta.Generation = 4
	want.Routes = nil
	want.RouteTargets = &evpndv1.RouteTargets{Export: []string{"65000:5000"}}
	got := mutations(s)
	if len(got) != 1 || !proto.Equal(got[0].(*evpndv1.UpdateTenantRequest).GetTenant().GetRouteTargets(), want.RouteTargets) ||
		len(got[0].(*evpndv1.UpdateTenantRequest).GetTenant().GetRoutes()) != 0 ||
		got[0].(*evpndv1.UpdateTenantRequest).GetTenant().GetMeta().GetGeneration() != 4 {
		t.Errorf("clearing sent %v", got)
	}

	_, stderr, code = cli(socket, "tenant", "update", "blue")
	if code != exitUsage || !strings.HasPrefix(stderr, "evpnctl: nothing to change: give at least one of --l3vni, --anycast-gateway-mac") {
		t.Errorf("update without flags: exit %d, stderr %q", code, stderr)
	}
}

func TestSegmentCommands(t *testing.T) {
	s := newAPIServer()
	socket, _ := s.serve(t)
	stdout, stderr, code := cli(socket, "segment", "create", "blue", "app", "--vni", "102", "--mtu", "9000", "--gateway", "10.3.0.1/24", "--gateway", "2001:db8:3::1/64")
	if code != exitOK || stdout != "segment blue/app: created\n" {
		t.Fatalf("create: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	stored := proto.Clone(s.segments["blue/web"]).(*evpndv1.Segment)
	stdout, stderr, code = cli(socket, "segment", "update", "blue", "web", "--mtu", "1400", "--export-rt", "65000:100")
	if code != exitOK || stdout != "segment blue/web: updated (generation 3)\n" {
		t.Fatalf("update: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	stdout, stderr, code = cli(socket, "segment", "delete", "blue", "app", "--generation", "1")
	if code != exitOK || stdout != "segment blue/app: deleted\n" {
		t.Fatalf("delete: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	_, stderr, code = cli(socket, "segment", "create", "blue", "x")
	if code != exitUsage || !strings.HasPrefix(stderr, "evpnctl: evpnctl segment create needs --vni\n") {
		t.Errorf("create without --vni: exit %d, stderr %q", code, stderr)
	}
	want := proto.Clone(stored).(*evpndv1.Segment)
	want.Ports = []string{"tap-vm1", "tap-vm2"} // as read
	want.Mtu = 1400
	want.RouteTargets = &evpndv1.RouteTargets{Export: []string{"65000:100"}}
	wantRequests(t, mutations(s), []proto.Message{
		&evpndv1.CreateSegmentRequest{Segment: &evpndv1.Segment{Tenant: "blue", Name: "app", Vni: 102, Mtu: 9000, Gateway: []string{"10.3.0.1/24", "2001:db8:3::1/64"}}},
		&evpndv1.UpdateSegmentRequest{Segment: want},
		&evpndv1.DeleteSegmentRequest{Tenant: "blue", Name: "app", Generation: 1},
	})
}

func TestPortCommands(t *testing.T) {
	s := newAPIServer()
	socket, _ := s.serve(t)
	for _, tc := range []struct {
		args         []string
		code         int
		stdout, errs string
	}{
		{[]string{"port", "attach", "tap-new", "--tenant", "blue", "--segment", "db"}, exitOK, "port tap-new: attached to blue/db\n", ""},
		{[]string{"port", "attach", "tap-new", "--tenant", "blue", "--segment", "db"}, exitOK, "port tap-new: unchanged (already attached to blue/db)\n", ""},
		{[]string{"port", "attach", "tap-new", "--tenant", "blue", "--segment", "web"}, exitError, "",
			"evpnctl: port tap-new is attached to blue/db (use 'evpnctl port detach' then 'evpnctl port attach' to change it)\n"},
		{[]string{"port", "attach", "tap-x", "--tenant", "blue"}, exitUsage, "",
			"evpnctl: evpnctl port attach needs --tenant and --segment\nRun 'evpnctl port attach --help' for usage.\n"},
		{[]string{"port", "detach", "tap-new"}, exitOK, "port tap-new: detached\n", ""},
		{[]string{"port", "detach", "tap-new", "--allow-missing"}, exitOK, "port tap-new: detached\n", ""},
		{[]string{"port", "detach", "tap-red"}, exitError, "",
			"evpnctl: port tap-red is declared in the config file: change the file and send evpnd SIGHUP\n"},
		{[]string{"port", "list", "--segment", "web"}, exitUsage, "",
			"evpnctl: --segment needs --tenant: segment names are unique only within a tenant\nRun 'evpnctl port list --help' for usage.\n"},
	} {
		stdout, stderr, code := cli(socket, tc.args...)
		if code != tc.code || stdout != tc.stdout || stderr != tc.errs {
			t.Errorf("evpnctl %s: exit %d, stdout %q, stderr %q; want exit %d, %q, %q",
				strings.Join(tc.args, " "), code, stdout, stderr, tc.code, tc.stdout, tc.errs)
		}
	}
	wantRequests(t, mutations(s), []proto.Message{
		&evpndv1.AttachPortRequest{Port: &evpndv1.Port{Interface: "tap-new", Tenant: "blue", Segment: "db"}},
		&evpndv1.AttachPortRequest{Port: &evpndv1.Port{Interface: "tap-new", Tenant: "blue", Segment: "db"}},
		&evpndv1.AttachPortRequest{Port: &evpndv1.Port{Interface: "tap-new", Tenant: "blue", Segment: "web"}},
		&evpndv1.DetachPortRequest{Interface: "tap-new"},
		&evpndv1.DetachPortRequest{Interface: "tap-new", AllowMissing: true},
		&evpndv1.DetachPortRequest{Interface: "tap-red"},
	})
}

const tenantHyphenated = `
name: orange
l3vni: 7000
anycast-gateway-mac: 02:00:00:00:00:07
advertise-connected: false
routes:
  - {prefix: 10.9.0.0/16, via: 10.7.0.254}
route-targets: {import: ["65000:7000"], export: [65000:7000]}
`

const tenantSnake = `{"name": "orange", "l3vni": 7000, "anycast_gateway_mac": "02:00:00:00:00:07",
 "advertise_connected": false, "routes": [{"prefix": "10.9.0.0/16", "via": "10.7.0.254"}],
 "route_targets": {"import": ["65000:7000"], "export": ["65000:7000"]}}`

const policyHyphenated = `
tenant: orange
address-groups:
  - {name: office, prefixes: [198.51.100.0/24]}
port-groups:
  - {name: web, ports: [tap-o1]}
segments:
  - {segment: lan, ingress: drop}
rules:
  - {name: http, priority: 10, direction: ingress, port-group: web,
     remote: {address-group: office}, protocol: tcp, ports: [80, "443"], action: allow, log: true}
  - {name: ping, priority: 20, direction: ingress, port: tap-o1, protocol: icmp, icmp-types: [8], action: allow, dscp: 46}
nat:
  snat: 203.0.113.1
  floating-ips: [{external: 203.0.113.10, internal: 10.7.0.10}]
  port-forwards: [{external: 203.0.113.1, protocol: tcp, port: 2222, internal: 10.7.0.10, internal-port: 22}]
qos:
  - port: tap-o1
    egress: {rate: 100mbit, burst: 64kb}
    classes: [{name: bulk, rate: 10mbit, ceil: 50mbit, priority: 7}]
`

const policySnake = `
tenant: orange
address_groups:
  - {name: office, prefixes: [198.51.100.0/24]}
port_groups:
  - {name: web, ports: [tap-o1]}
segments:
  - {segment: lan, ingress: drop}
rules:
  - {name: http, priority: 10, direction: ingress, port_group: web,
     remote: {address_group: office}, protocol: tcp, ports: ["80", "443"], action: allow, log: true}
  - {name: ping, priority: 20, direction: ingress, port: tap-o1, protocol: icmp, icmp_types: [8], action: allow, dscp: 46}
nat:
  snat: 203.0.113.1
  floating_ips: [{external: 203.0.113.10, internal: 10.7.0.10}]
  port_forwards: [{external: 203.0.113.1, protocol: tcp, port: 2222, internal: 10.7.0.10, internal_port: 22}]
qos:
  - port: tap-o1
    egress: {rate: 100mbit, burst: 64kb}
    classes: [{name: bulk, rate: 10mbit, ceil: 50mbit, priority: 7}]
`

// Files with the config file's hyphenated keys and with the API's
// snake_case names give the same objects.
func TestFileKeySpellings(t *testing.T) {
	wantTenant := &evpndv1.Tenant{Name: "orange", L3Vni: 7000, AnycastGatewayMac: "02:00:00:00:00:07", AdvertiseConnected: proto.Bool(false),
		Routes:       []*evpndv1.StaticRoute{{Prefix: "10.9.0.0/16", Via: "10.7.0.254"}},
		RouteTargets: &evpndv1.RouteTargets{Import: []string{"65000:7000"}, Export: []string{"65000:7000"}}}
	wantPolicy := &evpndv1.Policy{
		Tenant:        "orange",
		AddressGroups: []*evpndv1.AddressGroup{{Name: "office", Prefixes: []string{"198.51.100.0/24"}}},
		PortGroups:    []*evpndv1.PortGroup{{Name: "web", Ports: []string{"tap-o1"}}},
		Segments:      []*evpndv1.SegmentDefaults{{Segment: "lan", Ingress: "drop"}},
		Rules: []*evpndv1.Rule{
			{Name: "http", Priority: 10, Direction: "ingress", PortGroup: "web", Remote: &evpndv1.Remote{AddressGroup: "office"},
				Protocol: "tcp", Ports: []string{"80", "443"}, Action: "allow", Log: true},
			{Name: "ping", Priority: 20, Direction: "ingress", Port: "tap-o1", Protocol: "icmp", IcmpTypes: []int32{8}, Action: "allow", Dscp: proto.Int32(46)},
		},
		Nat: &evpndv1.Nat{Snat: "203.0.113.1", FloatingIps: []*evpndv1.FloatingIp{{External: "203.0.113.10", Internal: "10.7.0.10"}},
			PortForwards: []*evpndv1.PortForward{{External: "203.0.113.1", Protocol: "tcp", Port: 2222, Internal: "10.7.0.10", InternalPort: 22}}},
		Qos: []*evpndv1.PortQos{{Port: "tap-o1", Egress: &evpndv1.Rate{Rate: "100mbit", Burst: "64kb"},
			Classes: []*evpndv1.QosClass{{Name: "bulk", Rate: "10mbit", Ceil: "50mbit", Priority: 7}}}},
	}
	for _, tc := range []struct {
		name, content string
		args          []string
		want          proto.Message
	}{
		{"tenant.yaml", tenantHyphenated, []string{"tenant", "create"}, &evpndv1.CreateTenantRequest{Tenant: wantTenant}},
		{"tenant.json", tenantSnake, []string{"tenant", "create"}, &evpndv1.CreateTenantRequest{Tenant: wantTenant}},
		{"policy.yaml", policyHyphenated, []string{"policy", "create"}, &evpndv1.CreatePolicyRequest{Policy: wantPolicy}},
		{"policy-snake.yaml", policySnake, []string{"policy", "create"}, &evpndv1.CreatePolicyRequest{Policy: wantPolicy}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newAPIServer()
			socket, _ := s.serve(t)
			path := writeFile(t, tc.name, tc.content)
			stdout, stderr, code := cli(socket, append(tc.args, "-f", path)...)
			if code != exitOK || stderr != "" || !strings.HasSuffix(stdout, " orange: created\n") {
				t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
			}
			wantRequests(t, mutations(s), []proto.Message{tc.want})
		})
	}

	// stdin
	s := newAPIServer()
	socket, _ := s.serve(t)
	old := stdin
	stdin = strings.NewReader(tenantHyphenated)
	t.Cleanup(func() { stdin = old })
	if _, stderr, code := cli(socket, "tenant", "create", "-f", "-"); code != exitOK {
		t.Fatalf("-f -: exit %d, stderr %q", code, stderr)
	}
	wantRequests(t, mutations(s), []proto.Message{&evpndv1.CreateTenantRequest{Tenant: wantTenant}})
}

func TestFileErrors(t *testing.T) {
	s := newAPIServer()
	socket, _ := s.serve(t)
	for _, tc := range []struct {
		name, content string
		args          []string
		want          string
	}{
		{"unknown.yaml", "name: x\ncolour: blue\n", []string{"tenant", "create"},
			`unknown.yaml:2: unknown field "colour" (want one of: advertise-connected, anycast-gateway-mac, l3vni, meta, name, namespace, route-targets, routes)`},
		{"nested.yaml", "name: x\nroutes:\n  - {prefix: 10.0.0.0/8, via: 10.0.0.1, metric: 5}\n", []string{"tenant", "create"},
			`nested.yaml:3: routes[0]: unknown field "metric" (want one of: prefix, via)`},
		{"segments.yaml", "name: x\nsegments:\n  - {name: web, vni: 100}\n", []string{"tenant", "create"},
			`segments.yaml:2: field "segments" is not allowed here: create segments with 'evpnctl segment create' or write the tenant in a file for 'evpnctl apply -f'`},
		{"whole.yaml", "tenants:\n  - name: x\n", []string{"tenant", "create"},
			`whole.yaml:1: field "tenants" is not allowed here: a file with tenants: and policies: is applied with 'evpnctl apply -f'`},
		{"types.yaml", "name: x\nl3vni: many\nadvertise-connected: 1\n", []string{"tenant", "create"},
			"types.yaml:2: l3vni: want a whole number 0..4294967295, got \"many\"\ntypes.yaml:3: advertise-connected: want true or false, got \"1\""},
		{"twice.yaml", "name: x\nl3vni: 1\nl3vni: 2\n", []string{"tenant", "update"},
			"twice.yaml:3: l3vni: given twice (also as l3vni)"},
		{"mixed.yaml", "name: x\nanycast-gateway-mac: a\nanycast_gateway_mac: b\n", []string{"tenant", "update"},
			"mixed.yaml:3: anycast_gateway_mac: given twice (also as anycast-gateway-mac)"},
		{"list.yaml", "- name: x\n", []string{"policy", "create"},
			"list.yaml:1: want a mapping of Policy's keys, got a list"},
		{"bad.yaml", "name: [x\n", []string{"tenant", "create"},
			"bad.yaml: line 1: did not find expected ',' or ']'"},
		{"empty.yaml", "", []string{"policy", "apply"}, "empty.yaml: the file is empty"},
		{"ports.yaml", "tenant: blue\nname: db\nvni: 101\nports: [tap-other]\n", []string{"segment", "create"},
			"ports.yaml: ports: a segment's ports are attached with 'evpnctl port attach', or written under the segment in a file for 'evpnctl apply -f'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, tc.name, tc.content)
			dir := filepath.Dir(path) + string(filepath.Separator)
			stdout, stderr, code := cli(socket, append(tc.args, "-f", path)...)
			stderr = strings.ReplaceAll(stderr, dir, "")
			if code != exitUsage || stdout != "" || stderr != "evpnctl: "+tc.want+"\n" {
				t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant exit 2, stderr:\nevpnctl: %s", code, stdout, stderr, tc.want)
			}
		})
	}
	if m := mutations(s); len(m) != 0 {
		t.Errorf("refused files sent %v", m)
	}
	_, stderr, code := cli(socket, "tenant", "create", "x", "-f", "/dev/null")
	if code != exitUsage || !strings.HasPrefix(stderr, `evpnctl: evpnctl tenant create -f takes no arguments: the file names the object, got ["x"]`) {
		t.Errorf("NAME with -f: exit %d, stderr %q", code, stderr)
	}
	_, stderr, code = cli(socket, "tenant", "create", "-f", "/dev/null", "--l3vni", "5")
	if code != exitUsage || !strings.HasPrefix(stderr, "evpnctl: -f cannot be combined with --l3vni: the file holds the whole object") {
		t.Errorf("flags with -f: exit %d, stderr %q", code, stderr)
	}
}

// A file written by 'get -o yaml' goes back through 'update -f' and keeps
// its generation as the concurrency check.
func TestGetUpdateRoundTrip(t *testing.T) {
	s := newAPIServer()
	socket, _ := s.serve(t)
	for _, kind := range [][]string{{"tenant", "blue"}, {"segment", "blue", "web"}, {"policy", "blue"}} {
		out, stderr, code := cli(socket, append([]string{kind[0], "get"}, append(kind[1:], "-o", "yaml")...)...)
		if code != exitOK {
			t.Fatalf("%s get: exit %d, stderr %q", kind[0], code, stderr)
		}
		path := writeFile(t, kind[0]+".yaml", out)
		stdout, stderr, code := cli(socket, kind[0], "update", "-f", path)
		if code != exitOK || !strings.Contains(stdout, ": updated (generation ") {
			t.Errorf("%s update -f: exit %d, stdout %q, stderr %q", kind[0], code, stdout, stderr)
		}
		// The same file again is stale now.
		_, stderr, code = cli(socket, kind[0], "update", "-f", path)
		name := strings.Join(kind[1:], "/")
		want := fmt.Sprintf("evpnctl: %s %s was changed by someone else since it was read (generation %d); run the command again\n",
			kind[0], name, map[string]int{"tenant": 3, "segment": 2, "policy": 4}[kind[0]])
		if code != exitError || stderr != want {
			t.Errorf("stale %s update -f: exit %d, stderr %q, want %q", kind[0], code, stderr, want)
		}
	}
	for _, m := range mutations(s) {
		var meta *evpndv1.Meta
		switch r := m.(type) {
		case *evpndv1.UpdateTenantRequest:
			meta = r.GetTenant().GetMeta()
			if r.GetTenant().GetNamespace() != "" {
				t.Errorf("update -f sent the output-only namespace: %v", r)
			}
		case *evpndv1.UpdateSegmentRequest:
			meta = r.GetSegment().GetMeta()
			if len(r.GetSegment().GetPorts()) != 0 {
				t.Errorf("update -f sent the output-only ports: %v", r)
			}
		case *evpndv1.UpdatePolicyRequest:
			meta = r.GetPolicy().GetMeta()
		}
		if meta.GetGeneration() == 0 || meta.GetCreateTime() != nil || meta.GetSource() != 0 {
			t.Errorf("update -f sent meta %v, want only the generation", meta)
		}
	}
}

func TestPolicyApply(t *testing.T) {
	s := newAPIServer()
	socket, _ := s.serve(t)
	path := writeFile(t, "p.yaml", policyHyphenated)
	s.tenants["orange"] = &evpndv1.Tenant{Name: "orange", Meta: meta(1, api)}
	for i, want := range []string{"policy orange: created\n", "policy orange: unchanged\n"} {
		stdout, stderr, code := cli(socket, "policy", "apply", "-f", path)
		if code != exitOK || stdout != want {
			t.Fatalf("apply %d: exit %d, stdout %q, stderr %q; want %q", i, code, stdout, stderr, want)
		}
	}
	changed := writeFile(t, "p2.yaml", strings.Replace(policyHyphenated, "priority: 20", "priority: 30", 1))
	stdout, stderr, code := cli(socket, "policy", "apply", "-f", changed)
	if code != exitOK || stdout != "policy orange: updated (generation 2)\n" {
		t.Fatalf("apply changed: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	got := mutations(s)
	if len(got) != 2 {
		t.Fatalf("sent %d changes, want a create and an update: %v", len(got), got)
	}
	if up, ok := got[1].(*evpndv1.UpdatePolicyRequest); !ok || up.GetPolicy().GetMeta().GetGeneration() != 1 || up.GetPolicy().GetRules()[1].GetPriority() != 30 {
		t.Errorf("apply sent %v, want an update at generation 1 with priority 30", got[1])
	}
}

const applyFile = `
tenants:
  - name: blue                          # equal to what evpnd holds
    l3vni: 5000
    anycast-gateway-mac: 02:00:00:00:00:01
    routes: [{prefix: 198.51.100.0/24, via: 10.1.0.254}]
    route-targets: {import: ["65000:5000"], export: ["65000:5000"]}
    segments:
      - name: web                       # equal
        vni: 100
        gateway: [10.1.0.1/24, "2001:db8:1::1/64"]
        ports: [tap-vm1, tap-vm2, tap-vm3]   # tap-vm3 is new
      - name: db                        # mtu differs
        vni: 101
        gateway: 10.2.0.1/24
        ports: [tap-db1]
  - name: green                         # becomes routed
    l3vni: 5100
    segments:
      - name: lan                       # new
        vni: 200
        gateway: 10.20.0.1/24
        ports: [tap-vm2b]
  - name: orange                        # new
    segments:
      - {name: lan, vni: 300, ports: [tap-o1]}
policies:
  - tenant: orange
    rules: [{name: ssh, priority: 10, direction: ingress, segment: lan, protocol: tcp, ports: ["22"], action: drop}]
`

func TestApply(t *testing.T) {
	s := newAPIServer()
	socket, _ := s.serve(t)
	path := writeFile(t, "lab.yaml", applyFile)
	stdout, stderr, code := cli(socket, "apply", "-f", path)
	want := `tenant blue: unchanged
tenant green: updated
tenant orange: created
segment blue/web: unchanged
segment blue/db: updated
segment green/lan: created
segment orange/lan: created
port tap-vm1: unchanged
port tap-vm2: unchanged
port tap-vm3: created
port tap-db1: unchanged
port tap-vm2b: created
port tap-o1: created
policy orange: created
`
	if code != exitOK || stdout != want || stderr != "" {
		t.Fatalf("exit %d, stderr %q, stdout:\n%s\nwant:\n%s", code, stderr, stdout, want)
	}
	wantRequests(t, mutations(s), []proto.Message{
		&evpndv1.UpdateTenantRequest{Tenant: &evpndv1.Tenant{Name: "green", L3Vni: 5100, Meta: &evpndv1.Meta{Generation: 1}}},
		&evpndv1.CreateTenantRequest{Tenant: &evpndv1.Tenant{Name: "orange"}},
		&evpndv1.UpdateSegmentRequest{Segment: &evpndv1.Segment{Tenant: "blue", Name: "db", Vni: 101, Gateway: []string{"10.2.0.1/24"}, Meta: &evpndv1.Meta{Generation: 1}}},
		&evpndv1.CreateSegmentRequest{Segment: &evpndv1.Segment{Tenant: "green", Name: "lan", Vni: 200, Gateway: []string{"10.20.0.1/24"}}},
		&evpndv1.CreateSegmentRequest{Segment: &evpndv1.Segment{Tenant: "orange", Name: "lan", Vni: 300}},
		&evpndv1.AttachPortRequest{Port: &evpndv1.Port{Interface: "tap-vm3", Tenant: "blue", Segment: "web"}},
		&evpndv1.AttachPortRequest{Port: &evpndv1.Port{Interface: "tap-vm2b", Tenant: "green", Segment: "lan"}},
		&evpndv1.AttachPortRequest{Port: &evpndv1.Port{Interface: "tap-o1", Tenant: "orange", Segment: "lan"}},
		&evpndv1.CreatePolicyRequest{Policy: &evpndv1.Policy{Tenant: "orange", Rules: []*evpndv1.Rule{
			{Name: "ssh", Priority: 10, Direction: "ingress", Segment: "lan", Protocol: "tcp", Ports: []string{"22"}, Action: "drop"}}}},
	})

	// Applied again, nothing changes.
	s.requests = nil
	stdout, stderr, code = cli(socket, "apply", "-f", path)
	if code != exitOK || strings.Count(stdout, ": unchanged\n") != 14 {
		t.Errorf("second apply: exit %d, stderr %q, stdout:\n%s", code, stderr, stdout)
	}
	if m := mutations(s); len(m) != 0 {
		t.Errorf("second apply sent %v", m)
	}

	// A port in another segment moves: detach with the generation read,
	// attach.
	s.requests = nil
	moved := writeFile(t, "move.yaml", "tenants:\n  - name: green\n    l3vni: 5100\n    segments:\n      - {name: lan, vni: 200, gateway: 10.20.0.1/24, ports: [tap-db1]}\n")
	stdout, stderr, code = cli(socket, "apply", "-f", moved)
	if code != exitOK || !strings.Contains(stdout, "port tap-db1: updated (moved from blue/db)\n") {
		t.Errorf("move: exit %d, stderr %q, stdout:\n%s", code, stderr, stdout)
	}
	wantRequests(t, mutations(s), []proto.Message{
		&evpndv1.DetachPortRequest{Interface: "tap-db1", Generation: 1},
		&evpndv1.AttachPortRequest{Port: &evpndv1.Port{Interface: "tap-db1", Tenant: "green", Segment: "lan"}},
	})
}

func TestApplyErrors(t *testing.T) {
	s := newAPIServer()
	socket, _ := s.serve(t)
	for _, tc := range []struct {
		name, content string
		code          int
		want          string
	}{
		{"unknown.yaml", "tenants:\n  - name: x\n    segments:\n      - name: web\n        colour: blue\n", exitUsage,
			`unknown.yaml:5: tenants[0].segments[0]: unknown field "colour" (want one of: gateway, mtu, name, ports, route-targets, vni)`},
		{"top.yaml", "router-id: 10.0.0.1\ntenants: []\n", exitUsage,
			`top.yaml:1: unknown key "router-id": evpnctl apply takes tenants and policies (the rest of evpnd's config is read by evpnd from its own file)`},
		{"ns.yaml", "tenants:\n  - {name: x, namespace: evpn-x}\n", exitUsage,
			`ns.yaml:2: tenants[0]: unknown field "namespace"`},
		{"twice.yaml", "tenants:\n  - {name: x}\n  - {name: x}\n", exitUsage, "twice.yaml: tenant x is declared twice"},
		{"config.yaml", "tenants:\n  - {name: red, l3vni: 6001}\n", exitError,
			"tenant red is declared in the config file: change the file and send evpnd SIGHUP"},
		{"invalid.yaml", "tenants:\n  - {name: x, l3vni: 16777216, routes: [{prefix: nope, via: 10.0.0.1}]}\n", exitUsage,
			"invalid tenant \"x\"\n  tenant.l3vni: 16777216 is out of range 1..16777215\n  tenant.routes[0].prefix: \"nope\" is not an IP prefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, tc.name, tc.content)
			_, stderr, code := cli(socket, "apply", "-f", path)
			stderr = strings.ReplaceAll(stderr, filepath.Dir(path)+string(filepath.Separator), "")
			if code != tc.code || stderr != "evpnctl: "+tc.want+"\n" {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d, stderr:\nevpnctl: %s", code, stderr, tc.code, tc.want)
			}
		})
	}
}

// Every class of server error says what happened and what to do.
func TestErrorMessages(t *testing.T) {
	s := newAPIServer()
	socket, _ := s.serve(t)
	stale := writeFile(t, "stale.yaml", "name: green\nmeta: {generation: 7}\n")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"tenant", "get", "purple"}, exitError,
			"evpnctl: tenant purple not found ('evpnctl tenant list' shows what exists)\n"},
		{[]string{"segment", "delete", "blue", "nope"}, exitError,
			"evpnctl: segment blue/nope not found ('evpnctl segment list' shows what exists)\n"},
		{[]string{"policy", "get", "green"}, exitError,
			"evpnctl: tenant green has no policy ('evpnctl policy list' shows what exists)\n"},
		{[]string{"tenant", "create", "blue", "--l3vni", "1"}, exitError,
			"evpnctl: tenant blue already exists with other settings (use 'evpnctl tenant update' to change it)\n"},
		{[]string{"tenant", "update", "red", "--l3vni", "7"}, exitError,
			"evpnctl: tenant red is declared in the config file: change the file and send evpnd SIGHUP\n"},
		{[]string{"tenant", "delete", "blue"}, exitError,
			"evpnctl: tenant blue still has segment db: delete its segments first\n"},
		{[]string{"tenant", "delete", "green", "--generation", "9"}, exitError,
			"evpnctl: tenant green was changed by someone else since it was read (generation 9); run the command again\n"},
		{[]string{"tenant", "update", "-f", stale}, exitError,
			"evpnctl: tenant green was changed by someone else since it was read (generation 7); run the command again\n"},
		{[]string{"tenant", "create", "x", "--l3vni", "16777216", "--route", "nope,via=10.0.0.1"}, exitUsage,
			"evpnctl: invalid tenant \"x\"\n  tenant.l3vni: 16777216 is out of range 1..16777215\n  tenant.routes[0].prefix: \"nope\" is not an IP prefix\n"},
		{[]string{"segment", "create", "blue", "x", "--vni", "0"}, exitUsage,
			"evpnctl: invalid segment \"x\"\n  segment.vni: 0 is out of range 1..16777215\n"},
		{[]string{"tenant", "create", "x", "--route", "10.0.0.0/8"}, exitUsage,
			"evpnctl: invalid --route \"10.0.0.0/8\": want PREFIX,via=ADDR\nRun 'evpnctl tenant create --help' for usage.\n"},
		{[]string{"tenant", "get"}, exitUsage,
			"evpnctl: evpnctl tenant get needs NAME\nRun 'evpnctl tenant get --help' for usage.\n"},
		{[]string{"segment", "get", "blue"}, exitUsage,
			"evpnctl: evpnctl segment get needs NAME\nRun 'evpnctl segment get --help' for usage.\n"},
		{[]string{"tenant", "list", "-o", "xml"}, exitUsage,
			"evpnctl: invalid --output \"xml\": want table, json or yaml\nRun 'evpnctl tenant list --help' for usage.\n"},
	} {
		stdout, stderr, code := cli(socket, tc.args...)
		stderr = strings.ReplaceAll(stderr, filepath.Dir(stale)+string(filepath.Separator), "")
		if code != tc.code || stderr != tc.want || stdout != "" {
			t.Errorf("evpnctl %s: exit %d, stdout %q, stderr:\n%s\nwant exit %d, stderr:\n%s", strings.Join(tc.args, " "), code, stdout, stderr, tc.code, tc.want)
		}
	}

	// Someone else updates the tenant between the read and the write.
	s.bumpAfterGet = true
	_, stderr, code := cli(socket, "tenant", "update", "blue", "--l3vni", "5002")
	want := "evpnctl: tenant blue was changed by someone else since it was read (generation 3); run the command again\n"
	if code != exitError || stderr != want {
		t.Errorf("concurrent update: exit %d, stderr %q, want %q", code, stderr, want)
	}
}

func TestPermissionDeniedMessage(t *testing.T) {
	c := &client{target: "/run/evpnd/evpnd.sock"}
	err := c.unreachable(&net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.EACCES)})
	want := "permission denied on /run/evpnd/evpnd.sock: the API socket is root only (mode 0600); run evpnctl as root"
	if err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}
	if os.Geteuid() == 0 {
		return // root connects whatever the socket's mode
	}
	s := newAPIServer()
	socket, _ := s.serve(t)
	if err := os.Chmod(socket, 0); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := cli(socket, "tenant", "list")
	if want := "evpnctl: permission denied on " + socket + ": the API socket is root only (mode 0600); run evpnctl as root\n"; code != exitError || stderr != want {
		t.Errorf("exit %d, stderr %q, want %q", code, stderr, want)
	}
}

func TestAddrNeedsTLS(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{nil, []string{"--addr", "evpnd.example:7443", "tenant", "list"},
			"evpnctl: --addr needs --tls-cert, --tls-key, --tls-ca: evpnd's API over TCP is mutual TLS only (a client certificate signed by evpnd's api.tls.client-ca, and the CA of its server certificate)\nRun 'evpnctl tenant list --help' for usage.\n"},
		{map[string]string{addrEnv: "evpnd.example:7443", tlsCertEnv: "c.pem"}, []string{"show", "peers"},
			"evpnctl: --addr needs --tls-key, --tls-ca: evpnd's API over TCP is mutual TLS only (a client certificate signed by evpnd's api.tls.client-ca, and the CA of its server certificate)\nRun 'evpnctl show peers --help' for usage.\n"},
		{nil, []string{"--addr", "evpnd.example", "--tls-cert", "c", "--tls-key", "k", "--tls-ca", "ca", "tenant", "list"},
			"evpnctl: invalid --addr \"evpnd.example\": want host:port\nRun 'evpnctl tenant list --help' for usage.\n"},
		{nil, []string{"--addr", "evpnd.example:1", "--socket", "/x.sock", "tenant", "list"},
			"evpnctl: --socket and --addr both given: use one\nRun 'evpnctl tenant list --help' for usage.\n"},
	} {
		stdout, stderr, code := evpnctl(tc.env, tc.args...)
		if code != exitUsage || stdout != "" || stderr != tc.want {
			t.Errorf("evpnctl %s: exit %d, stderr:\n%s\nwant exit 2, stderr:\n%s", strings.Join(tc.args, " "), code, stderr, tc.want)
		}
	}
}

func TestCompletionNames(t *testing.T) {
	s := newAPIServer()
	socket, _ := s.serve(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"tenant", "get", ""}, "blue\ngreen\nred\n:4\n"},
		{[]string{"segment", "update", "blue", ""}, "db\nweb\n:4\n"},
		{[]string{"port", "detach", ""}, "tap-db1\ntap-red\ntap-vm1\ntap-vm2\n:4\n"},
		{[]string{"port", "attach", "tap-x", "--tenant", "red", "--segment", ""}, "lan\n:4\n"},
		{[]string{"policy", "counters", "--tenant", ""}, "blue\ngreen\nred\n:4\n"},
	} {
		stdout, stderr, code := cli(socket, append([]string{"__complete"}, tc.args...)...)
		if code != exitOK || stdout != tc.want {
			t.Errorf("complete %q: exit %d, stdout %q, stderr %q; want %q", tc.args, code, stdout, stderr, tc.want)
		}
	}
	// No daemon: no names and nothing on stderr but cobra's own debug
	// line.
	missing := filepath.Join(t.TempDir(), "none.sock")
	stdout, stderr, code := cli(missing, "__complete", "tenant", "get", "")
	if code != exitOK || stdout != ":4\n" || strings.Contains(stderr, "evpnd") {
		t.Errorf("complete without daemon: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	for _, shell := range []string{"zsh", "fish", "powershell"} {
		stdout, stderr, code := evpnctl(nil, "completion", shell)
		if code != exitOK || stderr != "" || !strings.Contains(stdout, "evpnctl") {
			t.Errorf("completion %s: exit %d, stderr %q, %d bytes", shell, code, stderr, len(stdout))
		}
	}
}

func watchServer() *apiServer {
	s := newAPIServer()
	s.routeEvents = []*evpndv1.WatchRoutesResponse{
		{Kind: evpndv1.EventKind_EVENT_KIND_ADDED, Route: &evpndv1.Route{Type: evpndv1.RouteType_ROUTE_TYPE_MAC_IP, Rd: "10.0.0.2:100",
			Nlri: "[2][10.0.0.2:100][0][02:00:00:00:02:01][10.1.0.20]", Mac: "02:00:00:00:02:01", Ip: "10.1.0.20",
			Labels: []uint32{100, 5000}, NextHop: "10.0.0.2", RouteTargets: []string{"65000:100"}, Peer: "10.0.0.254"}},
		{Kind: evpndv1.EventKind_EVENT_KIND_REMOVED, Route: &evpndv1.Route{Type: evpndv1.RouteType_ROUTE_TYPE_IP_PREFIX, Rd: "10.0.0.1:5000",
			Nlri: "[5][10.0.0.1:5000][0][10.1.0.0/24]", Prefix: "10.1.0.0/24", Labels: []uint32{5000}, NextHop: "10.0.0.1", Local: true}},
	}
	s.macEvents = []*evpndv1.WatchMacsResponse{
		{Kind: evpndv1.EventKind_EVENT_KIND_ADDED, Mac: &evpndv1.Mac{Tenant: "blue", Vni: 100, Mac: "02:00:00:00:01:01", Port: "tap-vm1"}},
		{Kind: evpndv1.EventKind_EVENT_KIND_REMOVED, Mac: &evpndv1.Mac{Tenant: "blue", Vni: 100, Mac: "02:00:00:00:02:01", Port: "vx100", Vtep: "10.0.0.2", Remote: true}},
	}
	s.peerEvents = []*evpndv1.WatchPeersResponse{
		{Peer: &evpndv1.Peer{Address: "10.0.0.254", Asn: 65000, Description: "rr1", State: evpndv1.PeerState_PEER_STATE_ESTABLISHED}},
		{Peer: &evpndv1.Peer{Address: "10.0.0.253", Asn: 65000, Description: "rr2", State: evpndv1.PeerState_PEER_STATE_ACTIVE}},
	}
	return s
}

// Watches print the events, then say that the daemon ended the stream.
func TestWatchGolden(t *testing.T) {
	s := watchServer()
	socket, _ := s.serve(t)
	for _, tc := range []struct {
		golden string
		args   []string
	}{
		{"watch-routes.table", []string{"watch", "routes"}},
		{"watch-routes.json", []string{"watch", "routes", "--type", "macip", "--vni", "100", "-o", "json"}},
		{"watch-macs.table", []string{"watch", "macs", "--tenant", "blue"}},
		{"watch-macs.json", []string{"watch", "macs", "-o", "json"}},
		{"watch-peers.table", []string{"watch", "peers"}},
		{"watch-peers.json", []string{"watch", "peers", "-o", "json"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			stdout, stderr, code := cli(socket, tc.args...)
			want := "evpnctl: evpnd at " + socket + " ended the watch (is it shutting down or restarting?)\n"
			if code != exitError || stderr != want {
				t.Errorf("exit %d, stderr %q; want exit 1, %q", code, stderr, want)
			}
			checkGolden(t, tc.golden, tc.args, stdout)
		})
	}
	var filters []proto.Message
	for _, r := range s.sentRequests() {
		switch r.(type) {
		case *evpndv1.WatchRoutesRequest, *evpndv1.WatchMacsRequest:
			filters = append(filters, r)
		}
	}
	wantRequests(t, filters, []proto.Message{
		&evpndv1.WatchRoutesRequest{},
		&evpndv1.WatchRoutesRequest{Type: evpndv1.RouteType_ROUTE_TYPE_MAC_IP, Vni: proto.Uint32(100)},
		&evpndv1.WatchMacsRequest{Tenant: "blue"},
		&evpndv1.WatchMacsRequest{},
	})
	_, stderr, code := cli(socket, "watch", "peers", "-o", "yaml")
	if code != exitUsage || !strings.HasPrefix(stderr, `evpnctl: invalid --output "yaml": watch prints table or json (JSON Lines)`) {
		t.Errorf("watch -o yaml: exit %d, stderr %q", code, stderr)
	}
}

// linesWriter closes seen once want lines were written.
type linesWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want int
	seen chan struct{}
}

func (w *linesWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	before := strings.Count(w.buf.String(), "\n")
	w.buf.Write(p)
	if after := strings.Count(w.buf.String(), "\n"); before < w.want && after >= w.want {
		close(w.seen)
	}
	return len(p), nil
}

func (w *linesWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// Ctrl-C ends a watch cleanly; the daemon going away ends it with an
// error.
func TestWatchEnds(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(cancel context.CancelFunc, stop func())
		code int
		want string
	}{
		{"interrupt", func(cancel context.CancelFunc, _ func()) { cancel() }, exitOK, ""},
		{"daemon stops", func(_ context.CancelFunc, stop func()) { stop() }, exitError, "lost evpnd at "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := watchServer()
			s.holdWatch = true
			socket, stop := s.serve(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			out := &linesWriter{want: 2, seen: make(chan struct{})}
			var errOut bytes.Buffer
			done := make(chan int)
			go func() {
				done <- run(ctx, []string{"--socket", socket, "watch", "macs", "-o", "json"}, func(string) string { return "" }, out, &errOut)
			}()
			<-s.sent
			<-out.seen // both events printed
			tc.end(cancel, stop)
			code := <-done
			if code != tc.code || !strings.Contains(errOut.String(), tc.want) || (tc.want == "" && errOut.Len() > 0) {
				t.Errorf("exit %d, stderr %q; want exit %d, stderr with %q", code, errOut.String(), tc.code, tc.want)
			}
			if lines := strings.Count(out.String(), "\n"); lines != 2 {
				t.Errorf("printed %d lines, want the 2 events:\n%s", lines, out.String())
			}
		})
	}
}

// Every command that creates or streams shows examples, and help reads as
// the brief says.
func TestHelpExamples(t *testing.T) {
	g := &globals{}
	root := newRoot(g, func(string) string { return "" }, &bytes.Buffer{}, &bytes.Buffer{})
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		needs := c.Parent() != nil && (c.Name() == "create" || c.Name() == "attach" || c.Name() == "apply" || c.Parent().Name() == "watch")
		if needs && c.Example == "" {
			t.Errorf("%s has no Example", c.CommandPath())
		}
		if c.Short == "" && c.Name() != "help" {
			t.Errorf("%s has no Short", c.CommandPath())
		}
	}
	walk(root)
	stdout, _, code := evpnctl(nil, "--help")
	for _, want := range []string{"apply", "policy", "port", "segment", "tenant", "watch", "--addr string", "--tls-ca string", "EVPNCTL_ADDR"} {
		if code != exitOK || !strings.Contains(stdout, want) {
			t.Errorf("evpnctl --help does not mention %q:\n%s", want, stdout)
		}
	}
}
