package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	evpndv1 "github.com/evpnd/evpnd/api/evpnd/v1"
)

// applySchema is the config file's form of tenants and policies: a
// tenant holds its segments, a segment its ports, and what evpnd fills in
// (namespace, meta) is not part of it.
var applySchema = schema{
	refused: map[protoreflect.FullName]map[string]string{
		"evpnd.v1.Tenant":  {"namespace": "", "meta": ""},
		"evpnd.v1.Segment": {"tenant": "", "meta": ""},
		"evpnd.v1.Policy":  {"meta": ""},
	},
	lists: map[protoreflect.FullName]map[string]protoreflect.MessageDescriptor{
		"evpnd.v1.Tenant": {"segments": (&evpndv1.Segment{}).ProtoReflect().Descriptor()},
	},
}

// desired is what an apply file declares.
type desired struct {
	tenants  []*evpndv1.Tenant
	segments []*evpndv1.Segment
	ports    []*evpndv1.Port
	policies []*evpndv1.Policy
}

// readApplyFile reads a file with the config file's tenants: and
// policies: sections.
func readApplyFile(name string, in io.Reader) (*desired, error) {
	data, file, err := readInput(name, in)
	if err != nil {
		return nil, err
	}
	root, err := parseYAML(data, file)
	if err != nil {
		return nil, err
	}
	p := &fileProblems{file: file}
	if root.Kind != yaml.MappingNode {
		p.add(root, "", "want a mapping with tenants: and policies:, got %s", describe(root))
		return nil, p.err()
	}
	tenantMD := (&evpndv1.Tenant{}).ProtoReflect().Descriptor()
	policyMD := (&evpndv1.Policy{}).ProtoReflect().Descriptor()
	var tenants, policies []map[string]any
	items := func(v *yaml.Node, key string, md protoreflect.MessageDescriptor) []map[string]any {
		v = resolve(v)
		if isNull(v) {
			return nil
		}
		if v.Kind != yaml.SequenceNode {
			p.add(v, key, "want a list, got %s", describe(v))
			return nil
		}
		var out []map[string]any
		for i, it := range v.Content {
			out = append(out, applySchema.message(it, md, fmt.Sprintf("%s[%d]", key, i), p))
		}
		return out
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch k.Value {
		case "tenants":
			tenants = items(v, k.Value, tenantMD)
		case "policies":
			policies = items(v, k.Value, policyMD)
		default:
			p.add(k, "", "unknown key %q: evpnctl apply takes tenants and policies (the rest of evpnd's config is read by evpnd from its own file)", k.Value)
		}
	}
	if err := p.err(); err != nil {
		return nil, err
	}

	d := &desired{}
	seen := map[string]bool{}
	once := func(kind, name string) error {
		if seen[kind+" "+name] {
			return inputError{fmt.Errorf("%s: %s %s is declared twice", file, kind, name)}
		}
		seen[kind+" "+name] = true
		return nil
	}
	for _, tm := range tenants {
		segs, _ := tm["segments"].([]any)
		delete(tm, "segments")
		t := &evpndv1.Tenant{}
		if err := unmarshal(tm, t, file); err != nil {
			return nil, err
		}
		if err := once("tenant", t.GetName()); err != nil {
			return nil, err
		}
		d.tenants = append(d.tenants, t)
		for _, sm := range segs {
			sm := sm.(map[string]any)
			sm["tenant"] = t.GetName()
			s := &evpndv1.Segment{}
			if err := unmarshal(sm, s, file); err != nil {
				return nil, err
			}
			if err := once("segment", segmentName(s.GetTenant(), s.GetName())); err != nil {
				return nil, err
			}
			for _, port := range s.Ports {
				if err := once("port", port); err != nil {
					return nil, err
				}
				d.ports = append(d.ports, &evpndv1.Port{Interface: port, Tenant: t.GetName(), Segment: s.GetName()})
			}
			s.Ports = nil
			d.segments = append(d.segments, s)
		}
	}
	for _, pm := range policies {
		pol := &evpndv1.Policy{}
		if err := unmarshal(pm, pol, file); err != nil {
			return nil, err
		}
		if err := once("policy", pol.GetTenant()); err != nil {
			return nil, err
		}
		d.policies = append(d.policies, pol)
	}
	return d, nil
}

