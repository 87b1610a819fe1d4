package evpn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// ErrUnknownRouteType is wrapped by ParseNLRI for a well-formed NLRI of a
// route type evpnd does not speak (1, 4, ...); the count ParseNLRI returns
// with it lets the caller skip that NLRI.
var ErrUnknownRouteType = errors.New("unknown route type")

// Body lengths in bytes (after the route type and length octets).
const (
	macipFixedLen = 8 + 10 + 4 + 1 + 6 + 1 + 3 // without IP and second label
	imetFixedLen  = 8 + 4 + 1                  // without originator
	prefix4Len    = 8 + 10 + 4 + 1 + 4 + 4 + 3 // RFC 9136 s3.1: 34
	prefix6Len    = 8 + 10 + 4 + 1 + 16 + 16 + 3
)

// MarshalNLRI encodes n as an EVPN NLRI: route type (1 byte), length
// (1 byte) and the body of RFC 7432 s7.2/s7.3 or RFC 9136 s3.1.
func MarshalNLRI(n NLRI) ([]byte, error) {
	return AppendNLRI(nil, n)
}

// AppendNLRI appends the encoding of n to b, for callers packing many
// NLRIs into one buffer.
func AppendNLRI(b []byte, n NLRI) ([]byte, error) {
	switch n := n.(type) {
	case *MACIP:
		if n == nil {
			return b, errors.New("marshal evpn nlri: nil macip")
		}
		return appendMACIP(b, n)
	case *IMET:
		if n == nil {
			return b, errors.New("marshal evpn nlri: nil imet")
		}
		return appendIMET(b, n)
	case *Prefix:
		if n == nil {
			return b, errors.New("marshal evpn nlri: nil prefix")
		}
		return appendPrefix(b, n)
	case nil:
		return b, errors.New("marshal evpn nlri: nil nlri")
	}
	return b, fmt.Errorf("marshal evpn nlri: unsupported nlri type %T", n)
}

func appendMACIP(b []byte, m *MACIP) ([]byte, error) {
	if len(m.MAC) != 6 {
		return b, fmt.Errorf("marshal macip %s: mac must be 6 bytes, have %d", m.RD, len(m.MAC))
	}
	if len(m.Labels) != 1 && len(m.Labels) != 2 {
		return b, fmt.Errorf("marshal macip %s %s: want 1 or 2 labels, have %d", m.RD, m.MAC, len(m.Labels))
	}
	for _, l := range m.Labels {
		if l > MaxVNI {
			return b, fmt.Errorf("marshal macip %s %s: label %d does not fit in 24 bits", m.RD, m.MAC, l)
		}
	}
	ipLen := addrLen(m.IP)
	n := macipFixedLen + ipLen + 3*(len(m.Labels)-1)
	b = append(b, byte(TypeMACIP), byte(n))
	b = append(b, m.RD[:]...)
	b = append(b, m.ESI[:]...)
	b = binary.BigEndian.AppendUint32(b, m.EthTag)
	b = append(b, 48)
	b = append(b, m.MAC...)
	b = append(b, byte(ipLen*8))
	b = appendAddr(b, m.IP)
	for _, l := range m.Labels {
		b = appendLabel(b, l)
	}
	return b, nil
}

func appendIMET(b []byte, m *IMET) ([]byte, error) {
	if !m.Originator.IsValid() {
		return b, fmt.Errorf("marshal imet %s: no originator address", m.RD)
	}
	ipLen := addrLen(m.Originator)
	b = append(b, byte(TypeIMET), byte(imetFixedLen+ipLen))
	b = append(b, m.RD[:]...)
	b = binary.BigEndian.AppendUint32(b, m.EthTag)
	b = append(b, byte(ipLen*8))
	return appendAddr(b, m.Originator), nil
}

func appendPrefix(b []byte, p *Prefix) ([]byte, error) {
	if !p.Prefix.IsValid() {
		return b, fmt.Errorf("marshal prefix %s: invalid prefix", p.RD)
	}
	if p.Label > MaxVNI {
		return b, fmt.Errorf("marshal prefix %s %s: label %d does not fit in 24 bits", p.RD, p.Prefix, p.Label)
	}
	pfx := p.Prefix.Masked()
	ipLen := addrLen(pfx.Addr())
	gw := p.Gateway
	if gw.IsValid() && addrLen(gw) != ipLen {
		return b, fmt.Errorf("marshal prefix %s %s: gateway %s is not of the prefix's address family", p.RD, p.Prefix, gw)
	}
	n := prefix4Len
	if ipLen == 16 {
		n = prefix6Len
	}
	b = append(b, byte(TypePrefix), byte(n))
	b = append(b, p.RD[:]...)
	b = append(b, p.ESI[:]...)
	b = binary.BigEndian.AppendUint32(b, p.EthTag)
	b = append(b, byte(pfx.Bits()))
	b = appendAddr(b, pfx.Addr())
	if gw.IsValid() {
		b = appendAddr(b, gw)
	} else {
		b = append(b, make([]byte, ipLen)...)
	}
	return appendLabel(b, p.Label), nil
}

// addrLen is the wire length of a: 0 for the zero Addr, 4 for IPv4, 16
// otherwise (an IPv4-mapped IPv6 address stays 16 bytes).
func addrLen(a netip.Addr) int {
	switch {
	case !a.IsValid():
		return 0
	case a.Is4():
		return 4
	}
	return 16
}

func appendAddr(b []byte, a netip.Addr) []byte {
	switch addrLen(a) {
	case 4:
		a4 := a.As4()
		return append(b, a4[:]...)
	case 16:
		a16 := a.As16()
		return append(b, a16[:]...)
	}
	return b
}

