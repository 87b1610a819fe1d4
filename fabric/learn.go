package fabric

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/evpnd/evpnd/evpn"
	"github.com/evpnd/evpnd/fabric/kernel"
)

// Subscription sizes. The channel buffers decouple the library's socket
// readers from our processing; the socket buffer absorbs bursts (a
// workload namespace coming up with thousands of MACs) beyond that.
const (
	subChanLinks = 1 << 10
	subChanNeigh = 1 << 14
	subSockBuf   = 8 << 20
)

// watchUnderlay attaches pending workload ports as they appear in the
// underlay namespace.
func (l *Linux) watchUnderlay() error {
	ch, stop, err := l.subscribeLinks(l.underlay, false)
	if err != nil {
		return err
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			for u := range ch {
				if u.Header.Type == unix.RTM_NEWLINK {
					l.portAppeared(u.Attrs().Name)
				}
			}
			close(stop)
			select {
			case <-l.done:
				return
			default:
			}
			// The kernel dropped events (the socket overflowed): watch
			// again and look for every pending port once.
			l.log.Warn("underlay link watch restarted")
			if ch, stop, err = l.subscribeLinks(l.underlay, false); err != nil {
				l.log.Error("underlay link watch failed, pending ports attach on next set", "err", err)
				return
			}
			l.mu.Lock()
			if !l.closed {
				l.attachPendingLocked()
			}
			l.mu.Unlock()
		}
	}()
	return nil
}

func (l *Linux) portAppeared(name string) {
	l.pendMu.Lock()
	_, ok := l.pending[name]
	l.pendMu.Unlock()
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.attachPendingPortLocked(name)
	}
}

// subscribeLinks subscribes to link events in ns. Closing stop (or Close)
// ends it; the channel is closed when the subscription ends for any
// reason.
func (l *Linux) subscribeLinks(ns netns.NsHandle, existing bool) (<-chan netlink.LinkUpdate, chan struct{}, error) {
	ch := make(chan netlink.LinkUpdate, subChanLinks)
	stop := make(chan struct{})
	done := l.subDone(stop)
	err := netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{
		Namespace:              &ns,
		ListExisting:           existing,
		ErrorCallback:          l.subError(done, "link"),
		ReceiveBufferSize:      subSockBuf,
		ReceiveBufferForceSize: true,
	})
	if err != nil {
		close(stop)
		return nil, nil, err
	}
	return ch, stop, nil
}

// subDone is closed when either stop or the datapath's done is.
func (l *Linux) subDone(stop <-chan struct{}) chan struct{} {
	done := make(chan struct{})
	go func() {
		select {
		case <-stop:
		case <-l.done:
		}
		close(done)
	}()
	return done
}

func (l *Linux) subError(done <-chan struct{}, what string) func(error) {
	return func(err error) {
		select {
		case <-done:
			return // the socket was closed on purpose
		default:
		}
		if errors.Is(err, netlink.ErrDumpInterrupted) {
			return // the events that interrupted the dump follow it
		}
		if strings.HasPrefix(err.Error(), "Wrong sender portid") {
			// Another subscriber in the namespace listed the table:
			// vishvananda/netlink sends a subscription's dump request to
			// the socket's own groups too, so every listener hears it.
			// The library skips the message and reads on.
			return
		}
		l.log.Warn("netlink subscription error", "events", what, "err", err)
	}
}

// linkInfo is what the learner knows of a link in the tenant namespace.
type linkInfo struct {
	name   string
	master int
	kind   string
}

// learnedMAC is one MAC fact held by a learner.
type learnedMAC struct {
	port  int
	name  string
	vni   evpn.VNI
	hwKey [6]byte
}

// learner turns kernel events of one tenant namespace into Learned facts.
// It runs on one goroutine and owns its maps.
type learner struct {
	l     *Linux
	t     *tenantNS
	links map[int]linkInfo
	macs  map[macKey]learnedMAC
	ips   map[ipKey]learnedIP
	// probe is the learner's own netlink socket for keepalive probes, so
	// they never wait for (or interleave with) a Set or Update.
	probe *batchWriter
}

