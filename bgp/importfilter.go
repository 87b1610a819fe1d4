package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/evpnd/evpnd/evpn"
)

// ImportFilter names the EVPN paths this host has a use for. Once set
// (SetImport), a path learned from a peer that carries none of the wanted
// route targets is rejected by GoBGP's import policy: it stays in the
// peer's adj-RIB-in (so a later, wider filter can take it back without a
// session reset) but never enters the global table, best-path selection or
// Events. In a fabric where a host imports a tenth of the paths, that is
// nine tenths of the per-path work saved.
//
// A path is accepted when one of its transitive route targets (type 0, 1
// or 2, subtype 2) is
//   - one of RTs, byte for byte (GoBGP compares the community's printed
//     form, which is one-to-one with the bytes for these three types), or
//   - an RT whose local administrator is V or, for a type-0 RT, RFC 8365's
//     auto-derived 1<<28 | D-ID<<24 | V with any D-ID 0..15, for a V in VNIs.
//
// That is what evpn.RIB imports (evpn.RT.ImportVNI), with one exception: the
// RIB matches a type-0 RT on local administrator & 0xFFFFFF, so it would
// also import a type-0 RT whose upper local-administrator byte is anything
// else (0x01..0x0F, 0x20..0xFF: not auto-derived by RFC 8365 nor by any
// vendor preset); the filter rejects those. The filter does not look at the
// route type: an L3's RT is accepted on a type-3 too, and the RIB drops
// what it does not import.
type ImportFilter struct {
	RTs  []evpn.RT  // explicit import RTs, matched exactly
	VNIs []evpn.VNI // imported by VNI (AutoImport)
}

// ImportFilterOf is the filter that keeps what segs and l3s import: their
// explicit import RTs and the VNIs of those that import by VNI.
func ImportFilterOf(segs []evpn.Segment, l3s []evpn.L3) ImportFilter {
	var f ImportFilter
	for _, s := range segs {
		if s.AutoImport {
			f.VNIs = append(f.VNIs, s.VNI)
		} else {
			f.RTs = append(f.RTs, s.Import...)
		}
	}
	for _, l := range l3s {
		if l.AutoImport {
			f.VNIs = append(f.VNIs, l.VNI)
		} else {
			f.RTs = append(f.RTs, l.Import...)
		}
	}
	return f.normal()
}

// normal is f sorted and without repeats, so that equal filters compare
// equal.
func (f ImportFilter) normal() ImportFilter {
	rts := slices.Clone(f.RTs)
	slices.SortFunc(rts, func(a, b evpn.RT) int { return slices.Compare(a[:], b[:]) })
	vnis := slices.Clone(f.VNIs)
	slices.Sort(vnis)
	return ImportFilter{RTs: slices.Compact(rts), VNIs: slices.Compact(vnis)}
}

func (f ImportFilter) empty() bool { return len(f.RTs) == 0 && len(f.VNIs) == 0 }

func (f ImportFilter) equal(g ImportFilter) bool {
	return slices.Equal(f.RTs, g.RTs) && slices.Equal(f.VNIs, g.VNIs)
}

// rfc8365DIDs is how many D-ID values RFC 8365 s5.1.2.1's 4-bit field
// holds; each gives an auto-derived local administrator for a VNI.
const rfc8365DIDs = 16

// pattern is the one anchored regular expression GoBGP matches against
// the printed form of each route target of a path ("65000:100",
// "10.0.0.1:100", "1.10:100" for AS 65546); "" when f accepts nothing.
//
// One pattern rather than one defined-set entry per RT or VNI: GoBGP
// scans a set's entries one by one for every community of every path,
// while a single alternation of sorted literals compiles into a prefix
// tree that is walked once. The administrator part of an auto-import
// match is any ASN or address: a type-1 or type-2 RT has a 16-bit local
// administrator, so of the alternatives only V itself can ever match it.
func (f ImportFilter) pattern() string {
	var alts []string
	if len(f.VNIs) > 0 {
		locals := make([]string, 0, len(f.VNIs)*(1+rfc8365DIDs))
		for _, v := range f.VNIs {
			v := uint32(v) & uint32(evpn.MaxVNI)
			locals = append(locals, strconv.FormatUint(uint64(v), 10))
			for d := range uint32(rfc8365DIDs) {
				locals = append(locals, strconv.FormatUint(uint64(1<<28|d<<24|v), 10))
			}
		}
		slices.Sort(locals)
		alts = append(alts, `[0-9.]+:(?:`+strings.Join(slices.Compact(locals), "|")+`)`)
	}
	for _, rt := range f.RTs {
		alts = append(alts, regexp.QuoteMeta(gobgpRTString(rt)))
	}
	if len(alts) == 0 {
		return ""
	}
	return `^(?:` + strings.Join(alts, "|") + `)$`
}

