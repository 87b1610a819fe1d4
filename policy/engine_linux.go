package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	mnl "github.com/mdlayher/netlink"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/evpnd/evpnd/fabric/kernel"
)

// Options configure the nftables engine.
type Options struct {
	Logger *slog.Logger
	// NetnsDir is where tenant namespaces are bind-mounted; empty means
	// /run/netns.
	NetnsDir string
}

// Nftables is the policy.Engine of a Linux host: one nftables connection
// and one netlink handle (for QoS) per tenant namespace.
type Nftables struct {
	log *slog.Logger
	dir string

	mu      sync.Mutex
	tenants map[string]*tenantState
	// wg counts the handle reads learnHandlesLater runs.
	wg sync.WaitGroup
	// pending holds addresses learned for tenants not applied yet.
	pending map[string]map[string][]netip.Addr
}

// tenantState is what the engine keeps per tenant to recompile on Apply
// and to update addresses in place.
type tenantState struct {
	binding Binding
	addrs   map[string][]netip.Addr
	ns      netns.NsHandle
	conn    *nftables.Conn
	h       *netlink.Handle
	rs      *Ruleset
	handles handles
	// snap is the policy and binding rs was made from (the engine's own
	// copies): what the fast path (applyRuleEdits) compares against and
	// what Repair applies again.
	snap *snapshot
	// nl dumps rule handles (readHandles).
	nl *mnl.Conn
	// commit adds up the kernel's time for the batches of the Apply in
	// progress (see Applied.Commit).
	commit time.Duration
	// base is what counters gone from the kernel had counted, by rule
	// (see counts_linux.go).
	base map[string]counts
	// qosDone says the last apply's QoS went through.
	qosDone bool
}

func (t *tenantState) readHandles(tbl *nftables.Table, chain string) ([]uint64, error) {
	return readHandles(t.nl, tbl, chain)
}

