package bgp

import (
	"net"
	"net/netip"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	gobgp "github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	apb "google.golang.org/protobuf/types/known/anypb"

	"github.com/evpnd/evpnd/evpn"
)

// ingest turns the paths GoBGP's watch hands over into evpn routes at the
// rate a full table arrives. The general conversion (fromAPIPath) goes
// protobuf -> GoBGP native -> wire bytes -> evpn and unmarshals every
// attribute: about 80 allocations a route, most of B1's conversion time.
// ingest reads the NLRI's protobuf fields in place and decodes each
// distinct RD and extended communities attribute once: a rack's routes
// share a handful of them. Anything it does not recognise goes the general
// way, which stays the one definition of the result.
//
// Routes from ingest share their RTs, Mobility and RouterMAC values with
// other routes that carried the same attribute; consumers treat routes as
// read-only (the slices are clipped, so an append copies).
//
// An ingest belongs to one goroutine.
type ingest struct {
	rds map[string]evpn.RD        // by the RD's protobuf Any bytes
	ecs map[string]extCommunities // by the attribute's protobuf value

	peerText string // the last neighbour address parsed, and its value
	peer     netip.Addr

	// MACs and labels are carved from slabs: one allocation per slab
	// instead of two per route.
	macs   []byte
	labels []evpn.VNI

	// buf holds one event's routes on their way into the queue.
	buf []evpn.Route
}

// extCommunities is what one extended communities attribute sets on a
// route.
type extCommunities struct {
	rts       []evpn.RT
	encap     uint16
	mobility  *evpn.Mobility
	routerMAC net.HardwareAddr
}

// ingestCacheMax bounds each cache: a peer that sends a distinct attribute
// on every route (a MAC mobility sequence per MAC) must not grow it
// without end; past the bound entries are decoded each time.
const ingestCacheMax = 4096

const slabRoutes = 1024

func newIngest() *ingest {
	return &ingest{rds: map[string]evpn.RD{}, ecs: map[string]extCommunities{}}
}

func typeURL(m proto.Message) string {
	return "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName())
}

// The type URLs GoBGP's anypb.New gives the messages ingest reads.
var (
	urlMACIP   = typeURL(&api.EVPNMACIPAdvertisementRoute{})
	urlIMET    = typeURL(&api.EVPNInclusiveMulticastEthernetTagRoute{})
	urlMPReach = typeURL(&api.MpReachNLRIAttribute{})
	urlExtComm = typeURL(&api.ExtendedCommunitiesAttribute{})
	urlPMSI    = typeURL(&api.PmsiTunnelAttribute{})
	urlNextHop = typeURL(&api.NextHopAttribute{})
)

// route is fromAPIPath, faster for the routes a fabric carries in bulk.
func (in *ingest) route(p *api.Path) (evpn.Route, bool, error) {
	if !isEVPN(p.GetFamily()) {
		return evpn.Route{}, false, nil
	}
	if r, ok := in.fast(p); ok {
		return r, true, nil
	}
	return fromAPIPath(p)
}

// fast converts p if everything in it is of a form it knows; ok false
// leaves p to fromAPIPath, which also reports what is wrong with it.
func (in *ingest) fast(p *api.Path) (r evpn.Route, ok bool) {
	a := p.GetNlri()
	switch a.GetTypeUrl() {
	case urlMACIP:
		m, ok := in.macip(a.GetValue())
		if !ok {
			return r, false
		}
		r.NLRI = m
	case urlIMET:
		m, ok := in.imet(a.GetValue())
		if !ok {
			return r, false
		}
		r.NLRI = m
	default:
		return r, false
	}
	r.Withdraw = p.GetIsWithdraw()
	if t := p.GetNeighborIp(); t != in.peerText {
		in.peerText, in.peer = t, netip.Addr{}
		if a, err := netip.ParseAddr(t); err == nil && !a.IsUnspecified() {
			in.peer = a
		}
	}
	r.Peer = in.peer
	for _, a := range p.GetPattrs() {
		switch a.GetTypeUrl() {
		case urlMPReach:
			nh, ok := mpReachNextHop(a.GetValue())
			if !ok {
				return r, false
			}
			r.NextHop = nh
		case urlExtComm:
			ec, ok := in.extCommunities(a)
			if !ok {
				return r, false
			}
			r.RTs, r.Encap, r.Mobility, r.RouterMAC = ec.rts, ec.encap, ec.mobility, ec.routerMAC
		case urlPMSI, urlNextHop:
			// Rare in bulk (one type-3 per VTEP and VNI; NEXT_HOP is not
			// used for EVPN): GoBGP's own decoder.
			native, err := apiutil.UnmarshalAttribute(a)
			if err != nil {
				return r, false
			}
			applyAttribute(&r, native)
		}
	}
	return r, true
}