// gobgpRTString prints rt as GoBGP prints the extended community it parses
// it into (a 4-byte ASN in asdot form), which is what its ext-community
// conditions match.
func gobgpRTString(rt evpn.RT) string {
	be := func(b []byte) uint64 {
		var n uint64
		for _, x := range b {
			n = n<<8 | uint64(x)
		}
		return n
	}
	switch rt[0] & 0x3F {
	case 0x01:
		return netip.AddrFrom4([4]byte(rt[2:6])).String() + ":" + strconv.FormatUint(be(rt[6:8]), 10)
	case 0x02:
		return strconv.FormatUint(be(rt[2:4]), 10) + "." + strconv.FormatUint(be(rt[4:6]), 10) + ":" + strconv.FormatUint(be(rt[6:8]), 10)
	}
	return strconv.FormatUint(be(rt[2:4]), 10) + ":" + strconv.FormatUint(be(rt[4:8]), 10)
}

// Names of the EVPN import policy; each change installs a new generation
// next to the old one and swaps the assignment, because GoBGP's statements
// keep the defined set they were created with: replacing a set by name
// would not reach them.
const (
	evpnImport    = "evpnd-evpn-import"
	evpnImportRTs = "evpnd-evpn-import-rts"
)

// importState is the EVPN import filter wanted and the one GoBGP has.
type importState struct {
	mu      sync.Mutex
	want    *ImportFilter // nil: never set, every path accepted
	applied *ImportFilter // what GoBGP's policy holds; nil: no EVPN policy
	gen     int           // generation of the installed policy
	running bool          // GoBGP is started and not stopped
	// resetDue is set when the policy changed but peers' paths have not
	// been run through it again yet.
	resetDue bool
}

// SetImport makes f the EVPN paths accepted from peers (see ImportFilter)
// and runs every peer's received paths through it again (a soft reset
// in: no session is reset): paths f newly accepts are delivered on
// Events, and paths it no longer accepts are withdrawn there. An empty f
// accepts no EVPN path. Until SetImport is first called every path is
// accepted. It may be called before Start, which applies the last filter
// given; calling it again with the same filter does nothing.
func (s *Server) SetImport(ctx context.Context, f ImportFilter) error {
	f = f.normal()
	s.imp.mu.Lock()
	defer s.imp.mu.Unlock()
	s.imp.want = &f
	if !s.imp.running {
		select {
		case <-s.done:
			return errors.New("bgp: import filter: speaker stopped")
		default:
		}
		return nil
	}
	return s.applyImportLocked(ctx)
}

// startImport applies the filter set before Start; from now on SetImport
// applies at once.
func (s *Server) startImport(ctx context.Context) error {
	s.imp.mu.Lock()
	defer s.imp.mu.Unlock()
	s.imp.running = true
	return s.applyImportLocked(ctx)
}

// stopImport keeps SetImport away from a stopped GoBGP server.
func (s *Server) stopImport() {
	s.imp.mu.Lock()
	defer s.imp.mu.Unlock()
	s.imp.running = false
}

func (s *Server) applyImportLocked(ctx context.Context) error {
	want := s.imp.want
	if want == nil {
		return nil
	}
	if s.imp.applied == nil || !s.imp.applied.equal(*want) {
		if err := s.installImportLocked(ctx, *want); err != nil {
			return err
		}
		s.imp.resetDue = true
	}
	if !s.imp.resetDue {
		return nil
	}
	// Paths rejected at import stay in the adj-RIB-in: running them
	// through the new policy brings back what it accepts and withdraws
	// what it no longer does, without resetting a session.
	err := s.bgp.ResetPeer(ctx, &api.ResetPeerRequest{Address: "all", Soft: true, Direction: api.ResetPeerRequest_IN})
	if err != nil {
		return fmt.Errorf("bgp: import filter: soft reset of peers: %w", err)
	}
	s.imp.resetDue = false
	s.log.Info("bgp import filter applied", "rts", len(want.RTs), "vnis", len(want.VNIs))
	return nil
}