// learnHandlesLater reads the handles of every rule of rs's inet table
// after a full replace, on its own socket and off the Apply that made it,
// so that no later change waits for a read: dumping 16k rules takes a
// fifth of a second. It keeps them only if t still holds rs then (a
// change meanwhile read what it needed itself). A chain whose rules do
// not match rs in number stays unknown: it is read, and found drifted,
// when a change needs it. Called with e.mu held.
func (e *Nftables) learnHandlesLater(t *tenantState, rs *Ruleset) {
	t.handles = handles{}
	nl, err := dialBatchSocket(int(t.ns))
	if err != nil {
		return // changes read the chains they need
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		tbl := &nftables.Table{Family: rs.inet.family, Name: rs.inet.name}
		all, err := dumpHandles(nl, tbl, "")
		nl.Close()
		if err != nil {
			return
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		if t.rs != rs || e.tenants[t.binding.Tenant] != t {
			return
		}
		for _, ch := range rs.inet.chains {
			ref := chainRef{tbl.Family, ch.name}
			if _, known := t.handles[ref]; known {
				continue
			}
			if hs := all[ch.name]; len(hs) == len(ch.rules) {
				t.handles[ref] = hs
			}
		}
	}()
}

// redial replaces t.nl, after an error left it with unread answers.
func (t *tenantState) redial() error {
	t.nl.Close()
	nl, err := dialBatchSocket(int(t.ns))
	if err != nil {
		// Keep a closed socket: its use fails, and the engine replaces
		// the ruleset, which needs no handles.
		return fmt.Errorf("netfilter netlink socket: %w", err)
	}
	t.nl = nl
	return nil
}

var _ Engine = (*Nftables)(nil)

// New returns an engine with no tenants; Apply adopts a tenant, replacing
// whatever evpnd tables its namespace holds.
func New(opts Options) (*Nftables, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.NetnsDir == "" {
		opts.NetnsDir = "/run/netns"
	}
	return &Nftables{
		log:     opts.Logger,
		dir:     opts.NetnsDir,
		tenants: map[string]*tenantState{},
		pending: map[string]map[string][]netip.Addr{},
	}, nil
}

// Apply validates p, compiles it with the addresses known for the tenant's
// ports and brings the tenant's evpnd tables to it in one batch: the
// kernel takes all of it or none. When the engine applied the tenant
// before, the batch holds only the changes (see applyChanges); otherwise,
// or when the changes cannot be applied, it replaces the tables whole.
// Then it shapes the ports' egress (QoS).
func (e *Nftables) Apply(ctx context.Context, b Binding, p Policy) (Applied, error) {
	return e.apply(ctx, b, p, false)
}

// apply is Apply; replace skips the incremental path, for tables that
// may have drifted from what the engine knows of them.
func (e *Nftables) apply(ctx context.Context, b Binding, p Policy, replace bool) (Applied, error) {
	start := time.Now()
	if err := ctx.Err(); err != nil {
		return Applied{}, err
	}
	if p.Tenant == "" {
		p.Tenant = b.Tenant
	}
	if p.Tenant != b.Tenant {
		return Applied{}, fmt.Errorf("policy of tenant %s bound to tenant %s", p.Tenant, b.Tenant)
	}
	if p.NAT != nil && b.Uplink == "" {
		if err := p.Validate(KnownFrom(b)); err != nil {
			return Applied{}, err
		}
		return Applied{}, fmt.Errorf("tenant %s: binding.uplink: empty but the policy has nat", b.Tenant)
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	t := e.tenants[b.Tenant]
	if t != nil {
		t.commit = 0
	}
	if t != nil && t.rs != nil && t.snap != nil && !replace {
		applied, done, err := e.applyRuleEdits(t, b, p, start)
		if done {
			return applied, err
		}
		// The patch failed in the kernel: its tables may not be what
		// the engine knows of them.
		replace = err != nil
	}
	if err := p.Validate(KnownFrom(b)); err != nil {
		return Applied{}, err
	}
	if t != nil && t.binding.Namespace != b.Namespace {
		t.close()
		t = nil
	}
	if t == nil {
		var err error
		t, err = e.open(b)
		if err != nil {
			return Applied{}, err
		}
		if addrs := e.pending[b.Tenant]; addrs != nil {
			t.addrs = addrs
		}
	}
	if err := bridgeNetfilter(t.ns); err != nil {
		t.closeIfNew(e.tenants[b.Tenant])
		return Applied{}, fmt.Errorf("tenant %s: %w", b.Tenant, err)
	}
	rs, err := Compile(p, b, t.addrs)
	if err != nil {
		t.closeIfNew(e.tenants[b.Tenant])
		return Applied{}, err
	}
	incremental := false
	if t.rs != nil && !replace {
		err := applyChanges(t, t.rs, rs)
		if err == nil {
			incremental = true
		} else {
			e.log.Debug("policy changes not applicable, replacing the ruleset", "tenant", b.Tenant, "err", err)
		}
	}
	if !incremental {
		if err := t.replaceRuleset(rs); err != nil {
			t.closeIfNew(e.tenants[b.Tenant])
			return Applied{}, fmt.Errorf("tenant %s: %w", b.Tenant, err)
		}
	}
	t.binding, t.rs = b, rs
	t.snap = newSnapshot(b, p)
	e.tenants[b.Tenant] = t
	delete(e.pending, b.Tenant)
	if !incremental {
		e.learnHandlesLater(t, rs)
	}
	return e.finish(t, p, start, incremental, false)
}

// finish shapes the ports of an applied policy and reports the apply.
// An edit of rules alone (sameQoS) leaves QoS as the last apply made it,
// unless that apply failed to: drift of tc by hand is Repair's.
func (e *Nftables) finish(t *tenantState, p Policy, start time.Time, incremental, sameQoS bool) (Applied, error) {
	applied := Applied{Tenant: t.binding.Tenant, Rules: len(p.Rules), Commit: t.commit}
	if !sameQoS || !t.qosDone {
		t.qosDone = false
		if err := applyQoS(t.h, p.QoS); err != nil {
			applied.Duration = time.Since(start)
			return applied, fmt.Errorf("tenant %s: ruleset applied but qos failed: %w", t.binding.Tenant, err)
		}
		t.qosDone = true
	}
	applied.Duration = time.Since(start)
	e.log.Debug("policy applied", "tenant", t.binding.Tenant, "rules", applied.Rules, "incremental", incremental, "duration", applied.Duration, "commit", applied.Commit)
	return applied, nil
}

// applyRuleEdits is Apply's fast path for a policy that differs from the
// one in force only in what some rules match or do (see patch.go). It
// returns false, having changed nothing in the kernel or in t, when the
// edit is not of that kind, the changed rules are invalid (the full path
// then reports exactly what Validate finds) or the kernel refuses the
// patch; the full path takes over then, with a full replace when err is
// set. Once the patch is committed the ruleset is the new one, and a QoS
// error is reported as the full path reports it.
func (e *Nftables) applyRuleEdits(t *tenantState, b Binding, p Policy, start time.Time) (Applied, bool, error) {
	changed, ok := t.snap.changedRules(b, p)
	if !ok || !validateRules(p, KnownFrom(b), changed) {
		return Applied{}, false, nil
	}
	var rs *Ruleset
	if len(changed) == 0 {
		rs = t.rs
	} else {
		rp, err := t.rs.patchRules(t.snap.p, p, b, changed)
		if err != nil {
			e.log.Debug("rule edits need a full compile", "tenant", b.Tenant, "err", err)
			return Applied{}, false, nil
		}
		apply := applyPatch
		if rp.structural {
			apply = func(t *tenantState, rp *rulePatch) error { return applyChanges(t, t.rs, rp.rs) }
		}
		if err := apply(t, rp); err != nil {
			e.log.Debug("rule edits not applicable, replacing the ruleset", "tenant", b.Tenant, "err", err)
			return Applied{}, false, err
		}
		rs = rp.rs
		for _, i := range changed {
			t.snap.p.Rules[i] = cloneRule(p.Rules[i])
		}
	}
	t.binding, t.rs = b, rs
	applied, err := e.finish(t, p, start, true, true)
	return applied, true, err
}

// replaceRuleset replaces evpnd's tables with rs in one batch, sent on
// t.nl (see sendBatch).
func (t *tenantState) replaceRuleset(rs *Ruleset) error {
	// Counters live in the table being replaced; carry them over so a
	// rule's count survives changes to other rules: into the new named
	// counters, or, for rules now merged into runs, into the base.
	old := map[string]counts{}
	if named, err := namedCounts(t.conn); err == nil {
		fold(old, named)
		if runs, err := readRunCounts(t.conn, kernelRunSets(t.conn), nil); err == nil {
			fold(old, runs)
		}
	}
	fold(old, t.base)
	base := map[string]counts{}
	for _, o := range rs.inet.counters {
		rule, _ := counterRule(o.Name)
		c := old[rule]
		o.Packets, o.Bytes = c.packets, c.bytes
	}
	for rule := range rs.merged {
		if c, ok := old[rule]; ok {
			base[rule] = c
		}
	}
	msgs, err := captureBatch(func(c *nftables.Conn) error {
		replaceTables(c)
		if err := install(c, rs.inet); err != nil {
			return err
		}
		return install(c, rs.bridge)
	})
	if err != nil {
		return err
	}
	if err := t.send(msgs); err != nil {
		return fmt.Errorf("replace nftables ruleset: %w", err)
	}
	t.base = base
	return nil
}

// send commits a captured batch on t.nl (see sendBatch), dialing again
// after an error.
func (t *tenantState) send(msgs []mnl.Message) error {
	began := time.Now()
	err := sendBatch(t.nl, msgs)
	t.commit += time.Since(began)
	if err != nil {
		if rerr := t.redial(); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	return err
}

// replaceTables queues the deletion of evpnd's tables; adding each first
// makes the deletion valid whether or not the table exists, all in the
// same batch as the new tables.
func replaceTables(c *nftables.Conn) {
	for _, f := range []nftables.TableFamily{nftables.TableFamilyINet, nftables.TableFamilyBridge} {
		t := &nftables.Table{Family: f, Name: TableName}
		c.AddTable(t)
		c.DelTable(t)
	}
}

// install queues the creation of t on c.
func install(c *nftables.Conn, t *nftTable) error {
	tbl := c.AddTable(&nftables.Table{Family: t.family, Name: t.name})
	for _, o := range t.counters {
		c.AddObj(&nftables.CounterObj{Table: tbl, Name: o.Name, Packets: o.Packets, Bytes: o.Bytes})
	}
	chains := make([]*nftables.Chain, len(t.chains))
	for i, ch := range t.chains {
		nc := &nftables.Chain{Name: ch.name, Table: tbl}
		if ch.hook != nil {
			nc.Hooknum, nc.Priority, nc.Type = ch.hook, ch.prio, ch.typ
			nc.Policy = ptr(nftables.ChainPolicyAccept)
		}
		chains[i] = c.AddChain(nc)
	}
	// Sets after chains: verdict map elements name their chains.
	for _, s := range t.sets {
		if err := c.AddSet(s.named(tbl), s.elems); err != nil {
			return fmt.Errorf("set %s: %w", s.name, err)
		}
	}
	for i, ch := range t.chains {
		for _, r := range ch.rules {
			c.AddRule(&nftables.Rule{Table: tbl, Chain: chains[i], Exprs: r.exprs})
		}
	}
	return nil
}

func (s *nftSet) named(t *nftables.Table) *nftables.Set {
	ns := &nftables.Set{Table: t, Name: s.name, KeyType: s.key, Interval: s.interval, Concatenation: s.concat, Counter: s.counter}
	if s.data != nil {
		ns.IsMap, ns.DataType = true, *s.data
	}
	return ns
}

func (e *Nftables) open(b Binding) (*tenantState, error) {
	path := filepath.Join(e.dir, b.Namespace)
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("tenant %s: open namespace %s: %w", b.Tenant, path, err)
	}
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)), nftables.AsLasting(), nftables.WithSockOptions(bigBuffers))
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("tenant %s: nftables connection: %w", b.Tenant, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		conn.CloseLasting()
		ns.Close()
		return nil, fmt.Errorf("tenant %s: netlink handle: %w", b.Tenant, err)
	}
	nl, err := dialBatchSocket(int(ns))
	if err != nil {
		h.Close()
		conn.CloseLasting()
		ns.Close()
		return nil, fmt.Errorf("tenant %s: netfilter netlink socket: %w", b.Tenant, err)
	}
	return &tenantState{binding: b, ns: ns, conn: conn, h: h, nl: nl, addrs: map[string][]netip.Addr{}, handles: handles{}}, nil
}

