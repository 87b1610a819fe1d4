package evpn

import (
	"encoding/binary"
	"fmt"
	"net"
)

// ExtCommunity is one BGP extended community in its 8-byte wire form
// (RFC 4360).
type ExtCommunity [8]byte

// Extended community type and subtype octets evpnd reads and writes.
const (
	ecTypeOpaque   = 0x03 // RFC 9012 s4.1 (transitive opaque)
	ecSubEncap     = 0x0c
	ecTypeEVPN     = 0x06 // RFC 7432 s7.5
	ecSubMobility  = 0x00
	ecSubRouterMAC = 0x03 // RFC 9135 s8.1
	ecSubRT        = 0x02

	mobilitySticky = 0x01
)

// RTCommunity is rt as an extended community; an RT already is one.
func RTCommunity(rt RT) ExtCommunity { return ExtCommunity(rt) }

// EncapCommunity is the Encapsulation extended community (RFC 9012 s4.1):
// four reserved bytes, then the tunnel type (EncapVXLAN = 8).
func EncapCommunity(tunnelType uint16) ExtCommunity {
	ec := ExtCommunity{ecTypeOpaque, ecSubEncap}
	binary.BigEndian.PutUint16(ec[6:8], tunnelType)
	return ec
}

// MobilityCommunity is the MAC Mobility extended community (RFC 7432
// s7.7): flags (0x01 sticky), a reserved byte and the sequence number.
func MobilityCommunity(m Mobility) ExtCommunity {
	ec := ExtCommunity{ecTypeEVPN, ecSubMobility}
	if m.Sticky {
		ec[2] = mobilitySticky
	}
	binary.BigEndian.PutUint32(ec[4:8], m.Seq)
	return ec
}

// RouterMACCommunity is the EVPN Router's MAC extended community (RFC 9135
// s8.1). A mac that is not 6 bytes is written as far as it goes.
func RouterMACCommunity(mac net.HardwareAddr) ExtCommunity {
	ec := ExtCommunity{ecTypeEVPN, ecSubRouterMAC}
	copy(ec[2:8], mac)
	return ec
}

// isRT reports whether ec is a route target of type 0x00, 0x01 or 0x02.
func (ec ExtCommunity) isRT() bool {
	return ec[1] == ecSubRT && ec[0] <= 0x02
}

func (ec ExtCommunity) String() string {
	switch {
	case ec.isRT():
		return "RT:" + RT(ec).String()
	case ec[0] == ecTypeOpaque && ec[1] == ecSubEncap:
		return fmt.Sprintf("ET:%d", binary.BigEndian.Uint16(ec[6:8]))
	case ec[0] == ecTypeEVPN && ec[1] == ecSubMobility:
		s := fmt.Sprintf("MM:%d", binary.BigEndian.Uint32(ec[4:8]))
		if ec[2]&mobilitySticky != 0 {
			s += ", sticky MAC"
		}
		return s
	case ec[0] == ecTypeEVPN && ec[1] == ecSubRouterMAC:
		return "Rmac:" + net.HardwareAddr(ec[2:8]).String()
	}
	return fmt.Sprintf("ext:%x", ec[:])
}

// ExtCommunities is the extended communities attribute of r: its RTs, then
// Encapsulation, MAC Mobility and Router MAC when set.
func (r Route) ExtCommunities() []ExtCommunity {
	ecs := make([]ExtCommunity, 0, len(r.RTs)+3)
	for _, rt := range r.RTs {
		ecs = append(ecs, RTCommunity(rt))
	}
	if r.Encap != 0 {
		ecs = append(ecs, EncapCommunity(r.Encap))
	}
	if r.Mobility != nil {
		ecs = append(ecs, MobilityCommunity(*r.Mobility))
	}
	if r.RouterMAC != nil {
		ecs = append(ecs, RouterMACCommunity(r.RouterMAC))
	}
	return ecs
}

// SetExtCommunities replaces r's RTs, Encap, Mobility and RouterMAC with
// what ecs carries. Communities evpnd does not use are ignored, so a route
// from a vendor that adds its own still imports.
func (r *Route) SetExtCommunities(ecs []ExtCommunity) {
	r.RTs, r.Encap, r.Mobility, r.RouterMAC = nil, 0, nil, nil
	for _, ec := range ecs {
		switch {
		case ec.isRT():
			r.RTs = append(r.RTs, RT(ec))
		case ec[0] == ecTypeOpaque && ec[1] == ecSubEncap:
			r.Encap = binary.BigEndian.Uint16(ec[6:8])
		case ec[0] == ecTypeEVPN && ec[1] == ecSubMobility:
			r.Mobility = &Mobility{
				Seq:    binary.BigEndian.Uint32(ec[4:8]),
				Sticky: ec[2]&mobilitySticky != 0,
			}
		case ec[0] == ecTypeEVPN && ec[1] == ecSubRouterMAC:
			r.RouterMAC = net.HardwareAddr(append([]byte(nil), ec[2:8]...))
		}
	}
}

// ParseExtCommunities splits an extended communities attribute value
// (RFC 4360 s2) into its communities.
func ParseExtCommunities(b []byte) ([]ExtCommunity, error) {
	if len(b)%8 != 0 {
		return nil, fmt.Errorf("parse extended communities: length %d is not a multiple of 8", len(b))
	}
	ecs := make([]ExtCommunity, len(b)/8)
	for i := range ecs {
		ecs[i] = ExtCommunity(b[i*8 : i*8+8])
	}
	return ecs, nil
}

// MarshalExtCommunities is the attribute value holding ecs.
func MarshalExtCommunities(ecs []ExtCommunity) []byte {
	b := make([]byte, 0, 8*len(ecs))
	for _, ec := range ecs {
		b = append(b, ec[:]...)
	}
	return b
}
