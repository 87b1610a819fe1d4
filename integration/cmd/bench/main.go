// Command bench is evpnd's benchmark suite (`make bench`), every figure
// taken against FRR (zebra + bgpd) in the same run and reported as a
// ratio:
//
//   - ingest: B1, for each route count, that many remote type-2 routes from
//     a BGP peer into a fresh host until every MAC is in the kernel FDB,
//     and peak RSS; B2, the peer dies, until none is left.
//   - learn: B3, new local MACs until their type-2 is at the route
//     reflector; B4, a MAC moves between hosts until a third host
//     forwards to the new place.
//   - restart: B6, the DUT restarts holding routes with a flow through it.
//   - policy: B5 (policybench), compile and apply of large and many tenant
//     policies, a one-rule change, TCP throughput with a large policy.
//   - scaleout: B7, many hosts and tenants behind two FRR route
//     reflectors, until every host has every remote MAC, and RSS per host.
//
// With -report it writes the markdown report and its PNG plot.
//
//	bench [-suites ingest,learn,restart,policy,scaleout] [-routes 10000,100000]
//	      [-learn-macs 1000] [-moves 200] [-restart-routes 100000]
//	      [-policy-rules 1000,10000] [-policy-tenants 1000]
//	      [-b7-hosts 30] [-b7-frr-hosts 30] [-b7-tenants 100] [-b7-macs 10]
//	      [-report docs/benchmarks.md] [-json FILE] [-keep] [-timeout 5m] [-v]
//
// It needs root; the ingest suite needs FRR, the policy suite iperf3.
// `bench inject` is the injector process the benchmark runs inside a lab
// namespace; it is not meant to be run by hand.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/evpnd/evpnd/integration/cmd/bench/convergence"
	"github.com/evpnd/evpnd/integration/cmd/bench/policybench"
	"github.com/evpnd/evpnd/integration/cmd/bench/report"
	"github.com/evpnd/evpnd/integration/lab"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "inject" {
		if err := convergence.RunInjector(os.Stdin, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "bench inject:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	routesFlag := fs.String("routes", "10000,100000", "comma-separated route counts, one evpnd and one FRR run each")
	jsonPath := fs.String("json", "", "also write the figures as JSON to this file")
	keep := fs.Bool("keep", false, "keep a failed run's lab up for debugging")
	timeout := fs.Duration("timeout", 5*time.Minute, "limit for one run (bring-up, injection, convergence, teardown)")
	verbose := fs.Bool("v", false, "log progress to stderr")
	suitesFlag := fs.String("suites", "ingest,learn,restart,policy,scaleout", "comma-separated suites to run: ingest (B1 route ingest, B2 withdrawal), learn (B3 local learn, B4 MAC move), restart (B6), policy (B5 policy engine), scaleout (B7)")
	learnMACs := fs.Int("learn-macs", 1000, "B3: new MACs learned one at a time")
	moves := fs.Int("moves", 200, "B4: MAC moves")
	restartRoutes := fs.Int("restart-routes", 100000, "B6: remote routes the DUT holds while it restarts")
	reportPath := fs.String("report", "", "write the markdown report (and <name>-ingest.png next to it) to this file, e.g. docs/benchmarks.md")
	policyRules := fs.String("policy-rules", "1000,10000", "comma-separated policy sizes of the policy suite (one tenant each)")
	policyTenants := fs.Int("policy-tenants", 1000, "tenants of the policy suite's many-tenant run")
	b7Hosts := fs.Int("b7-hosts", 30, "B7: evpnd hosts")
	b7FRRHosts := fs.Int("b7-frr-hosts", 0, "B7: FRR hosts, for a machine that cannot hold -b7-hosts of them (default -b7-hosts)")
	b7Tenants := fs.Int("b7-tenants", 100, "B7: tenants (L2VNIs), each on three hosts")
	b7MACs := fs.Int("b7-macs", 10, "B7: workload MACs of each tenant on each of its hosts")
	fromJSON := fs.String("from-json", "", "run nothing: write -report from the figures a run saved with -json")
	alone := fs.String("dut", "", "ingest suite: run only this DUT (evpnd, frr or gobgp, the floor) and print its figures, for A/B runs of one binary against another; no -report or -json")
	evpndBin := fs.String("evpnd-bin", "", "the evpnd binary the labs run (default bin/evpnd)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *fromJSON != "" {
		return rerender(*fromJSON, *reportPath)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	counts, err := parseCounts("-routes", *routesFlag)
	if err != nil {
		return err
	}
	suites, err := parseSuites(*suitesFlag)
	if err != nil {
		return err
	}
	if *alone != "" {
		if d := convergence.DUT(*alone); d != convergence.Evpnd && d != convergence.FRR && d != convergence.GoBGP {
			return fmt.Errorf("-dut %q: want evpnd, frr or gobgp", *alone)
		}
		if *reportPath != "" || *jsonPath != "" || len(suites) != 1 || !suites["ingest"] {
			return fmt.Errorf("-dut %s: runs the ingest suite alone (-suites ingest) and compares nothing, so no -report or -json", *alone)
		}
	}
	if *evpndBin != "" {
		if _, err := os.Stat(*evpndBin); err != nil {
			return fmt.Errorf("-evpnd-bin: %w", err)
		}
	}
	rules, err := parseCounts("-policy-rules", *policyRules)
	if err != nil {
		return err
	}
	if *learnMACs < 1 || *moves < 1 || *restartRoutes < 1 {
		return fmt.Errorf("-learn-macs %d, -moves %d, -restart-routes %d: each must be positive", *learnMACs, *moves, *restartRoutes)
	}
	if *b7FRRHosts == 0 {
		*b7FRRHosts = *b7Hosts
	}
	b7 := map[convergence.DUT]convergence.ScaleOutOptions{
		convergence.Evpnd: {Hosts: *b7Hosts, Tenants: *b7Tenants, MACs: *b7MACs},
		convergence.FRR:   {Hosts: *b7FRRHosts, Tenants: *b7Tenants, MACs: *b7MACs},
	}
	for _, so := range b7 {
		if so.Hosts < 2 || so.Hosts > convergence.MaxScaleOutHosts || so.Tenants < 1 || so.Tenants > convergence.MaxScaleOutTenants || so.MACs < 1 || so.MACs > convergence.MaxScaleOutMACs {
			return fmt.Errorf("-b7-hosts %d, -b7-frr-hosts %d, -b7-tenants %d, -b7-macs %d: want 2..%d hosts, 1..%d tenants, 1..%d macs",
				*b7Hosts, *b7FRRHosts, *b7Tenants, *b7MACs, convergence.MaxScaleOutHosts, convergence.MaxScaleOutTenants, convergence.MaxScaleOutMACs)
		}
	}
	if *policyTenants < 1 {
		return fmt.Errorf("-policy-tenants: %d is not a positive number", *policyTenants)
	}
	popts := policybench.Options{Rules: rules, Tenants: *policyTenants}
	opts := convergence.Options{Keep: *keep, Timeout: *timeout, EvpndBin: *evpndBin}
	if *verbose {
		opts.Logf = func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }
		popts.Logf = opts.Logf
	}
	if suites["policy"] {
		if err := policybench.Check(popts); err != nil {
			return err
		}
	}
	if suites["ingest"] || suites["learn"] || suites["restart"] || suites["scaleout"] {
		for _, d := range convergence.DUTs {
			if err := convergence.Check(d, opts); err != nil {
				return err
			}
		}
		// Labs of benchmarks or tests killed before their teardown ran.
		if removed, err := lab.Sweep(""); err != nil {
			fmt.Fprintf(stderr, "sweeping dead labs: %v\n", err)
		} else if len(removed) > 0 {
			fmt.Fprintf(stderr, "swept dead labs: %s\n", strings.Join(removed, " "))
		}
	}
	if !suites["ingest"] {
		counts = nil
	}

	rep := report.Data{Machine: convergence.DescribeMachine(opts), Command: commandLine(args), Started: time.Now()}
	// What was measured is written even when a later benchmark fails:
	// the figures of a long run are not thrown away.
	defer func() {
		if err != nil {
			rep.Failed = err.Error()
		}
		if werr := writeOutputs(rep, *reportPath, *jsonPath, stderr); werr != nil {
			err = errors.Join(err, werr)
		}
	}()
	printMachine(stdout, rep.Machine, suites["ingest"])
	if *alone != "" {
		return runAlone(ctx, convergence.DUT(*alone), counts, opts, stdout)
	}
	for _, n := range counts {
		var ev, fr convergence.Result
		// One DUT at a time: with two cores, running both at once would
		// measure the contention.
		for _, d := range convergence.DUTs {
			fmt.Fprintf(stderr, "bench: ingest, %s, %d routes ...\n", d, n)
			res, err := convergence.Run(ctx, d, n, opts)
			if err != nil {
				return err
			}
			fmt.Fprintf(stderr, "bench: %s, %d routes: %.2f s, %.0f MB; withdrawal %.2f s, %d left\n", d, n, res.Converge.Seconds(), mb(res.PeakRSS), res.Withdraw.Seconds(), res.WithdrawLeft)
			if d == convergence.Evpnd {
				ev = res
			} else {
				fr = res
			}
		}
		row := report.NewRow(n, ev, fr)
		// The floor: GoBGP alone, receiving what evpnd receives.
		fmt.Fprintf(stderr, "bench: ingest, %s alone, %d routes ...\n", convergence.GoBGP, n)
		fl, err := convergence.RunFloor(ctx, n, opts)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "bench: %s alone, %d routes: %.2f s, %.0f MB; withdrawal %.2f s\n", convergence.GoBGP, n, fl.Converge.Seconds(), mb(fl.PeakRSS), fl.Withdraw.Seconds())
		row.SetFloor(fl)
		rep.Rows = append(rep.Rows, row)
	}
	if suites["ingest"] {
		printTable(stdout, rep.Rows)
	}
	if suites["learn"] {
		fo := convergence.FabricOptions{MACs: *learnMACs, Moves: *moves}
		for _, d := range convergence.DUTs {
			fmt.Fprintf(stderr, "bench: learn and move, %s, %d macs, %d moves ...\n", d, fo.MACs, fo.Moves)
			res, err := convergence.RunFabric(ctx, d, fo, opts)
			if err != nil {
				return err
			}
			rep.Fabric = append(rep.Fabric, res)
		}
		printFabric(stdout, rep.Fabric)
	}
	if suites["restart"] {
		for _, d := range convergence.DUTs {
			fmt.Fprintf(stderr, "bench: restart, %s, %d routes ...\n", d, *restartRoutes)
			res, err := convergence.RunRestart(ctx, d, *restartRoutes, opts)
			if err != nil {
				return err
			}
			rep.Restart = append(rep.Restart, res)
		}
		printRestart(stdout, rep.Restart)
	}
	if suites["scaleout"] {
		for _, d := range convergence.DUTs {
			so := b7[d]
			fmt.Fprintf(stderr, "bench: scale-out, %s, %d hosts, %d tenants, %d macs per tenant and host ...\n", d, so.Hosts, so.Tenants, so.MACs)
			res, err := convergence.RunScaleOut(ctx, d, so, opts)
			if err != nil {
				return err
			}
			fmt.Fprintf(stderr, "bench: %s, %d hosts: every host has every remote mac after %.2f s; rss per host median %.0f MB, max %.0f MB\n",
				d, so.Hosts, res.Converge.Seconds(), mb(res.RSSMedian()), mb(res.RSSMax()))
			rep.ScaleOut = append(rep.ScaleOut, res)
		}
		printScaleOut(stdout, rep.ScaleOut)
	}
	if suites["policy"] {
		fmt.Fprintln(stderr, "bench: policy suite ...")
		res, err := policybench.Run(ctx, popts)
		if err != nil {
			return fmt.Errorf("policy: %w", err)
		}
		rep.Policy = &res
		if suites["ingest"] {
			fmt.Fprintln(stdout)
		}
		policybench.Print(stdout, res)
	}
	return nil
}