// mpReachNextHop is the first next hop of an MP_REACH_NLRI attribute, as
// GoBGP's decoder reads it: 0.0.0.0 when there is none.
func mpReachNextHop(b []byte) (netip.Addr, bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return netip.Addr{}, false
		}
		b = b[n:]
		if num == 2 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return netip.Addr{}, false
			}
			a, err := netip.ParseAddr(string(v))
			if err != nil || a.Zone() != "" {
				return netip.Addr{}, false
			}
			return a.Unmap(), true
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return netip.Addr{}, false
		}
		b = b[n:]
	}
	return netip.IPv4Unspecified(), true
}

func (in *ingest) extCommunities(a *apb.Any) (extCommunities, bool) {
	if ec, ok := in.ecs[string(a.GetValue())]; ok {
		return ec, true
	}
	native, err := apiutil.UnmarshalAttribute(a)
	if err != nil {
		return extCommunities{}, false
	}
	var r evpn.Route
	applyAttribute(&r, native)
	ec := extCommunities{rts: r.RTs[:len(r.RTs):len(r.RTs)], encap: r.Encap, mobility: r.Mobility, routerMAC: r.RouterMAC}
	if len(in.ecs) < ingestCacheMax {
		in.ecs[string(a.GetValue())] = ec
	}
	return ec, true
}

// rd decodes the RD field of an NLRI message, an Any of one of GoBGP's
// three RD messages, by GoBGP's own decoder the first time it is seen.
func (in *ingest) rd(b []byte) (evpn.RD, bool) {
	if rd, ok := in.rds[string(b)]; ok {
		return rd, true
	}
	var a apb.Any
	if err := proto.Unmarshal(b, &a); err != nil {
		return evpn.RD{}, false
	}
	native, err := apiutil.UnmarshalRD(&a)
	if err != nil {
		return evpn.RD{}, false
	}
	w, err := native.Serialize()
	if err != nil || len(w) != len(evpn.RD{}) {
		return evpn.RD{}, false
	}
	rd := evpn.RD(w)
	if len(in.rds) < ingestCacheMax {
		in.rds[string(b)] = rd
	}
	return rd, true
}

// macip reads an EVPNMACIPAdvertisementRoute message (apiutil.MarshalNLRI
// writes it from GoBGP's native route).
func (in *ingest) macip(b []byte) (*evpn.MACIP, bool) {
	var (
		m        evpn.MACIP
		haveRD   bool
		haveESI  bool
		mac      [6]byte
		haveMAC  bool
		labels   [2]evpn.VNI
		nlabels  int
		tooMany  bool
		addLabel = func(v uint64) {
			if nlabels == len(labels) || v > uint64(evpn.MaxVNI) {
				tooMany = true
				return
			}
			labels[nlabels] = evpn.VNI(v)
			nlabels++
		}
	)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, false
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			// protobuf merges a repeated message field; leave that to it.
			if n < 0 || haveRD {
				return nil, false
			}
			if m.RD, haveRD = in.rd(v); !haveRD {
				return nil, false
			}
			b = b[n:]
		case num == 2 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 || haveESI || !readESI(v, &m.ESI) {
				return nil, false
			}
			haveESI = true
			b = b[n:]
		case num == 3 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 || v > 1<<32-1 {
				return nil, false
			}
			m.EthTag = uint32(v)
			b = b[n:]
		case num == 4 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, false
			}
			if mac, haveMAC = parseColonMAC(v); !haveMAC {
				return nil, false
			}
			b = b[n:]
		case num == 5 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, false
			}
			// GoBGP writes a route without an IP as net.IP(nil).String().
			m.IP = netip.Addr{}
			if s := string(v); s != "<nil>" && s != "" {
				ip, err := netip.ParseAddr(s)
				if err != nil || ip.Zone() != "" {
					return nil, false
				}
				m.IP = ip.Unmap()
			}
			b = b[n:]
		case num == 6 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, false
			}
			for len(v) > 0 {
				l, k := protowire.ConsumeVarint(v)
				if k < 0 {
					return nil, false
				}
				addLabel(l)
				v = v[k:]
			}
			b = b[n:]
		case num == 6 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return nil, false
			}
			addLabel(v)
			b = b[n:]
		default:
			return nil, false
		}
	}
	// GoBGP always writes the ESI (its own decoder dereferences it).
	if !haveRD || !haveESI || !haveMAC || nlabels == 0 || tooMany {
		return nil, false
	}
	m.MAC = in.mac(mac)
	m.Labels = in.labelSlice(labels[:nlabels])
	return &m, true
}

