package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	evpndv1 "github.com/evpnd/evpnd/api/evpnd/v1"
)

func newDuplicatesCmd(g *globals) *cobra.Command {
	var tenant string
	cmd := &cobra.Command{
		Use:   "duplicates",
		Short: "Show the MACs frozen as duplicates",
		Long: `Show the MACs evpnd froze as duplicates: seen moving max-moves times within
the detection window (mac-duplicate-detection, RFC 7432 s15.1), which
means two workloads claim one MAC or there is a loop. A frozen MAC stays
where it was frozen (AT) and, if it shows up here, is not advertised,
until 'evpnctl clear duplicate-mac VNI MAC'.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return showDuplicates(cmd.Context(), g, tenant, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "only this tenant's segments")
	completeTenantFlag(g, cmd)
	return cmd
}

func showDuplicates(ctx context.Context, g *globals, tenant string, w io.Writer) error {
	req := &evpndv1.ListDuplicateMacsRequest{Tenant: tenant}
	dups, err := listAll(ctx, g, func(ctx context.Context, api evpndv1.EvpndServiceClient, token string) ([]*evpndv1.DuplicateMac, string, error) {
		req.PageToken = token
		resp, err := api.ListDuplicateMacs(ctx, req)
		return resp.GetMacs(), resp.GetNextPageToken(), err
	})
	if err != nil {
		return err
	}
	if ok, err := writeRows(w, g.output, "macs", dups); ok {
		return err
	}
	t := newTable(w, "TENANT", "VNI", "MAC", "MOVES", "AT", "SINCE")
	for _, d := range dups {
		at := d.GetAt()
		if d.GetLocal() {
			at += " (local)"
		}
		t.row(d.GetTenant(), u64(uint64(d.GetVni())), d.GetMac(), u64(uint64(d.GetMoves())), at,
			d.GetSince().AsTime().UTC().Format(time.RFC3339))
	}
	return t.flush()
}

func newClearCmd(g *globals) *cobra.Command {
	clear := &cobra.Command{
		Use:   "clear",
		Short: "Clear evpnd state that needs an operator",
		Args:  noArgs,
		RunE:  groupRunE,
	}
	clear.AddCommand(&cobra.Command{
		Use:   "duplicate-mac VNI MAC",
		Short: "Thaw a MAC frozen as a duplicate",
		Long: `Thaw a MAC frozen as a duplicate: it follows its EVPN routes again and, if
it is on a local port, is advertised again. Fix the cause first (two
workloads with one MAC, a loop), or it is detected again.`,
		Example: `  evpnctl show evpn duplicates
  evpnctl clear duplicate-mac 100 02:00:00:00:00:0a`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			vni, err := strconv.ParseUint(args[0], 10, 32)
			if err != nil {
				return usagef("VNI %q is not a number (1..16777215)", args[0])
			}
			err = call(cmd.Context(), g, func(ctx context.Context, api evpndv1.EvpndServiceClient) error {
				_, err := api.ClearDuplicateMac(ctx, &evpndv1.ClearDuplicateMacRequest{Vni: uint32(vni), Mac: args[1]})
				return err
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "mac %s in vni %d: cleared\n", args[1], vni)
			return nil
		},
	})
	return clear
}
