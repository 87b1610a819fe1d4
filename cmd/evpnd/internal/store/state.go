package store

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	evpndv1 "github.com/evpnd/evpnd/api/evpnd/v1"
)

// State is every object created through the API. The store does not check
// the objects' meaning (names, VNIs, references): the API validates them
// before they reach Commit, and a restart must bring back exactly what was
// acknowledged, not a filtered version of it.
type State struct {
	Tenants  []*evpndv1.Tenant  // sorted by name
	Segments []*evpndv1.Segment // sorted by tenant, then name
	Ports    []*evpndv1.Port    // sorted by interface
	Policies []*evpndv1.Policy  // sorted by tenant
}

// Clone returns a deep copy, so that a caller may keep editing its own
// value while the store holds the committed one.
func (s State) Clone() State {
	return State{
		Tenants:  cloneAll(s.Tenants),
		Segments: cloneAll(s.Segments),
		Ports:    cloneAll(s.Ports),
		Policies: cloneAll(s.Policies),
	}
}

// message is a generated message pointer type; comparable lets the code
// spot nil elements without reflection.
type message interface {
	proto.Message
	comparable
}

func cloneAll[M message](in []M) []M {
	if in == nil {
		return nil
	}
	out := make([]M, len(in))
	var zero M
	for i, m := range in {
		if m != zero {
			out[i] = proto.Clone(m).(M)
		}
	}
	return out
}

// checkNil reports the first nil object in s: it would be written as {}
// and come back as an empty object, not the value the caller committed.
func (s State) checkNil() error {
	return errors.Join(
		firstNil("tenants", s.Tenants),
		firstNil("segments", s.Segments),
		firstNil("ports", s.Ports),
		firstNil("policies", s.Policies),
	)
}

func firstNil[M message](key string, in []M) error {
	var zero M
	if i := slices.Index(in, zero); i >= 0 {
		return fmt.Errorf("%s[%d] is nil", key, i)
	}
	return nil
}

// Sort puts every list in the documented order. The sort is stable, so
// objects with equal keys (which the API never produces) keep their
// relative order and a sorted State sorts to itself.
func (s *State) Sort() {
	slices.SortStableFunc(s.Tenants, func(a, b *evpndv1.Tenant) int {
		return cmp.Compare(a.GetName(), b.GetName())
	})
	slices.SortStableFunc(s.Segments, func(a, b *evpndv1.Segment) int {
		return cmp.Or(cmp.Compare(a.GetTenant(), b.GetTenant()), cmp.Compare(a.GetName(), b.GetName()))
	})
	slices.SortStableFunc(s.Ports, func(a, b *evpndv1.Port) int {
		return cmp.Compare(a.GetInterface(), b.GetInterface())
	})
	slices.SortStableFunc(s.Policies, func(a, b *evpndv1.Policy) int {
		return cmp.Compare(a.GetTenant(), b.GetTenant())
	})
}

// Equal reports whether s and o hold equal objects in the same order. A nil
// list equals an empty one: the file cannot tell them apart.
func (s State) Equal(o State) bool {
	return equalAll(s.Tenants, o.Tenants) &&
		equalAll(s.Segments, o.Segments) &&
		equalAll(s.Ports, o.Ports) &&
		equalAll(s.Policies, o.Policies)
}

func equalAll[M proto.Message](a, b []M) bool {
	return slices.EqualFunc(a, b, func(x, y M) bool { return proto.Equal(x, y) })
}

// Len is the number of objects of every kind.
func (s State) Len() int {
	return len(s.Tenants) + len(s.Segments) + len(s.Ports) + len(s.Policies)
}
