package store

import (
	"bytes"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	evpndv1 "github.com/evpnd/evpnd/api/evpnd/v1"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

func meta(gen int64, created time.Time) *evpndv1.Meta {
	return &evpndv1.Meta{
		Generation: gen,
		Source:     evpndv1.Source_SOURCE_API,
		CreateTime: timestamppb.New(created),
		UpdateTime: timestamppb.New(created.Add(time.Duration(gen)*time.Second + 123456789)),
	}
}

// fullState has objects of every kind with most fields set, including
// optional fields set to their zero value (which must survive as "set").
// The lists are deliberately out of order.
func fullState() State {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	return State{
		Tenants: []*evpndv1.Tenant{
			{
				Name:               "red",
				L3Vni:              50001,
				AnycastGatewayMac:  "00:00:5e:00:01:01",
				AdvertiseConnected: proto.Bool(false),
				Routes: []*evpndv1.StaticRoute{
					{Prefix: "0.0.0.0/0", Via: "10.1.0.254"},
					{Prefix: "2001:db8::/32", Via: "fd00::1"},
				},
				RouteTargets: &evpndv1.RouteTargets{Import: []string{"65000:50001", "65000:1"}, Export: []string{"65000:50001"}},
				Namespace:    "evpn-red",
				Meta:         meta(3, t0),
			},
			{Name: "blue", Meta: meta(1, t0.Add(time.Hour))},
		},
		Segments: []*evpndv1.Segment{
			{Tenant: "red", Name: "web", Vni: 10020, Mtu: 1450, Gateway: []string{"10.1.2.1/24", "fd00:2::1/64"}, Ports: []string{"veth-web1"}, Meta: meta(2, t0)},
			{Tenant: "blue", Name: "db", Vni: 10030, Meta: meta(1, t0)},
			{
				Tenant: "red", Name: "app", Vni: 10010, Gateway: []string{"10.1.1.1/24"},
				RouteTargets: &evpndv1.RouteTargets{Import: []string{"65000:10010"}, Export: []string{"65000:10010"}},
				Meta:         meta(1, t0),
			},
		},
		Ports: []*evpndv1.Port{
			{Interface: "veth-web1", Tenant: "red", Segment: "web", Meta: meta(1, t0)},
			{Interface: "tap-app0", Tenant: "red", Segment: "app", Meta: meta(4, t0)},
		},
		Policies: []*evpndv1.Policy{
			{
				Tenant:        "red",
				AddressGroups: []*evpndv1.AddressGroup{{Name: "admins", Prefixes: []string{"192.0.2.0/24", "2001:db8:1::/48"}}},
				PortGroups:    []*evpndv1.PortGroup{{Name: "web", Ports: []string{"veth-web1"}}},
				Segments:      []*evpndv1.SegmentDefaults{{Segment: "web", Ingress: "drop", Egress: "accept"}},
				Rules: []*evpndv1.Rule{
					{
						Name: "ssh", Priority: 10, Direction: "ingress", PortGroup: "web",
						Remote:   &evpndv1.Remote{AddressGroup: "admins"},
						Protocol: "tcp", Ports: []string{"22", "8000-8080"}, Action: "accept", Log: true,
					},
					{Name: "ping", Priority: 20, Direction: "ingress", Segment: "web", Remote: &evpndv1.Remote{Prefixes: []string{"0.0.0.0/0"}}, Protocol: "icmp", IcmpTypes: []int32{0, 8}, Action: "accept"},
					{Name: "mark", Priority: 30, Direction: "egress", Port: "veth-web1", Action: "accept", Dscp: proto.Int32(0), Class: "bulk"},
				},
				Nat: &evpndv1.Nat{
					Interface: "uplink0", Address: "198.51.100.2/24", Gateway: "198.51.100.1", Snat: "198.51.100.2", Masquerade: true,
					FloatingIps:  []*evpndv1.FloatingIp{{External: "198.51.100.10", Internal: "10.1.2.10"}},
					PortForwards: []*evpndv1.PortForward{{External: "198.51.100.2", Protocol: "tcp", Port: 443, Internal: "10.1.2.10", InternalPort: 8443}},
				},
				Qos: []*evpndv1.PortQos{{
					Port:    "veth-web1",
					Egress:  &evpndv1.Rate{Rate: "100mbit", Burst: "64kb"},
					Ingress: &evpndv1.Rate{Rate: "50mbit"},
					Classes: []*evpndv1.QosClass{{Name: "bulk", Rate: "10mbit", Ceil: "100mbit", Priority: 7}},
				}},
				Meta: meta(5, t0),
			},
			{Tenant: "blue", Rules: []*evpndv1.Rule{{Name: "all", Action: "accept", Dscp: proto.Int32(46)}}, Meta: meta(1, t0)},
		},
	}
}

func mustOpen(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	if got := s.State(); got.Len() != 0 {
		t.Fatalf("fresh store holds %d objects", got.Len())
	}
	want := fullState()
	if err := s.Commit(want); err != nil {
		t.Fatalf("commit: %v", err)
	}
	want.Sort()
	if got := s.State(); !got.Equal(want) {
		t.Fatalf("in-memory state after commit differs:\ngot  %v\nwant %v", got, want)
	}
	got := mustOpen(t, dir).State()
	if !got.Equal(want) {
		t.Fatalf("reopened state differs:\ngot  %v\nwant %v", got, want)
	}
	// proto.Equal tells an optional field set to its zero value from an
	// unset one; check the file kept the difference, not just equality.
	if ac := got.Tenants[1].AdvertiseConnected; ac == nil || *ac {
		t.Errorf("tenant red advertise_connected = %v, want set to false", ac)
	}
	if got.Tenants[0].AdvertiseConnected != nil {
		t.Errorf("tenant blue advertise_connected = %v, want unset", *got.Tenants[0].AdvertiseConnected)
	}
	if d := got.Policies[1].Rules[2].Dscp; d == nil || *d != 0 {
		t.Errorf("policy red rule mark dscp = %v, want set to 0", d)
	}
	if got.Policies[1].Rules[0].Dscp != nil {
		t.Errorf("policy red rule ssh dscp set, want unset")
	}
}

func TestSortOrder(t *testing.T) {
	st := fullState()
	st.Sort()
	var names []string
	for _, x := range st.Tenants {
		names = append(names, x.Name)
	}
	for _, x := range st.Segments {
		names = append(names, x.Tenant+"/"+x.Name)
	}
	for _, x := range st.Ports {
		names = append(names, x.Interface)
	}
	for _, x := range st.Policies {
		names = append(names, x.Tenant)
	}
	want := "blue red blue/db red/app red/web tap-app0 veth-web1 blue red"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("sorted order = %q, want %q", got, want)
	}
}

