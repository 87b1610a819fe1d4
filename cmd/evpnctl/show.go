package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	evpndv1 "github.com/evpnd/evpnd/api/evpnd/v1"
)

func newShowCmd(g *globals) *cobra.Command {
	show := &cobra.Command{
		Use:   "show",
		Short: "Show evpnd's state",
		Args:  noArgs,
		RunE:  groupRunE,
	}
	evpnCmd := &cobra.Command{
		Use:   "evpn",
		Short: "Show EVPN routes and MAC tables",
		Args:  noArgs,
		RunE:  groupRunE,
	}
	evpnCmd.AddCommand(newRoutesCmd(g), newMacsCmd(g), newDuplicatesCmd(g))
	show.AddCommand(newPeersCmd(g), evpnCmd, newTenantRoutesCmd(g), newNeighborsCmd(g))
	return show
}

func newPeersCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "peers",
		Short: "Show BGP peers and their session state",
		Long: `Show the BGP neighbours of evpnd: address, AS, session state, time in that
state, and the EVPN paths received from, accepted from and advertised to
each.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return showPeers(cmd.Context(), g, cmd.OutOrStdout())
		},
	}
}

func showPeers(ctx context.Context, g *globals, w io.Writer) error {
	req := &evpndv1.ListPeersRequest{}
	peers, err := listAll(ctx, g, func(ctx context.Context, api evpndv1.EvpndServiceClient, token string) ([]*evpndv1.Peer, string, error) {
		req.PageToken = token
		resp, err := api.ListPeers(ctx, req)
		return resp.GetPeers(), resp.GetNextPageToken(), err
	})
	if err != nil {
		return err
	}
	if ok, err := writeRows(w, g.output, "peers", peers); ok {
		return err
	}
	return peersTable(w, peers)
}

// routeTypes maps --type values to the API's route types.
var routeTypes = map[string]evpndv1.RouteType{
	"macip":     evpndv1.RouteType_ROUTE_TYPE_MAC_IP,
	"multicast": evpndv1.RouteType_ROUTE_TYPE_INCLUSIVE_MULTICAST,
	"prefix":    evpndv1.RouteType_ROUTE_TYPE_IP_PREFIX,
}

type routesFlags struct {
	typ, rd, mac, prefix string
	vni                  uint32
}

func newRoutesCmd(g *globals) *cobra.Command {
	var f routesFlags
	cmd := &cobra.Command{
		Use:   "routes",
		Short: "Show EVPN routes",
		Long: `Show the EVPN routes evpnd knows: those it originates (FROM local) and the
best paths received from its peers. Filters combine: a route is shown when
it matches all of them.`,
		Example: `  evpnctl show evpn routes --type macip --vni 100
  evpnctl show evpn routes --mac 02:00:00:00:01:01
  evpnctl show evpn routes --prefix 10.1.0.0/16 -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return showRoutes(cmd.Context(), g, cmd.Flags().Changed("vni"), f, cmd.OutOrStdout())
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

func showRoutes(ctx context.Context, g *globals, vniSet bool, f routesFlags, w io.Writer) error {
	req := &evpndv1.ListRoutesRequest{Rd: f.rd, Mac: f.mac, Prefix: f.prefix}
	var err error
	if req.Type, req.Vni, err = f.filters(vniSet); err != nil {
		return err
	}
	routes, err := listAll(ctx, g, func(ctx context.Context, api evpndv1.EvpndServiceClient, token string) ([]*evpndv1.Route, string, error) {
		req.PageToken = token
		resp, err := api.ListRoutes(ctx, req)
		return resp.GetRoutes(), resp.GetNextPageToken(), err
	})
	if err != nil {
		return err
	}
	if ok, err := writeRows(w, g.output, "routes", routes); ok {
		return err
	}
	return routesTable(w, routes)
}

// macOrigins maps --origin values to the API's MAC origins.
var macOrigins = map[string]evpndv1.MacOrigin{
	"local":  evpndv1.MacOrigin_MAC_ORIGIN_LOCAL,
	"remote": evpndv1.MacOrigin_MAC_ORIGIN_REMOTE,
}

type macsFlags struct {
	tenant, origin string
	vni            uint32
}

