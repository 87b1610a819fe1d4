package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
)

// Down stops the lab's daemons, deletes every namespace of the lab (node
// namespaces and the tenant namespaces its evpnd nodes made) and removes
// the run directory unless the lab keeps it. It is safe to call twice.
func (l *Lab) Down() error {
	l.mu.Lock()
	if l.downed {
		l.mu.Unlock()
		return nil
	}
	l.downed = true
	s := l.state
	exited := make(map[int]<-chan struct{}, len(l.exited))
	for pid, ch := range l.exited {
		exited[pid] = ch
	}
	l.mu.Unlock()
	err := teardown(s, exited)
	if err == nil {
		l.opts.Logf("lab %s: down", l.ID)
	}
	return err
}

// Down tears down lab id from the state file in its run directory under
// root (DefaultRoot when empty), for a process other than the one that
// brought it up.
func Down(root, id string) error {
	s, err := ReadState(root, id)
	if err != nil {
		return err
	}
	return teardown(s, nil)
}

// ReadState reads the state file of lab id under root (DefaultRoot when
// empty).
func ReadState(root, id string) (State, error) {
	if root == "" {
		root = DefaultRoot
	}
	if !labIDRE.MatchString(id) {
		return State{}, fmt.Errorf("lab id %q does not match %s", id, labIDRE)
	}
	data, err := os.ReadFile(filepath.Join(root, id, stateFile))
	if err != nil {
		return State{}, fmt.Errorf("lab %s: %w", id, err)
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return State{}, fmt.Errorf("lab %s: decode %s: %w", id, stateFile, err)
	}
	if s.ID != id {
		return State{}, fmt.Errorf("lab %s: state file names lab %q", id, s.ID)
	}
	return s, nil
}

// List returns the state of every lab with a run directory under root
// (DefaultRoot when empty), oldest first.
func List(root string) ([]State, error) {
	if root == "" {
		root = DefaultRoot
	}
	entries, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list labs: %w", err)
	}
	var labs []State
	for _, e := range entries {
		if !e.IsDir() || !labIDRE.MatchString(e.Name()) {
			continue
		}
		s, err := ReadState(root, e.Name())
		if err != nil {
			continue // not a lab run directory, or one being created
		}
		labs = append(labs, s)
	}
	sort.Slice(labs, func(i, j int) bool { return labs[i].Created.Before(labs[j].Created) })
	return labs, nil
}

// Alive reports whether a lab still has an owner: the process that brought
// it up, or, for a detached lab, any of its daemons.
func (s State) Alive() bool {
	if s.Detached {
		for _, p := range s.Procs {
			if procInNS(p) {
				return true
			}
		}
		return false
	}
	return s.OwnerPID > 0 && alive(s.OwnerPID)
}

// Sweep tears down the labs under root (DefaultRoot when empty) that are no
// longer alive: leftovers of killed test binaries or crashed CLI labs. Only
// labs with a state file are touched. It returns the ids it removed.
func Sweep(root string) ([]string, error) {
	labs, err := List(root)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, s := range labs {
		if s.TornDown || s.Alive() {
			continue
		}
		s.Keep = false
		if err := teardown(s, nil); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, s.ID)
	}
	return removed, errors.Join(errs...)
}

// teardown works from a State alone so that it serves both the process
// that brought the lab up and a later `lab down`.
func teardown(s State, exited map[int]<-chan struct{}) error {
	if !labIDRE.MatchString(s.ID) {
		return fmt.Errorf("lab id %q does not match %s: refusing to tear down", s.ID, labIDRE)
	}
	var errs []error
	// evpnd before the FRR daemons it peers with, bgpd before zebra.
	for i := len(s.Procs) - 1; i >= 0; i-- {
		if err := stopProc(s.Procs[i], exited[s.Procs[i].PID]); err != nil {
			errs = append(errs, fmt.Errorf("lab %s: node %s: %w", s.ID, s.Procs[i].Node, err))
		}
	}
	// Every namespace named "<labid>-..." is this lab's: its nodes and the
	// tenant namespaces of its evpnd nodes, whose prefixes start with the
	// node namespace name.
	seen := map[string]bool{}
	all := append([]string(nil), s.Namespaces...)
	found, err := Namespaces(s.ID)
	if err != nil {
		errs = append(errs, err)
	}
	all = append(all, found...)
	for _, ns := range all {
		if seen[ns] {
			continue
		}
		seen[ns] = true
		if err := killNSProcs(ns); err != nil {
			errs = append(errs, fmt.Errorf("lab %s: %w", s.ID, err))
		}
		if err := deleteNamespace(ns); err != nil {
			errs = append(errs, fmt.Errorf("lab %s: %w", s.ID, err))
		}
	}
	if len(errs) > 0 || s.RunDir == "" {
		return errors.Join(errs...)
	}
	if s.Keep {
		// The run directory stays for its logs; Sweep must not take it.
		s.TornDown = true
		data, err := json.MarshalIndent(s, "", "  ")
		if err == nil {
			err = os.WriteFile(filepath.Join(s.RunDir, stateFile), data, 0o644)
		}
		if err != nil {
			return fmt.Errorf("lab %s: mark torn down: %w", s.ID, err)
		}
		return nil
	}
	if err := os.RemoveAll(s.RunDir); err != nil {
		return fmt.Errorf("lab %s: remove run dir: %w", s.ID, err)
	}
	return nil
}

// killNSProcs kills what still runs in a lab namespace after its daemons
// were stopped (helpers started through Exec, children of daemons): a
// process left there would keep the namespace and its interfaces alive.
func killNSProcs(ns string) error {
	if _, err := os.Stat(netnsDir + "/" + ns); err != nil {
		return nil
	}
	pids, err := nsPIDs(ns)
	if err != nil {
		return err
	}
	for _, pid := range pids {
		if pid == os.Getpid() {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGKILL) // gone already is fine
	}
	for _, pid := range pids {
		p := Proc{Name: "process", PID: pid, Namespace: ns}
		if pid != os.Getpid() && !waitExit(p, nil, stopGrace) {
			return fmt.Errorf("namespace %s: pid %d survives sigkill", ns, pid)
		}
	}
	return nil
}

// logTails logs the tail of every daemon log of the lab, for a failed test.
func (l *Lab) logTails(t testing.TB) {
	for _, p := range l.State().Procs {
		t.Logf("lab %s: node %s: %s log %s (tail):\n%s", l.ID, p.Node, p.Name, p.Log, Tail(p.Log, 40))
	}
}
