package policy

import (
	"bytes"
	"encoding/binary"
	"fmt"
	mbits "math/bits"
	"net/netip"
	"sort"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// This file is the vocabulary the compiler speaks: each builder returns a
// rule part as nft syntax (for golden files and humans) together with the
// netlink expressions the kernel gets, so both always say the same thing.

// nftTable is one table of a compiled ruleset.
type nftTable struct {
	family   nftables.TableFamily
	name     string
	sets     []*nftSet
	counters []*nftables.CounterObj
	chains   []*nftChain
}

// nftSet is a named set or map. There are no anonymous sets: binding
// one costs the kernel a walk of the whole pending batch (its
// __nft_set_trans_bind), which makes a large ruleset quadratic to load.
type nftSet struct {
	name     string
	key      nftables.SetDatatype
	data     *nftables.SetDatatype // maps only
	interval bool
	// concat sets hold a concatenation of fields per element (Key and
	// KeyEnd, no interval end elements); counter sets count per element.
	concat, counter bool
	// run is the kind of a run set (see runs.go), whose elements' text
	// is made from the elements when printed.
	run   *runKind
	elems []nftables.SetElement
	text  []string
}

type nftChain struct {
	name   string
	hook   *nftables.ChainHook
	prio   *nftables.ChainPriority
	typ    nftables.ChainType
	prioTx string
	rules  []*nftRule
}

// nftRule is one rule.
type nftRule struct {
	text  []string
	exprs []expr.Any
	// owner names the policy rule the kernel rule is part of; empty for
	// the rules the compiler adds (dispatch, jumps, defaults).
	owner string
}

func newRule() *nftRule { return &nftRule{} }

func (r *nftRule) add(text string, e ...expr.Any) *nftRule {
	r.text = append(r.text, text)
	r.exprs = append(r.exprs, e...)
	return r
}

// clone copies r so variants of a rule can share a prefix.
func (r *nftRule) clone() *nftRule {
	return &nftRule{
		text:  append([]string(nil), r.text...),
		exprs: append([]expr.Any(nil), r.exprs...),
	}
}

func (r *nftRule) String() string { return strings.Join(r.text, " ") }

const reg1 = unix.NFT_REG_1
const reg2 = unix.NFT_REG_2

// ifname pads an interface name as the kernel compares it.
func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

func metaLoad(k expr.MetaKey) *expr.Meta { return &expr.Meta{Key: k, Register: reg1} }

func cmpEq(data []byte) *expr.Cmp { return &expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: data} }

func (r *nftRule) iifname(n string) *nftRule {
	return r.add(fmt.Sprintf("iifname %q", n), metaLoad(expr.MetaKeyIIFNAME), cmpEq(ifname(n)))
}

func (r *nftRule) oifname(n string) *nftRule {
	return r.add(fmt.Sprintf("oifname %q", n), metaLoad(expr.MetaKeyOIFNAME), cmpEq(ifname(n)))
}

type family uint8

const (
	famAny family = iota
	fam4
	fam6
)

func (f family) String() string {
	switch f {
	case fam4:
		return "ipv4"
	case fam6:
		return "ipv6"
	}
	return "any"
}

func (r *nftRule) nfproto(f family) *nftRule {
	switch f {
	case fam4:
		return r.add("meta nfproto ipv4", metaLoad(expr.MetaKeyNFPROTO), cmpEq([]byte{unix.NFPROTO_IPV4}))
	case fam6:
		return r.add("meta nfproto ipv6", metaLoad(expr.MetaKeyNFPROTO), cmpEq([]byte{unix.NFPROTO_IPV6}))
	}
	return r
}

var protoNumber = map[Protocol]byte{
	ProtoTCP:    unix.IPPROTO_TCP,
	ProtoUDP:    unix.IPPROTO_UDP,
	ProtoICMP:   unix.IPPROTO_ICMP,
	ProtoICMPv6: unix.IPPROTO_ICMPV6,
}

