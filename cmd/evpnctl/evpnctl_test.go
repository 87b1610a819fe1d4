package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata from the current output")

// fixtureSocket is the socket of the real API server, serving the apitest
// fixture, that the tests run evpnctl against. evpnctl cannot import the
// daemon's internal packages, so the server runs as the fixtured command.
var fixtureSocket string

// fixtureErr is why the fixture server could not start; the tests that
// need it fail with it, the others run.
var fixtureErr error

// needFixture fails a test that needs the fixture server when it is not
// running.
func needFixture(t *testing.T) {
	t.Helper()
	if fixtureErr != nil {
		t.Fatalf("the fixture API server is not running: %v", fixtureErr)
	}
}

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "evpnctl-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	now = func() time.Time { return time.Date(2025, 11, 25, 10, 0, 0, 0, time.UTC) }
	stop, err := startFixture(dir)
	if err != nil {
		fixtureErr = err
		fmt.Fprintln(os.Stderr, "starting the fixture API server:", err)
	}
	code := m.Run()
	if stop != nil {
		if err := stop(); err != nil {
			fmt.Fprintln(os.Stderr, "fixture API server:", err)
			code = 1
		}
	}
	if fixtureErr != nil {
		code = 1
	}
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// startFixture builds and starts fixtured on a socket in dir and waits until
// it accepts connections. fixtured exits when its stdin closes, so it dies
// with this process even if stop is never called.
func startFixture(dir string) (stop func() error, err error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("the go tool builds the API fixture server and is not on PATH: %w", err)
	}
	bin := filepath.Join(dir, "fixtured")
	build := exec.Command(goTool, "build", "-o", bin, "github.com/evpnd/evpnd/cmd/evpnd/internal/apiserver/apitest/fixtured")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build fixtured: %w\n%s", err, out)
	}
	fixtureSocket = filepath.Join(dir, "run", "evpnd.sock")
	cmd := exec.Command(bin, "-socket", fixtureSocket)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop = func() error {
		stdin.Close()
		if err := <-exited; err != nil {
			return fmt.Errorf("%w\n%s", err, stderr.String())
		}
		return nil
	}
	deadline := time.Now().Add(time.Minute)
	for {
		c, err := net.Dial("unix", fixtureSocket)
		if err == nil {
			c.Close()
			return stop, nil
		}
		select {
		case err := <-exited:
			return nil, fmt.Errorf("fixtured exited: %v\n%s", err, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("fixtured did not listen on %s: %v", fixtureSocket, err)
		}
	}
}

// evpnctl runs the CLI in-process as a shell would, with env as its
// environment.
func evpnctl(env map[string]string, args ...string) (stdout, stderr string, code int) {
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, func(k string) string { return env[k] }, &out, &errOut)
	return out.String(), errOut.String(), code
}

func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		golden string
		args   []string
	}{
		{"peers.table", []string{"show", "peers"}},
		{"peers.json", []string{"show", "peers", "-o", "json"}},
		{"routes.table", []string{"show", "evpn", "routes"}},
		{"routes.json", []string{"show", "evpn", "routes", "--output=json"}},
		{"routes-macip-vni100.table", []string{"show", "evpn", "routes", "--type", "macip", "--vni", "100"}},
		{"routes-multicast.json", []string{"show", "evpn", "routes", "--type", "multicast", "-o", "json"}},
		{"routes-rd-mac.table", []string{"show", "evpn", "routes", "--rd", "10.0.0.1:1", "--mac", "02:00:00:00:01:01"}},
		{"routes-prefix.table", []string{"show", "evpn", "routes", "--prefix", "10.0.0.0/8"}},
		{"routes-none.json", []string{"show", "evpn", "routes", "--vni", "4242", "-o", "json"}},
		{"macs.table", []string{"show", "evpn", "macs"}},
		{"macs.json", []string{"show", "evpn", "macs", "-o", "json"}},
		{"macs-blue-vni100.table", []string{"show", "evpn", "macs", "--tenant", "blue", "--vni", "100"}},
		{"macs-remote.table", []string{"show", "evpn", "macs", "--origin", "remote"}},
		{"tenant-routes.table", []string{"show", "routes"}},
		{"tenant-routes.json", []string{"show", "routes", "-o", "json"}},
		{"tenant-routes-blue-evpn.table", []string{"show", "routes", "--tenant", "blue", "--protocol", "evpn"}},
		{"tenant-routes-prefix.json", []string{"show", "routes", "--prefix", "10.1.0.0/16", "--output", "json"}},
		{"tenant-routes-none.table", []string{"show", "routes", "--tenant", "green"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			needFixture(t)
			args := append([]string{"--socket", fixtureSocket}, tc.args...)
			stdout, stderr, code := evpnctl(nil, args...)
			if code != exitOK || stderr != "" {
				t.Fatalf("evpnctl %s: exit %d, stderr %q", strings.Join(tc.args, " "), code, stderr)
			}
			checkGolden(t, tc.golden, tc.args, stdout)
		})
	}
}

