package evpn

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// RT is a route target extended community in its 8-byte wire form
// (RFC 4360): type 0x00 (2-byte ASN), 0x01 (IPv4) or 0x02 (4-byte ASN),
// subtype 0x02.
type RT [8]byte

// NewRT0 returns the type-0 RT <asn>:<n>, the auto-derived form.
func NewRT0(asn uint16, n uint32) RT {
	var rt RT
	rt[0], rt[1] = 0x00, 0x02
	binary.BigEndian.PutUint16(rt[2:4], asn)
	binary.BigEndian.PutUint32(rt[4:8], n)
	return rt
}

// NewRT1 returns the IPv4-specific RT <ip>:<n>.
func NewRT1(ip netip.Addr, n uint16) RT {
	var rt RT
	rt[0], rt[1] = 0x01, 0x02
	a := ip.As4()
	copy(rt[2:6], a[:])
	binary.BigEndian.PutUint16(rt[6:8], n)
	return rt
}

// NewRT2 returns the 4-byte-ASN RT <asn>:<n>.
func NewRT2(asn uint32, n uint16) RT {
	var rt RT
	rt[0], rt[1] = 0x02, 0x02
	binary.BigEndian.PutUint32(rt[2:6], asn)
	binary.BigEndian.PutUint16(rt[6:8], n)
	return rt
}

// LocalAdmin is the local administrator field: the VNI in auto-derived RTs.
func (rt RT) LocalAdmin() uint32 {
	if rt[0]&0x3F == 0x00 {
		return binary.BigEndian.Uint32(rt[4:8])
	}
	return uint32(binary.BigEndian.Uint16(rt[6:8]))
}

func (rt RT) String() string {
	switch rt[0] & 0x3F {
	case 0x00:
		return fmt.Sprintf("%d:%d", binary.BigEndian.Uint16(rt[2:4]), binary.BigEndian.Uint32(rt[4:8]))
	case 0x01:
		return fmt.Sprintf("%s:%d", netip.AddrFrom4([4]byte(rt[2:6])), binary.BigEndian.Uint16(rt[6:8]))
	case 0x02:
		return fmt.Sprintf("%d:%d", binary.BigEndian.Uint32(rt[2:6]), binary.BigEndian.Uint16(rt[6:8]))
	}
	return fmt.Sprintf("rt-%x", rt[:])
}

// ParseRT parses "<asn>:<n>" or "<ipv4>:<n>"; an ASN above 65535 gives a
// type-2 RT.
func ParseRT(s string) (RT, error) {
	admin, assigned, ok := strings.Cut(s, ":")
	if !ok {
		return RT{}, fmt.Errorf("route target %q: want <asn|ipv4>:<number>", s)
	}
	if ip, err := netip.ParseAddr(admin); err == nil {
		if !ip.Is4() {
			return RT{}, fmt.Errorf("route target %q: administrator must be an IPv4 address or an ASN", s)
		}
		n, err := strconv.ParseUint(assigned, 10, 16)
		if err != nil {
			return RT{}, fmt.Errorf("route target %q: assigned number must be 0..65535", s)
		}
		return NewRT1(ip, uint16(n)), nil
	}
	asn, err := strconv.ParseUint(admin, 10, 32)
	if err != nil {
		return RT{}, fmt.Errorf("route target %q: administrator must be an IPv4 address or an ASN", s)
	}
	if asn <= 0xFFFF {
		n, err := strconv.ParseUint(assigned, 10, 32)
		if err != nil {
			return RT{}, fmt.Errorf("route target %q: assigned number must be 0..4294967295", s)
		}
		return NewRT0(uint16(asn), uint32(n)), nil
	}
	n, err := strconv.ParseUint(assigned, 10, 16)
	if err != nil {
		return RT{}, fmt.Errorf("route target %q: with a 4-byte ASN the assigned number must be 0..65535", s)
	}
	return NewRT2(uint32(asn), uint16(n)), nil
}

// Preset names how auto route targets are derived for a 4-byte ASN
// (see DESIGN.md); for a 2-byte ASN all presets give <asn>:<vni>.
type Preset string

// The RT derivation presets.
const (
	PresetFRR     Preset = "frr"     // AS & 0xFFFF : VNI
	PresetNXOS    Preset = "nxos"    // 23456 (AS_TRANS) : VNI
	PresetRFC8365 Preset = "rfc8365" // Junos "vrf-target auto"
)

// Presets lists the valid presets, for validation messages.
var Presets = []Preset{PresetFRR, PresetNXOS, PresetRFC8365}

// AutoRT derives the route target for vni under preset p.
func AutoRT(p Preset, asn uint32, vni VNI) RT {
	switch p {
	case PresetNXOS:
		if asn > 0xFFFF {
			return NewRT0(23456, uint32(vni))
		}
	case PresetRFC8365:
		// RFC 8365 s5.1.2.1: a 2-byte global admin (the low 16 bits of the
		// AS), and a local admin of A(1)=0 (auto-derived) | Type(3)=1
		// (VXLAN) | D-ID(4)=0 | Service ID(24) = VNI. Junos "vrf-target
		// auto" gives 65000:268435556 for VNI 100.
		var rt RT
		rt[0], rt[1] = 0x00, 0x02
		binary.BigEndian.PutUint16(rt[2:4], uint16(asn))
		binary.BigEndian.PutUint32(rt[4:8], 1<<28|uint32(vni)&uint32(MaxVNI))
		return rt
	}
	return NewRT0(uint16(asn), uint32(vni))
}

// ImportVNI is the VNI an RT imports into when matching on the local
// administrator, as FRR does; it strips the RFC 8365 auto-derivation bits.
func (rt RT) ImportVNI() VNI {
	return VNI(rt.LocalAdmin() & uint32(MaxVNI))
}
