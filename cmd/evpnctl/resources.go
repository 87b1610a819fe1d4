package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	evpndv1 "github.com/evpnd/evpnd/api/evpnd/v1"
)

// The configuration resources share one shape: list, get, create (from
// flags or -f FILE), update (only the flags given, or -f FILE), delete.
// Update with flags reads the object, changes the fields whose flags were
// given and writes it back with the generation read, so a concurrent
// change is refused (ABORTED) rather than overwritten.

// fileFlag registers -f.
func fileFlag(fl *pflag.FlagSet, file *string, what string) {
	fl.StringVarP(file, "file", "f", "", what+" from this YAML or JSON file, - for stdin (keys as in evpnd's config file or the API's snake_case names)")
}

// argsOrFile wants the named arguments, or none with -f.
func argsOrFile(names ...string) cobra.PositionalArgs {
	exact := exactArgs(names...)
	return func(cmd *cobra.Command, args []string) error {
		if cmd.Flags().Changed("file") {
			if len(args) > 0 {
				return usagef("%s -f takes no arguments: the file names the object, got %q", cmd.CommandPath(), args)
			}
			return nil
		}
		return exact(cmd, args)
	}
}

// noFlagsWithFile refuses object flags next to -f, which holds the whole
// object.
func noFlagsWithFile(cmd *cobra.Command, names ...string) error {
	if !cmd.Flags().Changed("file") {
		return nil
	}
	for _, n := range names {
		if cmd.Flags().Changed(n) {
			return usagef("-f cannot be combined with --%s: the file holds the whole object", n)
		}
	}
	return nil
}

// changedFlags are the names of the given flags among names.
func changedFlags(cmd *cobra.Command, names []string) []string {
	var out []string
	for _, n := range names {
		if cmd.Flags().Changed(n) {
			out = append(out, n)
		}
	}
	return out
}

