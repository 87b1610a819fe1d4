package integration

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/evpnd/evpnd/integration/cmd/bench/convergence"
	"github.com/evpnd/evpnd/integration/lab"
)

// injectorEnv marks the test binary re-executed as the benchmark's
// injector (the os/exec helper-process pattern): `make bench` runs its own
// binary with "inject"; a test can only run itself.
const injectorEnv = "EVPND_BENCH_INJECTOR"

// TestBenchInjectorProcess is not a test: it is the injector process of
// TestPrivilegedBenchSmoke, running in the injector's lab namespace.
func TestBenchInjectorProcess(t *testing.T) {
	if os.Getenv(injectorEnv) != "1" {
		t.Skip("the benchmark's injector process; runs only when re-executed by TestPrivilegedBenchSmoke")
	}
	if err := convergence.RunInjector(os.Stdin, os.Stdout, os.Stderr); err != nil {
		t.Fatal(err)
	}
}

// TestPrivilegedBenchSmoke runs `make bench`'s path at 500 routes against
// both devices under test and checks that every route reached both kernels
// (convergence.Run fails unless all of them are extern_learn FDB entries on
// the DUT's bridge) and left them again once the injector died (B2), and
// runs B1's floor, GoBGP alone. Times are logged, never asserted.
func TestPrivilegedBenchSmoke(t *testing.T) {
	opts := benchOptions(t)
	const routes = 500
	for _, dut := range convergence.DUTs {
		t.Run(string(dut), func(t *testing.T) {
			opts := opts
			opts.Logf = t.Logf
			res, err := convergence.Run(context.Background(), dut, routes, opts)
			if err != nil {
				t.Fatal(err)
			}
			if res.Routes != routes || res.PeakRSS == 0 || res.WithdrawLeft != 0 {
				t.Errorf("result %+v: want %d routes, a peak RSS and none left after the withdrawal", res, routes)
			}
			t.Logf("%s: %d routes in the kernel FDB %.2f s after the session came up, peak RSS %.0f MB, gone %.2f s after the peer died",
				dut, routes, res.Converge.Seconds(), float64(res.PeakRSS)/(1<<20), res.Withdraw.Seconds())
		})
	}
	// The floor: RunFloor fails unless GoBGP's watch delivered every path
	// and then every withdrawal.
	t.Run(string(convergence.GoBGP), func(t *testing.T) {
		opts := opts
		opts.Logf = t.Logf
		res, err := convergence.RunFloor(context.Background(), routes, opts)
		if err != nil {
			t.Fatal(err)
		}
		if res.Converge <= 0 || res.PeakRSS == 0 || res.Withdraw <= 0 {
			t.Errorf("floor result %+v: want a time, a peak RSS and a withdrawal time", res)
		}
		t.Logf("GoBGP alone: %d routes %.2f s after the session came up, peak RSS %.0f MB, withdrawn in %.2f s",
			routes, res.Converge.Seconds(), float64(res.PeakRSS)/(1<<20), res.Withdraw.Seconds())
	})
}

// benchOptions are the options of the benchmark smoke tests: the test
// binary is the injector and listener process.
func benchOptions(t *testing.T) convergence.Options {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the benchmark smoke test needs root (network namespaces, veth pairs, FRR daemons); run with sudo")
	}
	if !lab.FRRInstalled() {
		t.Skip("the benchmark smoke test needs FRR: /usr/lib/frr/bgpd is missing (apt-get install frr)")
	}
	opts := convergence.Options{
		Injector:    []string{os.Args[0], "-test.run=^TestBenchInjectorProcess$"},
		InjectorEnv: []string{injectorEnv + "=1"},
		Timeout:     2 * time.Minute,
		Logf:        t.Logf,
	}
	if err := convergence.Check(convergence.Evpnd, opts); err != nil {
		t.Skipf("the benchmark smoke test needs bin/evpnd: %v", err)
	}
	return opts
}

// TestPrivilegedBenchFabricSmoke runs B3 (local learn) and B4 (MAC move)
// at a tiny size against both devices under test. RunFabric fails unless
// every new MAC reached the listener behind the route reflector and every
// moved MAC ended up pointing at its new host in the third host's FDB.
func TestPrivilegedBenchFabricSmoke(t *testing.T) {
	opts := benchOptions(t)
	fo := convergence.FabricOptions{MACs: 20, Moves: 3}
	for _, dut := range convergence.DUTs {
		t.Run(string(dut), func(t *testing.T) {
			opts := opts
			opts.Logf = t.Logf
			res, err := convergence.RunFabric(context.Background(), dut, fo, opts)
			if err != nil {
				t.Fatal(err)
			}
			if res.Learn.Samples != fo.MACs || res.Move.Samples != fo.Moves {
				t.Errorf("result %+v: want %d learn and %d move samples", res, fo.MACs, fo.Moves)
			}
			t.Logf("%s: learn p50 %s p99 %s; move p50 %s p99 %s", dut, res.Learn.P50, res.Learn.P99, res.Move.P50, res.Move.P99)
		})
	}
}

// TestPrivilegedBenchRestartSmoke runs B6 at 200 routes against both
// devices under test: every restart must end with the DUT reconciled
// (all routes back in the FDB) while the flow ran; losses are logged.
func TestPrivilegedBenchRestartSmoke(t *testing.T) {
	opts := benchOptions(t)
	const routes = 200
	for _, dut := range convergence.DUTs {
		t.Run(string(dut), func(t *testing.T) {
			opts := opts
			opts.Logf = t.Logf
			res, err := convergence.RunRestart(context.Background(), dut, routes, opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Restarts) != len(convergence.RestartModes) {
				t.Fatalf("result %+v: want one restart per mode", res)
			}
			for _, r := range res.Restarts {
				if r.Sent == 0 {
					t.Errorf("%s: the flow sent nothing across the restart", r.Mode)
				}
				t.Logf("%s %s: reconciled %s after start, %d of %d datagrams lost", dut, r.Mode, r.Reconcile, r.Lost, r.Sent)
			}
		})
	}
}

// TestPrivilegedBenchScaleOutSmoke runs B7 with four hosts and four
// tenants against both devices under test. RunScaleOut fails unless every
// host ends up with every remote MAC of its tenants pointing at the right
// VTEP; times and memory are logged.
func TestPrivilegedBenchScaleOutSmoke(t *testing.T) {
	opts := benchOptions(t)
	so := convergence.ScaleOutOptions{Hosts: 4, Tenants: 4, MACs: 3}
	for _, dut := range convergence.DUTs {
		t.Run(string(dut), func(t *testing.T) {
			opts := opts
			opts.Logf = t.Logf
			res, err := convergence.RunScaleOut(context.Background(), dut, so, opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.RSS) != so.Hosts || res.RSSMax() == 0 || res.RemoteMin != 18 || res.RemoteMax != 18 {
				t.Errorf("result %+v: want an RSS for each of %d hosts and 18 remote macs on each", res, so.Hosts)
			}
			t.Logf("%s: every host has every remote mac %s after the first frame; rss per host median %.0f MB",
				dut, res.Converge, float64(res.RSSMedian())/(1<<20))
		})
	}
}
