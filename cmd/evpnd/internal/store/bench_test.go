package store

import (
	"fmt"
	"testing"
	"time"

	evpndv1 "github.com/evpnd/evpnd/api/evpnd/v1"
)

// benchState has n objects of each kind with realistic field sizes.
func benchState(n int) State {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var st State
	for i := range n {
		tenant := fmt.Sprintf("tenant-%04d", i)
		seg := "seg-" + tenant
		port := fmt.Sprintf("veth%05d", i)
		st.Tenants = append(st.Tenants, &evpndv1.Tenant{
			Name: tenant, L3Vni: uint32(50000 + i), Namespace: "evpn-" + tenant,
			RouteTargets: &evpndv1.RouteTargets{Import: []string{fmt.Sprintf("65000:%d", 50000+i)}, Export: []string{fmt.Sprintf("65000:%d", 50000+i)}},
			Meta:         meta(1, t0),
		})
		st.Segments = append(st.Segments, &evpndv1.Segment{
			Tenant: tenant, Name: seg, Vni: uint32(10000 + i), Mtu: 1450,
			Gateway: []string{fmt.Sprintf("10.%d.%d.1/24", i/256, i%256)}, Ports: []string{port}, Meta: meta(1, t0),
		})
		st.Ports = append(st.Ports, &evpndv1.Port{Interface: port, Tenant: tenant, Segment: seg, Meta: meta(1, t0)})
		st.Policies = append(st.Policies, &evpndv1.Policy{
			Tenant: tenant,
			Rules: []*evpndv1.Rule{
				{Name: "ssh", Priority: 10, Direction: "ingress", Protocol: "tcp", Ports: []string{"22"}, Action: "accept", Remote: &evpndv1.Remote{Prefixes: []string{"192.0.2.0/24"}}},
				{Name: "web", Priority: 20, Direction: "ingress", Protocol: "tcp", Ports: []string{"80", "443"}, Action: "accept"},
			},
			Meta: meta(1, t0),
		})
	}
	return st
}

// BenchmarkCommit measures one durable Commit of a State of 1000 objects
// (250 of each kind): encoding plus write, fsync, rename and directory
// fsync, which bounds the API's write rate.
func BenchmarkCommit(b *testing.B) {
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	st := benchState(250)
	data, err := encode(st)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Commit(st); err != nil {
			b.Fatal(err)
		}
	}
}