var protoText = map[Protocol]string{
	ProtoTCP: "tcp", ProtoUDP: "udp", ProtoICMP: "icmp", ProtoICMPv6: "ipv6-icmp",
}

func (r *nftRule) l4proto(p Protocol) *nftRule {
	if p == ProtoAny {
		return r
	}
	return r.add("meta l4proto "+protoText[p], metaLoad(expr.MetaKeyL4PROTO), cmpEq([]byte{protoNumber[p]}))
}

// ctState bits as the kernel defines them (NF_CT_STATE_*_BIT).
const (
	ctInvalid     = 1
	ctEstablished = 1 << 1
	ctRelated     = 1 << 2
	ctNew         = 1 << 3
)

func (r *nftRule) ctState(text string, bits uint32) *nftRule {
	return r.add("ct state "+text,
		&expr.Ct{Register: reg1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(0)})
}

// addrOffset is where an address sits in the network header.
func addrOffset(f family, source bool) (off, n uint32, text string) {
	switch {
	case f == fam4 && source:
		return 12, 4, "ip saddr"
	case f == fam4:
		return 16, 4, "ip daddr"
	case source:
		return 8, 16, "ip6 saddr"
	}
	return 24, 16, "ip6 daddr"
}

func loadAddr(f family, source bool) (*expr.Payload, string) {
	off, n, text := addrOffset(f, source)
	return &expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n}, text
}

// lookupNamed matches the loaded register against a named set.
func (r *nftRule) lookupNamed(text string, load expr.Any, set string) *nftRule {
	return r.add(fmt.Sprintf("%s @%s", text, set), load, &expr.Lookup{SourceRegister: reg1, SetName: set})
}

// vmap dispatches on the loaded register through a named verdict map.
func (r *nftRule) vmap(text string, load expr.Any, set string) *nftRule {
	return r.add(fmt.Sprintf("%s vmap @%s", text, set), load,
		&expr.Lookup{SourceRegister: reg1, DestRegister: 0, IsDestRegSet: true, SetName: set})
}

func (r *nftRule) counter(name string) *nftRule {
	return r.add(fmt.Sprintf("counter name %q", name), &expr.Objref{Type: unix.NFT_OBJECT_COUNTER, Name: name})
}

func (r *nftRule) log(prefix string) *nftRule {
	return r.add(fmt.Sprintf("log prefix %q", prefix), &expr.Log{Key: 1 << unix.NFTA_LOG_PREFIX, Data: []byte(prefix)})
}

func verdict(k expr.VerdictKind, chain string) *expr.Verdict {
	return &expr.Verdict{Kind: k, Chain: chain}
}

func (r *nftRule) accept() *nftRule { return r.add("accept", verdict(expr.VerdictAccept, "")) }
func (r *nftRule) drop() *nftRule   { return r.add("drop", verdict(expr.VerdictDrop, "")) }
func (r *nftRule) jump(c string) *nftRule {
	return r.add("jump "+c, verdict(expr.VerdictJump, c))
}
func (r *nftRule) gotoChain(c string) *nftRule {
	return r.add("goto "+c, verdict(expr.VerdictGoto, c))
}

func (r *nftRule) rejectTCP() *nftRule {
	return r.add("reject with tcp reset", &expr.Reject{Type: unix.NFT_REJECT_TCP_RST})
}

func (r *nftRule) rejectICMPX(code uint8, text string) *nftRule {
	return r.add("reject with icmpx "+text, &expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: code})
}

// markOr sets bits in the packet mark, keeping the others.
func (r *nftRule) markOr(bits uint32) *nftRule {
	return r.add(fmt.Sprintf("meta mark set meta mark | 0x%08x", bits),
		metaLoad(expr.MetaKeyMARK),
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^bits), Xor: binaryutil.NativeEndian.PutUint32(bits)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1})
}

