package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	evpndv1 "github.com/evpnd/evpnd/api/evpnd/v1"
)

// now stamps watch events; tests fix it.
var now = time.Now

const eventTimeFormat = "2006-01-02T15:04:05.000Z07:00"

func newWatchCmd(g *globals) *cobra.Command {
	return newGroup("watch", "Stream changes of routes, MACs and peers",
		`Print changes as they happen, until Ctrl-C: one line per event with the
time, ADDED or REMOVED and the object's key columns, or with -o json one
JSON object per line (JSON Lines), the API's Watch*Response, for scripts.
A watch shows changes from the moment it starts: list first ('evpnctl show
...') to see the whole table.`,
		newWatchRoutesCmd(g), newWatchMacsCmd(g), newWatchPeersCmd(g))
}

// streamColumns pads the columns of event lines, which cannot be aligned
// as a table because they are printed as they come.
type streamColumns []int

func (c streamColumns) line(w io.Writer, cells ...string) error {
	var b strings.Builder
	for i, cell := range cells {
		if cell == "" {
			cell = "-"
		}
		if i == len(cells)-1 || i >= len(c) {
			b.WriteString(cell)
		} else {
			fmt.Fprintf(&b, "%-*s  ", c[i], cell)
		}
		if i == len(cells)-1 {
			b.WriteByte('\n')
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func eventName(k evpndv1.EventKind) string {
	return strings.ToUpper(enumName(k.String(), "EVENT_KIND_"))
}

// watch runs a server stream until the user stops it (nil), the daemon
// ends it or goes away (an error saying so).
func watch[Resp any](ctx context.Context, g *globals, open func(ctx context.Context, api evpndv1.EvpndServiceClient) (grpc.ServerStreamingClient[Resp], error), event func(*Resp) error) error {
	if g.output != "table" && g.output != "json" {
		return usagef("invalid --output %q: watch prints table or json (JSON Lines)", g.output)
	}
	c, err := dial(g)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := open(ctx, c.api)
	if err == nil {
		for {
			var resp *Resp
			if resp, err = stream.Recv(); err != nil {
				break
			}
			if err := event(resp); err != nil {
				return err
			}
		}
	}
	switch {
	case ctx.Err() != nil && status.Code(err) == codes.Canceled:
		return nil // stopped by the user
	case errors.Is(err, io.EOF):
		return fmt.Errorf("evpnd at %s ended the watch (is it shutting down or restarting?)", c.target)
	case status.Code(err) == codes.Unavailable && c.dialError() == nil:
		return fmt.Errorf("lost evpnd at %s during the watch: %s (did it stop?)", c.target, status.Convert(err).Message())
	}
	return c.explain(err)
}

func (c *client) dialError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dialErr
}

// writeEvent prints one event: a JSON line of the whole response, or the
// table line.
func writeEvent(w io.Writer, g *globals, resp proto.Message, line func() error) error {
	if g.output == "json" {
		return writeJSONLine(w, resp)
	}
	return line()
}

func stamp() string { return now().Format(eventTimeFormat) }

func newWatchRoutesCmd(g *globals) *cobra.Command {
	var f routesFlags
	cmd := &cobra.Command{
		Use:   "routes",
		Short: "Stream changes of the EVPN routes",
		Long: `Stream changes of the EVPN RIB: routes received and withdrawn by peers,
advertised and withdrawn by this host. The filters are those of 'evpnctl
show evpn routes'.`,
		Example: `  evpnctl watch routes --type macip --vni 100
  evpnctl watch routes -o json | jq -c 'select(.kind == "EVENT_KIND_REMOVED")'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &evpndv1.WatchRoutesRequest{Rd: f.rd, Mac: f.mac, Prefix: f.prefix}
			var err error
			if req.Type, req.Vni, err = f.filters(cmd.Flags().Changed("vni")); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			cols := streamColumns{len(eventTimeFormat), 7, 9, 8, 15, 15}
			if g.output == "table" {
				if err := cols.line(w, "TIME", "EVENT", "TYPE", "VNI", "NEXT HOP", "FROM", "ROUTE"); err != nil {
					return err
				}
			}
			return watch(cmd.Context(), g, func(ctx context.Context, api evpndv1.EvpndServiceClient) (grpc.ServerStreamingClient[evpndv1.WatchRoutesResponse], error) {
				return api.WatchRoutes(ctx, req)
			}, func(resp *evpndv1.WatchRoutesResponse) error {
				return writeEvent(w, g, resp, func() error {
					r := resp.GetRoute()
					vnis := make([]string, len(r.GetLabels()))
					for i, l := range r.GetLabels() {
						vnis[i] = u64(uint64(l))
					}
					from := r.GetPeer()
					if r.GetLocal() {
						from = "local"
					}
					return cols.line(w, stamp(), eventName(resp.GetKind()), typeName(r.GetType()), strings.Join(vnis, ","),
						r.GetNextHop(), from, r.GetNlri())
				})
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.typ, "type", "", "only routes of this type: macip (type 2), multicast (type 3) or prefix (type 5)")
	fl.Uint32Var(&f.vni, "vni", 0, "only routes carrying this VNI (1..16777215) as a label")
	fl.StringVar(&f.rd, "rd", "", "only routes with this route distinguisher, e.g. 10.0.0.1:3")
	fl.StringVar(&f.mac, "mac", "", "only MAC/IP routes for this MAC address")
	fl.StringVar(&f.prefix, "prefix", "", "only routes within this prefix: type-5 prefixes and type-2 IPs it contains")
	return cmd
}

func newWatchMacsCmd(g *globals) *cobra.Command {
	var f macsFlags
	cmd := &cobra.Command{
		Use:   "macs",
		Short: "Stream changes of the MAC tables",
		Long:  "Stream changes of the tenant segments' MAC tables: local MACs learned and gone, remote MACs installed and removed.",
		Example: `  evpnctl watch macs --tenant blue --origin local
  evpnctl watch macs -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &evpndv1.WatchMacsRequest{Tenant: f.tenant}
			var err error
			if req.Origin, err = parseOrigin(f.origin); err != nil {
				return err
			}
			if cmd.Flags().Changed("vni") {
				req.Vni = &f.vni
			}
			w := cmd.OutOrStdout()
			cols := streamColumns{len(eventTimeFormat), 7, 10, 8, 17, 12, 15}
			if g.output == "table" {
				if err := cols.line(w, "TIME", "EVENT", "TENANT", "VNI", "MAC", "PORT", "VTEP", "TYPE"); err != nil {
					return err
				}
			}
			return watch(cmd.Context(), g, func(ctx context.Context, api evpndv1.EvpndServiceClient) (grpc.ServerStreamingClient[evpndv1.WatchMacsResponse], error) {
				return api.WatchMacs(ctx, req)
			}, func(resp *evpndv1.WatchMacsResponse) error {
				return writeEvent(w, g, resp, func() error {
					m := resp.GetMac()
					typ := "local"
					if m.GetRemote() {
						typ = "remote"
					}
					return cols.line(w, stamp(), eventName(resp.GetKind()), m.GetTenant(), u64(uint64(m.GetVni())),
						m.GetMac(), m.GetPort(), m.GetVtep(), typ)
				})
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.tenant, "tenant", "", "only this tenant's segments")
	fl.Uint32Var(&f.vni, "vni", 0, "only the segment with this VNI (1..16777215)")
	fl.StringVar(&f.origin, "origin", "", "only local or only remote MACs: local or remote")
	completeTenantFlag(g, cmd)
	return cmd
}

func newWatchPeersCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "peers",
		Short: "Stream BGP session state changes",
		Long:  "Stream BGP session state changes: one line per change with the peer in its new state.",
		Example: `  evpnctl watch peers
  evpnctl watch peers -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := cmd.OutOrStdout()
			cols := streamColumns{len(eventTimeFormat), 15, 10, 11}
			if g.output == "table" {
				if err := cols.line(w, "TIME", "NEIGHBOR", "AS", "STATE", "DESCRIPTION"); err != nil {
					return err
				}
			}
			return watch(cmd.Context(), g, func(ctx context.Context, api evpndv1.EvpndServiceClient) (grpc.ServerStreamingClient[evpndv1.WatchPeersResponse], error) {
				return api.WatchPeers(ctx, &evpndv1.WatchPeersRequest{})
			}, func(resp *evpndv1.WatchPeersResponse) error {
				return writeEvent(w, g, resp, func() error {
					p := resp.GetPeer()
					return cols.line(w, stamp(), p.GetAddress(), u64(uint64(p.GetAsn())),
						enumName(p.GetState().String(), "PEER_STATE_"), p.GetDescription())
				})
			})
		},
	}
}
