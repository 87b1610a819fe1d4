package policy

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/vishvananda/netlink"

	"github.com/evpnd/evpnd/fabric/kernel"
)

// Egress shaping of workload ports: one HTB tree per port, rooted at
// qdisc e5: with the port's rate in class e5:1, unclassified traffic in
// e5:2 and the policy's classes in e5:10 and up. HTB puts a packet whose
// skb priority equals a leaf class handle straight into that class, which
// is how nftables classifies here without tc filters.

const (
	// htbMTU is the cell size tc and netlink assume when they turn a burst
	// in bytes into a buffer time; a burst of 0 means rate/HZ + htbMTU, as
	// tc does.
	htbMTU = 1600
	// htbMaxPrio is HTB's lowest priority; the kernel silently clamps
	// higher ones, which would make every apply look like a change.
	htbMaxPrio = 7
	// minDefaultRate is the least the default class is guaranteed (bit/s)
	// when the classes take all of the port's rate: unclassified traffic
	// (ARP, ND, control) must never starve.
	minDefaultRate = 8000
	// htbMinQuantum and htbMaxQuantum bound the DRR quantum (bytes) the
	// way the kernel does; we set it explicitly so the kernel neither
	// warns on every change nor reports a value we did not ask for.
	htbMinQuantum = htbMTU
	htbMaxQuantum = 200000
)

var (
	qdiscHandle  = uint32(QdiscMajor << 16)
	defaultMinor = uint32(DefaultClass & 0xffff)
)

// shaping is the HTB tree evpnd wants on one port.
type shaping struct {
	qdisc   *netlink.Htb
	classes []*netlink.HtbClass // parents before children
}

// portTC is what the kernel has on one port: its root qdisc (nil for the
// kernel's default) and, when that qdisc is evpnd's HTB, its classes.
type portTC struct {
	link    netlink.Link
	root    netlink.Qdisc
	classes map[uint32]*netlink.HtbClass
}

// ours reports whether the root qdisc carries evpnd's handle.
func (p *portTC) ours() bool {
	return p.root != nil && p.root.Attrs().Handle&0xffff0000 == qdiscHandle
}

type tcOpKind uint8

const (
	opQdiscDel tcOpKind = iota + 1
	opQdiscAdd
	opClassDel
	opClassSet
)

// tcOp is one change to a port's tc state.
type tcOp struct {
	port  string
	kind  tcOpKind
	qdisc netlink.Qdisc
	class *netlink.HtbClass
}

func (o tcOp) String() string {
	switch o.kind {
	case opQdiscDel:
		return fmt.Sprintf("%s: del qdisc %s %s", o.port, o.qdisc.Type(), netlink.HandleStr(o.qdisc.Attrs().Handle))
	case opQdiscAdd:
		return fmt.Sprintf("%s: add qdisc %s %s", o.port, o.qdisc.Type(), netlink.HandleStr(o.qdisc.Attrs().Handle))
	case opClassDel:
		return fmt.Sprintf("%s: del class %s", o.port, netlink.HandleStr(o.class.Handle))
	case opClassSet:
		return fmt.Sprintf("%s: set class %s parent %s rate %dB/s ceil %dB/s prio %d", o.port,
			netlink.HandleStr(o.class.Handle), netlink.HandleStr(o.class.Parent), o.class.Rate, o.class.Ceil, o.class.Prio)
	}
	return fmt.Sprintf("%s: unknown op %d", o.port, o.kind)
}

// applyQoS makes the egress shaping of the namespace behind h what qos
// asks for: an HTB tree on every port with an egress rate, none of evpnd's
// on any other port. It changes only what differs, so applying the same
// qos again sends nothing to the kernel and keeps class counters. Qdiscs
// that are not evpnd's are never touched; a port that has one as its root
// and should be shaped is an error.
func applyQoS(h *netlink.Handle, qos []PortQoS) error {
	ops, planErr := planQoS(h, qos)
	return errors.Join(planErr, execQoS(h, ops))
}

