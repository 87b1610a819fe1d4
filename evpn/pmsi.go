package evpn

import (
	"fmt"
)

// Marshal encodes p as a PMSI Tunnel attribute value (RFC 6514 s5): flags,
// tunnel type, a 3-byte label carrying the whole VNI (RFC 8365 s5.1.3) and
// the tunnel identifier, which for ingress replication is the endpoint
// address (4 or 16 bytes; none when Endpoint is the zero Addr). Label bits
// above 24 are dropped.
func (p PMSI) Marshal() []byte {
	b := make([]byte, 0, 5+16)
	b = append(b, p.Flags, p.Type)
	b = appendLabel(b, p.Label&MaxVNI)
	return appendAddr(b, p.Endpoint)
}

// ParsePMSI decodes a PMSI Tunnel attribute value whose tunnel identifier
// is empty, an IPv4 or an IPv6 address.
func ParsePMSI(b []byte) (PMSI, error) {
	if len(b) < 5 {
		return PMSI{}, fmt.Errorf("parse pmsi tunnel: length %d is shorter than the minimum 5", len(b))
	}
	p := PMSI{Flags: b[0], Type: b[1], Label: readLabel(b[2:5])}
	switch id := b[5:]; len(id) {
	case 0, 4, 16:
		p.Endpoint = readAddr(id)
	default:
		return PMSI{}, fmt.Errorf("parse pmsi tunnel: tunnel type %d: identifier of %d bytes, want an ipv4 (4) or ipv6 (16) address", p.Type, len(id))
	}
	return p, nil
}