// learnedIP is one neighbor fact held by a learner.
type learnedIP struct {
	mac    net.HardwareAddr
	bridge int // ifindex of the segment bridge holding the neighbor
}

func (l *Linux) startLearner(t *tenantNS) error {
	lr := &learner{
		l:     l,
		t:     t,
		links: make(map[int]linkInfo),
		macs:  make(map[macKey]learnedMAC),
		ips:   make(map[ipKey]learnedIP),
	}
	if l.keepalive > 0 {
		w, err := newBatchWriter(t.ns)
		if err != nil {
			return fmt.Errorf("keepalive socket in namespace %q: %w", t.nsName, err)
		}
		lr.probe = w
	}
	linkCh, neighCh, stop, err := lr.subscribe()
	if err != nil {
		if lr.probe != nil {
			lr.probe.close()
		}
		return err
	}
	t.stop = make(chan struct{})
	t.exited = make(chan struct{})
	go lr.run(linkCh, neighCh, stop)
	return nil
}

func (lr *learner) subscribe() (<-chan netlink.LinkUpdate, <-chan netlink.NeighUpdate, chan struct{}, error) {
	linkCh, stop, err := lr.l.subscribeLinks(lr.t.ns, true)
	if err != nil {
		return nil, nil, nil, err
	}
	neighCh, err := lr.l.subscribeNeigh(lr.t.ns, stop)
	if err != nil {
		close(stop)
		for range linkCh {
		}
		return nil, nil, nil, err
	}
	return linkCh, neighCh, stop, nil
}

func (lr *learner) run(linkCh <-chan netlink.LinkUpdate, neighCh <-chan netlink.NeighUpdate, stop chan struct{}) {
	defer close(lr.t.exited)
	var tick <-chan time.Time
	if lr.probe != nil {
		defer lr.probe.close()
		ticker := time.NewTicker(lr.l.keepalive)
		defer ticker.Stop()
		tick = ticker.C
	}
	// drain ends a subscription pair, letting the library's readers exit.
	drain := func() {
		close(stop)
		for range linkCh {
		}
		for range neighCh {
		}
	}
	for {
		var ok bool
		select {
		case <-lr.t.stop:
			drain()
			if lr.t.dropFacts {
				lr.dropAll()
			}
			return
		case <-lr.l.done:
			drain()
			return
		case u, open := <-linkCh:
			if ok = open; ok {
				lr.link(u)
			}
		case u, open := <-neighCh:
			if ok = open; ok {
				lr.neigh(u)
			}
		case <-lr.t.local.wake:
			lr.takenOver(lr.t.local.taken())
			continue
		case <-tick:
			lr.keepalive()
			continue
		}
		if ok {
			continue
		}
		drain()
		if !lr.resync() {
			return
		}
		var err error
		if linkCh, neighCh, stop, err = lr.subscribe(); err != nil {
			lr.l.log.Error("learning stopped: resubscribe failed", "tenant", lr.t.name, "err", err)
			return
		}
	}
}

// resync runs after the kernel dropped events: it reports Gone for facts
// that are no longer in the kernel. The new subscription lists the rest.
func (lr *learner) resync() bool {
	select {
	case <-lr.t.stop:
		return false
	case <-lr.l.done:
		return false
	default:
	}
	lr.l.log.Warn("learning events lost, resynchronising", "tenant", lr.t.name)
	h := lr.t.h
	links, err := kernel.Dump("links", h.LinkList)
	if err != nil {
		lr.l.log.Error("learning resync", "tenant", lr.t.name, "err", err)
		return true
	}
	lr.links = make(map[int]linkInfo)
	for _, link := range links {
		a := link.Attrs()
		lr.links[a.Index] = linkInfo{name: a.Name, master: a.MasterIndex, kind: link.Type()}
	}
	seenMAC := make(map[macKey]bool)
	seenIP := make(map[ipKey]bool)
	for _, fam := range []int{unix.AF_BRIDGE, unix.AF_INET, unix.AF_INET6} {
		ns, err := kernel.Dump("neighbors", func() ([]netlink.Neigh, error) { return h.NeighList(0, fam) })
		if err != nil {
			lr.l.log.Error("learning resync", "tenant", lr.t.name, "err", err)
			return true
		}
		for _, n := range ns {
			if k, ok := lr.macFact(n); ok {
				seenMAC[k] = true
			}
			if k, _, ok := lr.ipFact(n); ok {
				seenIP[k] = true
			}
		}
	}
	for k, m := range lr.macs {
		if !seenMAC[k] {
			lr.forgetMAC(k, m)
		}
	}
	for k, ip := range lr.ips {
		if !seenIP[k] {
			lr.forgetIP(k, ip.mac)
		}
	}
	return true
}