// planQoS reads the namespace's tc state and returns the changes that make
// it match qos. Ports it cannot plan for are left out and named in the
// error; the plan for the others is still returned.
func planQoS(h *netlink.Handle, qos []PortQoS) ([]tcOp, error) {
	ports, err := readTC(h)
	if err != nil {
		return nil, fmt.Errorf("qos: %w", err)
	}
	var (
		ops  []tcOp
		errs []error
		seen = map[string]bool{}
	)
	for _, q := range qos {
		if seen[q.Port] {
			errs = append(errs, fmt.Errorf("qos: port %q: listed twice", q.Port))
			continue
		}
		seen[q.Port] = true
		have, ok := ports[q.Port]
		if !ok {
			errs = append(errs, fmt.Errorf("qos: port %q: not found", q.Port))
			continue
		}
		var want *shaping
		if q.EgressRate > 0 {
			want, err = desiredShaping(have.link.Attrs().Index, q)
			if err != nil {
				errs = append(errs, fmt.Errorf("qos: port %q: %w", q.Port, err))
				continue
			}
		}
		portOps, err := diffPort(q.Port, want, have)
		if err != nil {
			errs = append(errs, fmt.Errorf("qos: %w", err))
			continue
		}
		ops = append(ops, portOps...)
	}
	var rest []string
	for name := range ports {
		if !seen[name] {
			rest = append(rest, name)
		}
	}
	sort.Strings(rest)
	for _, name := range rest {
		// Without a wanted tree diffPort only ever removes evpnd's own.
		portOps, _ := diffPort(name, nil, ports[name])
		ops = append(ops, portOps...)
	}
	return ops, errors.Join(errs...)
}

// execQoS sends ops to the kernel. A failed op skips the rest of its
// port's ops, which build on it; other ports go on.
func execQoS(h *netlink.Handle, ops []tcOp) error {
	var (
		errs   []error
		failed = map[string]bool{}
	)
	for _, op := range ops {
		if failed[op.port] {
			continue
		}
		var err error
		switch op.kind {
		case opQdiscDel:
			err = h.QdiscDel(op.qdisc)
		case opQdiscAdd:
			err = h.QdiscReplace(op.qdisc)
		case opClassDel:
			err = h.ClassDel(op.class)
		case opClassSet:
			err = h.ClassReplace(op.class)
		default:
			err = fmt.Errorf("unknown op kind %d", op.kind)
		}
		if err != nil {
			failed[op.port] = true
			errs = append(errs, fmt.Errorf("qos: %s: %w", op, err))
		}
	}
	return errors.Join(errs...)
}

// desiredShaping builds the HTB tree for q on the link with index idx.
func desiredShaping(idx int, q PortQoS) (*shaping, error) {
	qd := netlink.NewHtb(netlink.QdiscAttrs{
		LinkIndex: idx,
		Handle:    qdiscHandle,
		Parent:    netlink.HANDLE_ROOT,
	})
	qd.Defcls = defaultMinor

	root, err := htbClass(idx, RootClass, qdiscHandle, q.EgressRate, q.EgressRate, q.EgressBurst, 0)
	if err != nil {
		return nil, fmt.Errorf("egress: %w", err)
	}
	var sum uint64
	for _, c := range q.Classes {
		sum += c.Rate
	}
	// The default class is guaranteed what the classes leave, but never
	// less than 1% of the port (or minDefaultRate), so it can always send.
	defRate := max(q.EgressRate/100, minDefaultRate)
	if sum < q.EgressRate {
		defRate = max(defRate, q.EgressRate-sum)
	}
	defRate = min(defRate, q.EgressRate)
	def, err := htbClass(idx, DefaultClass, RootClass, defRate, q.EgressRate, 0, htbMaxPrio)
	if err != nil {
		return nil, fmt.Errorf("default class: %w", err)
	}
	s := &shaping{qdisc: qd, classes: []*netlink.HtbClass{root, def}}
	for i, c := range q.Classes {
		ceil := c.Ceil
		if ceil == 0 {
			ceil = q.EgressRate
		}
		if ceil < c.Rate {
			return nil, fmt.Errorf("class %q: ceil %d bit/s is below its rate %d bit/s", c.Name, ceil, c.Rate)
		}
		if c.Priority > htbMaxPrio {
			return nil, fmt.Errorf("class %q: priority %d is out of range 0..%d", c.Name, c.Priority, htbMaxPrio)
		}
		hc, err := htbClass(idx, ClassHandle(i), RootClass, c.Rate, ceil, 0, c.Priority)
		if err != nil {
			return nil, fmt.Errorf("class %q: %w", c.Name, err)
		}
		s.classes = append(s.classes, hc)
	}
	return s, nil
}