// markHas matches packets whose mark has all of bits.
func (r *nftRule) markHas(bits uint32) *nftRule {
	return r.add(fmt.Sprintf("meta mark & 0x%08x == 0x%08x", bits, bits),
		metaLoad(expr.MetaKeyMARK),
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: binaryutil.NativeEndian.PutUint32(0)},
		cmpEq(binaryutil.NativeEndian.PutUint32(bits)))
}

// ctMarkSet writes code into evpnd's bits of the conntrack mark.
func (r *nftRule) ctMarkSet(code uint32) *nftRule {
	return r.add(fmt.Sprintf("ct mark set ct mark & 0x%08x | 0x%08x", ^uint32(ctMarkMask), code),
		&expr.Ct{Register: reg1, Key: expr.CtKeyMARK},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^uint32(ctMarkMask)), Xor: binaryutil.NativeEndian.PutUint32(code)},
		&expr.Ct{Register: reg1, Key: expr.CtKeyMARK, SourceRegister: true})
}

func (r *nftRule) ctOriginal() *nftRule {
	return r.add("ct direction original",
		&expr.Ct{Register: reg1, Key: expr.CtKeyDIRECTION},
		cmpEq([]byte{0}))
}

func (r *nftRule) ctMarkVmap(set string) *nftRule {
	return r.add(fmt.Sprintf("ct mark & 0x%08x vmap @%s", ctMarkMask, set),
		&expr.Ct{Register: reg1, Key: expr.CtKeyMARK},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(ctMarkMask), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Lookup{SourceRegister: reg1, IsDestRegSet: true, SetName: set})
}

// dscpSet rewrites the DSCP bits, keeping ECN, with the IPv4 header
// checksum fixed by the kernel.
func (r *nftRule) dscpSet(f family, dscp uint8) *nftRule {
	if f == fam4 {
		return r.add(fmt.Sprintf("ip dscp set %d", dscp),
			// A 16-bit aligned write: the kernel's incremental checksum
			// update works on 16-bit words (nft does the same).
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 0, Len: 2},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 2, Mask: []byte{0xff, 0x03}, Xor: []byte{0, dscp << 2}},
			&expr.Payload{OperationType: expr.PayloadWrite, SourceRegister: reg1, Base: expr.PayloadBaseNetworkHeader,
				Offset: 0, Len: 2, CsumType: expr.CsumTypeInet, CsumOffset: 10})
	}
	// IPv6: version(4) traffic class(8) flow label(20); DSCP is the top six
	// bits of the traffic class.
	v := uint16(dscp) << 6
	return r.add(fmt.Sprintf("ip6 dscp set %d", dscp),
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 0, Len: 2},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 2, Mask: []byte{0xf0, 0x3f}, Xor: []byte{byte(v >> 8), byte(v)}},
		&expr.Payload{OperationType: expr.PayloadWrite, SourceRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 0, Len: 2})
}

func (r *nftRule) prioritySet(handle uint32) *nftRule {
	return r.add(fmt.Sprintf("meta priority set %x:%x", handle>>16, handle&0xffff),
		&expr.Immediate{Register: reg1, Data: binaryutil.NativeEndian.PutUint32(handle)},
		&expr.Meta{Key: expr.MetaKeyPRIORITY, SourceRegister: true, Register: reg1})
}

func (r *nftRule) limitOver(bytesPerSec, burst uint64) *nftRule {
	return r.add(fmt.Sprintf("limit rate over %d bytes/second burst %d bytes", bytesPerSec, burst),
		&expr.Limit{Type: expr.LimitTypePktBytes, Rate: bytesPerSec, Over: true, Unit: expr.LimitTimeSecond, Burst: uint32(burst)})
}

func addrBytes(a netip.Addr) []byte {
	if a.Is4() {
		b := a.As4()
		return b[:]
	}
	b := a.As16()
	return b[:]
}

// keySpan is one interval of keys as the kernel compares them (big
// endian, inclusive), with its nft text.
type keySpan struct {
	from, to []byte
	text     string
}