// batchBuffer is the netlink socket buffer size: a whole ruleset goes to
// the kernel in one sendmsg, which must fit the send buffer (10k rules
// take about 10 MiB), and every message is acknowledged.
const batchBuffer = 128 << 20

// bigBuffers raises the socket buffers past the system maximum, which
// evpnd may do as it runs with CAP_NET_ADMIN.
func bigBuffers(c *mnl.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = errors.Join(
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, batchBuffer),
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, batchBuffer))
	}); err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("netlink socket buffers: %w", serr)
	}
	return nil
}

func (t *tenantState) close() {
	t.nl.Close()
	t.conn.CloseLasting()
	t.h.Close()
	t.ns.Close()
}

// closeIfNew closes t when it was opened for a failed first Apply.
func (t *tenantState) closeIfNew(current *tenantState) {
	if current != t {
		t.close()
	}
}

// SetPortAddresses replaces the addresses learned on port. Only elements
// of the dispatch maps change: no table is replaced, so established flows
// and counters are untouched. An address learned on another port of the
// tenant moves to this one (a workload moved between ports).
func (e *Nftables) SetPortAddresses(ctx context.Context, tenant, port string, addrs []netip.Addr) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	want := dedupe(addrs)
	e.mu.Lock()
	defer e.mu.Unlock()
	t := e.tenants[tenant]
	if t == nil {
		if e.pending[tenant] == nil {
			e.pending[tenant] = map[string][]netip.Addr{}
		}
		e.pending[tenant][port] = want
		return nil
	}
	next := map[string][]netip.Addr{port: want}
	taken := map[netip.Addr]bool{}
	for _, a := range want {
		taken[a] = true
	}
	for other, list := range t.addrs {
		if other == port {
			continue
		}
		var kept []netip.Addr
		for _, a := range list {
			if !taken[a] {
				kept = append(kept, a)
			}
		}
		if len(kept) != len(list) {
			next[other] = kept
		}
	}
	tbl := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
	changed := false
	// Deletions first, so an address moving between ports is free when
	// its new element is added.
	for _, add := range []bool{false, true} {
		for p, list := range next {
			d := t.rs.dispatch[p]
			oldSet := map[netip.Addr]bool{}
			for _, a := range t.addrs[p] {
				oldSet[a] = true
			}
			newSet := map[netip.Addr]bool{}
			for _, a := range list {
				newSet[a] = true
			}
			for _, dir := range []struct {
				chain  string
				m4, m6 string
			}{{d.egress, mapEgress4, mapEgress6}, {d.ingress, mapIngress4, mapIngress6}} {
				if dir.chain == "" {
					continue
				}
				var from, against map[netip.Addr]bool
				if add {
					from, against = newSet, oldSet
				} else {
					from, against = oldSet, newSet
				}
				for a := range from {
					if against[a] {
						continue
					}
					s := &nftables.Set{Table: tbl, Name: dir.m4, KeyType: nftables.TypeIPAddr, IsMap: true, DataType: nftables.TypeVerdict}
					if a.Is6() {
						s.Name, s.KeyType = dir.m6, nftables.TypeIP6Addr
					}
					el := []nftables.SetElement{{Key: addrBytes(a), VerdictData: verdict(expr.VerdictGoto, dir.chain)}}
					var err error
					if add {
						err = t.conn.SetAddElements(s, el)
					} else {
						err = t.conn.SetDeleteElements(s, el)
					}
					if err != nil {
						return fmt.Errorf("tenant %s: port %s: address %s: %w", tenant, p, a, err)
					}
					changed = true
				}
			}
		}
	}
	if changed {
		if err := t.conn.Flush(); err != nil {
			return fmt.Errorf("tenant %s: port %s: update address maps: %w", tenant, port, err)
		}
	}
	for p, list := range next {
		if len(list) == 0 {
			delete(t.addrs, p)
		} else {
			t.addrs[p] = list
		}
	}
	// The next incremental Apply diffs against the maps as they are now.
	t.rs.refreshAddressMaps(t.binding, t.addrs)
	return nil
}