// htbClass builds one HTB class; rates are bit/s, burst bytes (0: tc's
// default). Buffers are computed from the burst the way tc does.
func htbClass(idx int, handle, parent uint32, rate, ceil, burst uint64, prio uint32) (*netlink.HtbClass, error) {
	// HTB works in bytes per second and refuses a zero rate.
	if rate < 8 {
		return nil, fmt.Errorf("rate %d bit/s is below 8", rate)
	}
	if burst > 0 {
		// The buffer is the burst's transmit time in scheduler ticks, a
		// 32-bit number.
		ticks := float64(burst) / float64(rate/8) * 1e6 * netlink.TickInUsec()
		if ticks > math.MaxUint32 {
			return nil, fmt.Errorf("burst %d bytes lasts too long at %d bit/s", burst, rate)
		}
	}
	quantum := min(max(rate/8/10, htbMinQuantum), htbMaxQuantum)
	return netlink.NewHtbClass(
		netlink.ClassAttrs{LinkIndex: idx, Handle: handle, Parent: parent},
		netlink.HtbClassAttrs{
			// NewHtbClass takes bit/s and stores bytes/s, as HTB does.
			Rate:    rate,
			Ceil:    ceil,
			Buffer:  uint32(burst),
			Cbuffer: uint32(burst),
			Prio:    prio,
			Quantum: uint32(quantum),
		}), nil
}

// diffPort returns the ops that turn have into want (nil: no shaping). It
// refuses to shape a port whose root qdisc is someone else's.
func diffPort(port string, want *shaping, have *portTC) ([]tcOp, error) {
	ours := have.ours()
	if want == nil {
		if ours {
			return []tcOp{{port: port, kind: opQdiscDel, qdisc: have.root}}, nil
		}
		return nil, nil
	}
	if have.root != nil && !ours {
		return nil, fmt.Errorf("port %q: root qdisc %s %s is not evpnd's (handle major %x), not replacing it",
			port, have.root.Type(), netlink.HandleStr(have.root.Attrs().Handle), QdiscMajor)
	}
	var ops []tcOp
	if ours {
		// HTB cannot change its default class in place: rebuild a tree
		// that is ours but not the shape we make.
		if htb, ok := have.root.(*netlink.Htb); !ok || htb.Defcls != want.qdisc.Defcls || have.root.Attrs().Handle != qdiscHandle {
			ops = append(ops, tcOp{port: port, kind: opQdiscDel, qdisc: have.root})
			ours = false
		}
	}
	if !ours {
		ops = append(ops, tcOp{port: port, kind: opQdiscAdd, qdisc: want.qdisc})
		for _, c := range want.classes {
			ops = append(ops, tcOp{port: port, kind: opClassSet, class: c})
		}
		return ops, nil
	}

	wanted := map[uint32]*netlink.HtbClass{}
	for _, c := range want.classes {
		wanted[c.Handle] = c
	}
	var stale []*netlink.HtbClass
	for h, c := range have.classes {
		// The kernel cannot move a class to another parent.
		if w, ok := wanted[h]; !ok || w.Parent != c.Parent {
			stale = append(stale, c)
		}
	}
	// Children go before their parents, which cannot be deleted first.
	slices.SortFunc(stale, func(a, b *netlink.HtbClass) int {
		return cmp.Or(cmp.Compare(a.Level, b.Level), cmp.Compare(b.Handle, a.Handle))
	})
	for _, c := range stale {
		ops = append(ops, tcOp{port: port, kind: opClassDel, class: c})
	}
	for _, c := range want.classes {
		hc, ok := have.classes[c.Handle]
		if ok && hc.Parent == c.Parent && sameHTB(hc, c) {
			continue
		}
		ops = append(ops, tcOp{port: port, kind: opClassSet, class: c})
	}
	return ops, nil
}

