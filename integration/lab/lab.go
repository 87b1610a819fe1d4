package lab

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// DefaultRoot is where lab run directories live. It must be traversable by
// the frr user, which rules out t.TempDir().
const DefaultRoot = "/tmp/evpnd-lab"

// stateFile is the file in a lab's run directory that Down and Sweep work
// from.
const stateFile = "lab.json"

// labIDRE is the lab naming scheme: every namespace of a lab is named
// "<labid>-...". Down and Sweep only touch names that match it.
var labIDRE = regexp.MustCompile(`^l[0-9a-f]{5}$`)

// KeepEnv set to anything non-empty makes Up keep every run directory, to
// read daemon logs and configs after a test.
const KeepEnv = "EVPND_LAB_KEEP"

// Options tune a lab run; the zero value is usable.
type Options struct {
	// Root holds the run directory <Root>/<labid>; DefaultRoot when empty.
	Root string
	// Keep leaves the run directory (configs, logs) in place on teardown.
	Keep bool
	// Detached marks a lab meant to outlive the process that brought it up
	// (the lab CLI); Sweep leaves it alone while any of its daemons runs.
	Detached bool
	// EvpndBin and EvpnctlBin default to bin/evpnd and bin/evpnctl of the
	// repository this package is built from.
	EvpndBin   string
	EvpnctlBin string
	// ReadyTimeout bounds the wait for each daemon to become ready; 30s when
	// zero.
	ReadyTimeout time.Duration
	// Logf receives progress lines; silent when nil.
	Logf func(format string, args ...any)
}

// Lab is a running topology.
type Lab struct {
	ID     string
	Topo   *Topology
	RunDir string

	opts Options

	mu     sync.Mutex
	state  State
	exited map[int]chan struct{} // closed when a child started here exits
	downed bool
}

// State is what a lab records in its run directory so that a different
// process can tear it down.
type State struct {
	ID            string    `json:"id"`
	Topology      string    `json:"topology"`
	Name          string    `json:"name"`
	RunDir        string    `json:"run_dir"`
	OwnerPID      int       `json:"owner_pid"`
	Detached      bool      `json:"detached"`
	Keep          bool      `json:"keep"`
	TornDown      bool      `json:"torn_down,omitempty"` // down, run dir kept
	Created       time.Time `json:"created"`
	Namespaces    []string  `json:"namespaces"`
	NetnsPrefixes []string  `json:"netns_prefixes"`
	Procs         []Proc    `json:"procs"`
	Nodes         []NodeRef `json:"nodes"`
}

// Proc is a daemon the lab started.
type Proc struct {
	Node      string `json:"node"`
	Name      string `json:"name"`
	PID       int    `json:"pid"`
	Namespace string `json:"namespace"`
	Log       string `json:"log"`
}

// NodeRef is how to reach one node of a running lab.
type NodeRef struct {
	Name        string `json:"name"`
	Role        Role   `json:"role"`
	Namespace   string `json:"namespace"`
	VtySocket   string `json:"vty_socket,omitempty"`
	APISocket   string `json:"api_socket,omitempty"`
	NetnsPrefix string `json:"netns_prefix,omitempty"`
}

// Up brings up the topology in file for a test. Teardown is registered with
// t.Cleanup before anything is created, so a bring-up that fails midway
// leaves nothing behind; when the test failed, the tails of the daemon logs
// are logged first.
func Up(t testing.TB, file string, opts Options) *Lab {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	if os.Getenv(KeepEnv) != "" {
		opts.Keep = true
	}
	topo, err := LoadTopology(file)
	if err != nil {
		t.Fatal(err)
	}
	// Labs of test binaries killed before their cleanup ran.
	if removed, err := Sweep(opts.Root); err != nil {
		t.Logf("sweeping dead labs: %v", err)
	} else if len(removed) > 0 {
		t.Logf("swept dead labs %v", removed)
	}
	l, err := newLab(topo, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			l.logTails(t)
		}
		if err := l.Down(); err != nil {
			t.Errorf("lab %s teardown: %v", l.ID, err)
		}
	})
	if err := l.bringUp(); err != nil {
		t.Fatalf("lab %s (%s) bring-up: %v", l.ID, topo.Name, err)
	}
	return l
}

