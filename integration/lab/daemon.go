package lab

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// frrDaemonDir holds the FRR daemons of the Debian frr package.
const frrDaemonDir = "/usr/lib/frr"

// FRRInstalled reports whether FRR's bgpd is where the runner expects it.
func FRRInstalled() bool {
	_, err := os.Stat(filepath.Join(frrDaemonDir, "bgpd"))
	return err == nil
}

// stopGrace is how long a daemon gets between SIGTERM and SIGKILL.
const stopGrace = 5 * time.Second

// startProc starts argv inside the node's namespace with stdout and stderr
// appended to <node dir>/<name>.log, and records it in the lab state. The
// returned channel is closed when the process exits.
func (l *Lab) startProc(n *Node, name string, env map[string]string, argv ...string) (Proc, <-chan struct{}, error) {
	logPath := filepath.Join(l.NodeDir(n.Name), name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return Proc{}, nil, fmt.Errorf("%s: log file: %w", name, err)
	}
	ns := l.NS(n.Name)
	// Both ways of entering exec argv in place, so the PID is the daemon's
	// own. ip netns exec also unshares the mount namespace (to remount
	// /sys); evpnd creates tenant namespaces by bind-mounting them under
	// /run/netns, and those mounts must be seen by the whole machine, as
	// they are when evpnd runs on a real host. So evpnd enters only the
	// network namespace.
	enter := []string{"ip", "netns", "exec", ns}
	if n.Role == RoleEvpnd {
		enter = []string{"nsenter", "--net=" + filepath.Join("/run/netns", ns), "--"}
	}
	cmd := exec.Command(enter[0], append(enter[1:], argv...)...)
	cmd.Env = nodeEnv(n, env)
	cmd.Stdout = logf
	cmd.Stderr = logf
	// Its own process group: a ^C meant for the lab CLI must not reach the
	// daemons of a lab that is supposed to stay up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return Proc{}, nil, fmt.Errorf("%s: start %s: %w", name, argv[0], err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait() // the exit is reported through the log and readiness
		logf.Close()
		close(done)
	}()
	p := Proc{Node: n.Name, Name: name, PID: cmd.Process.Pid, Namespace: ns, Log: logPath}
	l.mu.Lock()
	l.exited[p.PID] = done
	l.mu.Unlock()
	if err := l.recordProc(p); err != nil {
		return p, done, err
	}
	l.opts.Logf("lab %s: node %s: %s pid %d, log %s", l.ID, n.Name, name, p.PID, logPath)
	return p, done, nil
}

// waitReady polls for path to appear until the deadline, failing early when
// the process exits; failures carry the tail of the process log.
func (l *Lab) waitReady(p Proc, done <-chan struct{}, path string) error {
	deadline := time.Now().Add(l.opts.ReadyTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("%s exited before %s appeared; log %s:\n%s", p.Name, path, p.Log, Tail(p.Log, 30))
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready: %s did not appear within %s; log %s:\n%s", p.Name, path, l.opts.ReadyTimeout, p.Log, Tail(p.Log, 30))
		}
	}
}

// startFRR runs zebra (unless the node is a pure route reflector) and bgpd
// with private pid files, vty sockets and zserv socket in the node's run
// directory, so any number of FRR instances coexist on the machine.
func (l *Lab) startFRR(n *Node) error {
	if !FRRInstalled() {
		return fmt.Errorf("frr is not installed: %s/bgpd missing", frrDaemonDir)
	}
	dir := l.VtySocketDir(n.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("frr dir: %w", err)
	}
	uid, gid, err := frrIDs()
	if err != nil {
		return err
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return fmt.Errorf("frr dir: %w", err)
	}
	conf := filepath.Join(dir, "frr.conf")
	if err := copyFile(n.FRRConfig(), conf, 0o644); err != nil {
		return fmt.Errorf("frr.conf: %w", err)
	}
	if err := os.Chown(conf, uid, gid); err != nil {
		return fmt.Errorf("frr.conf: %w", err)
	}
	common := func(daemon string) []string {
		return []string{
			filepath.Join(frrDaemonDir, daemon),
			"-u", "frr", "-g", "frr",
			"-i", filepath.Join(dir, daemon+".pid"),
			"--vty_socket", dir,
			"-z", filepath.Join(dir, "zserv.api"),
			"-f", conf,
			"-A", "127.0.0.1", "-P", "0", // no TCP vty: vtysh uses the socket
			"--log", "stdout",
		}
	}
	daemons := []string{"bgpd"}
	if n.RunsZebra() {
		daemons = []string{"zebra", "bgpd"}
	}
	for _, d := range daemons {
		argv := common(d)
		if d == "bgpd" && !n.RunsZebra() {
			argv = append(argv, "-Z")
		}
		// A daemon killed earlier (StopDaemons) leaves its socket behind;
		// readiness must see the new one.
		ready := filepath.Join(dir, d+".vty")
		if err := removeStale(ready); err != nil {
			return err
		}
		p, done, err := l.startProc(n, d, nil, argv...)
		if err != nil {
			return err
		}
		// bgpd connects to zebra at start, so zebra must be listening first.
		if err := l.waitReady(p, done, ready); err != nil {
			return err
		}
	}
	return nil
}