func newMacsCmd(g *globals) *cobra.Command {
	var f macsFlags
	cmd := &cobra.Command{
		Use:   "macs",
		Short: "Show the MAC tables of the tenant segments",
		Long: `Show the MAC tables of the tenant segments: MACs learned on local ports and
MACs behind remote VTEPs installed from EVPN routes.`,
		Example: `  evpnctl show evpn macs --tenant blue --vni 100
  evpnctl show evpn macs --origin remote -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return showMacs(cmd.Context(), g, cmd.Flags().Changed("vni"), f, cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.tenant, "tenant", "", "only this tenant's segments")
	fl.Uint32Var(&f.vni, "vni", 0, "only the segment with this VNI (1..16777215)")
	fl.StringVar(&f.origin, "origin", "", "only local or only remote MACs: local or remote")
	return cmd
}

func showMacs(ctx context.Context, g *globals, vniSet bool, f macsFlags, w io.Writer) error {
	req := &evpndv1.ListMacsRequest{Tenant: f.tenant}
	var err error
	if req.Origin, err = parseOrigin(f.origin); err != nil {
		return err
	}
	if vniSet {
		req.Vni = &f.vni
	}
	macs, err := listAll(ctx, g, func(ctx context.Context, api evpndv1.EvpndServiceClient, token string) ([]*evpndv1.Mac, string, error) {
		req.PageToken = token
		resp, err := api.ListMacs(ctx, req)
		return resp.GetMacs(), resp.GetNextPageToken(), err
	})
	if err != nil {
		return err
	}
	if ok, err := writeRows(w, g.output, "macs", macs); ok {
		return err
	}
	return macsTable(w, macs)
}

// routeProtocols maps --protocol values to the API's route protocols.
var routeProtocols = map[string]evpndv1.RouteProtocol{
	"connected": evpndv1.RouteProtocol_ROUTE_PROTOCOL_CONNECTED,
	"static":    evpndv1.RouteProtocol_ROUTE_PROTOCOL_STATIC,
	"evpn":      evpndv1.RouteProtocol_ROUTE_PROTOCOL_EVPN,
	"other":     evpndv1.RouteProtocol_ROUTE_PROTOCOL_OTHER,
}

type tenantRoutesFlags struct {
	tenant, prefix, protocol string
}

func newTenantRoutesCmd(g *globals) *cobra.Command {
	var f tenantRoutesFlags
	cmd := &cobra.Command{
		Use:   "routes",
		Short: "Show the routing tables of the tenants",
		Long: `Show the routing table of every tenant namespace: connected subnets (the
anycast gateways of its segments), static routes from evpnd's config, and
routes installed from EVPN type-2 and type-5 routes, whose next hops are
remote VTEPs reached over the tenant's L3VNI (several for an ECMP route,
which then shows no single DEVICE). PROTOCOL other marks any other route in
the table, such as one added by hand. Filters combine: a route is shown when
it matches all of them.`,
		Example: `  evpnctl show routes --tenant blue
  evpnctl show routes --protocol evpn
  evpnctl show routes --prefix 10.1.0.0/16 -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return showTenantRoutes(cmd.Context(), g, f, cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.tenant, "tenant", "", "only this tenant's routes")
	fl.StringVar(&f.prefix, "prefix", "", "only routes within this prefix, e.g. 10.1.0.0/16 (shows 10.1.2.0/24, not 0.0.0.0/0)")
	fl.StringVar(&f.protocol, "protocol", "", "only routes of this protocol: connected, static, evpn or other")
	return cmd
}

func showTenantRoutes(ctx context.Context, g *globals, f tenantRoutesFlags, w io.Writer) error {
	req := &evpndv1.ListTenantRoutesRequest{Tenant: f.tenant, Prefix: f.prefix}
	if f.protocol != "" {
		p, ok := routeProtocols[f.protocol]
		if !ok {
			return usagef("invalid --protocol %q: want connected, static, evpn or other", f.protocol)
		}
		req.Protocol = p
	}
	routes, err := listAll(ctx, g, func(ctx context.Context, api evpndv1.EvpndServiceClient, token string) ([]*evpndv1.TenantRoute, string, error) {
		req.PageToken = token
		resp, err := api.ListTenantRoutes(ctx, req)
		return resp.GetRoutes(), resp.GetNextPageToken(), err
	})
	if err != nil {
		return err
	}
	if ok, err := writeRows(w, g.output, "routes", routes); ok {
		return err
	}
	return tenantRoutesTable(w, routes)
}

func newNeighborsCmd(g *globals) *cobra.Command {
	var f macsFlags
	cmd := &cobra.Command{
		Use:   "neighbors",
		Short: "Show the neighbor (ARP/ND) tables of the tenant segments",
		Long: `Show the neighbor (ARP and ND) tables of the tenant segments: entries for
local workloads and the suppression entries installed from remote EVPN
type-2 routes (ORIGIN remote), with which the host answers ARP and ND for
remote workloads itself. STATE is the kernel's: reachable, stale, noarp...`,
		Example: `  evpnctl show neighbors --tenant blue --vni 100
  evpnctl show neighbors --origin remote -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return showNeighbors(cmd.Context(), g, cmd.Flags().Changed("vni"), f, cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.tenant, "tenant", "", "only this tenant's segments")
	fl.Uint32Var(&f.vni, "vni", 0, "only the segment with this VNI (1..16777215)")
	fl.StringVar(&f.origin, "origin", "", "only local or only remote entries: local or remote")
	completeTenantFlag(g, cmd)
	return cmd
}

func showNeighbors(ctx context.Context, g *globals, vniSet bool, f macsFlags, w io.Writer) error {
	req := &evpndv1.ListNeighborsRequest{Tenant: f.tenant}
	origin, err := parseOrigin(f.origin)
	if err != nil {
		return err
	}
	req.Origin = origin
	if vniSet {
		req.Vni = &f.vni
	}
	neighbors, err := listAll(ctx, g, func(ctx context.Context, api evpndv1.EvpndServiceClient, token string) ([]*evpndv1.Neighbor, string, error) {
		req.PageToken = token
		resp, err := api.ListNeighbors(ctx, req)
		return resp.GetNeighbors(), resp.GetNextPageToken(), err
	})
	if err != nil {
		return err
	}
	if ok, err := writeRows(w, g.output, "neighbors", neighbors); ok {
		return err
	}
	return neighborsTable(w, neighbors)
}

func parseOrigin(s string) (evpndv1.MacOrigin, error) {
	if s == "" {
		return evpndv1.MacOrigin_MAC_ORIGIN_UNSPECIFIED, nil
	}
	o, ok := macOrigins[s]
	if !ok {
		return 0, usagef("invalid --origin %q: want local or remote", s)
	}
	return o, nil
}

// filters turns the route filter flags into ListRoutes' filters.
func (f routesFlags) filters(vniSet bool) (typ evpndv1.RouteType, vni *uint32, err error) {
	if f.typ != "" {
		t, ok := routeTypes[f.typ]
		if !ok {
			return 0, nil, usagef("invalid --type %q: want macip, multicast or prefix", f.typ)
		}
		typ = t
	}
	if vniSet {
		v := f.vni
		vni = &v
	}
	return typ, vni, nil
}