// checkGolden compares the output of evpnctl args with
// testdata/<golden>.golden, or rewrites it with -update.
func checkGolden(t *testing.T, golden string, args []string, got string) {
	t.Helper()
	path := filepath.Join("testdata", golden+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/evpnctl -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("evpnctl %s: output differs from %s (go test ./cmd/evpnctl -update refreshes it)\n got:\n%s\nwant:\n%s",
			strings.Join(args, " "), path, got, want)
	}
}

func TestSocketFromEnvironment(t *testing.T) {
	needFixture(t)
	stdout, stderr, code := evpnctl(map[string]string{socketEnv: fixtureSocket}, "show", "peers")
	if code != exitOK || !strings.Contains(stdout, "10.0.0.254") {
		t.Errorf("with %s set: exit %d, stdout %q, stderr %q", socketEnv, code, stdout, stderr)
	}
	// --socket wins over the environment.
	missing := filepath.Join(t.TempDir(), "nothing.sock")
	_, stderr, code = evpnctl(map[string]string{socketEnv: fixtureSocket}, "--socket", missing, "show", "peers")
	if code != exitError || !strings.Contains(stderr, missing) {
		t.Errorf("--socket over %s: exit %d, stderr %q", socketEnv, code, stderr)
	}
}

func TestUnreachable(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	missing := filepath.Join(dir, "evpnd.sock")
	for _, tc := range []struct {
		socket, want string
	}{
		{missing, "evpnctl: cannot reach evpnd at " + missing + ": no such socket: is evpnd running? (use --socket or EVPNCTL_SOCKET for another socket)\n"},
		{stale, "evpnctl: cannot reach evpnd at " + stale + ": connection refused, the socket is stale: is evpnd running? (use --socket or EVPNCTL_SOCKET for another socket)\n"},
	} {
		stdout, stderr, code := evpnctl(nil, "--socket", tc.socket, "show", "evpn", "routes")
		if code != exitError || stderr != tc.want || stdout != "" {
			t.Errorf("socket %s: exit %d, stdout %q, stderr %q; want exit 1, stderr %q", tc.socket, code, stdout, stderr, tc.want)
		}
	}
}