func (lr *learner) link(u netlink.LinkUpdate) {
	a := u.Attrs()
	old, known := lr.links[a.Index]
	if u.Header.Type == unix.RTM_DELLINK {
		delete(lr.links, a.Index)
		lr.portGone(a.Index)
		lr.l.portLeft(lr.t, a.Name)
		return
	}
	cur := linkInfo{name: a.Name, master: a.MasterIndex, kind: u.Link.Type()}
	if known && old.master != cur.master {
		// The event may be older than what linkName read from the kernel
		// for a neighbor event that overtook it (a port just moved in and
		// enslaved): ask the kernel where the port is now, rather than
		// forget MACs learned on the bridge it is still in.
		if link, err := lr.t.h.LinkByIndex(a.Index); err == nil {
			la := link.Attrs()
			cur = linkInfo{name: la.Name, master: la.MasterIndex, kind: link.Type()}
		}
	}
	lr.links[a.Index] = cur
	if known && old.master != cur.master {
		lr.portLeftBridge(a.Index, cur.master)
	}
}

// portGone reports Gone for every MAC learned on port.
func (lr *learner) portGone(port int) {
	lr.portLeftBridge(port, 0)
}

// portLeftBridge reports Gone for every MAC learned on port in a segment
// other than that of master, the bridge port is in now (0: none).
func (lr *learner) portLeftBridge(port, master int) {
	var vni evpn.VNI
	inSegment := false
	if master != 0 {
		vni, inSegment = lr.segmentBridge(master)
	}
	for k, m := range lr.macs {
		if m.port == port && !(inSegment && m.vni == vni) {
			lr.forgetMAC(k, m)
		}
	}
}

// portLeft makes a configured port pending again when it leaves its tenant
// namespace (deleted, or moved away by someone), so it is attached again
// when it reappears in the underlay.
func (l *Linux) portLeft(t *tenantNS, name string) {
	l.pendMu.Lock()
	defer l.pendMu.Unlock()
	if want, ok := l.configured[name]; ok && want.tenant == t.nsName {
		l.pending[name] = want
	}
}

func (lr *learner) linkName(index int) (linkInfo, bool) {
	if li, ok := lr.links[index]; ok {
		return li, true
	}
	// A neighbor event can overtake the link event of a port just moved in.
	link, err := lr.t.h.LinkByIndex(index)
	if err != nil {
		return linkInfo{}, false
	}
	a := link.Attrs()
	li := linkInfo{name: a.Name, master: a.MasterIndex, kind: link.Type()}
	lr.links[index] = li
	return li, true
}

// segmentBridge returns the VNI of a segment bridge ifindex. The L3VNI
// bridge is not one: it holds only evpnd's router MAC entries.
func (lr *learner) segmentBridge(index int) (evpn.VNI, bool) {
	li, ok := lr.linkName(index)
	if !ok || li.kind != "bridge" {
		return 0, false
	}
	vni, ok := segmentVNI(li.name, "br")
	if !ok || uint32(vni) == lr.t.l3vni.Load() {
		return 0, false
	}
	return vni, true
}