// listValues splits comma-separated list flags; an empty value clears the
// list.
func listValues(vals []string) []string {
	out := []string{}
	for _, v := range vals {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// reportCreated reports the outcome of an idempotent create.
func reportCreated(w io.Writer, g *globals, kind, name string, created bool, obj proto.Message) error {
	if ok, err := writeObject(w, g.output, obj); ok {
		return err
	}
	if created {
		_, err := fmt.Fprintf(w, "%s %s: created\n", kind, name)
		return err
	}
	_, err := fmt.Fprintf(w, "%s %s: unchanged (an equal %s exists)\n", kind, name, kind)
	return err
}

func reportUpdated(w io.Writer, g *globals, kind, name string, meta *evpndv1.Meta, obj proto.Message) error {
	if ok, err := writeObject(w, g.output, obj); ok {
		return err
	}
	_, err := fmt.Fprintf(w, "%s %s: updated (generation %d)\n", kind, name, meta.GetGeneration())
	return err
}

// deleteFlags are the options of every delete.
type deleteFlags struct {
	generation   int64
	allowMissing bool
}

func (d *deleteFlags) register(fl *pflag.FlagSet, kind string) {
	fl.Int64Var(&d.generation, "generation", 0, "delete only if the "+kind+"'s generation is this one (GEN in 'evpnctl "+kind+" list')")
	fl.BoolVar(&d.allowMissing, "allow-missing", false, "succeed when the "+kind+" does not exist")
}

func reportDeleted(w io.Writer, kind, name, verb string) error {
	_, err := fmt.Fprintf(w, "%s %s: %s\n", kind, name, verb)
	return err
}

// clearMeta clears what evpnd fills in, keeping the generation when it is
// the optimistic concurrency check of an update.
func clearMeta(m **evpndv1.Meta, keepGeneration bool) {
	if keepGeneration && (*m).GetGeneration() != 0 {
		*m = &evpndv1.Meta{Generation: (*m).GetGeneration()}
		return
	}
	*m = nil
}

// ---- tenants ----

type tenantFlags struct {
	file       string
	l3vni      uint32
	anycastMAC string
	advertise  bool
	routes     []string
	importRT   []string
	exportRT   []string
}

var tenantFlagNames = []string{"l3vni", "anycast-gateway-mac", "advertise-connected", "route", "import-rt", "export-rt"}

func (f *tenantFlags) register(fl *pflag.FlagSet) {
	fl.Uint32Var(&f.l3vni, "l3vni", 0, "L3 VNI (1..16777215) of a routed tenant; 0 for an L2-only tenant")
	fl.StringVar(&f.anycastMAC, "anycast-gateway-mac", "", "anycast gateway MAC of the tenant's segments; empty takes evpnd's anycast-gateway-mac")
	fl.BoolVar(&f.advertise, "advertise-connected", true, "advertise the gateway subnets as type-5 routes (routed tenants)")
	fl.StringArrayVar(&f.routes, "route", nil, "static route PREFIX,via=ADDR of a routed tenant, advertised as type 5 (repeat for more; \"\" clears)")
	fl.StringSliceVar(&f.importRT, "import-rt", nil, "route target to import on the L3 VNI, e.g. 65000:5000 (repeat or comma-separate; \"\" clears)")
	fl.StringSliceVar(&f.exportRT, "export-rt", nil, "route target to export on the L3 VNI (repeat or comma-separate; \"\" clears)")
}

// set changes the fields of t whose flags were given.
func (f *tenantFlags) set(cmd *cobra.Command, t *evpndv1.Tenant) error {
	fl := cmd.Flags()
	if fl.Changed("l3vni") {
		t.L3Vni = f.l3vni
	}
	if fl.Changed("anycast-gateway-mac") {
		t.AnycastGatewayMac = f.anycastMAC
	}
	if fl.Changed("advertise-connected") {
		t.AdvertiseConnected = proto.Bool(f.advertise)
	}
	if fl.Changed("route") {
		t.Routes = nil
		for _, r := range f.routes {
			if r == "" {
				continue
			}
			sr, err := parseRoute(r)
			if err != nil {
				return err
			}
			t.Routes = append(t.Routes, sr)
		}
	}
	setRouteTargets(cmd, &t.RouteTargets, f.importRT, f.exportRT)
	return nil
}

// parseRoute reads --route PREFIX,via=ADDR.
func parseRoute(s string) (*evpndv1.StaticRoute, error) {
	parts := strings.Split(s, ",")
	r := &evpndv1.StaticRoute{Prefix: strings.TrimSpace(parts[0])}
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || k != "via" {
			return nil, usagef("invalid --route %q: want PREFIX,via=ADDR", s)
		}
		r.Via = v
	}
	if r.Prefix == "" || r.Via == "" {
		return nil, usagef("invalid --route %q: want PREFIX,via=ADDR", s)
	}
	return r, nil
}

func setRouteTargets(cmd *cobra.Command, rt **evpndv1.RouteTargets, imp, exp []string) {
	fl := cmd.Flags()
	if !fl.Changed("import-rt") && !fl.Changed("export-rt") {
		return
	}
	if *rt == nil {
		*rt = &evpndv1.RouteTargets{}
	} else {
		*rt = proto.Clone(*rt).(*evpndv1.RouteTargets)
	}
	if fl.Changed("import-rt") {
		(*rt).Import = listValues(imp)
	}
	if fl.Changed("export-rt") {
		(*rt).Export = listValues(exp)
	}
	if len((*rt).Import) == 0 && len((*rt).Export) == 0 {
		*rt = nil
	}
}

func newTenantCmd(g *globals) *cobra.Command {
	return newGroup("tenant", "Create, change, delete and list tenants",
		`A tenant is an isolated overlay: one network namespace on this host, with
segments (L2 VNIs) and, when it has an L3 VNI, routing between them
(symmetric IRB). Tenants declared in evpnd's config file are read-only here.`,
		newTenantListCmd(g), newTenantGetCmd(g), newTenantCreateCmd(g), newTenantUpdateCmd(g), newTenantDeleteCmd(g))
}

func listTenants(ctx context.Context, g *globals) ([]*evpndv1.Tenant, error) {
	req := &evpndv1.ListTenantsRequest{}
	return listAll(ctx, g, func(ctx context.Context, api evpndv1.EvpndServiceClient, token string) ([]*evpndv1.Tenant, string, error) {
		req.PageToken = token
		resp, err := api.ListTenants(ctx, req)
		return resp.GetTenants(), resp.GetNextPageToken(), err
	})
}

func newTenantListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List tenants",
		Long:  "List the tenants, from the config file (SOURCE config) and the API (SOURCE api), by name.",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tenants, err := listTenants(cmd.Context(), g)
			if err != nil {
				return err
			}
			if ok, err := writeList(cmd.OutOrStdout(), g.output, tenants); ok {
				return err
			}
			return tenantsTable(cmd.OutOrStdout(), tenants)
		},
	}
}