func TestCloneIsDeep(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	st := fullState()
	if err := s.Commit(st); err != nil {
		t.Fatalf("commit: %v", err)
	}
	// Neither the caller's value nor a value returned by State may alias
	// the committed state.
	st.Tenants[0].L3Vni = 1
	st.Policies[0].Rules[0].Name = "changed"
	got := s.State()
	got.Segments[0].Vni = 2
	got.Ports = nil
	again := s.State()
	if again.Tenants[1].L3Vni != 50001 || again.Policies[1].Rules[0].Name != "ssh" || again.Segments[0].Vni != 10030 || len(again.Ports) != 2 {
		t.Fatalf("committed state changed through an alias: %v", again)
	}
}

func TestEqual(t *testing.T) {
	a, b := fullState(), fullState()
	if !a.Equal(b) {
		t.Fatal("equal states compare unequal")
	}
	b.Policies[0].Rules[2].Dscp = nil
	if a.Equal(b) {
		t.Fatal("states differing in an optional field compare equal")
	}
	if !(State{}).Equal(State{Tenants: []*evpndv1.Tenant{}}) {
		t.Fatal("nil and empty lists compare unequal")
	}
	if (State{}).Equal(State{Ports: []*evpndv1.Port{{}}}) {
		t.Fatal("empty and one-element lists compare equal")
	}
}

// TestGolden pins the file format: readable, indented, proto field names,
// sorted, trailing newline, and the same bytes for the same State in any
// order.
func TestGolden(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	st := fullState()
	if err := s.Commit(st); err != nil {
		t.Fatalf("commit: %v", err)
	}
	got, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "state.golden.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("state file differs from %s (run with -update if intended):\n%s", golden, got)
	}
	for _, key := range []string{`"anycast_gateway_mac": "00:00:5e:00:01:01"`, `"advertise_connected": false`, `"dscp": 0`, `"create_time": "2026-03-01T12:00:00Z"`, `"version": 1`} {
		if !bytes.Contains(got, []byte(key)) {
			t.Errorf("state file lacks %s", key)
		}
	}

	// Reversed input lists, committed again, give the same bytes.
	rev := fullState()
	rev.Tenants[0], rev.Tenants[1] = rev.Tenants[1], rev.Tenants[0]
	rev.Segments[0], rev.Segments[2] = rev.Segments[2], rev.Segments[0]
	rev.Ports[0], rev.Ports[1] = rev.Ports[1], rev.Ports[0]
	rev.Policies[0], rev.Policies[1] = rev.Policies[1], rev.Policies[0]
	if err := s.Commit(rev); err != nil {
		t.Fatalf("commit: %v", err)
	}
	again, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, got) {
		t.Fatalf("same state in another order gave different bytes:\n%s\nvs\n%s", again, got)
	}
}