// prefixSpans merges the prefixes of family f into disjoint, ascending
// address intervals: the kernel never sees overlapping ones.
func prefixSpans(f family, prefixes []netip.Prefix) []keySpan {
	merged := addrSpans(f, prefixes)
	out := make([]keySpan, len(merged))
	for i, sp := range merged {
		out[i] = keySpan{from: addrBytes(sp.from), to: addrBytes(sp.to), text: spanText(sp.from, sp.to)}
	}
	return out
}

func spanText(from, to netip.Addr) string {
	if from == to {
		return from.String()
	}
	if mask, ok := prefixMask(addrBytes(from), addrBytes(to)); ok {
		bits := 0
		for _, m := range mask {
			bits += mbits.OnesCount8(m)
		}
		return netip.PrefixFrom(from, bits).String()
	}
	return from.String() + "-" + to.String()
}

// lastAddr is the highest address in p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := addrBytes(p.Masked().Addr())
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// portSpans merges port ranges, adjacent ones included.
func portSpans(ports []PortRange) []keySpan {
	merged := mergePorts(ports)
	out := make([]keySpan, len(merged))
	for i, p := range merged {
		out[i] = keySpan{from: binaryutil.BigEndian.PutUint16(p.From), to: binaryutil.BigEndian.PutUint16(p.To), text: fmt.Sprint(p.From)}
		if p.From != p.To {
			out[i].text = fmt.Sprintf("%d-%d", p.From, p.To)
		}
	}
	return out
}

// icmpTypeSpans merges ICMP types, consecutive ones into one interval.
func icmpTypeSpans(types []uint8) []keySpan {
	sorted := append([]uint8(nil), types...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	var out []keySpan
	for _, t := range sorted {
		if n := len(out); n > 0 && uint16(t) <= uint16(out[n-1].to[0])+1 {
			out[n-1].to = []byte{max(t, out[n-1].to[0])}
			continue
		}
		out = append(out, keySpan{from: []byte{t}, to: []byte{t}})
	}
	for i := range out {
		out[i].text = fmt.Sprint(out[i].from[0])
		if out[i].from[0] != out[i].to[0] {
			out[i].text = fmt.Sprintf("%d-%d", out[i].from[0], out[i].to[0])
		}
	}
	return out
}

// spanSet is a named interval set holding spans.
func spanSet(name string, key nftables.SetDatatype, spans []keySpan) *nftSet {
	s := &nftSet{name: name, key: key, interval: true}
	for _, sp := range spans {
		s.elems = append(s.elems, nftables.SetElement{Key: sp.from})
		if end, ok := next(sp.to); ok {
			s.elems = append(s.elems, nftables.SetElement{Key: end, IntervalEnd: true})
		}
		s.text = append(s.text, sp.text)
	}
	return s
}

// next is the big-endian key after k; false when k is the highest.
func next(k []byte) ([]byte, bool) {
	n := append([]byte(nil), k...)
	for i := len(n) - 1; i >= 0; i-- {
		n[i]++
		if n[i] != 0 {
			return n, true
		}
	}
	return nil, false
}

// matchSpan matches the loaded register against one interval without a
// set: equality for one key, a masked compare for a prefix, a range
// compare otherwise.
func (r *nftRule) matchSpan(text string, load expr.Any, sp keySpan) *nftRule {
	t := text + " " + sp.text
	if bytes.Equal(sp.from, sp.to) {
		return r.add(t, load, cmpEq(sp.from))
	}
	if mask, ok := prefixMask(sp.from, sp.to); ok {
		return r.add(t, load,
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: uint32(len(mask)), Mask: mask, Xor: make([]byte, len(mask))},
			cmpEq(sp.from))
	}
	return r.add(t, load, &expr.Range{Op: expr.CmpOpEq, Register: reg1, FromData: sp.from, ToData: sp.to})
}