func newApplyCmd(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Create or update tenants, segments, ports and policies from a file",
		Long: `Make evpnd hold the tenants, segments, ports and policies of a file written
like the tenants: and policies: sections of evpnd's config file (README
"Configuration"): a tenant lists its segments, a segment its ports.

What is missing is created (tenants, then segments, then ports, then
policies), what differs is updated with the generation read (refused if
someone else changed it meanwhile), what is equal is left alone, and one
line per object says which. A port attached to another segment is detached
and attached to the one in the file. Nothing is ever deleted: objects the
file does not mention stay. Objects declared in evpnd's config file cannot
be changed here.`,
		Example: `  # lab.yaml
  #   tenants:
  #     - name: blue
  #       l3vni: 5000
  #       segments:
  #         - {name: web, vni: 100, gateway: 10.1.0.1/24, ports: [tap-vm1]}
  #   policies:
  #     - tenant: blue
  #       rules: [{name: ssh, priority: 10, direction: ingress, segment: web,
  #                protocol: tcp, ports: ["22"], action: drop}]
  evpnctl apply -f lab.yaml
  # tenant blue: created
  # segment blue/web: created
  # port tap-vm1: created
  # policy blue: created`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usagef("%s needs -f FILE", cmd.CommandPath())
			}
			if err := g.checkOutput(); err != nil {
				return err
			}
			d, err := readApplyFile(file, cmd.InOrStdin())
			if err != nil {
				return err
			}
			c, err := dial(g)
			if err != nil {
				return err
			}
			defer c.Close()
			a := &applier{c: c, g: g, w: cmd.OutOrStdout()}
			return a.apply(cmd.Context(), d)
		},
	}
	fileFlag(cmd.Flags(), &file, "the tenants and policies")
	return cmd
}

// applier applies a file over one connection.
type applier struct {
	c *client
	g *globals
	w io.Writer
}

// do runs one RPC with the --timeout deadline and explains its error.
func (a *applier) do(ctx context.Context, obj object, fn func(ctx context.Context, api evpndv1.EvpndServiceClient) error) error {
	ctx, cancel := context.WithTimeout(ctx, a.g.timeout)
	defer cancel()
	if err := fn(ctx, a.c.api); err != nil {
		return a.c.explainObject(err, obj)
	}
	return nil
}

func (a *applier) report(kind, name, outcome string) error {
	_, err := fmt.Fprintf(a.w, "%s %s: %s\n", kind, name, outcome)
	return err
}

// createdOutcome words an idempotent create's answer.
func createdOutcome(created bool) string {
	if created {
		return "created"
	}
	return "unchanged"
}

// settings is m without what evpnd fills in, to compare with a file.
func settings[M proto.Message](m M, clear func(M)) M {
	m = proto.Clone(m).(M)
	clear(m)
	return m
}

func (a *applier) apply(ctx context.Context, d *desired) error {
	var (
		tenants  []*evpndv1.Tenant
		segments []*evpndv1.Segment
		ports    []*evpndv1.Port
		policies []*evpndv1.Policy
	)
	err := a.do(ctx, object{}, func(ctx context.Context, api evpndv1.EvpndServiceClient) error {
		var err error
		if tenants, err = pages(ctx, api, func(ctx context.Context, api evpndv1.EvpndServiceClient, token string) ([]*evpndv1.Tenant, string, error) {
			resp, err := api.ListTenants(ctx, &evpndv1.ListTenantsRequest{PageToken: token})
			return resp.GetTenants(), resp.GetNextPageToken(), err
		}); err != nil {
			return err
		}
		if segments, err = pages(ctx, api, func(ctx context.Context, api evpndv1.EvpndServiceClient, token string) ([]*evpndv1.Segment, string, error) {
			resp, err := api.ListSegments(ctx, &evpndv1.ListSegmentsRequest{PageToken: token})
			return resp.GetSegments(), resp.GetNextPageToken(), err
		}); err != nil {
			return err
		}
		if ports, err = pages(ctx, api, func(ctx context.Context, api evpndv1.EvpndServiceClient, token string) ([]*evpndv1.Port, string, error) {
			resp, err := api.ListPorts(ctx, &evpndv1.ListPortsRequest{PageToken: token})
			return resp.GetPorts(), resp.GetNextPageToken(), err
		}); err != nil {
			return err
		}
		policies, err = pages(ctx, api, func(ctx context.Context, api evpndv1.EvpndServiceClient, token string) ([]*evpndv1.Policy, string, error) {
			resp, err := api.ListPolicies(ctx, &evpndv1.ListPoliciesRequest{PageToken: token})
			return resp.GetPolicies(), resp.GetNextPageToken(), err
		})
		return err
	})
	if err != nil {
		return err
	}

	storedTenants := map[string]*evpndv1.Tenant{}
	for _, t := range tenants {
		storedTenants[t.GetName()] = t
	}
	for _, t := range d.tenants {
		if err := a.tenant(ctx, t, storedTenants[t.GetName()]); err != nil {
			return err
		}
	}
	storedSegments := map[string]*evpndv1.Segment{}
	for _, s := range segments {
		storedSegments[segmentName(s.GetTenant(), s.GetName())] = s
	}
	for _, s := range d.segments {
		if err := a.segment(ctx, s, storedSegments[segmentName(s.GetTenant(), s.GetName())]); err != nil {
			return err
		}
	}
	storedPorts := map[string]*evpndv1.Port{}
	for _, p := range ports {
		storedPorts[p.GetInterface()] = p
	}
	for _, p := range d.ports {
		if err := a.port(ctx, p, storedPorts[p.GetInterface()]); err != nil {
			return err
		}
	}
	storedPolicies := map[string]*evpndv1.Policy{}
	for _, p := range policies {
		storedPolicies[p.GetTenant()] = p
	}
	for _, p := range d.policies {
		if err := a.policy(ctx, p, storedPolicies[p.GetTenant()]); err != nil {
			return err
		}
	}
	return nil
}