func TestEmptyStateFile(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	if err := s.Commit(fullState()); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(State{}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"version\": 1,\n  \"tenants\": [],\n  \"segments\": [],\n  \"ports\": [],\n  \"policies\": []\n}\n"
	if string(got) != want {
		t.Fatalf("empty state file = %q, want %q", got, want)
	}
	if st := mustOpen(t, dir).State(); st.Len() != 0 {
		t.Fatalf("reopened empty state holds %d objects", st.Len())
	}
}

// checkUnchanged asserts that s and its file still hold want, and that no
// temporary file was left behind.
func checkUnchanged(t *testing.T, s *Store, want State, wantFile []byte) {
	t.Helper()
	if got := s.State(); !got.Equal(want) {
		t.Errorf("in-memory state changed after failed commit: %v", got)
	}
	if wantFile != nil {
		got, err := os.ReadFile(s.Path())
		if err != nil {
			t.Fatalf("read state file after failed commit: %v", err)
		}
		if !bytes.Equal(got, wantFile) {
			t.Errorf("state file changed after failed commit:\n%s", got)
		}
		if st := mustOpen(t, filepath.Dir(s.Path())).State(); !st.Equal(want) {
			t.Errorf("reopened state changed after failed commit: %v", st)
		}
	}
	temps, _ := filepath.Glob(filepath.Join(filepath.Dir(s.Path()), tempPrefix+"*"))
	if len(temps) != 0 {
		t.Errorf("failed commit left temporary files %v", temps)
	}
}

func bigState() State {
	st := fullState()
	long := strings.Repeat("x", 1<<20)
	st.Tenants = append(st.Tenants, &evpndv1.Tenant{Name: "big", Namespace: long})
	return st
}

// TestCommitFailureKeepsState makes Commit fail for real, in ways that
// hold for root too (permissions do not).
func TestCommitFailureKeepsState(t *testing.T) {
	setup := func(t *testing.T) (dir string, s *Store, want State, file []byte) {
		dir = filepath.Join(t.TempDir(), "state")
		s = mustOpen(t, dir)
		want = fullState()
		if err := s.Commit(want); err != nil {
			t.Fatalf("commit: %v", err)
		}
		want.Sort()
		file, err := os.ReadFile(s.Path())
		if err != nil {
			t.Fatal(err)
		}
		return dir, s, want, file
	}

	t.Run("dir replaced by a file", func(t *testing.T) {
		dir, s, want, file := setup(t)
		aside := dir + ".aside"
		if err := os.Rename(dir, aside); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dir, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		err := s.Commit(State{})
		if err == nil || !errors.Is(err, syscall.ENOTDIR) || !strings.Contains(err.Error(), "create temporary file") {
			t.Fatalf("commit into a file as dir: err = %v, want ENOTDIR creating the temporary file", err)
		}
		if err := os.Remove(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(aside, dir); err != nil {
			t.Fatal(err)
		}
		checkUnchanged(t, s, want, file)
	})

	t.Run("state.json replaced by a directory", func(t *testing.T) {
		_, s, want, _ := setup(t)
		if err := os.Remove(s.Path()); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(s.Path(), "keep"), 0o700); err != nil {
			t.Fatal(err)
		}
		err := s.Commit(State{})
		if err == nil || !strings.Contains(err.Error(), "rename") {
			t.Fatalf("commit over a directory: err = %v, want a rename error", err)
		}
		checkUnchanged(t, s, want, nil)
		if _, err := os.Stat(filepath.Join(s.Path(), "keep")); err != nil {
			t.Errorf("directory in the way was damaged: %v", err)
		}
	})

	t.Run("nil object", func(t *testing.T) {
		_, s, want, file := setup(t)
		next := s.State()
		next.Segments = append(next.Segments, nil)
		err := s.Commit(next)
		if err == nil || !strings.Contains(err.Error(), "segments[3] is nil") {
			t.Fatalf("commit of a nil segment: err = %v, want segments[3] is nil", err)
		}
		checkUnchanged(t, s, want, file)
	})
}

// TestPrivilegedCommitNoSpace fills a tiny tmpfs so that the write itself
// fails with ENOSPC, the failure a real host is most likely to see.
func TestPrivilegedCommitNoSpace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("TestPrivilegedCommitNoSpace needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=256k,mode=0700"); err != nil {
		t.Skipf("cannot mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	s := mustOpen(t, dir)
	want := fullState()
	if err := s.Commit(want); err != nil {
		t.Fatalf("commit: %v", err)
	}
	want.Sort()
	file, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	err = s.Commit(bigState())
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("commit of 1 MiB into 256 KiB: err = %v, want ENOSPC", err)
	}
	if !strings.Contains(err.Error(), s.Path()) {
		t.Errorf("error %q does not name %s", err, s.Path())
	}
	checkUnchanged(t, s, want, file)
}

func TestOpenCorrupt(t *testing.T) {
	valid, err := encode(func() State { st := fullState(); st.Sort(); return st }())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		content string
		problem string // in the error after the path
	}{
		{"empty", "", "not a state file"},
		{"garbage", "\x00\x01 this is not json", "not a state file"},
		{"truncated", string(valid[:len(valid)/2]), "not a state file"},
		{"trailing data", string(valid) + "{}", "not a state file"},
		{"array", "[]", "not a state file"},
		{"null", "null", "version: missing"},
		{"no version", `{"tenants": []}`, "version: missing"},
		{"version 0", `{"version": 0}`, "version: 0 is not supported"},
		{"version 2", `{"version": 2, "things": []}`, "version: 2 is not supported"},
		{"version string", `{"version": "1"}`, "not a state file"},
		{"unknown key", `{"version": 1, "widgets": []}`, `unknown field "widgets"`},
		{"unknown object field", `{"version": 1, "tenants": [{"name": "red", "colour": "red"}]}`, `tenants[0]: proto:`},
		{"wrong field type", `{"version": 1, "segments": [{"tenant": "red", "vni": "many"}]}`, "segments[0]: proto:"},
		{"null object", `{"version": 1, "ports": [{"interface": "a"}, null]}`, "ports[1]:"},
		{"bad timestamp", `{"version": 1, "policies": [{"tenant": "red", "meta": {"create_time": "yesterday"}}]}`, "policies[0]: proto:"},
		{"not a list", `{"version": 1, "tenants": {"name": "red"}}`, "cannot unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, FileName)
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(dir)
			if err == nil {
				t.Fatalf("open succeeded with state %v", s.State())
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.problem) {
				t.Fatalf("open error %q does not name %s and %q", err, path, tt.problem)
			}
			// A refused file is the operator's to inspect: Open must not
			// touch it.
			got, err := os.ReadFile(path)
			if err != nil || string(got) != tt.content {
				t.Fatalf("refused state file was changed (err %v)", err)
			}
		})
	}
}