// prefixMask is the network mask under which from..to is one prefix.
func prefixMask(from, to []byte) ([]byte, bool) {
	mask := make([]byte, len(from))
	bits := 0
	for bits < len(from)*8 && bit(from, bits) == bit(to, bits) {
		bits++
	}
	for i := bits; i < len(from)*8; i++ {
		if bit(from, i) != 0 || bit(to, i) != 1 {
			return nil, false
		}
	}
	for i := range bits {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	return mask, true
}

func bit(b []byte, i int) byte { return b[i/8] >> (7 - i%8) & 1 }

// sameElem reports whether two elements are the same, what they map to
// and the rule they count for included.
func sameElem(a, b nftables.SetElement) bool {
	return bytes.Equal(a.Key, b.Key) && bytes.Equal(a.KeyEnd, b.KeyEnd) && bytes.Equal(a.Val, b.Val) &&
		a.IntervalEnd == b.IntervalEnd && a.Comment == b.Comment &&
		(a.VerdictData == nil) == (b.VerdictData == nil) &&
		(a.VerdictData == nil || a.VerdictData.Kind == b.VerdictData.Kind && a.VerdictData.Chain == b.VerdictData.Chain)
}

// verdictMap is a named map from keys to goto verdicts.
func verdictMap(name string, key nftables.SetDatatype) *nftSet {
	return &nftSet{name: name, key: key, data: &nftables.TypeVerdict}
}

func (s *nftSet) addVerdict(key []byte, keyText string, v *expr.Verdict) {
	s.elems = append(s.elems, nftables.SetElement{Key: key, VerdictData: v})
	s.text = append(s.text, keyText+" : "+verdictText(v))
}

func verdictText(v *expr.Verdict) string {
	switch v.Kind {
	case expr.VerdictGoto:
		return "goto " + v.Chain
	case expr.VerdictJump:
		return "jump " + v.Chain
	case expr.VerdictAccept:
		return "accept"
	case expr.VerdictDrop:
		return "drop"
	}
	return fmt.Sprint(v.Kind)
}

// String renders the table in nft's list syntax.
func (t *nftTable) String() string {
	var b strings.Builder
	fam := "inet"
	if t.family == nftables.TableFamilyBridge {
		fam = "bridge"
	}
	fmt.Fprintf(&b, "table %s %s {\n", fam, t.name)
	for _, s := range t.sets {
		kind := "set"
		typ := s.key.Name
		if s.data != nil {
			kind = "map"
			typ += " : " + s.data.Name
		}
		fmt.Fprintf(&b, "\t%s %s {\n\t\ttype %s\n", kind, s.name, typ)
		if s.interval {
			b.WriteString("\t\tflags interval\n")
		}
		if s.counter {
			b.WriteString("\t\tcounter\n")
		}
		text := s.text
		if s.run != nil {
			for _, e := range s.elems {
				text = append(text, runElemText(*s.run, e))
			}
		}
		if len(text) > 0 {
			fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(text, ",\n\t\t\t     "))
		}
		b.WriteString("\t}\n")
	}
	for _, c := range t.counters {
		fmt.Fprintf(&b, "\tcounter %s {\n\t}\n", c.Name)
	}
	for _, c := range t.chains {
		fmt.Fprintf(&b, "\tchain %s {\n", c.name)
		if c.hook != nil {
			fmt.Fprintf(&b, "\t\ttype %s hook %s priority %s; policy accept;\n", c.typ, hookText(t.family, *c.hook), c.prioTx)
		}
		for _, r := range c.rules {
			fmt.Fprintf(&b, "\t\t%s\n", r)
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func hookText(f nftables.TableFamily, h nftables.ChainHook) string {
	switch h {
	case unix.NF_INET_PRE_ROUTING:
		return "prerouting"
	case unix.NF_INET_LOCAL_IN:
		return "input"
	case unix.NF_INET_FORWARD:
		return "forward"
	case unix.NF_INET_LOCAL_OUT:
		return "output"
	case unix.NF_INET_POST_ROUTING:
		return "postrouting"
	}
	return fmt.Sprint(uint32(h))
}

// markKey is a mark-typed set key, which the kernel holds in host order.
func markKey(v uint32) []byte {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, v)
	return b
}