// imet reads an EVPNInclusiveMulticastEthernetTagRoute message.
func (in *ingest) imet(b []byte) (*evpn.IMET, bool) {
	var (
		m      evpn.IMET
		haveRD bool
	)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, false
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 || haveRD {
				return nil, false
			}
			if m.RD, haveRD = in.rd(v); !haveRD {
				return nil, false
			}
			b = b[n:]
		case num == 2 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 || v > 1<<32-1 {
				return nil, false
			}
			m.EthTag = uint32(v)
			b = b[n:]
		case num == 3 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, false
			}
			ip, err := netip.ParseAddr(string(v))
			if err != nil || ip.Zone() != "" {
				return nil, false
			}
			m.Originator = ip.Unmap()
			b = b[n:]
		default:
			return nil, false
		}
	}
	if !haveRD || !m.Originator.IsValid() {
		return nil, false
	}
	return &m, true
}

// readESI reads an EthernetSegmentIdentifier message as GoBGP serializes
// it: the type octet, then the value, truncated or zero-padded to 9.
func readESI(b []byte, esi *evpn.ESI) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return false
			}
			esi[0] = byte(v)
			b = b[n:]
		case num == 2 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return false
			}
			clear(esi[1:])
			copy(esi[1:], v)
			b = b[n:]
		default:
			return false
		}
	}
	return true
}

// parseColonMAC reads the xx:xx:xx:xx:xx:xx form net.HardwareAddr.String
// writes; other forms go the general way.
func parseColonMAC(b []byte) ([6]byte, bool) {
	var mac [6]byte
	if len(b) != 17 {
		return mac, false
	}
	for i := range mac {
		if i > 0 && b[3*i-1] != ':' {
			return mac, false
		}
		hi, ok1 := unhex(b[3*i])
		lo, ok2 := unhex(b[3*i+1])
		if !ok1 || !ok2 {
			return mac, false
		}
		mac[i] = hi<<4 | lo
	}
	return mac, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func (in *ingest) mac(m [6]byte) net.HardwareAddr {
	if cap(in.macs)-len(in.macs) < len(m) {
		in.macs = make([]byte, 0, len(m)*slabRoutes)
	}
	n := len(in.macs)
	in.macs = append(in.macs, m[:]...)
	return net.HardwareAddr(in.macs[n : n+len(m) : n+len(m)])
}

func (in *ingest) labelSlice(l []evpn.VNI) []evpn.VNI {
	if cap(in.labels)-len(in.labels) < len(l) {
		in.labels = make([]evpn.VNI, 0, 2*slabRoutes)
	}
	n := len(in.labels)
	in.labels = append(in.labels, l...)
	return in.labels[n : n+len(l) : n+len(l)]
}

// applyAttribute sets what a GoBGP path attribute carries on r.
func applyAttribute(r *evpn.Route, a gobgp.PathAttributeInterface) {
	switch a := a.(type) {
	case *gobgp.PathAttributeMpReachNLRI:
		if nh, ok := netip.AddrFromSlice(a.Nexthop); ok {
			r.NextHop = nh.Unmap()
		}
	case *gobgp.PathAttributeNextHop:
		if !r.NextHop.IsValid() {
			if nh, ok := netip.AddrFromSlice(a.Value); ok {
				r.NextHop = nh.Unmap()
			}
		}
	case *gobgp.PathAttributeExtendedCommunities:
		ecs := make([]evpn.ExtCommunity, 0, len(a.Value))
		for _, ec := range a.Value {
			eb, err := ec.Serialize()
			if err != nil || len(eb) != 8 {
				continue
			}
			ecs = append(ecs, evpn.ExtCommunity(eb))
		}
		r.SetExtCommunities(ecs)
	case *gobgp.PathAttributePmsiTunnel:
		pm := &evpn.PMSI{Type: uint8(a.TunnelType), Label: evpn.VNI(a.Label)}
		if a.IsLeafInfoRequired {
			pm.Flags = 1
		}
		if id, ok := a.TunnelID.(*gobgp.IngressReplTunnelID); ok {
			if ep, ok := netip.AddrFromSlice(id.Value); ok {
				pm.Endpoint = ep.Unmap()
			}
		}
		r.PMSI = pm
	}
}
