// Command lab brings containerlab topologies up as network namespaces on
// this machine (the lab runner of package integration/lab), tears them down
// and lists them. It is what `make lab-up`, `make lab-down` and `make demo`
// call.
//
//	lab up FILE [--keep] [--root DIR]   bring a topology up and leave it running
//	lab down LABID|all [--root DIR]     tear one lab or every lab down
//	lab status [--root DIR]             list labs, sweeping dead ones
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/evpnd/evpnd/integration/lab"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  lab up FILE [--keep] [--root DIR] [--evpnd PATH] [--evpnctl PATH]
  lab down LABID|all [--root DIR]
  lab status [--root DIR]`

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("missing command\n%s", usage)
	}
	fs := flag.NewFlagSet("lab "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	root := fs.String("root", lab.DefaultRoot, "directory holding lab run directories")
	keep := fs.Bool("keep", false, "keep the run directory (configs, logs) after down")
	evpnd := fs.String("evpnd", "", "evpnd binary (default bin/evpnd of this repository)")
	evpnctl := fs.String("evpnctl", "", "evpnctl binary (default bin/evpnctl of this repository)")
	cmd, rest := args[0], args[1:]
	// Flags may follow the positional argument: lab up FILE --keep.
	var pos []string
	for len(rest) > 0 {
		if err := fs.Parse(rest); err != nil {
			return err
		}
		rest = fs.Args()
		if len(rest) > 0 {
			pos = append(pos, rest[0])
			rest = rest[1:]
		}
	}
	if os.Geteuid() != 0 && cmd != "status" {
		return fmt.Errorf("%s needs root: namespaces, veths and FRR daemons", cmd)
	}
	switch cmd {
	case "up":
		if len(pos) != 1 {
			return fmt.Errorf("up takes one topology file\n%s", usage)
		}
		if removed, err := lab.Sweep(*root); err != nil {
			fmt.Fprintf(stderr, "sweeping dead labs: %v\n", err)
		} else if len(removed) > 0 {
			fmt.Fprintf(stdout, "swept dead labs: %s\n", strings.Join(removed, " "))
		}
		l, err := lab.Start(pos[0], lab.Options{
			Root: *root, Keep: *keep, Detached: true,
			EvpndBin: *evpnd, EvpnctlBin: *evpnctl,
			Logf: func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) },
		})
		if err != nil {
			return err
		}
		printLab(stdout, l.State(), *evpnctl)
		return nil
	case "down":
		if len(pos) != 1 {
			return fmt.Errorf("down takes a lab id or all\n%s", usage)
		}
		ids := pos
		if pos[0] == "all" {
			labs, err := lab.List(*root)
			if err != nil {
				return err
			}
			ids = nil
			for _, s := range labs {
				if !s.TornDown {
					ids = append(ids, s.ID)
				}
			}
		}
		for _, id := range ids {
			if err := lab.Down(*root, id); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "lab %s: down\n", id)
		}
		return nil
	case "status":
		if len(pos) != 0 {
			return fmt.Errorf("status takes no arguments\n%s", usage)
		}
		labs, err := lab.List(*root)
		if err != nil {
			return err
		}
		if len(labs) == 0 {
			fmt.Fprintln(stdout, "no labs")
			return nil
		}
		for _, s := range labs {
			printLab(stdout, s, *evpnctl)
			fmt.Fprintln(stdout)
		}
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", cmd, usage)
}

func printLab(w io.Writer, s lab.State, evpnctl string) {
	if evpnctl == "" {
		evpnctl = "bin/evpnctl"
	}
	status := "up"
	switch {
	case s.TornDown:
		status = "down, run dir kept (rm -r " + s.RunDir + ")"
	case !s.Alive():
		status = "dead (lab down " + s.ID + " cleans up)"
	}
	fmt.Fprintf(w, "lab %s  topology %s (%s)  %s\nrun dir %s\n\n", s.ID, s.Name, s.Topology, status, s.RunDir)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tNAMESPACE\tLOOK AROUND")
	for _, n := range s.Nodes {
		look := "ip netns exec " + n.Namespace + " ip -br addr"
		switch n.Role {
		case lab.RoleFRR:
			look = "vtysh --vty_socket " + n.VtySocket + " -c 'show bgp l2vpn evpn'"
		case lab.RoleEvpnd:
			look = evpnctl + " --socket " + n.APISocket + " show peers   (tenant namespaces " + n.NetnsPrefix + "<tenant>)"
		case lab.RoleBridge:
			look = "ip netns exec " + n.Namespace + " bridge link"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.Name, n.Role, n.Namespace, look)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nshell in a node: ip netns exec %s-<node> bash\nlogs: %s/<node>/*.log\ntear down: go run ./integration/cmd/lab down %s\n", s.ID, s.RunDir, s.ID)
}
