package main

import (
	"context"
	"time"

	"github.com/spf13/cobra"
)

// Completion asks the daemon for names. It must stay quiet and quick: on
// any error there are simply no completions.

const completionTimeout = 3 * time.Second

func completionContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return context.WithTimeout(ctx, completionTimeout)
}

func tenantNames(cmd *cobra.Command, g *globals) []string {
	ctx, cancel := completionContext(cmd)
	defer cancel()
	tenants, err := listTenants(ctx, g)
	if err != nil {
		return nil
	}
	var names []string
	for _, t := range tenants {
		names = append(names, t.GetName())
	}
	return names
}

func segmentNames(cmd *cobra.Command, g *globals, tenant string) []string {
	if tenant == "" {
		return nil
	}
	ctx, cancel := completionContext(cmd)
	defer cancel()
	segments, err := listSegments(ctx, g, tenant)
	if err != nil {
		return nil
	}
	var names []string
	for _, s := range segments {
		names = append(names, s.GetName())
	}
	return names
}

// completeTenants completes a first argument naming a tenant.
func completeTenants(g *globals) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return tenantNames(cmd, g), cobra.ShellCompDirectiveNoFileComp
	}
}

// completeTenantSegment completes TENANT then NAME of a segment.
func completeTenantSegment(g *globals) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if cmd.Flags().Changed("file") {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		switch len(args) {
		case 0:
			return tenantNames(cmd, g), cobra.ShellCompDirectiveNoFileComp
		case 1:
			return segmentNames(cmd, g, args[0]), cobra.ShellCompDirectiveNoFileComp
		}
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
}

// completePorts completes an attached port's interface.
func completePorts(g *globals) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := completionContext(cmd)
		defer cancel()
		ports, err := listPorts(ctx, g, "", "")
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var names []string
		for _, p := range ports {
			names = append(names, p.GetInterface())
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeTenantFlag completes --tenant with tenant names.
func completeTenantFlag(g *globals, cmd *cobra.Command) {
	_ = cmd.RegisterFlagCompletionFunc("tenant", func(cmd *cobra.Command, _ []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return tenantNames(cmd, g), cobra.ShellCompDirectiveNoFileComp
	})
}

// completeSegmentFlag completes --segment with the segments of --tenant.
func completeSegmentFlag(g *globals, cmd *cobra.Command) {
	_ = cmd.RegisterFlagCompletionFunc("segment", func(cmd *cobra.Command, _ []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		tenant, _ := cmd.Flags().GetString("tenant")
		return segmentNames(cmd, g, tenant), cobra.ShellCompDirectiveNoFileComp
	})
}
