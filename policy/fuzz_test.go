package policy

import (
	"errors"
	"net/netip"
	"testing"
)

// policyReader decodes a Policy from fuzz bytes. Values are drawn from
// small vocabularies, mostly valid and some not, so random bytes reach
// both the validator's refusals and policies it accepts, which then go
// through Compile. Reading past the end yields zeros.
type policyReader struct{ b []byte }

func (r *policyReader) byte() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *policyReader) u16() uint16 { return uint16(r.byte())<<8 | uint16(r.byte()) }

func (r *policyReader) u64() uint64 {
	// Rates and bursts from a 16-bit mantissa and a decimal exponent:
	// 0, small, line rate and absurd values are all reachable.
	v := uint64(r.u16())
	for range r.byte() % 12 {
		v *= 10
	}
	return v
}

func pick[T any](r *policyReader, from []T) T { return from[int(r.byte())%len(from)] }

var (
	fuzzNames = []string{"", "a", "web", "gold", "db", "office", "x.y-z_1", "-bad", "has space",
		"a23456789012345678901234567890123456789012345678901234567890123", "ü"}
	fuzzPorts    = []string{"tap-a", "tap-b", "tap-c", "tap-x", ""}
	fuzzSegments = []string{"web", "db", "nope", ""}
	fuzzPrefixes = []netip.Prefix{{}, netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("10.0.1.0/24"),
		netip.MustParsePrefix("10.0.1.11/32"), netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0"),
		netip.MustParsePrefix("fd00:1::/64"), netip.MustParsePrefix("10.0.1.1/24"), netip.MustParsePrefix("192.0.2.0/25")}
	fuzzAddrs = []netip.Addr{{}, netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("203.0.113.10"),
		netip.MustParseAddr("10.0.1.11"), netip.MustParseAddr("10.0.2.21"), netip.MustParseAddr("2001:db8::1"),
		netip.MustParseAddr("fd00:1::11"), netip.MustParseAddr("::ffff:10.0.1.11")}
)

func (r *policyReader) names(vocab []string) []string {
	out := make([]string, r.byte()%4)
	for i := range out {
		out[i] = pick(r, vocab)
	}
	return out
}

func (r *policyReader) prefixes() []netip.Prefix {
	out := make([]netip.Prefix, r.byte()%4)
	for i := range out {
		out[i] = pick(r, fuzzPrefixes)
	}
	return out
}

func (r *policyReader) rule() Rule {
	ru := Rule{
		Name:      pick(r, fuzzNames),
		Priority:  int(int8(r.byte())),
		Direction: Direction(r.byte() % 4),
		Protocol:  Protocol(r.byte() % 6),
		Action:    Action(r.byte() % 5),
		Log:       r.byte()&1 == 1,
	}
	switch r.byte() % 4 {
	case 0:
		ru.Target.Port = pick(r, fuzzPorts)
	case 1:
		ru.Target.PortGroup = pick(r, fuzzNames)
	case 2:
		ru.Target.Segment = pick(r, fuzzSegments)
	case 3:
		ru.Target = Target{Port: pick(r, fuzzPorts), Segment: pick(r, fuzzSegments)}
	}
	if r.byte()&1 == 1 {
		ru.Remote.AddressGroup = pick(r, fuzzNames)
	} else {
		ru.Remote.Prefixes = r.prefixes()
	}
	for range r.byte() % 4 {
		ru.Ports = append(ru.Ports, PortRange{From: r.u16(), To: r.u16()})
	}
	for range r.byte() % 3 {
		ru.ICMPTypes = append(ru.ICMPTypes, r.byte())
	}
	if c := r.byte(); c < 80 {
		ru.DSCP = &c
	}
	if r.byte()&1 == 1 {
		ru.Class = pick(r, fuzzNames)
	}
	return ru
}

func (r *policyReader) nat() *NAT {
	n := &NAT{
		Interface:  pick(r, []string{"", "eth1", "up0"}),
		Address:    pick(r, fuzzPrefixes),
		Gateway:    pick(r, fuzzAddrs),
		SNAT:       pick(r, fuzzAddrs),
		Masquerade: r.byte()&1 == 1,
	}
	for range r.byte() % 3 {
		n.FloatingIPs = append(n.FloatingIPs, FloatingIP{External: pick(r, fuzzAddrs), Internal: pick(r, fuzzAddrs)})
	}
	for range r.byte() % 3 {
		n.PortForwards = append(n.PortForwards, PortForward{External: pick(r, fuzzAddrs), Protocol: Protocol(r.byte() % 6),
			Port: r.u16(), Internal: pick(r, fuzzAddrs), InternalPort: r.u16()})
	}
	return n
}

