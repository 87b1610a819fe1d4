// Command bench is evpnd's day-one benchmark (`make bench`): for each route
// count it injects that many remote type-2 routes from a BGP peer into a
// fresh evpnd host and then into a fresh FRR host (zebra + bgpd), measures
// the seconds until every MAC is in the host's kernel FDB and the peak RSS,
// and prints both with the evpnd/FRR ratios. Then the policy suite
// (policybench) measures compile and apply of large and many tenant
// policies, a one-rule change, and TCP throughput with and without a large
// policy.
//
//	bench [-suites ingest,policy] [-routes 10000,100000] [-policy-rules 1000,10000]
//	      [-policy-tenants 1000] [-json FILE] [-keep] [-timeout 5m] [-v]
//
// It needs root; the ingest suite needs FRR, the policy suite iperf3.
// `bench inject` is the injector process the benchmark runs inside a lab
// namespace; it is not meant to be run by hand.
package main

import (
	"context"
	"encoding/json"
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

// Row is one route count: both DUTs and the ratios.
type Row struct {
	Routes    int                `json:"routes"`
	Evpnd     convergence.Result `json:"evpnd"`
	FRR       convergence.Result `json:"frr"`
	TimeRatio float64            `json:"time_ratio"` // evpnd seconds / FRR seconds
	RSSRatio  float64            `json:"rss_ratio"`  // evpnd peak RSS / FRR peak RSS
}

// Report is what -json writes.
type Report struct {
	Machine convergence.Machine `json:"machine"`
	Rows    []Row               `json:"rows"`
	Policy  *policybench.Result `json:"policy,omitempty"`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	routesFlag := fs.String("routes", "10000,100000", "comma-separated route counts, one evpnd and one FRR run each")
	jsonPath := fs.String("json", "", "also write the figures as JSON to this file")
	keep := fs.Bool("keep", false, "keep a failed run's lab up for debugging")
	timeout := fs.Duration("timeout", 5*time.Minute, "limit for one run (bring-up, injection, convergence, teardown)")
	verbose := fs.Bool("v", false, "log progress to stderr")
	suitesFlag := fs.String("suites", "ingest,policy", "comma-separated suites to run: ingest (route ingest vs FRR), policy (policy engine)")
	policyRules := fs.String("policy-rules", "1000,10000", "comma-separated policy sizes of the policy suite (one tenant each)")
	policyTenants := fs.Int("policy-tenants", 1000, "tenants of the policy suite's many-tenant run")
	if err := fs.Parse(args); err != nil {
		return err
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
	rules, err := parseCounts("-policy-rules", *policyRules)
	if err != nil {
		return err
	}
	if *policyTenants < 1 {
		return fmt.Errorf("-policy-tenants: %d is not a positive number", *policyTenants)
	}
	popts := policybench.Options{Rules: rules, Tenants: *policyTenants}
	opts := convergence.Options{Keep: *keep, Timeout: *timeout}
	if *verbose {
		opts.Logf = func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }
		popts.Logf = opts.Logf
	}
	if suites["policy"] {
		if err := policybench.Check(popts); err != nil {
			return err
		}
	}
	if suites["ingest"] {
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
	} else {
		counts = nil
	}

	rep := Report{Machine: convergence.DescribeMachine(opts)}
	printMachine(stdout, rep.Machine, suites["ingest"])
	for _, n := range counts {
		row := Row{Routes: n}
		// One DUT at a time: with two cores, running both at once would
		// measure the contention.
		for _, d := range convergence.DUTs {
			fmt.Fprintf(stderr, "bench: %s, %d routes ...\n", d, n)
			res, err := convergence.Run(ctx, d, n, opts)
			if err != nil {
				return err
			}
			fmt.Fprintf(stderr, "bench: %s, %d routes: %.2f s, %.0f MB\n", d, n, res.Converge.Seconds(), mb(res.PeakRSS))
			if d == convergence.Evpnd {
				row.Evpnd = res
			} else {
				row.FRR = res
			}
		}
		row.TimeRatio = row.Evpnd.Converge.Seconds() / row.FRR.Converge.Seconds()
		row.RSSRatio = float64(row.Evpnd.PeakRSS) / float64(row.FRR.PeakRSS)
		rep.Rows = append(rep.Rows, row)
	}
	if suites["ingest"] {
		printTable(stdout, rep.Rows)
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
	if *jsonPath != "" {
		data, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return fmt.Errorf("encode json: %w", err)
		}
		if err := os.WriteFile(*jsonPath, append(data, '\n'), 0o644); err != nil {
			return fmt.Errorf("write json: %w", err)
		}
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
		case "ingest", "policy":
			suites[f] = true
		default:
			return nil, fmt.Errorf("-suites: item %d %q is not ingest or policy", i, f)
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
	fmt.Fprintf(w, "time: session established -> all MACs extern_learn in the kernel FDB (polled every 100 ms, or the last dump's duration if longer); RSS: peak (VmHWM)\n\n")
}

func printTable(w io.Writer, rows []Row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "routes\tevpnd s\tFRR s\ttime evpnd/FRR\tevpnd RSS MB\tFRR RSS MB\tRSS evpnd/FRR\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%.2f\t%.2f\t%.2f\t%.0f\t%.0f\t%.2f\t\n",
			r.Routes, r.Evpnd.Converge.Seconds(), r.FRR.Converge.Seconds(), r.TimeRatio,
			mb(r.Evpnd.PeakRSS), mb(r.FRR.PeakRSS), r.RSSRatio)
	}
	tw.Flush()
}
