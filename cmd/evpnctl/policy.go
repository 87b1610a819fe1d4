package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	evpndv1 "github.com/evpnd/evpnd/api/evpnd/v1"
)

func newPolicyCmd(g *globals) *cobra.Command {
	return newGroup("policy", "Create, change, delete and list tenant policies",
		`A policy is a tenant's network services: security groups and ACL rules,
NAT (an external gateway, SNAT, floating IPs, port forwards) and QoS, in the
form of the config file's policies section (README "Policy"). A tenant has at
most one policy, named by the tenant; evpnd replaces it atomically in the
kernel. Policies declared in evpnd's config file are read-only here.`,
		newPolicyListCmd(g), newPolicyGetCmd(g), newPolicyCreateCmd(g), newPolicyUpdateCmd(g),
		newPolicyApplyCmd(g), newPolicyDeleteCmd(g), newPolicyCountersCmd(g))
}

func listPolicies(ctx context.Context, g *globals) ([]*evpndv1.Policy, error) {
	req := &evpndv1.ListPoliciesRequest{}
	return listAll(ctx, g, func(ctx context.Context, api evpndv1.EvpndServiceClient, token string) ([]*evpndv1.Policy, string, error) {
		req.PageToken = token
		resp, err := api.ListPolicies(ctx, req)
		return resp.GetPolicies(), resp.GetNextPageToken(), err
	})
}

func newPolicyListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List policies",
		Long: `List the policies by tenant: GROUPS counts address and port groups, NAT
says whether the tenant has an external gateway, QOS counts the ports with
rate limits.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			policies, err := listPolicies(cmd.Context(), g)
			if err != nil {
				return err
			}
			if ok, err := writeList(cmd.OutOrStdout(), g.output, policies); ok {
				return err
			}
			return policiesTable(cmd.OutOrStdout(), policies)
		},
	}
}

func getPolicy(ctx context.Context, g *globals, tenant string) (*evpndv1.Policy, error) {
	var p *evpndv1.Policy
	err := callObject(ctx, g, object{kind: "policy", name: tenant}, func(ctx context.Context, api evpndv1.EvpndServiceClient) error {
		resp, err := api.GetPolicy(ctx, &evpndv1.GetPolicyRequest{Tenant: tenant})
		p = resp.GetPolicy()
		return err
	})
	return p, err
}

func newPolicyGetCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:               "get TENANT",
		Short:             "Show a tenant's policy",
		Long:              "Show a tenant's policy: a table row, or with -o json or -o yaml the whole policy (the form create -f, update -f and apply -f take).",
		Example:           "  evpnctl policy get blue -o yaml > blue-policy.yaml",
		Args:              exactArgs("TENANT"),
		ValidArgsFunction: completeTenants(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := getPolicy(cmd.Context(), g, args[0])
			if err != nil {
				return err
			}
			return showOne(cmd.OutOrStdout(), g.output, p, policiesTable)
		},
	}
}

// readPolicy reads a policy from -f FILE.
func readPolicy(cmd *cobra.Command, file string, keepGeneration bool) (*evpndv1.Policy, error) {
	if file == "" {
		return nil, usagef("%s needs -f FILE", cmd.CommandPath())
	}
	p := &evpndv1.Policy{}
	if _, err := readObject(file, cmd.InOrStdin(), p); err != nil {
		return nil, err
	}
	clearMeta(&p.Meta, keepGeneration)
	return p, nil
}

const policyFileExample = `  # blue-policy.yaml, keys as in evpnd's config file:
  #   tenant: blue
  #   port-groups: [{name: web, ports: [tap-w1, tap-w2]}]
  #   rules:
  #     - {name: http, priority: 10, direction: ingress, port-group: web,
  #        protocol: tcp, ports: ["80", "443"], action: allow}
`

func newPolicyCreateCmd(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "create -f FILE",
		Short: "Create a tenant's policy from a file",
		Long: `Create a tenant's policy from a file holding one policy, in the form of an
entry of the config file's policies section. Creating a policy equal to the
existing one changes nothing and succeeds; a different one is refused (use
'evpnctl policy update' or 'evpnctl policy apply').`,
		Example: policyFileExample + "  evpnctl policy create -f blue-policy.yaml",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := readPolicy(cmd, file, false)
			if err != nil {
				return err
			}
			var resp *evpndv1.CreatePolicyResponse
			err = callObject(cmd.Context(), g, object{kind: "policy", name: p.GetTenant()}, func(ctx context.Context, api evpndv1.EvpndServiceClient) error {
				resp, err = api.CreatePolicy(ctx, &evpndv1.CreatePolicyRequest{Policy: p})
				return err
			})
			if err != nil {
				return err
			}
			return reportCreated(cmd.OutOrStdout(), g, "policy", p.GetTenant(), resp.GetCreated(), resp.GetPolicy())
		},
	}
	fileFlag(cmd.Flags(), &file, "the policy")
	return cmd
}

func newPolicyUpdateCmd(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "update -f FILE",
		Short: "Replace a tenant's policy from a file",
		Long: `Replace a tenant's policy with the one in the file, atomically in the
