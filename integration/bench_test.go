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
// the DUT's bridge). Times are logged, never asserted.
func TestPrivilegedBenchSmoke(t *testing.T) {
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
	const routes = 500
	for _, dut := range convergence.DUTs {
		t.Run(string(dut), func(t *testing.T) {
			opts := opts
			opts.Logf = t.Logf
			res, err := convergence.Run(context.Background(), dut, routes, opts)
			if err != nil {
				t.Fatal(err)
			}
			if res.Routes != routes || res.PeakRSS == 0 {
				t.Errorf("result %+v: want %d routes and a peak RSS", res, routes)
			}
			t.Logf("%s: %d routes in the kernel FDB %.2f s after the session came up, peak RSS %.0f MB",
				dut, routes, res.Converge.Seconds(), float64(res.PeakRSS)/(1<<20))
		})
	}
}