func (r *policyReader) qos() PortQoS {
	q := PortQoS{Port: pick(r, fuzzPorts), EgressRate: r.u64(), EgressBurst: r.u64(), IngressRate: r.u64(), IngressBurst: r.u64()}
	for range r.byte() % 4 {
		q.Classes = append(q.Classes, Class{Name: pick(r, fuzzNames), Rate: r.u64(), Ceil: r.u64(), Priority: uint32(r.byte() % 10)})
	}
	return q
}

// decodePolicy reads a tenant name, then one opcode per element until the
// bytes run out.
func decodePolicy(b []byte) Policy {
	r := &policyReader{b: b}
	p := Policy{Tenant: pick(r, append([]string{"blue"}, fuzzNames...))}
	for len(r.b) > 0 {
		switch r.byte() % 7 {
		case 0:
			p.AddressGroups = append(p.AddressGroups, AddressGroup{Name: pick(r, fuzzNames), Prefixes: r.prefixes()})
		case 1:
			p.PortGroups = append(p.PortGroups, PortGroup{Name: pick(r, fuzzNames), Ports: r.names(fuzzPorts)})
		case 2:
			p.Segments = append(p.Segments, SegmentDefault{Segment: pick(r, fuzzSegments),
				Ingress: Action(r.byte() % 5), Egress: Action(r.byte() % 5)})
		case 3, 4:
			p.Rules = append(p.Rules, r.rule())
		case 5:
			p.NAT = r.nat()
		case 6:
			p.QoS = append(p.QoS, r.qos())
		}
	}
	return p
}

// FuzzValidate decodes a policy from bytes: Validate never panics and
// refuses with a *ValidationError naming at least one problem, and a
// policy it accepts compiles, the same way twice.
func FuzzValidate(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0})
	// A tenant "blue", one ingress TCP allow rule on tap-a, port 22.
	f.Add([]byte{0, 3, 2, 0, 1, 1, 1, 0, 0, 0, 0, 0, 1, 0, 22, 0, 22, 0, 0xff, 0})
	// Address and port groups, a segment default, NAT and QoS.
	f.Add([]byte{0, 0, 5, 2, 1, 2, 1, 2, 1, 1, 2, 0, 1, 2, 0, 2, 3, 5, 0, 0, 1, 1, 1, 0, 1, 2, 3, 0, 6, 0, 0x10, 0, 6, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 1, 5, 0, 1})
	f.Add([]byte("the quick brown fox jumps over the lazy dog"))
	b := testBinding()
	k := KnownFrom(b)
	addrs := map[string][]netip.Addr{
		"tap-a": {netip.MustParseAddr("10.0.1.11"), netip.MustParseAddr("fd00:1::11")},
		"tap-b": {netip.MustParseAddr("10.0.1.12")},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p := decodePolicy(data)
		err := p.Validate(k)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("refusal is a %T, want *ValidationError: %v", err, err)
			}
			if len(ve.Problems) == 0 {
				t.Fatalf("refusal names no problem: %v", err)
			}
			_ = err.Error()
			return
		}
		rs, err := Compile(p, b, addrs)
		if err != nil {
			t.Fatalf("valid policy %+v does not compile: %v", p, err)
		}
		rs2, err := Compile(p, b, addrs)
		if err != nil || rs.String() != rs2.String() {
			t.Fatalf("compile is not deterministic for %+v: %v", p, err)
		}
	})
}

// TestFuzzValidateSeedsCompile keeps the seed corpus honest: some seeds
// must be valid, or the fuzz target would never reach Compile.
func TestFuzzValidateSeedsCompile(t *testing.T) {
	k := KnownFrom(testBinding())
	p := decodePolicy([]byte{0, 3, 2, 0, 1, 1, 1, 0, 0, 0, 0, 0, 1, 0, 22, 0, 22, 0, 0xff, 0})
	if err := p.Validate(k); err != nil {
		t.Fatalf("seed policy %+v: %v", p, err)
	}
	if len(p.Rules) != 1 || p.Rules[0].Target.Port != "tap-a" || p.Rules[0].Protocol != ProtoTCP {
		t.Errorf("seed decodes to %+v", p)
	}
}