kernel. When the file holds meta.generation (as 'evpnctl policy get -o yaml'
prints it) the update is refused if the policy changed since.`,
		Example: `  evpnctl policy get blue -o yaml > p.yaml && vi p.yaml && evpnctl policy update -f p.yaml`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := readPolicy(cmd, file, true)
			if err != nil {
				return err
			}
			return updatePolicy(cmd, g, p)
		},
	}
	fileFlag(cmd.Flags(), &file, "the policy")
	return cmd
}

func updatePolicy(cmd *cobra.Command, g *globals, p *evpndv1.Policy) error {
	obj := object{kind: "policy", name: p.GetTenant(), generation: p.GetMeta().GetGeneration()}
	var resp *evpndv1.UpdatePolicyResponse
	err := callObject(cmd.Context(), g, obj, func(ctx context.Context, api evpndv1.EvpndServiceClient) error {
		var err error
		resp, err = api.UpdatePolicy(ctx, &evpndv1.UpdatePolicyRequest{Policy: p})
		return err
	})
	if err != nil {
		return err
	}
	return reportUpdated(cmd.OutOrStdout(), g, "policy", p.GetTenant(), resp.GetPolicy().GetMeta(), resp.GetPolicy())
}

func newPolicyApplyCmd(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Create a tenant's policy, or replace it if it exists",
		Long: `Make the tenant's policy the one in the file: create it if the tenant has
none, replace it if it differs (refused if someone else changed it while
this ran), leave it alone if it is equal.`,
		Example: policyFileExample + "  evpnctl policy apply -f blue-policy.yaml",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := readPolicy(cmd, file, false)
			if err != nil {
				return err
			}
			stored, err := getPolicy(cmd.Context(), g, p.GetTenant())
			switch {
			case codeOf(err) == codes.NotFound:
				var resp *evpndv1.CreatePolicyResponse
				err = callObject(cmd.Context(), g, object{kind: "policy", name: p.GetTenant()}, func(ctx context.Context, api evpndv1.EvpndServiceClient) error {
					resp, err = api.CreatePolicy(ctx, &evpndv1.CreatePolicyRequest{Policy: p})
					return err
				})
				if err != nil {
					return err
				}
				return reportCreated(cmd.OutOrStdout(), g, "policy", p.GetTenant(), resp.GetCreated(), resp.GetPolicy())
			case err != nil:
				return err
			}
			if samePolicy(stored, p) {
				if ok, err := writeObject(cmd.OutOrStdout(), g.output, stored); ok {
					return err
				}
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "policy %s: unchanged\n", p.GetTenant())
				return err
			}
			p.Meta = &evpndv1.Meta{Generation: stored.GetMeta().GetGeneration()}
			return updatePolicy(cmd, g, p)
		},
	}
	fileFlag(cmd.Flags(), &file, "the policy")
	return cmd
}

// samePolicy compares the settings of two policies, not their meta.
func samePolicy(a, b *evpndv1.Policy) bool {
	a, b = proto.Clone(a).(*evpndv1.Policy), proto.Clone(b).(*evpndv1.Policy)
	a.Meta, b.Meta = nil, nil
	return proto.Equal(a, b)
}

func newPolicyDeleteCmd(g *globals) *cobra.Command {
	var d deleteFlags
	cmd := &cobra.Command{
		Use:               "delete TENANT",
		Short:             "Delete a tenant's policy",
		Long:              "Delete a tenant's policy and everything it installed: rules, NAT and QoS.",
		Example:           "  evpnctl policy delete blue",
		Args:              exactArgs("TENANT"),
		ValidArgsFunction: completeTenants(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			err := callObject(cmd.Context(), g, object{kind: "policy", name: args[0], generation: d.generation}, func(ctx context.Context, api evpndv1.EvpndServiceClient) error {
				_, err := api.DeletePolicy(ctx, &evpndv1.DeletePolicyRequest{Tenant: args[0], Generation: d.generation, AllowMissing: d.allowMissing})
				return err
			})
			if err != nil {
				return err
			}
			return reportDeleted(cmd.OutOrStdout(), "policy", args[0], "deleted")
		},
	}
	d.register(cmd.Flags(), "policy")
	return cmd
}

func newPolicyCountersCmd(g *globals) *cobra.Command {
	var tenant string
	cmd := &cobra.Command{
		Use:   "counters",
		Short: "Show what each policy rule matched",
		Long: `Show the packet and byte counters of every policy rule since it was
applied. What reached a segment's default action (no rule decided it) is
the rule default:<segment>:<direction>, counted where the segment has rules
in that direction or a default other than allow.`,
		Example: "  evpnctl policy counters --tenant blue",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &evpndv1.ListPolicyCountersRequest{Tenant: tenant}
			counters, err := listAll(cmd.Context(), g, func(ctx context.Context, api evpndv1.EvpndServiceClient, token string) ([]*evpndv1.PolicyCounter, string, error) {
				req.PageToken = token
				resp, err := api.ListPolicyCounters(ctx, req)
				return resp.GetCounters(), resp.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			if ok, err := writeList(cmd.OutOrStdout(), g.output, counters); ok {
				return err
			}
			return countersTable(cmd.OutOrStdout(), counters)
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "only this tenant's rules")
	completeTenantFlag(g, cmd)
	return cmd
}
