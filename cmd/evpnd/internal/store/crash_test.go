package store

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	evpndv1 "github.com/evpnd/evpnd/api/evpnd/v1"
)

// crashDirEnv tells a re-executed test binary to run as the committing
// child of TestCrashSafety, in the named state dir.
const crashDirEnv = "EVPND_STORE_CRASH_DIR"

// crashAtEnv ("step:n") makes the child SIGKILL itself right after that
// step of its n-th Commit, to hit every point of a Commit for certain.
const crashAtEnv = "EVPND_STORE_CRASH_AT"

var crashSeed = flag.Uint64("crash-seed", 0, "seed of TestCrashSafety's kill points (0: pick one and log it)")

// crashState is the n-th state the crash child commits. It is a pure
// function of n, so the parent can tell exactly which state survived:
// n tenants t0001..tNNNN, and one policy with n rules, so the file grows
// with n and a torn write could not pass for a smaller state.
func crashState(n int) State {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st := State{Policies: []*evpndv1.Policy{{Tenant: "t0001", Meta: meta(int64(n), t0)}}}
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("t%04d", i)
		st.Tenants = append(st.Tenants, &evpndv1.Tenant{
			Name:              name,
			L3Vni:             uint32(50000 + i),
			AnycastGatewayMac: "00:00:5e:00:01:01",
			Namespace:         "evpn-" + name,
			Meta:              meta(int64(i), t0.Add(time.Duration(i)*time.Minute)),
		})
		st.Policies[0].Rules = append(st.Policies[0].Rules, &evpndv1.Rule{
			Name: fmt.Sprintf("r%d", i), Priority: int32(i), Direction: "ingress",
			Protocol: "tcp", Ports: []string{strconv.Itoa(1000 + i)}, Action: "accept",
		})
	}
	return st
}

// TestCrashHelper is the child of TestCrashSafety: it commits state n+1,
// n+2, ... forever, printing "ack N" after each Commit returns, as the
// daemon acknowledges an API call. It is killed from outside.
func TestCrashHelper(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("helper process of TestCrashSafety, runs only when re-executed by it")
	}
	s, err := Open(dir)
	if err != nil {
		fmt.Printf("error %v\n", err)
		os.Exit(3)
	}
	if at := os.Getenv(crashAtEnv); at != "" {
		step, count, _ := strings.Cut(at, ":")
		want, err := strconv.Atoi(count)
		if err != nil {
			fmt.Printf("error %s=%q: %v\n", crashAtEnv, at, err)
			os.Exit(3)
		}
		commits := 0
		s.afterStep = func(name string) {
			if name == stepCreated {
				commits++
			}
			if name == step && commits == want {
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {} // the signal is on its way; commit nothing more
			}
		}
	}
	n := len(s.State().Tenants)
	for {
		n++
		if err := s.Commit(crashState(n)); err != nil {
			fmt.Printf("error %v\n", err)
			os.Exit(3)
		}
		// os.Stdout is unbuffered: the ack is in the pipe when Printf
		// returns, just as a gRPC reply would be on the wire.
		fmt.Printf("ack %d\n", n)
	}
}