func dedupe(addrs []netip.Addr) []netip.Addr {
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if a.IsValid() && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}

// Remove deletes the tenant's evpnd tables and QoS. A tenant the engine
// never applied is left alone: without a binding it has no namespace.
func (e *Nftables) Remove(ctx context.Context, tenant string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.pending, tenant)
	t := e.tenants[tenant]
	if t == nil {
		return nil
	}
	replaceTables(t.conn)
	var errs []error
	if err := t.conn.Flush(); err != nil {
		errs = append(errs, fmt.Errorf("delete nftables tables: %w", err))
	}
	if err := applyQoS(t.h, nil); err != nil {
		errs = append(errs, fmt.Errorf("remove qos: %w", err))
	}
	t.close()
	delete(e.tenants, tenant)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tenant %s: %w", tenant, err)
	}
	return nil
}

// Counters reads the count of every rule of every applied tenant.
func (e *Nftables) Counters(ctx context.Context) ([]Counter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Counter
	var errs []error
	for name, t := range e.tenants {
		cs, err := t.counts()
		if err != nil {
			errs = append(errs, fmt.Errorf("tenant %s: %w", name, err))
			continue
		}
		for rule, c := range cs {
			out = append(out, Counter{Tenant: name, Rule: rule, Packets: c.packets, Bytes: c.bytes})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Tenant != out[j].Tenant {
			return out[i].Tenant < out[j].Tenant
		}
		return out[i].Rule < out[j].Rule
	})
	return out, errors.Join(errs...)
}