// macFact classifies a bridge FDB entry: a dynamic entry on a workload
// port of a segment bridge is a local fact.
func (lr *learner) macFact(n netlink.Neigh) (macKey, bool) {
	if n.Family != unix.AF_BRIDGE || n.MasterIndex == 0 || n.LinkIndex == n.MasterIndex {
		return macKey{}, false
	}
	if n.Flags&(unix.NTF_SELF|unix.NTF_EXT_LEARNED) != 0 || n.State&(unix.NUD_PERMANENT|unix.NUD_NOARP) != 0 || n.Vlan != 0 {
		return macKey{}, false
	}
	k, ok := mac6(n.HardwareAddr)
	if !ok || n.HardwareAddr[0]&1 != 0 {
		return macKey{}, false
	}
	vni, ok := lr.segmentBridge(n.MasterIndex)
	if !ok {
		return macKey{}, false
	}
	port, ok := lr.linkName(n.LinkIndex)
	if !ok || port.kind == "vxlan" {
		return macKey{}, false
	}
	return macKey{vni: vni, mac: k}, true
}

// remoteIPTakeover reports a neighbor entry evpnd installed (extern_learn)
// for an address the learner holds as local.
func (lr *learner) remoteIPTakeover(u netlink.NeighUpdate) (ipKey, bool) {
	n := u.Neigh
	if u.Type != unix.RTM_NEWNEIGH || (n.Family != unix.AF_INET && n.Family != unix.AF_INET6) || n.Flags&unix.NTF_EXT_LEARNED == 0 {
		return ipKey{}, false
	}
	ip, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return ipKey{}, false
	}
	vni, ok := lr.segmentBridge(n.LinkIndex)
	if !ok {
		return ipKey{}, false
	}
	k := ipKey{vni: vni, ip: ip.Unmap()}
	_, known := lr.ips[k]
	return k, known
}

// ipFact classifies an IP neighbor: one on a segment bridge that evpnd did
// not install, in a usable state, is a local fact.
func (lr *learner) ipFact(n netlink.Neigh) (ipKey, bool, bool) {
	if n.Family != unix.AF_INET && n.Family != unix.AF_INET6 {
		return ipKey{}, false, false
	}
	if n.Flags&unix.NTF_EXT_LEARNED != 0 || n.State&(unix.NUD_PERMANENT|unix.NUD_NOARP) != 0 {
		return ipKey{}, false, false
	}
	ip, ok := netip.AddrFromSlice(n.IP)
	// IPv6 link-local neighbors (ND from fe80::) are not workload
	// addresses anyone routes to.
	if !ok || (ip.Is6() && !ip.Is4In6() && ip.IsLinkLocalUnicast()) {
		return ipKey{}, false, false
	}
	vni, ok := lr.segmentBridge(n.LinkIndex)
	if !ok {
		return ipKey{}, false, false
	}
	usable := n.State&(unix.NUD_REACHABLE|unix.NUD_STALE|unix.NUD_DELAY|unix.NUD_PROBE) != 0 && len(n.HardwareAddr) == 6
	return ipKey{vni: vni, ip: ip.Unmap()}, usable, true
}