func parseCounts(flagName, s string) ([]int, error) {
	var counts []int
	for i, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s: item %d %q is not a positive number", flagName, i, f)
		}
		counts = append(counts, n)
	}
	if len(counts) == 0 {
		return nil, fmt.Errorf("%s: empty", flagName)
	}
	return counts, nil
}

func parseSuites(s string) (map[string]bool, error) {
	suites := map[string]bool{}
	for i, f := range strings.Split(s, ",") {
		switch f = strings.TrimSpace(f); f {
		case "ingest", "learn", "restart", "policy", "scaleout":
			suites[f] = true
		default:
			return nil, fmt.Errorf("-suites: item %d %q is not ingest, learn, restart, policy or scaleout", i, f)
		}
	}
	return suites, nil
}

func mb(b uint64) float64 { return float64(b) / (1 << 20) }

func printMachine(w io.Writer, m convergence.Machine, ingest bool) {
	fmt.Fprintf(w, "machine: %d cores (%s), %.1f GB memory, kernel %s\n", m.Cores, m.CPU, float64(m.MemoryBytes)/(1<<30), m.Kernel)
	fmt.Fprintf(w, "evpnd %s, FRR %s (bgpd + zebra)\n", m.EvpndVersion, m.FRRVersion)
	if !ingest {
		fmt.Fprintln(w)
		return
	}
	fmt.Fprintf(w, "time: session established -> all MACs extern_learn in the kernel FDB (from the kernel's neighbor notifications); RSS: peak (VmHWM)\n\n")
}