func readCounters(c *nftables.Conn) (map[string]*nftables.CounterObj, error) {
	objs, err := c.GetObjects(&nftables.Table{Family: nftables.TableFamilyINet, Name: TableName})
	if err != nil {
		return nil, fmt.Errorf("read counters: %w", err)
	}
	out := map[string]*nftables.CounterObj{}
	for _, o := range objs {
		if co, ok := o.(*nftables.CounterObj); ok {
			if _, ours := counterRule(co.Name); ours {
				out[co.Name] = co
			}
		}
	}
	return out, nil
}

// Close releases the engine's connections. The rulesets stay in force: a
// restarted evpnd adopts them with its first Apply.
func (e *Nftables) Close() error {
	e.mu.Lock()
	for name, t := range e.tenants {
		t.close()
		delete(e.tenants, name)
	}
	e.mu.Unlock()
	e.wg.Wait()
	return nil
}

// bridgeNetfilter makes bridged IPv4 and IPv6 traffic in the namespace
// pass the inet hooks, with conntrack, so one inet table filters bridged
// and routed traffic alike. The sysctls are per namespace and only
// reachable from a thread inside it.
func bridgeNetfilter(ns netns.NsHandle) error {
	return kernel.InNetns(ns, func() error {
		for _, name := range []string{"bridge-nf-call-iptables", "bridge-nf-call-ip6tables"} {
			path := "/proc/sys/net/bridge/" + name
			if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
				return fmt.Errorf("enable br_netfilter: %w", err)
			}
		}
		return nil
	})
}
