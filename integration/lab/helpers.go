package lab

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Exec runs argv inside a node's namespace and returns its combined output.
func (l *Lab) Exec(node string, argv ...string) ([]byte, error) {
	n, err := l.node(node)
	if err != nil {
		return nil, err
	}
	return ExecNS(l.NS(n.Name), argv...)
}

// ExecNS runs argv inside a named namespace (a lab node's or a tenant
// namespace an evpnd node made) and returns its combined output.
func ExecNS(ns string, argv ...string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("exec in %s: empty command", ns)
	}
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("in %s: %s: %w: %s", ns, strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// Vtysh runs one vtysh command against an FRR node's daemons.
func (l *Lab) Vtysh(node, command string) ([]byte, error) {
	n, err := l.node(node)
	if err != nil {
		return nil, err
	}
	if n.Role != RoleFRR {
		return nil, fmt.Errorf("node %s is %s, not frr", node, n.Role)
	}
	out, err := exec.Command("vtysh", "--vty_socket", l.VtySocketDir(node), "-c", command).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("node %s: vtysh -c %q: %w: %s", node, command, err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// VtyshJSON runs a vtysh command ending in "json" and decodes its output
// into v.
func (l *Lab) VtyshJSON(node, command string, v any) error {
	if !strings.HasSuffix(strings.TrimSpace(command), "json") {
		command += " json"
	}
	out, err := l.Vtysh(node, command)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("node %s: vtysh -c %q: decode json: %w: %.200s", node, command, err, out)
	}
	return nil
}

// Evpnctl runs bin/evpnctl against an evpnd node's API socket.
func (l *Lab) Evpnctl(node string, args ...string) ([]byte, error) {
	n, err := l.node(node)
	if err != nil {
		return nil, err
	}
	if n.Role != RoleEvpnd {
		return nil, fmt.Errorf("node %s is %s, not evpnd", node, n.Role)
	}
	bin, err := filepath.Abs(l.opts.EvpnctlBin)
	if err != nil {
		return nil, fmt.Errorf("evpnctl binary: %w", err)
	}
	argv := append([]string{"--socket", l.APISocket(node)}, args...)
	out, err := exec.Command(bin, argv...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		return out, fmt.Errorf("node %s: evpnctl %s: %w: %s", node, strings.Join(args, " "), err, bytes.TrimSpace(stderr))
	}
	return out, nil
}

// EvpnctlJSON runs `evpnctl ARGS -o json` on a node and decodes the output
// into v. evpnctl prints one object per show command, keyed by what it
// lists ({"peers": [...]}, {"routes": [...]}, {"macs": [...]}); the shapes
// of those lists are evpnctl's, so callers decode into their own structs.
func (l *Lab) EvpnctlJSON(node string, v any, args ...string) error {
	out, err := l.Evpnctl(node, append(args, "-o", "json")...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("node %s: evpnctl %s: decode json: %w: %.200s", node, strings.Join(args, " "), err, out)
	}
	return nil
}

// Eventually calls check every poll until it returns nil, and fails the
// test with check's last error once timeout has passed. Lab tests wait for
// the fabric to converge with it instead of sleeping.
func Eventually(t testing.TB, timeout, poll time.Duration, check func() error) {
	t.Helper()
	if err := Poll(timeout, poll, check); err != nil {
		t.Fatal(err)
	}
}

// Poll is Eventually for callers without a testing.TB: it returns check's
// last error, wrapped, once timeout has passed.
func Poll(timeout, poll time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(poll)
	defer tick.Stop()
	attempts := 0
	for {
		attempts++
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not reached within %s (%d attempts), last error: %w", timeout, attempts, err)
		}
		<-tick.C
	}
}
