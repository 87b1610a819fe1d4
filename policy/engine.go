package policy

import (
	"context"
	"net/netip"
	"strings"
	"time"
)

// Binding tells the engine where a tenant lives on this host: its
// namespace, its segments' bridges and their workload ports.
type Binding struct {
	Tenant    string
	Namespace string // the tenant network namespace (name under /run/netns)
	Segments  []SegmentBinding
	// Uplink is the tenant side of the NAT uplink in Namespace; empty when
	// the tenant has no NAT.
	Uplink string
}

// SegmentBinding is one segment of a bound tenant.
type SegmentBinding struct {
	Name   string
	Bridge string // br<VNI> in the tenant namespace
	Ports  []string
}

// Counter is one rule's packet and byte count, or a segment default's:
// what reached the end of the segment's rules in one direction.
type Counter struct {
	Tenant string
	// Rule is the rule's name, or default:<segment>:<direction> (egress
	// or ingress) for a segment default. A default is counted where its
	// segment has rules in that direction or a default other than allow.
	Rule    string
	Packets uint64
	Bytes   uint64
}

// DefaultPrefix begins the Rule of a segment default's Counter.
const DefaultPrefix = "default:"

// IsDefault reports whether c counts a segment default, not a rule.
func (c Counter) IsDefault() bool { return strings.HasPrefix(c.Rule, DefaultPrefix) }

// Applied reports what one Apply did.
type Applied struct {
	Tenant   string
	Rules    int
	Duration time.Duration
	// Commit is the part of Duration the kernel took to take in and
	// commit the nftables batches: from sending each until its
	// acknowledgement. Zero when no batch was needed.
	Commit time.Duration
}

// Engine is the policy side of evpnd as the daemon sees it.
type Engine interface {
	// Apply compiles p for the tenant bound by b and replaces the tenant's
	// ruleset and QoS atomically. A policy that fails validation or that
	// the kernel refuses leaves the previous one in force; the error says
	// why, naming fields for validation failures.
	Apply(ctx context.Context, b Binding, p Policy) (Applied, error)
	// SetPortAddresses updates the addresses learned on a workload port;
	// rules targeting the port or its groups follow without a ruleset
	// replacement.
	SetPortAddresses(ctx context.Context, tenant, port string, addrs []netip.Addr) error
	// Remove deletes everything the engine made for tenant.
	Remove(ctx context.Context, tenant string) error
	// Repair re-applies the policies whose tables were deleted or changed
	// outside evpnd and returns those tenants.
	Repair(ctx context.Context) ([]string, error)
	// Counters reads every rule's counters.
	Counters(ctx context.Context) ([]Counter, error)
	Close() error
}
