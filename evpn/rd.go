package evpn

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// RD is a route distinguisher in its 8-byte wire form (RFC 4364 s4.2).
type RD [8]byte

// NewRD1 returns a type-1 RD <ip>:<index>, the form evpnd advertises.
func NewRD1(ip netip.Addr, index uint16) RD {
	var rd RD
	binary.BigEndian.PutUint16(rd[0:2], 1)
	a := ip.As4()
	copy(rd[2:6], a[:])
	binary.BigEndian.PutUint16(rd[6:8], index)
	return rd
}

// NewRD0 returns a type-0 RD <asn2>:<n>.
func NewRD0(asn uint16, n uint32) RD {
	var rd RD
	binary.BigEndian.PutUint16(rd[2:4], asn)
	binary.BigEndian.PutUint32(rd[4:8], n)
	return rd
}

// NewRD2 returns a type-2 RD <asn4>:<n>.
func NewRD2(asn uint32, n uint16) RD {
	var rd RD
	binary.BigEndian.PutUint16(rd[0:2], 2)
	binary.BigEndian.PutUint32(rd[2:6], asn)
	binary.BigEndian.PutUint16(rd[6:8], n)
	return rd
}

// Type is the RD type field (0, 1 or 2).
func (rd RD) Type() uint16 { return binary.BigEndian.Uint16(rd[0:2]) }

func (rd RD) String() string {
	switch rd.Type() {
	case 0:
		return fmt.Sprintf("%d:%d", binary.BigEndian.Uint16(rd[2:4]), binary.BigEndian.Uint32(rd[4:8]))
	case 1:
		return fmt.Sprintf("%s:%d", netip.AddrFrom4([4]byte(rd[2:6])), binary.BigEndian.Uint16(rd[6:8]))
	case 2:
		return fmt.Sprintf("%d:%d", binary.BigEndian.Uint32(rd[2:6]), binary.BigEndian.Uint16(rd[6:8]))
	}
	return fmt.Sprintf("type%d:%x", rd.Type(), rd[2:])
}

// ParseRD parses "<ipv4>:<n>" (type 1), "<asn>:<n>" with a 2-byte ASN
// (type 0) or a 4-byte ASN (type 2).
func ParseRD(s string) (RD, error) {
	admin, assigned, ok := strings.Cut(s, ":")
	if !ok {
		return RD{}, fmt.Errorf("route distinguisher %q: want <asn|ipv4>:<number>", s)
	}
	if ip, err := netip.ParseAddr(admin); err == nil {
		if !ip.Is4() {
			return RD{}, fmt.Errorf("route distinguisher %q: administrator must be an IPv4 address or an ASN", s)
		}
		n, err := strconv.ParseUint(assigned, 10, 16)
		if err != nil {
			return RD{}, fmt.Errorf("route distinguisher %q: assigned number must be 0..65535", s)
		}
		return NewRD1(ip, uint16(n)), nil
	}
	asn, err := strconv.ParseUint(admin, 10, 32)
	if err != nil {
		return RD{}, fmt.Errorf("route distinguisher %q: administrator must be an IPv4 address or an ASN", s)
	}
	if asn <= 0xFFFF {
		n, err := strconv.ParseUint(assigned, 10, 32)
		if err != nil {
			return RD{}, fmt.Errorf("route distinguisher %q: assigned number must be 0..4294967295", s)
		}
		return NewRD0(uint16(asn), uint32(n)), nil
	}
	n, err := strconv.ParseUint(assigned, 10, 16)
	if err != nil {
		return RD{}, fmt.Errorf("route distinguisher %q: with a 4-byte ASN the assigned number must be 0..65535", s)
	}
	return NewRD2(uint32(asn), uint16(n)), nil
}