// Start brings up the topology in file for a caller without a testing.TB
// (the lab CLI). On error everything created so far is torn down again.
func Start(file string, opts Options) (*Lab, error) {
	topo, err := LoadTopology(file)
	if err != nil {
		return nil, err
	}
	l, err := newLab(topo, opts)
	if err != nil {
		return nil, err
	}
	if err := l.bringUp(); err != nil {
		return nil, errors.Join(fmt.Errorf("lab %s bring-up: %w", l.ID, err), l.Down())
	}
	return l, nil
}

func newLab(topo *Topology, opts Options) (*Lab, error) {
	if opts.Root == "" {
		opts.Root = DefaultRoot
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 30 * time.Second
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.EvpndBin == "" {
		opts.EvpndBin = repoBin("evpnd")
	}
	if opts.EvpnctlBin == "" {
		opts.EvpnctlBin = repoBin("evpnctl")
	}
	if err := os.MkdirAll(opts.Root, 0o755); err != nil {
		return nil, fmt.Errorf("lab root: %w", err)
	}
	// The frr user must reach its run directory through the root.
	if err := os.Chmod(opts.Root, 0o755); err != nil {
		return nil, fmt.Errorf("lab root: %w", err)
	}
	var id, dir string
	for {
		id = newID()
		dir = filepath.Join(opts.Root, id)
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) && !namespacesExist(id) {
			break
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lab run dir: %w", err)
	}
	l := &Lab{ID: id, Topo: topo, RunDir: dir, opts: opts, exited: map[int]chan struct{}{}}
	l.state = State{
		ID: id, Topology: topo.File, Name: topo.Name, RunDir: dir,
		OwnerPID: os.Getpid(), Detached: opts.Detached, Keep: opts.Keep, Created: time.Now(),
	}
	for _, n := range topo.Nodes {
		ref := NodeRef{Name: n.Name, Role: n.Role, Namespace: l.NS(n.Name)}
		switch n.Role {
		case RoleFRR:
			ref.VtySocket = l.VtySocketDir(n.Name)
		case RoleEvpnd:
			ref.APISocket = l.APISocket(n.Name)
			ref.NetnsPrefix = l.NetnsPrefix(n.Name)
			l.state.NetnsPrefixes = append(l.state.NetnsPrefixes, ref.NetnsPrefix)
		}
		l.state.Nodes = append(l.state.Nodes, ref)
	}
	if err := l.saveState(); err != nil {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	opts.Logf("lab %s: topology %s, run dir %s", id, topo.Name, dir)
	return l, nil
}

func newID() string {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return "l" + hex.EncodeToString(b[:])[:5]
}

// repoBin finds bin/<name> at the root of the repository holding this
// source file, so tests run from any package directory find the binaries.
func repoBin(name string) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) { // built with -trimpath
		return filepath.Join("bin", name)
	}
	// file is <repo>/integration/lab/lab.go.
	return filepath.Join(filepath.Dir(file), "..", "..", "bin", name)
}

// NS is the network namespace of a node.
func (l *Lab) NS(node string) string { return l.ID + "-" + node }

// NodeDir is a node's private directory in the run directory.
func (l *Lab) NodeDir(node string) string { return filepath.Join(l.RunDir, node) }

// VtySocketDir is the --vty_socket directory of an FRR node.
func (l *Lab) VtySocketDir(node string) string { return filepath.Join(l.NodeDir(node), "frr") }

// APISocket is the API socket path of an evpnd node.
func (l *Lab) APISocket(node string) string { return filepath.Join(l.NodeDir(node), "evpnd.sock") }