func getTenant(ctx context.Context, g *globals, name string) (*evpndv1.Tenant, error) {
	var t *evpndv1.Tenant
	err := callObject(ctx, g, object{kind: "tenant", name: name}, func(ctx context.Context, api evpndv1.EvpndServiceClient) error {
		resp, err := api.GetTenant(ctx, &evpndv1.GetTenantRequest{Name: name})
		t = resp.GetTenant()
		return err
	})
	return t, err
}

func newTenantGetCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:               "get NAME",
		Short:             "Show one tenant",
		Long:              "Show one tenant: a table row, or with -o json or -o yaml the whole object (the form create -f and update -f take).",
		Args:              exactArgs("NAME"),
		ValidArgsFunction: completeTenants(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := getTenant(cmd.Context(), g, args[0])
			if err != nil {
				return err
			}
			return showOne(cmd.OutOrStdout(), g.output, t, tenantsTable)
		},
	}
}

func newTenantCreateCmd(g *globals) *cobra.Command {
	var f tenantFlags
	cmd := &cobra.Command{
		Use:   "create NAME [flags] | create -f FILE",
		Short: "Create a tenant",
		Long: `Create a tenant from flags or from a file holding one tenant. Creating a
tenant equal to an existing one changes nothing and succeeds; a different
one with the same name is refused (use 'evpnctl tenant update').`,
		Example: `  # An L2-only tenant
  evpnctl tenant create green
  # A routed tenant with a static route and explicit route targets
  evpnctl tenant create blue --l3vni 5000 --route 198.51.100.0/24,via=10.1.0.254 \
      --import-rt 65000:5000 --export-rt 65000:5000
  # From a file (keys as in evpnd's config file)
  evpnctl tenant create -f blue.yaml`,
		Args: argsOrFile("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := noFlagsWithFile(cmd, tenantFlagNames...); err != nil {
				return err
			}
			t := &evpndv1.Tenant{}
			if f.file != "" {
				if _, err := readObject(f.file, cmd.InOrStdin(), t); err != nil {
					return err
				}
				t.Namespace = ""
				clearMeta(&t.Meta, false)
			} else {
				t.Name = args[0]
				if err := f.set(cmd, t); err != nil {
					return err
				}
			}
			var resp *evpndv1.CreateTenantResponse
			err := callObject(cmd.Context(), g, object{kind: "tenant", name: t.GetName()}, func(ctx context.Context, api evpndv1.EvpndServiceClient) error {
				var err error
				resp, err = api.CreateTenant(ctx, &evpndv1.CreateTenantRequest{Tenant: t})
				return err
			})
			if err != nil {
				return err
			}
			return reportCreated(cmd.OutOrStdout(), g, "tenant", t.GetName(), resp.GetCreated(), resp.GetTenant())
		},
	}
	fileFlag(cmd.Flags(), &f.file, "the tenant")
	f.register(cmd.Flags())
	return cmd
}