// appendLabel writes a VNI into a 3-byte label field whole (RFC 8365 s5.1.3:
// the field carries the 24-bit VNI, not a 20-bit MPLS label), as FRR does.
func appendLabel(b []byte, v VNI) []byte {
	return append(b, byte(v>>16), byte(v>>8), byte(v))
}

func readLabel(b []byte) VNI {
	return VNI(b[0])<<16 | VNI(b[1])<<8 | VNI(b[2])
}

// ParseNLRI decodes one EVPN NLRI from the start of b and returns it with
// the number of bytes it took. For a well-formed NLRI of an unknown route
// type the error wraps ErrUnknownRouteType and the count is still valid.
func ParseNLRI(b []byte) (NLRI, int, error) {
	if len(b) < 2 {
		return nil, 0, fmt.Errorf("parse evpn nlri: short buffer: need 2 bytes for type and length, have %d", len(b))
	}
	typ, n := RouteType(b[0]), int(b[1])
	if len(b) < 2+n {
		return nil, 0, fmt.Errorf("parse evpn nlri: %s route: length %d exceeds the %d bytes left", typ, n, len(b)-2)
	}
	body := b[2 : 2+n]
	var (
		nlri NLRI
		err  error
	)
	switch typ {
	case TypeMACIP:
		nlri, err = parseMACIP(body)
	case TypeIMET:
		nlri, err = parseIMET(body)
	case TypePrefix:
		nlri, err = parsePrefix(body)
	default:
		return nil, 2 + n, fmt.Errorf("parse evpn nlri: route type %d: %w", uint8(typ), ErrUnknownRouteType)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("parse evpn nlri: %w", err)
	}
	return nlri, 2 + n, nil
}

func parseMACIP(b []byte) (*MACIP, error) {
	if len(b) < macipFixedLen {
		return nil, fmt.Errorf("macip route: length %d is shorter than the minimum %d", len(b), macipFixedLen)
	}
	m := &MACIP{}
	copy(m.RD[:], b[0:8])
	copy(m.ESI[:], b[8:18])
	m.EthTag = binary.BigEndian.Uint32(b[18:22])
	if b[22] != 48 {
		return nil, fmt.Errorf("macip route: mac length %d bits, want 48", b[22])
	}
	m.MAC = net.HardwareAddr(append([]byte(nil), b[23:29]...))
	ipBits := b[29]
	var ipLen int
	switch ipBits {
	case 0, 32, 128:
		ipLen = int(ipBits) / 8
	default:
		return nil, fmt.Errorf("macip route: ip length %d bits, want 0, 32 or 128", ipBits)
	}
	rest := b[30:]
	switch len(rest) - ipLen {
	case 3, 6:
	default:
		return nil, fmt.Errorf("macip route: length %d does not fit a %d-bit ip and one or two labels", len(b), ipBits)
	}
	m.IP = readAddr(rest[:ipLen])
	rest = rest[ipLen:]
	m.Labels = make([]VNI, 0, len(rest)/3)
	for ; len(rest) > 0; rest = rest[3:] {
		m.Labels = append(m.Labels, readLabel(rest))
	}
	return m, nil
}

func parseIMET(b []byte) (*IMET, error) {
	if len(b) < imetFixedLen {
		return nil, fmt.Errorf("multicast route: length %d is shorter than the minimum %d", len(b), imetFixedLen)
	}
	m := &IMET{}
	copy(m.RD[:], b[0:8])
	m.EthTag = binary.BigEndian.Uint32(b[8:12])
	ipBits := b[12]
	if ipBits != 32 && ipBits != 128 {
		return nil, fmt.Errorf("multicast route: originator ip length %d bits, want 32 or 128", ipBits)
	}
	if len(b) != imetFixedLen+int(ipBits)/8 {
		return nil, fmt.Errorf("multicast route: length %d does not match a %d-bit originator ip", len(b), ipBits)
	}
	m.Originator = readAddr(b[13:])
	return m, nil
}

func parsePrefix(b []byte) (*Prefix, error) {
	var ipLen int
	switch len(b) {
	case prefix4Len:
		ipLen = 4
	case prefix6Len:
		ipLen = 16
	default:
		return nil, fmt.Errorf("prefix route: length %d, want %d (ipv4) or %d (ipv6)", len(b), prefix4Len, prefix6Len)
	}
	p := &Prefix{}
	copy(p.RD[:], b[0:8])
	copy(p.ESI[:], b[8:18])
	p.EthTag = binary.BigEndian.Uint32(b[18:22])
	bits := int(b[22])
	if bits > ipLen*8 {
		return nil, fmt.Errorf("prefix route: prefix length %d exceeds %d bits", bits, ipLen*8)
	}
	rest := b[23:]
	// Host bits are cleared: they are not part of the route's identity,
	// and FRR ignores them too.
	p.Prefix = netip.PrefixFrom(readAddr(rest[:ipLen]), bits).Masked()
	rest = rest[ipLen:]
	if gw := readAddr(rest[:ipLen]); !gw.IsUnspecified() {
		p.Gateway = gw
	}
	p.Label = readLabel(rest[ipLen:])
	return p, nil
}

// readAddr turns 0, 4 or 16 bytes into an address (zero Addr for 0 bytes).
func readAddr(b []byte) netip.Addr {
	switch len(b) {
	case 4:
		return netip.AddrFrom4([4]byte(b))
	case 16:
		return netip.AddrFrom16([16]byte(b))
	}
	return netip.Addr{}
}