// startEvpnd runs bin/evpnd with the node's bound config and the lab's
// per-node overrides: tenant namespaces prefixed with the node's namespace
// (namespaces are machine-global), state and API socket in the run
// directory.
func (l *Lab) startEvpnd(n *Node) error {
	bin, err := filepath.Abs(l.opts.EvpndBin)
	if err != nil {
		return fmt.Errorf("evpnd binary: %w", err)
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("evpnd binary %s: %w (build it with go build -o bin/evpnd ./cmd/evpnd)", bin, err)
	}
	stateDir := filepath.Join(l.NodeDir(n.Name), "state")
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return fmt.Errorf("evpnd state dir: %w", err)
	}
	sock := l.APISocket(n.Name)
	env := map[string]string{
		"EVPND_NETNS_PREFIX": l.NetnsPrefix(n.Name),
		"EVPND_STATE_DIR":    stateDir,
		"EVPND_API_LISTEN":   "unix://" + sock,
	}
	if err := removeStale(sock); err != nil {
		return err
	}
	argv := []string{bin, "--config", n.EvpndConfig()}
	caps := n.Capabilities()
	var want uint64
	if caps != nil {
		if want, err = capMask(caps); err != nil {
			return fmt.Errorf("node %s: label %s: %w", n.Name, LabelCapabilities, err)
		}
		// Still uid 0, but a bounding set of only these: what exec gives
		// root then is exactly them, as with the systemd unit's
		// CapabilityBoundingSet.
		argv = append([]string{"setpriv", "--bounding-set=-all,+" + strings.Join(caps, ",+"), "--"}, argv...)
	}
	p, done, err := l.startProc(n, "evpnd", env, argv...)
	if err != nil {
		return err
	}
	if err := l.waitReady(p, done, sock); err != nil {
		return err
	}
	if caps != nil {
		got, err := effectiveCaps(p.PID)
		if err != nil {
			return fmt.Errorf("node %s: evpnd capabilities: %w", n.Name, err)
		}
		if got != want {
			return fmt.Errorf("node %s: evpnd runs with capabilities %#x, want %#x (%s)", n.Name, got, want, strings.Join(caps, ","))
		}
	}
	return nil
}

// capNumbers names the capabilities a topology may grant evpnd.
var capNumbers = map[string]uint{
	"dac_override":     unix.CAP_DAC_OVERRIDE,
	"net_admin":        unix.CAP_NET_ADMIN,
	"net_bind_service": unix.CAP_NET_BIND_SERVICE,
	"net_raw":          unix.CAP_NET_RAW,
	"sys_admin":        unix.CAP_SYS_ADMIN,
	"sys_module":       unix.CAP_SYS_MODULE,
	"sys_ptrace":       unix.CAP_SYS_PTRACE,
}

func capMask(names []string) (uint64, error) {
	var m uint64
	for _, c := range names {
		n, ok := capNumbers[c]
		if !ok {
			return 0, fmt.Errorf("unknown capability %q", c)
		}
		m |= 1 << n
	}
	return m, nil
}

// effectiveCaps reads CapEff of a running process.
func effectiveCaps(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no CapEff", pid)
}