func newTenantUpdateCmd(g *globals) *cobra.Command {
	var f tenantFlags
	cmd := &cobra.Command{
		Use:   "update NAME [flags] | update -f FILE",
		Short: "Change a tenant's settings",
		Long: `Change a tenant's settings (not its segments). With flags, only the
settings given change: the tenant is read, changed and written back, and
refused if someone else changed it in between. With -f, the file replaces
the whole tenant; when it holds meta.generation (as 'evpnctl tenant get -o
yaml' prints it) the update is refused if the tenant changed since.`,
		Example: `  evpnctl tenant update blue --l3vni 5001
  evpnctl tenant update blue --route 198.51.100.0/24,via=10.1.0.254 --route 203.0.113.0/24,via=10.1.0.253
  evpnctl tenant update blue --import-rt ""     # back to the automatic route targets
  evpnctl tenant get blue -o yaml > blue.yaml && vi blue.yaml && evpnctl tenant update -f blue.yaml`,
		Args:              argsOrFile("NAME"),
		ValidArgsFunction: completeTenants(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := noFlagsWithFile(cmd, tenantFlagNames...); err != nil {
				return err
			}
			var t *evpndv1.Tenant
			if f.file != "" {
				t = &evpndv1.Tenant{}
				if _, err := readObject(f.file, cmd.InOrStdin(), t); err != nil {
					return err
				}
				t.Namespace = ""
				clearMeta(&t.Meta, true)
			} else {
				if len(changedFlags(cmd, tenantFlagNames)) == 0 {
					return usagef("nothing to change: give at least one of --%s", strings.Join(tenantFlagNames, ", --"))
				}
				var err error
				if t, err = getTenant(cmd.Context(), g, args[0]); err != nil {
					return err
				}
				if err := f.set(cmd, t); err != nil {
					return err
				}
			}
			obj := object{kind: "tenant", name: t.GetName(), generation: t.GetMeta().GetGeneration()}
			var resp *evpndv1.UpdateTenantResponse
			err := callObject(cmd.Context(), g, obj, func(ctx context.Context, api evpndv1.EvpndServiceClient) error {
				var err error
				resp, err = api.UpdateTenant(ctx, &evpndv1.UpdateTenantRequest{Tenant: t})
				return err
			})
			if err != nil {
				return err
			}
			return reportUpdated(cmd.OutOrStdout(), g, "tenant", t.GetName(), resp.GetTenant().GetMeta(), resp.GetTenant())
		},
	}
	fileFlag(cmd.Flags(), &f.file, "the tenant")
	f.register(cmd.Flags())
	return cmd
}

func newTenantDeleteCmd(g *globals) *cobra.Command {
	var d deleteFlags
	cmd := &cobra.Command{
		Use:               "delete NAME",
		Short:             "Delete a tenant",
		Long:              "Delete a tenant that has no segments and no policy left: delete those first.",
		Example:           "  evpnctl tenant delete blue --generation 3",
		Args:              exactArgs("NAME"),
		ValidArgsFunction: completeTenants(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			obj := object{kind: "tenant", name: args[0], generation: d.generation}
			err := callObject(cmd.Context(), g, obj, func(ctx context.Context, api evpndv1.EvpndServiceClient) error {
				_, err := api.DeleteTenant(ctx, &evpndv1.DeleteTenantRequest{Name: args[0], Generation: d.generation, AllowMissing: d.allowMissing})
				return err
			})
			if err != nil {
				return err
			}
			return reportDeleted(cmd.OutOrStdout(), "tenant", args[0], "deleted")
		},
	}
	d.register(cmd.Flags(), "tenant")
	return cmd
}

// ---- segments ----

type segmentFlags struct {
	file     string
	vni      uint32
	mtu      int32
	gateways []string
	importRT []string
	exportRT []string
}

var segmentFlagNames = []string{"vni", "mtu", "gateway", "import-rt", "export-rt"}