func TestOpenRemovesLeftovers(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	want := fullState()
	if err := s.Commit(want); err != nil {
		t.Fatal(err)
	}
	want.Sort()
	// An interrupted Commit leaves a temporary file that may be partial or
	// complete; neither is the committed state.
	other, err := encode(State{Tenants: []*evpndv1.Tenant{{Name: "uncommitted"}}})
	if err != nil {
		t.Fatal(err)
	}
	leftovers := map[string][]byte{
		tempPrefix + "123456":  other,
		tempPrefix + "partial": other[:10],
		tempPrefix + "empty":   nil,
	}
	for name, data := range leftovers {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Files that are not ours stay.
	keep := []string{"state.json.bak", "notes.txt"}
	for _, name := range keep {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("mine"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got := mustOpen(t, dir).State()
	if !got.Equal(want) {
		t.Fatalf("state with leftovers differs: %v", got)
	}
	for name := range leftovers {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("leftover %s not removed (stat: %v)", name, err)
		}
	}
	for _, name := range keep {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("unrelated file %s removed: %v", name, err)
		}
	}
}

func TestModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var", "lib", "evpnd")
	s := mustOpen(t, dir)
	if err := s.Commit(fullState()); err != nil {
		t.Fatal(err)
	}
	if s.Path() != filepath.Join(dir, "state.json") {
		t.Errorf("path = %s, want %s/state.json", s.Path(), dir)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o700 {
		t.Errorf("dir mode = %v, want 0700", got)
	}
	fi, err = os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("file mode = %v, want 0600", got)
	}
	if !fi.Mode().IsRegular() {
		t.Errorf("state file is %v, want a regular file", fi.Mode().Type())
	}
}

func TestOpenDirIsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(path)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("open of a file as dir: err = %v, want an error naming %s", err, path)
	}
}