func frrIDs() (uid, gid int, err error) {
	u, err := user.Lookup("frr")
	if err != nil {
		return 0, 0, fmt.Errorf("frr user: %w", err)
	}
	g, err := user.LookupGroup("frr")
	if err != nil {
		return 0, 0, fmt.Errorf("frr group: %w", err)
	}
	uid, err = strconv.Atoi(u.Uid)
	if err != nil {
		return 0, 0, fmt.Errorf("frr uid %q: %w", u.Uid, err)
	}
	gid, err = strconv.Atoi(g.Gid)
	if err != nil {
		return 0, 0, fmt.Errorf("frr gid %q: %w", g.Gid, err)
	}
	return uid, gid, nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Tail returns the last n lines of a log file, for failure messages.
func Tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// stopProc stops a daemon the lab started: SIGTERM, then SIGKILL after
// stopGrace. A PID is only signalled while it still runs in the lab
// namespace it was started in, so a reused PID is never hit. done is the
// exit channel when the process is this process's child, else nil.
func stopProc(p Proc, done <-chan struct{}) error {
	if !procInNS(p) {
		return nil
	}
	if err := syscall.Kill(p.PID, syscall.SIGTERM); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return fmt.Errorf("%s pid %d: sigterm: %w", p.Name, p.PID, err)
	}
	if waitExit(p, done, stopGrace) {
		return nil
	}
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("%s pid %d: sigkill: %w", p.Name, p.PID, err)
	}
	if !waitExit(p, done, stopGrace) {
		return fmt.Errorf("%s pid %d: still running after sigkill", p.Name, p.PID)
	}
	return nil
}

func procInNS(p Proc) bool {
	want, err := nsInode(p.Namespace)
	if err != nil {
		return false
	}
	have, err := pidNSInode(p.PID)
	return err == nil && have == want && !zombie(p.PID)
}

func waitExit(p Proc, done <-chan struct{}, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if done != nil {
			select {
			case <-done:
				return true
			default:
			}
		} else if !alive(p.PID) {
			return true
		}
		select {
		case <-deadline.C:
			return false
		case <-tick.C:
		}
	}
}

// alive reports whether pid exists and is not a zombie; a zombie whose
// parent is gone is reaped by init and no longer holds anything.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	return !zombie(pid)
}

func zombie(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name, which may itself
	// hold spaces or parentheses.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z'
}

// StopDaemons stops the daemons of one node (SIGTERM, then SIGKILL), leaving
// its namespace and interfaces in place: a restart or failure test.
func (l *Lab) StopDaemons(node string) error { return l.endDaemons(node, stopProc) }

// KillDaemons kills the daemons of one node with SIGKILL at once: a crash.
func (l *Lab) KillDaemons(node string) error {
	return l.endDaemons(node, func(p Proc, done <-chan struct{}) error {
		if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("%s pid %d: sigkill: %w", p.Name, p.PID, err)
		}
		if !waitExit(p, done, stopGrace) {
			return fmt.Errorf("%s pid %d: still running after sigkill", p.Name, p.PID)
		}
		return nil
	})
}

// Signal sends sig to the daemon called name (evpnd, bgpd, zebra) of node.
func (l *Lab) Signal(node, name string, sig syscall.Signal) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.state.Procs {
		if p.Node == node && p.Name == name {
			return syscall.Kill(p.PID, sig)
		}
	}
	return fmt.Errorf("node %s runs no %s", node, name)
}

func (l *Lab) endDaemons(node string, end func(Proc, <-chan struct{}) error) error {
	if _, err := l.node(node); err != nil {
		return err
	}
	l.mu.Lock()
	var mine, rest []Proc
	for _, p := range l.state.Procs {
		if p.Node == node {
			mine = append(mine, p)
		} else {
			rest = append(rest, p)
		}
	}
	exited := make(map[int]<-chan struct{}, len(mine))
	for _, p := range mine {
		exited[p.PID] = l.exited[p.PID]
	}
	l.mu.Unlock()
	var errs []error
	for i := len(mine) - 1; i >= 0; i-- {
		if err := end(mine[i], exited[mine[i].PID]); err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", node, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.state.Procs = rest
	return l.saveState()
}

// StartDaemons starts a node's daemons again after StopDaemons, with the
// same configs, state directory and sockets, and waits until they are
// ready.
func (l *Lab) StartDaemons(node string) error {
	n, err := l.node(node)
	if err != nil {
		return err
	}
	switch n.Role {
	case RoleFRR:
		err = l.startFRR(n)
	case RoleEvpnd:
		err = l.startEvpnd(n)
	default:
		return fmt.Errorf("node %s is %s: it runs no daemons", node, n.Role)
	}
	if err != nil {
		return fmt.Errorf("node %s: %w", node, err)
	}
	return nil
}

func removeStale(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale %s: %w", path, err)
	}
	return nil
}