func (f *segmentFlags) register(fl *pflag.FlagSet) {
	fl.Uint32Var(&f.vni, "vni", 0, "the segment's VNI (1..16777215, unique on the host); required by create")
	fl.Int32Var(&f.mtu, "mtu", 0, "bridge and VXLAN MTU; 0 takes the underlay MTU minus the VXLAN overhead")
	fl.StringSliceVar(&f.gateways, "gateway", nil, "anycast gateway address with its length, e.g. 10.1.0.1/24 (routed tenants; repeat or comma-separate; \"\" clears)")
	fl.StringSliceVar(&f.importRT, "import-rt", nil, "route target to import, e.g. 65000:100 (repeat or comma-separate; \"\" clears)")
	fl.StringSliceVar(&f.exportRT, "export-rt", nil, "route target to export (repeat or comma-separate; \"\" clears)")
}

func (f *segmentFlags) set(cmd *cobra.Command, s *evpndv1.Segment) {
	fl := cmd.Flags()
	if fl.Changed("vni") {
		s.Vni = f.vni
	}
	if fl.Changed("mtu") {
		s.Mtu = f.mtu
	}
	if fl.Changed("gateway") {
		s.Gateway = listValues(f.gateways)
	}
	setRouteTargets(cmd, &s.RouteTargets, f.importRT, f.exportRT)
}

func newSegmentCmd(g *globals) *cobra.Command {
	return newGroup("segment", "Create, change, delete and list segments",
		`A segment is one L2 VNI of a tenant: a VXLAN device and a bridge in the
tenant's namespace, with anycast gateway addresses in a routed tenant.
Segments declared in evpnd's config file are read-only here.`,
		newSegmentListCmd(g), newSegmentGetCmd(g), newSegmentCreateCmd(g), newSegmentUpdateCmd(g), newSegmentDeleteCmd(g))
}

func listSegments(ctx context.Context, g *globals, tenant string) ([]*evpndv1.Segment, error) {
	req := &evpndv1.ListSegmentsRequest{Tenant: tenant}
	return listAll(ctx, g, func(ctx context.Context, api evpndv1.EvpndServiceClient, token string) ([]*evpndv1.Segment, string, error) {
		req.PageToken = token
		resp, err := api.ListSegments(ctx, req)
		return resp.GetSegments(), resp.GetNextPageToken(), err
	})
}

func newSegmentListCmd(g *globals) *cobra.Command {
	var tenant string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List segments",
		Long:  "List the segments by tenant and name, with the ports attached to each.",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			segments, err := listSegments(cmd.Context(), g, tenant)
			if err != nil {
				return err
			}
			if ok, err := writeList(cmd.OutOrStdout(), g.output, segments); ok {
				return err
			}
			return segmentsTable(cmd.OutOrStdout(), segments)
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "only this tenant's segments")
	completeTenantFlag(g, cmd)
	return cmd
}

func segmentName(tenant, name string) string { return tenant + "/" + name }

func getSegment(ctx context.Context, g *globals, tenant, name string) (*evpndv1.Segment, error) {
	var s *evpndv1.Segment
	err := callObject(ctx, g, object{kind: "segment", name: segmentName(tenant, name)}, func(ctx context.Context, api evpndv1.EvpndServiceClient) error {
		resp, err := api.GetSegment(ctx, &evpndv1.GetSegmentRequest{Tenant: tenant, Name: name})
		s = resp.GetSegment()
		return err
	})
	return s, err
}

func newSegmentGetCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:               "get TENANT NAME",
		Short:             "Show one segment",
		Long:              "Show one segment: a table row, or with -o json or -o yaml the whole object (the form create -f and update -f take).",
		Args:              exactArgs("TENANT", "NAME"),
		ValidArgsFunction: completeTenantSegment(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := getSegment(cmd.Context(), g, args[0], args[1])
			if err != nil {
				return err
			}
			return showOne(cmd.OutOrStdout(), g.output, s, segmentsTable)
		},
	}
}