// sameHTB compares what evpnd sets on a class with what the kernel reports.
func sameHTB(a, b *netlink.HtbClass) bool {
	return a.Rate == b.Rate && a.Ceil == b.Ceil && a.Buffer == b.Buffer && a.Cbuffer == b.Cbuffer &&
		a.Prio == b.Prio && a.Quantum == b.Quantum
}

// readTC reads every port's root qdisc in the namespace and the classes of
// evpnd's HTB qdiscs.
func readTC(h *netlink.Handle) (map[string]*portTC, error) {
	links, err := kernel.Dump("links", h.LinkList)
	if err != nil {
		return nil, err
	}
	qdiscs, err := kernel.Dump("qdiscs", func() ([]netlink.Qdisc, error) { return h.QdiscList(nil) })
	if err != nil {
		return nil, err
	}
	byIndex := map[int]*portTC{}
	ports := map[string]*portTC{}
	for _, l := range links {
		p := &portTC{link: l}
		byIndex[l.Attrs().Index] = p
		ports[l.Attrs().Name] = p
	}
	for _, q := range qdiscs {
		a := q.Attrs()
		// Handle 0 is the kernel's own default (noqueue, pfifo_fast, mq):
		// anyone may replace it.
		if a.Parent != netlink.HANDLE_ROOT || a.Handle == 0 {
			continue
		}
		if p, ok := byIndex[a.LinkIndex]; ok {
			p.root = q
		}
	}
	var errs []error
	for name, p := range ports {
		if !p.ours() {
			continue
		}
		classes, err := kernel.Dump("classes of "+name, func() ([]netlink.Class, error) { return h.ClassList(p.link, qdiscHandle) })
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.classes = map[uint32]*netlink.HtbClass{}
		for _, c := range classes {
			if hc, ok := c.(*netlink.HtbClass); ok && hc.Handle&0xffff0000 == qdiscHandle {
				// The kernel reports a top class's parent as the root,
				// not as the qdisc it was added to.
				if hc.Parent == netlink.HANDLE_ROOT {
					hc.Parent = qdiscHandle
				}
				p.classes[hc.Handle] = hc
			}
		}
	}
	return ports, errors.Join(errs...)
}

// qosState reads back the egress shaping evpnd has in force, by port: the
// port's rate and burst and its classes in handle order. The kernel keeps
// no class names, so Name is empty; bursts are what the kernel's buffer
// time holds at the rate, which for a burst of 0 is tc's default.
func qosState(h *netlink.Handle) (map[string]PortQoS, error) {
	ports, err := readTC(h)
	if err != nil {
		return nil, fmt.Errorf("qos: %w", err)
	}
	out := map[string]PortQoS{}
	for name, p := range ports {
		if !p.ours() {
			continue
		}
		q := PortQoS{Port: name}
		if root, ok := p.classes[RootClass]; ok {
			q.EgressRate = root.Rate * 8
			q.EgressBurst = uint64(netlink.Xmitsize(root.Rate, root.Buffer))
		}
		var handles []uint32
		for h := range p.classes {
			if h&0xffff >= 0x10 {
				handles = append(handles, h)
			}
		}
		slices.Sort(handles)
		for _, h := range handles {
			c := p.classes[h]
			q.Classes = append(q.Classes, Class{Rate: c.Rate * 8, Ceil: c.Ceil * 8, Priority: c.Prio})
		}
		out[name] = q
	}
	return out, nil
}