func printTable(w io.Writer, rows []report.Row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "routes\tevpnd s\tFRR s\ttime evpnd/FRR\tevpnd RSS MB\tFRR RSS MB\tRSS evpnd/FRR\twithdraw evpnd s\tFRR s\tevpnd/FRR\tGoBGP alone s\tRSS MB\twithdraw s\t")
	for _, r := range rows {
		floor := "-\t-\t-"
		if f := r.GoBGP; f != nil {
			floor = fmt.Sprintf("%.2f\t%.0f\t%.2f", f.Converge.Seconds(), mb(f.PeakRSS), f.Withdraw.Seconds())
		}
		fmt.Fprintf(tw, "%d\t%.2f\t%.2f\t%.2f\t%.0f\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t\n",
			r.Routes, r.Evpnd.Converge.Seconds(), r.FRR.Converge.Seconds(), r.TimeRatio,
			mb(r.Evpnd.PeakRSS), mb(r.FRR.PeakRSS), r.RSSRatio,
			r.Evpnd.Withdraw.Seconds(), r.FRR.Withdraw.Seconds(), r.WithdrawRatio, floor)
	}
	tw.Flush()
}

func printFabric(w io.Writer, rs []convergence.FabricResult) {
	fmt.Fprintln(w, "\nB3 learn: new MAC on host1 -> its type-2 at the route reflector's interface; B4 move: frame on host2 -> host3's FDB points at host2")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "dut\tlearn p50 ms\tlearn p99 ms\tmove p50 ms\tmove p99 ms\t")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.1f\t\n", r.DUT, msf(r.Learn.P50), msf(r.Learn.P99), msf(r.Move.P50), msf(r.Move.P99))
	}
	tw.Flush()
}

