package evpn

import (
	"net"
	"net/netip"
	"slices"
	"time"
)

// DupDetection configures duplicate MAC detection (RFC 7432 s15.1): a MAC
// seen moving MaxMoves times within Window is a duplicate, two workloads
// (or a loop) claiming one address. It is then frozen where it is: the
// RIB stops following its moves, and a local one is not advertised, until
// an operator clears it. MaxMoves 0 turns detection off (the default).
type DupDetection struct {
	MaxMoves int
	Window   time.Duration
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Defaults of RFC 7432 s15.1: 5 moves in 180 seconds.
const (
	DefaultDupMaxMoves = 5
	DefaultDupWindow   = 180 * time.Second
)

// Duplicate is a MAC detected as a duplicate.
type Duplicate struct {
	VNI VNI
	MAC net.HardwareAddr
	// Moves is how many moves were seen within the window; Since when
	// the MAC was frozen.
	Moves int
	Since time.Time
	// At is where it was frozen: this host's VTEP for a local MAC,
	// otherwise the remote VTEP.
	At netip.Addr
}

// dupState is a MAC's recent moves and whether it is frozen.
type dupState struct {
	moves  []time.Time
	frozen bool
	since  time.Time
	at     netip.Addr
}

// SetDupDetection turns duplicate MAC detection on (MaxMoves > 0) or off.
// Turning it off thaws every frozen MAC.
func (r *RIB) SetDupDetection(d DupDetection) Diff {
	if d.Now == nil {
		d.Now = time.Now
	}
	r.dupCfg = d
	if d.MaxMoves > 0 {
		return Diff{}
	}
	for _, st := range r.macs {
		if st.dup != nil {
			st.dup = nil
			r.dirtyMAC(st)
		}
	}
	return r.settle()
}

// location is where a MAC is: this host for a local MAC, else the VTEP its
// FDB entry points at; zero when nowhere.
func (r *RIB) location(st *macState) netip.Addr {
	if st.local {
		return r.self
	}
	return st.fdb
}

// noteMove records that st moved to at and freezes it once it moved too
// often.
func (r *RIB) noteMove(st *macState, at netip.Addr) {
	if r.dupCfg.MaxMoves <= 0 {
		return
	}
	if st.dup == nil {
		st.dup = &dupState{}
	}
	ds := st.dup
	if ds.frozen {
		return
	}
	now := r.dupCfg.Now()
	ds.moves = append(ds.moves, now)
	cut := 0
	for cut < len(ds.moves) && now.Sub(ds.moves[cut]) > r.dupCfg.Window {
		cut++
	}
	ds.moves = slices.Delete(ds.moves, 0, cut)
	if len(ds.moves) >= r.dupCfg.MaxMoves {
		ds.frozen, ds.since, ds.at = true, now, at
		r.newDups = append(r.newDups, r.duplicate(st))
	}
}

func (r *RIB) duplicate(st *macState) Duplicate {
	return Duplicate{VNI: st.key.vni, MAC: st.hw, Moves: len(st.dup.moves), Since: st.dup.since, At: st.dup.at}
}

func frozen(st *macState) bool { return st.dup != nil && st.dup.frozen }

// NewDuplicates returns the MACs frozen since the last call, and forgets
// them; the daemon logs and counts them.
func (r *RIB) NewDuplicates() []Duplicate {
	d := r.newDups
	r.newDups = nil
	return d
}

// Duplicates lists the frozen MACs, by VNI and MAC.
func (r *RIB) Duplicates() []Duplicate {
	var out []Duplicate
	for _, st := range r.macs {
		if frozen(st) {
			out = append(out, r.duplicate(st))
		}
	}
	slices.SortFunc(out, func(a, b Duplicate) int {
		if a.VNI != b.VNI {
			return int(a.VNI) - int(b.VNI)
		}
		return slices.Compare(a.MAC, b.MAC)
	})
	return out
}

// LocalAllowed reports whether the daemon may take mac as local in vni
// and advertise it: not while it is frozen at a remote VTEP.
func (r *RIB) LocalAllowed(vni VNI, mac net.HardwareAddr) bool {
	if len(mac) != 6 {
		return true
	}
	st := r.macs[macKey{vni: vni, mac: [6]byte(mac)}]
	return st == nil || !frozen(st) || st.dup.at == r.self
}

// ClearDuplicate thaws a frozen MAC and forgets its moves; it reports
// false when the MAC is not frozen. The MAC then follows its routes again.
func (r *RIB) ClearDuplicate(vni VNI, mac net.HardwareAddr) (bool, Diff) {
	if len(mac) != 6 {
		return false, Diff{}
	}
	st := r.macs[macKey{vni: vni, mac: [6]byte(mac)}]
	if st == nil || !frozen(st) {
		return false, Diff{}
	}
	st.dup = nil
	r.dirtyMAC(st)
	return true, r.settle()
}