func (a *applier) tenant(ctx context.Context, t, stored *evpndv1.Tenant) error {
	name := t.GetName()
	if stored == nil {
		var resp *evpndv1.CreateTenantResponse
		err := a.do(ctx, object{kind: "tenant", name: name}, func(ctx context.Context, api evpndv1.EvpndServiceClient) error {
			var err error
			resp, err = api.CreateTenant(ctx, &evpndv1.CreateTenantRequest{Tenant: t})
			return err
		})
		if err != nil {
			return err
		}
		return a.report("tenant", name, createdOutcome(resp.GetCreated()))
	}
	if proto.Equal(t, settings(stored, func(x *evpndv1.Tenant) { x.Namespace, x.Meta = "", nil })) {
		return a.report("tenant", name, "unchanged")
	}
	gen := stored.GetMeta().GetGeneration()
	t.Meta = &evpndv1.Meta{Generation: gen}
	err := a.do(ctx, object{kind: "tenant", name: name, generation: gen}, func(ctx context.Context, api evpndv1.EvpndServiceClient) error {
		_, err := api.UpdateTenant(ctx, &evpndv1.UpdateTenantRequest{Tenant: t})
		return err
	})
	if err != nil {
		return err
	}
	return a.report("tenant", name, "updated")
}

func (a *applier) segment(ctx context.Context, s, stored *evpndv1.Segment) error {
	name := segmentName(s.GetTenant(), s.GetName())
	if stored == nil {
		var resp *evpndv1.CreateSegmentResponse
		err := a.do(ctx, object{kind: "segment", name: name}, func(ctx context.Context, api evpndv1.EvpndServiceClient) error {
			var err error
			resp, err = api.CreateSegment(ctx, &evpndv1.CreateSegmentRequest{Segment: s})
			return err
		})
		if err != nil {
			return err
		}
		return a.report("segment", name, createdOutcome(resp.GetCreated()))
	}
	if proto.Equal(s, settings(stored, func(x *evpndv1.Segment) { x.Ports, x.Meta = nil, nil })) {
		return a.report("segment", name, "unchanged")
	}
	gen := stored.GetMeta().GetGeneration()
	s.Meta = &evpndv1.Meta{Generation: gen}
	err := a.do(ctx, object{kind: "segment", name: name, generation: gen}, func(ctx context.Context, api evpndv1.EvpndServiceClient) error {
		_, err := api.UpdateSegment(ctx, &evpndv1.UpdateSegmentRequest{Segment: s})
		return err
	})
	if err != nil {
		return err
	}
	return a.report("segment", name, "updated")
}

func (a *applier) port(ctx context.Context, p, stored *evpndv1.Port) error {
	name := p.GetInterface()
	outcome := ""
	if stored != nil {
		if stored.GetTenant() == p.GetTenant() && stored.GetSegment() == p.GetSegment() {
			return a.report("port", name, "unchanged")
		}
		// Ports have no update: a port moves by detaching and attaching.
		gen := stored.GetMeta().GetGeneration()
		err := a.do(ctx, object{kind: "port", name: name, generation: gen}, func(ctx context.Context, api evpndv1.EvpndServiceClient) error {
			_, err := api.DetachPort(ctx, &evpndv1.DetachPortRequest{Interface: name, Generation: gen})
			return err
		})
		if err != nil {
			return err
		}
		outcome = "updated (moved from " + segmentName(stored.GetTenant(), stored.GetSegment()) + ")"
	}
	var resp *evpndv1.AttachPortResponse
	err := a.do(ctx, object{kind: "port", name: name}, func(ctx context.Context, api evpndv1.EvpndServiceClient) error {
		var err error
		resp, err = api.AttachPort(ctx, &evpndv1.AttachPortRequest{Port: p})
		return err
	})
	if err != nil {
		return err
	}
	if outcome == "" {
		outcome = createdOutcome(resp.GetCreated())
	}
	return a.report("port", name, outcome)
}

func (a *applier) policy(ctx context.Context, p, stored *evpndv1.Policy) error {
	name := p.GetTenant()
	if stored == nil {
		var resp *evpndv1.CreatePolicyResponse
		err := a.do(ctx, object{kind: "policy", name: name}, func(ctx context.Context, api evpndv1.EvpndServiceClient) error {
			var err error
			resp, err = api.CreatePolicy(ctx, &evpndv1.CreatePolicyRequest{Policy: p})
			return err
		})
		if err != nil {
			return err
		}
		return a.report("policy", name, createdOutcome(resp.GetCreated()))
	}
	if samePolicy(p, stored) {
		return a.report("policy", name, "unchanged")
	}
	gen := stored.GetMeta().GetGeneration()
	p.Meta = &evpndv1.Meta{Generation: gen}
	err := a.do(ctx, object{kind: "policy", name: name, generation: gen}, func(ctx context.Context, api evpndv1.EvpndServiceClient) error {
		_, err := api.UpdatePolicy(ctx, &evpndv1.UpdatePolicyRequest{Policy: p})
		return err
	})
	if err != nil {
		return err
	}
	return a.report("policy", name, "updated")
}