// TestCrashSafety kills a committing process with SIGKILL at random
// points and requires that the state dir always opens to exactly the last
// acknowledged state or the one being committed after it.
func TestCrashSafety(t *testing.T) {
	if os.Getenv(crashDirEnv) != "" {
		t.Skip("running as crash helper")
	}
	seed := *crashSeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (rerun with -crash-seed=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed))

	const iterations = 24
	dir := filepath.Join(t.TempDir(), "state")
	committed := 0 // state the dir held when the last child was killed
	var ahead, leftovers int
	for i := range iterations {
		killAt := 1 + rng.IntN(40) // acks to read before the kill
		// Half the time kill the moment the ack arrives (the child is
		// entering the next Commit); otherwise yield a log-uniform random
		// number of scheduler turns first, to land anywhere inside that
		// Commit, including after its fsync and rename.
		yields := 0
		if rng.IntN(2) == 1 {
			yields = rng.IntN(1 << rng.IntN(19))
		}
		acked, err := runAndKill(dir, committed, killAt, yields, "")
		if err != nil {
			t.Fatalf("iteration %d: %v", i, err)
		}
		if temps, _ := filepath.Glob(filepath.Join(dir, tempPrefix+"*")); len(temps) > 0 {
			leftovers++
		}
		s, err := Open(dir)
		if err != nil {
			t.Fatalf("iteration %d: open after kill at ack %d: %v", i, acked, err)
		}
		st := s.State()
		k := len(st.Tenants)
		if k != acked && k != acked+1 {
			t.Fatalf("iteration %d: state after kill holds %d tenants, want %d (last ack) or %d (in flight)", i, k, acked, acked+1)
		}
		if !st.Equal(crashState(k)) {
			t.Fatalf("iteration %d: state after kill is not state %d: %v", i, k, st)
		}
		if k == acked+1 {
			ahead++
		}
		committed = k
	}
	t.Logf("%d random kills: %d found the in-flight commit renamed, %d found a leftover temporary file; state %d", iterations, ahead, leftovers, committed)

	// Random kills mostly land while the child builds and encodes the
	// next state. Die once at every step of a Commit too, and require the
	// outcome that step allows.
	steps := []struct {
		name     string
		renamed  bool // state.json already holds the in-flight state
		leftover bool // a temporary file is on disk
	}{
		{name: stepCreated, leftover: true},
		{name: stepWritten, leftover: true},
		{name: stepSynced, leftover: true},
		{name: stepClosed, leftover: true},
		{name: stepRenamed, renamed: true},
		{name: stepDirSynced, renamed: true},
	}
	for _, step := range steps {
		nth := 1 + rng.IntN(5)
		acked, err := runAndKill(dir, committed, 0, 0, fmt.Sprintf("%s:%d", step.name, nth))
		if err != nil {
			t.Fatalf("kill after %s: %v", step.name, err)
		}
		if acked != committed+nth-1 {
			t.Fatalf("kill after %s of commit %d: child acked up to %d, want %d", step.name, nth, acked, committed+nth-1)
		}
		temps, _ := filepath.Glob(filepath.Join(dir, tempPrefix+"*"))
		if (len(temps) > 0) != step.leftover {
			t.Fatalf("kill after %s: temporary files %v, want leftover %v", step.name, temps, step.leftover)
		}
		s, err := Open(dir)
		if err != nil {
			t.Fatalf("kill after %s: open: %v", step.name, err)
		}
		want := acked
		if step.renamed {
			want++
		}
		if st := s.State(); !st.Equal(crashState(want)) {
			t.Fatalf("kill after %s: state holds %d tenants, want state %d", step.name, len(st.Tenants), want)
		}
		if temps, _ := filepath.Glob(filepath.Join(dir, tempPrefix+"*")); len(temps) > 0 {
			t.Fatalf("kill after %s: open left temporary files %v", step.name, temps)
		}
		committed = want
	}
}

// runAndKill starts a child committing from state committed, SIGKILLs it
// after killAt acks (and yields more scheduler turns), and returns the
// highest ack the child printed, including acks still in the pipe at the
// kill: each of them was acknowledged. With crashAt set the child kills
// itself instead (see crashAtEnv).
func runAndKill(dir string, committed, killAt, yields int, crashAt string) (acked int, err error) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashAtEnv+"="+crashAt)
	killed := crashAt != ""
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	acked = committed
	var other []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		n, ok := strings.CutPrefix(line, "ack ")
		if !ok {
			other = append(other, line)
			continue
		}
		v, err := strconv.Atoi(n)
		if err != nil || v != acked+1 {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return 0, fmt.Errorf("child printed %q after ack %d", line, acked)
		}
		acked = v
		if !killed && acked-committed == killAt {
			for range yields {
				runtime.Gosched()
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				return 0, fmt.Errorf("kill child: %w", err)
			}
			killed = true
		}
	}
	waitErr := cmd.Wait()
	if !killed {
		return 0, fmt.Errorf("child exited before the kill: %v\nstdout: %s\nstderr: %s", waitErr, strings.Join(other, "\n"), stderr.String())
	}
	var exit *exec.ExitError
	if !errors.As(waitErr, &exit) {
		return 0, fmt.Errorf("wait for killed child: %v", waitErr)
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		return 0, fmt.Errorf("child ended with %v, not by SIGKILL\nstdout: %s\nstderr: %s", waitErr, strings.Join(other, "\n"), stderr.String())
	}
	return acked, nil
}
