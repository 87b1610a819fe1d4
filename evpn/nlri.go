package evpn

import (
	"encoding/binary"
	"net/netip"
	"strconv"
)

// Type is TypeMACIP.
func (m *MACIP) Type() RouteType { return TypeMACIP }

// Distinguisher is the route's RD.
func (m *MACIP) Distinguisher() RD { return m.RD }

// Key is the route key of RFC 7432 s7.2: RD, Ethernet tag, MAC and IP.
// The ESI and the labels are attributes of the path, not its identity.
func (m *MACIP) Key() string {
	var buf [1 + 8 + 4 + 1 + 6 + 1 + 16]byte
	b := append(buf[:0], byte(TypeMACIP))
	b = append(b, m.RD[:]...)
	b = binary.BigEndian.AppendUint32(b, m.EthTag)
	b = append(b, byte(len(m.MAC)))
	b = append(b, m.MAC...)
	return string(appendKeyAddr(b, m.IP))
}

// String reads like FRR: RD, then [2]:[ethtag]:[48]:[mac] and, with an IP,
// :[iplen]:[ip].
func (m *MACIP) String() string {
	b := append([]byte(m.RD.String()), " [2]:["...)
	b = strconv.AppendUint(b, uint64(m.EthTag), 10)
	b = append(b, "]:["...)
	b = strconv.AppendInt(b, int64(len(m.MAC))*8, 10)
	b = append(b, "]:["...)
	b = append(b, m.MAC.String()...)
	b = append(b, ']')
	if m.IP.IsValid() {
		b = append(b, ":["...)
		b = strconv.AppendInt(b, int64(m.IP.BitLen()), 10)
		b = append(b, "]:["...)
		b = m.IP.AppendTo(b)
		b = append(b, ']')
	}
	return string(b)
}

// Type is TypeIMET.
func (m *IMET) Type() RouteType { return TypeIMET }

// Distinguisher is the route's RD.
func (m *IMET) Distinguisher() RD { return m.RD }

// Key is the route key of RFC 7432 s7.3: RD, Ethernet tag and originator.
func (m *IMET) Key() string {
	var buf [1 + 8 + 4 + 1 + 16]byte
	b := append(buf[:0], byte(TypeIMET))
	b = append(b, m.RD[:]...)
	b = binary.BigEndian.AppendUint32(b, m.EthTag)
	return string(appendKeyAddr(b, m.Originator))
}

// String reads like FRR: RD [3]:[ethtag]:[iplen]:[originator].
func (m *IMET) String() string {
	b := append([]byte(m.RD.String()), " [3]:["...)
	b = strconv.AppendUint(b, uint64(m.EthTag), 10)
	b = append(b, "]:["...)
	b = strconv.AppendInt(b, int64(m.Originator.BitLen()), 10)
	b = append(b, "]:["...)
	if m.Originator.IsValid() {
		b = m.Originator.AppendTo(b)
	}
	return string(append(b, ']'))
}

// Type is TypePrefix.
func (p *Prefix) Type() RouteType { return TypePrefix }

// Distinguisher is the route's RD.
func (p *Prefix) Distinguisher() RD { return p.RD }

// Key is the route key of RFC 9136 s3.1: RD, Ethernet tag and prefix. The
// ESI, gateway and label are attributes of the path.
func (p *Prefix) Key() string {
	var buf [1 + 8 + 4 + 1 + 1 + 16]byte
	b := append(buf[:0], byte(TypePrefix))
	b = append(b, p.RD[:]...)
	b = binary.BigEndian.AppendUint32(b, p.EthTag)
	pfx := p.Prefix.Masked()
	b = append(b, byte(pfx.Bits()))
	return string(appendKeyAddr(b, pfx.Addr()))
}

// String reads like FRR: RD [5]:[ethtag]:[prefixlen]:[prefix].
func (p *Prefix) String() string {
	b := append([]byte(p.RD.String()), " [5]:["...)
	b = strconv.AppendUint(b, uint64(p.EthTag), 10)
	b = append(b, "]:["...)
	b = strconv.AppendInt(b, int64(p.Prefix.Bits()), 10)
	b = append(b, "]:["...)
	if p.Prefix.IsValid() {
		b = p.Prefix.Addr().AppendTo(b)
	}
	return string(append(b, ']'))
}

// appendKeyAddr appends the address length in bytes and the address, so
// that keys of different address families never collide.
func appendKeyAddr(b []byte, a netip.Addr) []byte {
	switch {
	case a.Is4():
		a4 := a.As4()
		return append(append(b, 4), a4[:]...)
	case a.IsValid():
		a16 := a.As16()
		return append(append(b, 16), a16[:]...)
	}
	return append(b, 0)
}