// installImportLocked puts f in place as a new generation of the EVPN
// import policy and removes the previous one.
func (s *Server) installImportLocked(ctx context.Context, f ImportFilter) error {
	gen := s.imp.gen + 1
	policy := fmt.Sprintf("%s-%d", evpnImport, gen)
	set := fmt.Sprintf("%s-%d", evpnImportRTs, gen)
	pat := f.pattern()

	var stmts []*api.Statement
	if !f.empty() {
		err := s.bgp.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: &api.DefinedSet{
			DefinedType: api.DefinedType_EXT_COMMUNITY,
			Name:        set,
			List:        []string{"rt:" + pat},
		}})
		if err != nil {
			return fmt.Errorf("bgp: import filter: route target set: %w", err)
		}
		stmts = append(stmts, &api.Statement{
			Name: policy + "-accept",
			Conditions: &api.Conditions{
				AfiSafiIn:       []*api.Family{evpnFamily},
				ExtCommunitySet: &api.MatchSet{Type: api.MatchSet_ANY, Name: set},
			},
			Actions: &api.Actions{RouteAction: api.RouteAction_ACCEPT},
		})
	}
	// GoBGP runs the global import policy on local paths too: only paths
	// learned from peers are rejected, never the ones this host
	// advertises (whose export RTs it need not import).
	reject := func(name string, t api.Conditions_RouteType) *api.Statement {
		return &api.Statement{
			Name:       name,
			Conditions: &api.Conditions{AfiSafiIn: []*api.Family{evpnFamily}, RouteType: t},
			Actions:    &api.Actions{RouteAction: api.RouteAction_REJECT},
		}
	}
	stmts = append(stmts,
		reject(policy+"-reject-ibgp", api.Conditions_ROUTE_TYPE_INTERNAL),
		reject(policy+"-reject-ebgp", api.Conditions_ROUTE_TYPE_EXTERNAL))

	undoSet := func() {
		if !f.empty() {
			_ = s.bgp.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{
				DefinedSet: &api.DefinedSet{DefinedType: api.DefinedType_EXT_COMMUNITY, Name: set}, All: true})
		}
	}
	if err := s.bgp.AddPolicy(ctx, &api.AddPolicyRequest{Policy: &api.Policy{Name: policy, Statements: stmts}}); err != nil {
		undoSet()
		return fmt.Errorf("bgp: import filter: policy: %w", err)
	}
	// One operation swaps the old generation for the new one: no path is
	// ever judged without an EVPN policy in between.
	err := s.bgp.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name:          "global",
		Direction:     api.PolicyDirection_IMPORT,
		Policies:      []*api.Policy{{Name: noUnicastImport}, {Name: policy}},
		DefaultAction: api.RouteAction_ACCEPT,
	}})
	if err != nil {
		_ = s.bgp.DeletePolicy(ctx, &api.DeletePolicyRequest{Policy: &api.Policy{Name: policy}, All: true})
		undoSet()
		return fmt.Errorf("bgp: import filter: policy assignment: %w", err)
	}
	old, oldGen := s.imp.applied, s.imp.gen
	s.imp.applied, s.imp.gen = &f, gen
	if old == nil {
		return nil
	}
	// The old generation is unused now; a failure to delete it leaves
	// some memory behind, not a wrong filter.
	oldPolicy := fmt.Sprintf("%s-%d", evpnImport, oldGen)
	if err := s.bgp.DeletePolicy(ctx, &api.DeletePolicyRequest{Policy: &api.Policy{Name: oldPolicy}, All: true}); err != nil {
		s.log.Warn("bgp: old import policy not deleted", "policy", oldPolicy, "err", err)
	}
	if !old.empty() {
		oldSet := fmt.Sprintf("%s-%d", evpnImportRTs, oldGen)
		err := s.bgp.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{
			DefinedSet: &api.DefinedSet{DefinedType: api.DefinedType_EXT_COMMUNITY, Name: oldSet}, All: true})
		if err != nil {
			s.log.Warn("bgp: old import route target set not deleted", "set", oldSet, "err", err)
		}
	}
	return nil
}