// NetnsPrefix is the tenant namespace prefix handed to an evpnd node.
func (l *Lab) NetnsPrefix(node string) string { return l.NS(node) + "-" }

// TenantNS is the namespace an evpnd node creates for tenant.
func (l *Lab) TenantNS(node, tenant string) string { return l.NetnsPrefix(node) + tenant }

// State returns a copy of what the lab recorded about itself.
func (l *Lab) State() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.state
	s.Namespaces = append([]string(nil), s.Namespaces...)
	s.Procs = append([]Proc(nil), s.Procs...)
	return s
}

func (l *Lab) node(name string) (*Node, error) {
	n := l.Topo.Node(name)
	if n == nil {
		return nil, fmt.Errorf("lab %s: no node %q", l.ID, name)
	}
	return n, nil
}

func (l *Lab) saveState() error {
	data, err := json.MarshalIndent(l.state, "", "  ")
	if err != nil {
		return fmt.Errorf("encode lab state: %w", err)
	}
	tmp := filepath.Join(l.RunDir, stateFile+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write lab state: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(l.RunDir, stateFile)); err != nil {
		return fmt.Errorf("write lab state: %w", err)
	}
	return nil
}

func (l *Lab) recordNS(ns string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.state.Namespaces = append(l.state.Namespaces, ns)
	return l.saveState()
}

func (l *Lab) recordProc(p Proc) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.state.Procs = append(l.state.Procs, p)
	return l.saveState()
}

// bringUp creates namespaces, links, runs exec commands and starts daemons,
// in that order: exec commands may refer to link interfaces, and zebra wants
// the bridges and VXLAN devices made by exec to exist when it starts.
func (l *Lab) bringUp() error {
	for _, n := range l.Topo.Nodes {
		if n.Role == RoleEvpnd {
			if _, err := os.Stat(l.opts.EvpndBin); err != nil {
				return fmt.Errorf("node %s needs evpnd: %w (build it with go build -o bin/evpnd ./cmd/evpnd)", n.Name, err)
			}
			break
		}
	}
	for _, n := range l.Topo.Nodes {
		if err := l.addNamespace(n); err != nil {
			return err
		}
	}
	for _, lk := range l.Topo.Links {
		if err := l.addLink(lk); err != nil {
			return err
		}
	}
	for _, n := range l.Topo.Nodes {
		for i, cmd := range n.Exec {
			out, err := l.runExec(n, cmd)
			if err != nil {
				return fmt.Errorf("node %s: exec[%d] %q: %w: %s", n.Name, i, cmd, err, strings.TrimSpace(string(out)))
			}
		}
	}
	// Route reflectors and FRR hosts first: evpnd hosts peer with them.
	for _, n := range l.Topo.Nodes {
		if n.Role == RoleFRR {
			if err := l.startFRR(n); err != nil {
				return fmt.Errorf("node %s: %w", n.Name, err)
			}
		}
	}
	for _, n := range l.Topo.Nodes {
		if n.Role == RoleEvpnd {
			if err := l.startEvpnd(n); err != nil {
				return fmt.Errorf("node %s: %w", n.Name, err)
			}
		}
	}
	l.opts.Logf("lab %s: up, %d nodes, %d links", l.ID, len(l.Topo.Nodes), len(l.Topo.Links))
	return nil
}

// runExec runs one topology exec command in the node's namespace through
// sh, as containerlab runs it in the node's container.
func (l *Lab) runExec(n *Node, command string) ([]byte, error) {
	cmd := exec.Command("ip", "netns", "exec", l.NS(n.Name), "sh", "-c", command)
	cmd.Env = nodeEnv(n, nil)
	return cmd.CombinedOutput()
}

func nodeEnv(n *Node, extra map[string]string) []string {
	env := os.Environ()
	for k, v := range n.Env {
		env = append(env, k+"="+v)
	}
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}