// readSegment reads a segment from -f FILE. Its ports are output only:
// the ones attached are accepted back (a file written by 'segment get'),
// others are refused with what to do instead.
func readSegment(ctx context.Context, g *globals, file string, in io.Reader, keepGeneration bool) (*evpndv1.Segment, error) {
	s := &evpndv1.Segment{}
	name, err := readObject(file, in, s)
	if err != nil {
		return nil, err
	}
	if len(s.Ports) > 0 {
		stored, err := getSegment(ctx, g, s.GetTenant(), s.GetName())
		if err != nil && codeOf(err) != codes.NotFound {
			return nil, err
		}
		if !sameSet(stored.GetPorts(), s.Ports) {
			return nil, inputError{fmt.Errorf("%s: ports: a segment's ports are attached with 'evpnctl port attach', or written under the segment in a file for 'evpnctl apply -f'", name)}
		}
		s.Ports = nil
	}
	clearMeta(&s.Meta, keepGeneration)
	return s, nil
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

func newSegmentCreateCmd(g *globals) *cobra.Command {
	var f segmentFlags
	cmd := &cobra.Command{
		Use:   "create TENANT NAME --vni N [flags] | create -f FILE",
		Short: "Create a segment in a tenant",
		Long: `Create a segment (an L2 VNI) in a tenant, from flags or from a file holding
one segment. Creating a segment equal to an existing one changes nothing and
succeeds; a different one with the same name is refused (use 'evpnctl
segment update'). Attach ports with 'evpnctl port attach'.`,
		Example: `  evpnctl segment create blue web --vni 100 --gateway 10.1.0.1/24 --gateway 2001:db8:1::1/64
  evpnctl segment create green lan --vni 200 --mtu 1450 --import-rt 65000:200 --export-rt 65000:200
  evpnctl segment create -f web.yaml`,
		Args:              argsOrFile("TENANT", "NAME"),
		ValidArgsFunction: completeTenantSegment(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := noFlagsWithFile(cmd, segmentFlagNames...); err != nil {
				return err
			}
			var s *evpndv1.Segment
			if f.file != "" {
				var err error
				if s, err = readSegment(cmd.Context(), g, f.file, cmd.InOrStdin(), false); err != nil {
					return err
				}
			} else {
				if !cmd.Flags().Changed("vni") {
					return usagef("%s needs --vni", cmd.CommandPath())
				}
				s = &evpndv1.Segment{Tenant: args[0], Name: args[1]}
				f.set(cmd, s)
			}
			name := segmentName(s.GetTenant(), s.GetName())
			var resp *evpndv1.CreateSegmentResponse
			err := callObject(cmd.Context(), g, object{kind: "segment", name: name}, func(ctx context.Context, api evpndv1.EvpndServiceClient) error {
				var err error
				resp, err = api.CreateSegment(ctx, &evpndv1.CreateSegmentRequest{Segment: s})
				return err
			})
			if err != nil {
				return err
			}
			return reportCreated(cmd.OutOrStdout(), g, "segment", name, resp.GetCreated(), resp.GetSegment())
		},
	}
	fileFlag(cmd.Flags(), &f.file, "the segment")
	f.register(cmd.Flags())
	return cmd
}

func newSegmentUpdateCmd(g *globals) *cobra.Command {
	var f segmentFlags
	cmd := &cobra.Command{
		Use:   "update TENANT NAME [flags] | update -f FILE",
		Short: "Change a segment's settings",
		Long: `Change a segment's settings (not its ports). With flags, only the settings
given change: the segment is read, changed and written back, and refused if
someone else changed it in between. With -f, the file replaces the whole
segment; when it holds meta.generation the update is refused if the segment
changed since.`,
		Example: `  evpnctl segment update blue web --mtu 9000
  evpnctl segment update blue web --gateway 10.1.0.1/24,10.2.0.1/24`,
		Args:              argsOrFile("TENANT", "NAME"),
		ValidArgsFunction: completeTenantSegment(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := noFlagsWithFile(cmd, segmentFlagNames...); err != nil {
				return err
			}
			var s *evpndv1.Segment
			var err error
			if f.file != "" {
				if s, err = readSegment(cmd.Context(), g, f.file, cmd.InOrStdin(), true); err != nil {
					return err
				}
			} else {
				if len(changedFlags(cmd, segmentFlagNames)) == 0 {
					return usagef("nothing to change: give at least one of --%s", strings.Join(segmentFlagNames, ", --"))
				}
				if s, err = getSegment(cmd.Context(), g, args[0], args[1]); err != nil {
					return err
				}
				f.set(cmd, s)
			}
			name := segmentName(s.GetTenant(), s.GetName())
			obj := object{kind: "segment", name: name, generation: s.GetMeta().GetGeneration()}
			var resp *evpndv1.UpdateSegmentResponse
			err = callObject(cmd.Context(), g, obj, func(ctx context.Context, api evpndv1.EvpndServiceClient) error {
				var err error
				resp, err = api.UpdateSegment(ctx, &evpndv1.UpdateSegmentRequest{Segment: s})
				return err
			})
			if err != nil {
				return err
			}
			return reportUpdated(cmd.OutOrStdout(), g, "segment", name, resp.GetSegment().GetMeta(), resp.GetSegment())
		},
	}
	fileFlag(cmd.Flags(), &f.file, "the segment")
	f.register(cmd.Flags())
	return cmd
}

func newSegmentDeleteCmd(g *globals) *cobra.Command {
	var d deleteFlags
	cmd := &cobra.Command{
		Use:               "delete TENANT NAME",
		Short:             "Delete a segment",
		Long:              "Delete a segment that has no ports attached: detach them first.",
		Example:           "  evpnctl segment delete blue web",
		Args:              exactArgs("TENANT", "NAME"),
		ValidArgsFunction: completeTenantSegment(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := segmentName(args[0], args[1])
			err := callObject(cmd.Context(), g, object{kind: "segment", name: name, generation: d.generation}, func(ctx context.Context, api evpndv1.EvpndServiceClient) error {
				_, err := api.DeleteSegment(ctx, &evpndv1.DeleteSegmentRequest{Tenant: args[0], Name: args[1], Generation: d.generation, AllowMissing: d.allowMissing})
				return err
			})
			if err != nil {
				return err
			}
			return reportDeleted(cmd.OutOrStdout(), "segment", name, "deleted")
		},
	}
	d.register(cmd.Flags(), "segment")
	return cmd
}

// ---- ports ----

func newPortCmd(g *globals) *cobra.Command {
	return newGroup("port", "Attach, detach and list workload ports",
		`A port is a workload interface (a veth end, a tap) attached to a segment:
evpnd moves it into the tenant's namespace, where it keeps its name, and
enslaves it to the segment's bridge. Ports declared in evpnd's config file
are read-only here.`,
		newPortListCmd(g), newPortGetCmd(g), newPortAttachCmd(g), newPortDetachCmd(g))
}

func listPorts(ctx context.Context, g *globals, tenant, segment string) ([]*evpndv1.Port, error) {
	req := &evpndv1.ListPortsRequest{Tenant: tenant, Segment: segment}
	return listAll(ctx, g, func(ctx context.Context, api evpndv1.EvpndServiceClient, token string) ([]*evpndv1.Port, string, error) {
		req.PageToken = token
		resp, err := api.ListPorts(ctx, req)
		return resp.GetPorts(), resp.GetNextPageToken(), err
	})
}

func newPortListCmd(g *globals) *cobra.Command {
	var tenant, segment string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List attached ports",
		Long:  "List the attached ports by interface name.",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if segment != "" && tenant == "" {
				return usagef("--segment needs --tenant: segment names are unique only within a tenant")
			}
			ports, err := listPorts(cmd.Context(), g, tenant, segment)
			if err != nil {
				return err
			}
			if ok, err := writeList(cmd.OutOrStdout(), g.output, ports); ok {
				return err
			}
			return portsTable(cmd.OutOrStdout(), ports)
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "only ports of this tenant")
	cmd.Flags().StringVar(&segment, "segment", "", "only ports of this segment (needs --tenant)")
	completeTenantFlag(g, cmd)
	completeSegmentFlag(g, cmd)
	return cmd
}

func newPortGetCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:               "get IFACE",
		Short:             "Show one attached port",
		Args:              exactArgs("IFACE"),
		ValidArgsFunction: completePorts(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			var p *evpndv1.Port
			err := callObject(cmd.Context(), g, object{kind: "port", name: args[0]}, func(ctx context.Context, api evpndv1.EvpndServiceClient) error {
				resp, err := api.GetPort(ctx, &evpndv1.GetPortRequest{Interface: args[0]})
				p = resp.GetPort()
				return err
			})
			if err != nil {
				return err
			}
			return showOne(cmd.OutOrStdout(), g.output, p, portsTable)
		},
	}
}

func newPortAttachCmd(g *globals) *cobra.Command {
	var tenant, segment string
	cmd := &cobra.Command{
		Use:   "attach IFACE --tenant T --segment S",
		Short: "Attach a workload interface to a segment",
		Long: `Attach a workload interface to a segment: evpnd moves it into the tenant's
namespace and enslaves it to the segment's bridge, or does so as soon as the
interface appears if it does not exist yet. Attaching a port again to the
same segment changes nothing; to move it, detach it first.`,
		Example: `  evpnctl port attach tap-vm1 --tenant blue --segment web`,
		Args:    exactArgs("IFACE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if tenant == "" || segment == "" {
				return usagef("%s needs --tenant and --segment", cmd.CommandPath())
			}
			p := &evpndv1.Port{Interface: args[0], Tenant: tenant, Segment: segment}
			var resp *evpndv1.AttachPortResponse
			err := callObject(cmd.Context(), g, object{kind: "port", name: args[0]}, func(ctx context.Context, api evpndv1.EvpndServiceClient) error {
				var err error
				resp, err = api.AttachPort(ctx, &evpndv1.AttachPortRequest{Port: p})
				return err
			})
			if err != nil {
				return err
			}
			if ok, err := writeObject(cmd.OutOrStdout(), g.output, resp.GetPort()); ok {
				return err
			}
			format := "port %s: attached to %s\n"
			if !resp.GetCreated() {
				format = "port %s: unchanged (already attached to %s)\n"
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), format, args[0], segmentName(tenant, segment))
			return err
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "the tenant of the segment (required)")
	cmd.Flags().StringVar(&segment, "segment", "", "the segment to attach to (required)")
	completeTenantFlag(g, cmd)
	completeSegmentFlag(g, cmd)
	return cmd
}

func newPortDetachCmd(g *globals) *cobra.Command {
	var d deleteFlags
	cmd := &cobra.Command{
		Use:               "detach IFACE",
		Short:             "Detach a port from its segment",
		Long:              "Detach a port: the interface leaves the tenant and returns to evpnd's namespace.",
		Example:           "  evpnctl port detach tap-vm1",
		Args:              exactArgs("IFACE"),
		ValidArgsFunction: completePorts(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			err := callObject(cmd.Context(), g, object{kind: "port", name: args[0], generation: d.generation}, func(ctx context.Context, api evpndv1.EvpndServiceClient) error {
				_, err := api.DetachPort(ctx, &evpndv1.DetachPortRequest{Interface: args[0], Generation: d.generation, AllowMissing: d.allowMissing})
				return err
			})
			if err != nil {
				return err
			}
			return reportDeleted(cmd.OutOrStdout(), "port", args[0], "detached")
		},
	}
	d.register(cmd.Flags(), "port")
	return cmd
}