func (lr *learner) neigh(u netlink.NeighUpdate) {
	n := u.Neigh
	if k, ok := lr.macFact(n); ok {
		old, known := lr.macs[k]
		if u.Type == unix.RTM_DELNEIGH {
			if known && old.port == n.LinkIndex {
				lr.forgetMAC(k, old)
			}
			return
		}
		port, _ := lr.linkName(n.LinkIndex)
		if known && old.port == n.LinkIndex {
			return
		}
		m := learnedMAC{port: n.LinkIndex, name: port.name, vni: k.vni, hwKey: k.mac}
		lr.macs[k] = m
		lr.t.local.add(k)
		if !known {
			lr.l.localLearned.Add(1)
		}
		lr.emit(Learned{Tenant: lr.t.name, VNI: k.vni, MAC: slices.Clone(n.HardwareAddr), Port: port.name})
		if !known {
			// A MAC back on a port (after it moved away) brings its
			// addresses back with it: the consumer forgot them when the
			// MAC left, and the neighbor entries did not change.
			for ik, ip := range lr.ips {
				if ik.vni == k.vni && string(ip.mac) == string(n.HardwareAddr) {
					lr.emit(Learned{Tenant: lr.t.name, VNI: k.vni, MAC: slices.Clone(ip.mac), IP: ik.ip})
				}
			}
		}
		return
	}
	if k, ok := lr.remoteIPTakeover(u); ok {
		// evpnd installed the address behind a remote VTEP: it moved
		// away with its MAC. Forget it now, so that evpnd deleting that
		// entry later is not taken for the local address going.
		lr.forgetIP(k, lr.ips[k].mac)
		return
	}
	if k, usable, ok := lr.ipFact(n); ok {
		old, known := lr.ips[k]
		if u.Type == unix.RTM_DELNEIGH || !usable {
			if known {
				lr.forgetIP(k, old.mac)
			}
			return
		}
		if known && string(old.mac) == string(n.HardwareAddr) {
			return
		}
		lr.ips[k] = learnedIP{mac: slices.Clone(n.HardwareAddr), bridge: n.LinkIndex}
		if !known {
			lr.l.localLearned.Add(1)
		}
		lr.emit(Learned{Tenant: lr.t.name, VNI: k.vni, MAC: slices.Clone(n.HardwareAddr), IP: k.ip})
	}
}

// keepalive hands every learned neighbor back to the kernel with NTF_USE.
// A STALE entry goes DELAY -> PROBE and the kernel sends a unicast ARP
// request or NS: a live host answers (refreshing the neighbor and, by the
// reply frame, its bridge FDB entry before it ages out), a gone host fails
// the probe and the FAILED event reports it Gone. REACHABLE entries are
// left as they are. Answers are read on the learner's own socket, so a
// slow kernel delays only the next event, never a Set.
func (lr *learner) keepalive() {
	if len(lr.ips) == 0 {
		return
	}
	ops := make([]op, 0, len(lr.ips))
	for k, ip := range lr.ips {
		ops = append(ops, op{kind: opNeighUse, ifindex: ip.bridge, vni: k.vni, addr: k.ip})
	}
	failed, _, err := lr.probe.write(context.Background(), ops)
	if err != nil {
		lr.l.log.Warn("neighbor keepalive", "tenant", lr.t.name, "err", err)
		return
	}
	for i, f := range failed {
		if i == maxReportedErrors {
			lr.l.log.Warn("neighbor keepalive: more probes refused", "tenant", lr.t.name, "count", len(failed)-i)
			break
		}
		lr.l.log.Warn("neighbor keepalive", "tenant", lr.t.name, "vni", f.op.vni, "ip", f.op.addr, "err", f.errno)
	}
}

func (lr *learner) forgetMAC(k macKey, m learnedMAC) {
	delete(lr.macs, k)
	lr.t.local.remove(k)
	lr.l.localLearned.Add(-1)
	lr.emit(Learned{Tenant: lr.t.name, VNI: k.vni, MAC: net.HardwareAddr(slices.Clone(k.mac[:])), Port: m.name, Gone: true})
}

func (lr *learner) forgetIP(k ipKey, mac net.HardwareAddr) {
	delete(lr.ips, k)
	lr.l.localLearned.Add(-1)
	lr.emit(Learned{Tenant: lr.t.name, VNI: k.vni, MAC: mac, IP: k.ip, Gone: true})
}

// dropAll reports Gone for every fact, when the tenant is removed.
func (lr *learner) dropAll() {
	for k, m := range lr.macs {
		lr.forgetMAC(k, m)
	}
	for k, ip := range lr.ips {
		lr.forgetIP(k, ip.mac)
	}
}

// emit blocks while the consumer is behind (see Options.LearnBuffer); only
// Close ends the wait, so facts are not dropped silently.
func (lr *learner) emit(ev Learned) {
	select {
	case lr.l.learned <- ev:
	case <-lr.l.done:
	}
}