func printRestart(w io.Writer, rs []convergence.RestartResult) {
	fmt.Fprintln(w, "\nB6 restart: start -> reconciled; datagrams lost of a 1,000/s flow each way")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "dut\troutes\trestart\treconcile s\tlost\tsent\t")
	for _, r := range rs {
		for _, x := range r.Restarts {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%.2f\t%d\t%d\t\n", r.DUT, r.Routes, x.Mode, x.Reconcile.Seconds(), x.Lost, x.Sent)
		}
	}
	tw.Flush()
}

func printScaleOut(w io.Writer, rs []convergence.ScaleOutResult) {
	fmt.Fprintln(w, "\nB7 scale-out: every workload sends a gratuitous ARP -> every host has every remote MAC of its tenants; RSS per host (VmHWM)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "dut\thosts\ttenants\tremote macs per host\tall hosts s\thost p50 s\tRSS p50 MB\tRSS max MB\tsessions s\t")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%.2f\t%.2f\t%.0f\t%.0f\t%.1f\t\n", r.DUT, r.Hosts, r.Tenants, report.RemoteRange(r),
			r.Converge.Seconds(), r.HostConvergeMedian().Seconds(), mb(r.RSSMedian()), mb(r.RSSMax()), r.Sessions.Seconds())
	}
	tw.Flush()
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// commandLine is how to run this benchmark again with the same flags.
func commandLine(args []string) string {
	return strings.TrimSpace("go run ./integration/cmd/bench " + strings.Join(args, " "))
}

// rerender writes the report of a finished run again from its -json file,
// for a report whose text or plot changed since.
func rerender(jsonPath, reportPath string) error {
	if reportPath == "" {
		return errors.New("-from-json needs -report")
	}
	data, err := os.ReadFile(jsonPath)
	if err != nil {
		return fmt.Errorf("read figures: %w", err)
	}
	var rep report.Data
	if err := json.Unmarshal(data, &rep); err != nil {
		return fmt.Errorf("decode %s: %w", jsonPath, err)
	}
	return report.Write(reportPath, rep)
}

// writeOutputs writes the report and the JSON figures, when asked for.
func writeOutputs(rep report.Data, reportPath, jsonPath string, stderr io.Writer) error {
	if reportPath != "" {
		if err := report.Write(reportPath, rep); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "bench: wrote %s\n", reportPath)
	}
	if jsonPath != "" {
		data, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return fmt.Errorf("encode json: %w", err)
		}
		if err := os.WriteFile(jsonPath, append(data, '\n'), 0o644); err != nil {
			return fmt.Errorf("write json: %w", err)
		}
	}
	return nil
}

// runAlone runs B1 and B2 for one DUT and prints its figures.
func runAlone(ctx context.Context, d convergence.DUT, counts []int, opts convergence.Options, stdout io.Writer) error {
	for _, n := range counts {
		var (
			res convergence.Result
			err error
		)
		if d == convergence.GoBGP {
			res, err = convergence.RunFloor(ctx, n, opts)
		} else {
			res, err = convergence.Run(ctx, d, n, opts)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s, %d routes: ingest %.2f s, peak RSS %.0f MB; withdrawal %.2f s, %d left\n",
			d, n, res.Converge.Seconds(), mb(res.PeakRSS), res.Withdraw.Seconds(), res.WithdrawLeft)
	}
	return nil
}