func TestMissingSocketDefault(t *testing.T) {
	if _, err := os.Stat(defaultSocket); err == nil {
		t.Skipf("%s exists on this machine", defaultSocket)
	}
	_, stderr, code := evpnctl(nil, "show", "peers")
	want := "evpnctl: cannot reach evpnd at /run/evpnd/evpnd.sock: no such socket: is evpnd running? (use --socket or EVPNCTL_SOCKET for another socket)\n"
	if code != exitError || stderr != want {
		t.Errorf("exit %d, stderr %q; want exit 1, %q", code, stderr, want)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // the first line of stderr
		help string // the command --help is suggested for
	}{
		{[]string{"shwo"}, `evpnctl: unknown command "shwo" for "evpnctl"`, "evpnctl"},
		{[]string{"show", "bgp"}, `evpnctl: unknown command "bgp" for "evpnctl show"`, "evpnctl show"},
		{[]string{"show"}, "evpnctl: evpnctl show needs a subcommand: evpn, neighbors, peers, routes", "evpnctl show"},
		{[]string{}, "evpnctl: evpnctl needs a subcommand: apply, clear, completion, policy, port, segment, show, tenant, version, watch", "evpnctl"},
		{[]string{"show", "peers", "extra"}, `evpnctl: evpnctl show peers takes no arguments, got ["extra"]`, "evpnctl show peers"},
		{[]string{"show", "peers", "--bogus"}, "evpnctl: unknown flag: --bogus", "evpnctl show peers"},
		{[]string{"show", "evpn", "routes", "--vni", "x"}, `evpnctl: invalid argument "x" for "--vni" flag: strconv.ParseUint: parsing "x": invalid syntax`, "evpnctl show evpn routes"},
		{[]string{"show", "evpn", "routes", "--type", "ethernet-ad"}, `evpnctl: invalid --type "ethernet-ad": want macip, multicast or prefix`, "evpnctl show evpn routes"},
		{[]string{"show", "evpn", "macs", "--origin", "both"}, `evpnctl: invalid --origin "both": want local or remote`, "evpnctl show evpn macs"},
		{[]string{"show", "peers", "-o", "xml"}, `evpnctl: invalid --output "xml": want table, json or yaml`, "evpnctl show peers"},
		// Values only the server can judge come back as usage errors too.
		{[]string{"show", "evpn", "routes", "--vni", "16777216"}, "evpnctl: invalid --vni: 16777216 is out of range 1..16777215", "evpnctl show evpn routes"},
		{[]string{"show", "evpn", "macs", "--vni", "0"}, "evpnctl: invalid --vni: 0 is out of range 1..16777215", "evpnctl show evpn macs"},
		{[]string{"show", "evpn", "routes", "--mac", "zz", "--rd", "1:2:3"}, `evpnctl: invalid --rd: "1:2:3" is not a route distinguisher (want <asn|ipv4>:<number>); invalid --mac: "zz" is not a MAC address`, "evpnctl show evpn routes"},
		{[]string{"show", "evpn", "routes", "--prefix", "10.0.0.1"}, `evpnctl: invalid --prefix: "10.0.0.1" is not an IP prefix (want address/length)`, "evpnctl show evpn routes"},
		{[]string{"show", "routes", "--protocol", "bgp"}, `evpnctl: invalid --protocol "bgp": want connected, static, evpn or other`, "evpnctl show routes"},
		{[]string{"show", "routes", "--prefix", "10.1.0.0/33"}, `evpnctl: invalid --prefix: "10.1.0.0/33" is not an IP prefix (want address/length)`, "evpnctl show routes"},
		{[]string{"show", "routes", "--prefix", "blue", "--protocol", "evpn"}, `evpnctl: invalid --prefix: "blue" is not an IP prefix (want address/length)`, "evpnctl show routes"},
		{[]string{"show", "routes", "blue"}, `evpnctl: evpnctl show routes takes no arguments, got ["blue"]`, "evpnctl show routes"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			args := append([]string{"--socket", fixtureSocket}, tc.args...)
			stdout, stderr, code := evpnctl(nil, args...)
			want := tc.want + "\nRun '" + tc.help + " --help' for usage.\n"
			if code != exitUsage || stderr != want || stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant exit 2, stderr:\n%s", code, stdout, stderr, want)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	stdout, stderr, code := evpnctl(nil, "show", "evpn", "routes", "--help")
	if code != exitOK || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	for _, want := range []string{"--type string", "--vni uint32", "--rd string", "--mac string", "--prefix string",
		"--socket string", "-o, --output string", "--timeout duration", `(default "/run/evpnd/evpnd.sock")`} {
		if !strings.Contains(stdout, want) {
			t.Errorf("help does not mention %q:\n%s", want, stdout)
		}
	}
	stdout, stderr, code = evpnctl(nil, "show", "routes", "--help")
	if code != exitOK || stderr != "" {
		t.Fatalf("show routes --help: exit %d, stderr %q", code, stderr)
	}
	for _, want := range []string{"routing table of every tenant", "--tenant string", "--prefix string",
		"--protocol string", "connected, static, evpn or other", "evpnctl show routes --protocol evpn", "-o, --output string"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("show routes help does not mention %q:\n%s", want, stdout)
		}
	}
	stdout, _, _ = evpnctl(map[string]string{socketEnv: "/tmp/x.sock"}, "show", "peers", "--help")
	if !strings.Contains(stdout, `(default "/tmp/x.sock")`) {
		t.Errorf("help does not show the socket from %s:\n%s", socketEnv, stdout)
	}
}

func TestCompletion(t *testing.T) {
	stdout, stderr, code := evpnctl(nil, "completion", "bash")
	if code != exitOK || stderr != "" || !strings.Contains(stdout, "__start_evpnctl") {
		t.Errorf("completion bash: exit %d, stderr %q, %d bytes of script", code, stderr, len(stdout))
	}
}

func TestVersion(t *testing.T) {
	old := version
	version = "v1.2.3"
	t.Cleanup(func() { version = old })
	stdout, stderr, code := evpnctl(nil, "version")
	want := "evpnctl v1.2.3"
	if code != exitOK || stderr != "" || !strings.HasPrefix(stdout, want) || !strings.Contains(stdout, runtime.Version()) {
		t.Errorf("version: exit %d, stdout %q, stderr %q; want %q ... %s", code, stdout, stderr, want, runtime.Version())
	}
}

func TestUptime(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                "00:00:00",
		90 * time.Second: "00:01:30",
		23*time.Hour + 59*time.Minute + 59*time.Second: "23:59:59",
		26*time.Hour + 3*time.Minute:                   "1d02h03m",
		9*24*time.Hour + 5*time.Hour:                   "1w2d05h",
	} {
		if got := uptime(d); got != want {
			t.Errorf("uptime(%v) = %q, want %q", d, got, want)
		}
	}
}
