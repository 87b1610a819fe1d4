package apiserver

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	evpndv1 "github.com/evpnd/evpnd/api/evpnd/v1"
	"github.com/evpnd/evpnd/evpn"
)

// violations collects every invalid field of a request, so one answer tells
// the caller all that is wrong.
type violations []*errdetails.BadRequest_FieldViolation

func (v *violations) add(field, description string) {
	*v = append(*v, &errdetails.BadRequest_FieldViolation{Field: field, Description: description})
}

// err is nil when no field was invalid, else INVALID_ARGUMENT with a
// google.rpc.BadRequest detail; the message repeats the violations for
// clients that do not read details.
func (v violations) err() error {
	if len(v) == 0 {
		return nil
	}
	msgs := make([]string, len(v))
	for i, fv := range v {
		msgs[i] = fv.GetField() + ": " + fv.GetDescription()
	}
	st := status.New(codes.InvalidArgument, strings.Join(msgs, "; "))
	if withDetails, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: v}); err == nil {
		st = withDetails
	}
	return st.Err()
}

func (v *violations) vni(field string, n uint32) evpn.VNI {
	vni := evpn.VNI(n)
	if !vni.Valid() {
		v.add(field, fmt.Sprintf("%d is out of range 1..%d", n, evpn.MaxVNI))
		return 0
	}
	return vni
}

func (v *violations) mac(field, s string) net.HardwareAddr {
	mac, err := net.ParseMAC(s)
	if err != nil || len(mac) != 6 {
		v.add(field, fmt.Sprintf("%q is not a MAC address", s))
		return nil
	}
	return mac
}

// prefix parses s as a prefix and masks it, so "10.1.0.99/16" filters as
// 10.1.0.0/16.
func (v *violations) prefix(field, s string) netip.Prefix {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		v.add(field, fmt.Sprintf("%q is not an IP prefix (want address/length)", s))
		return netip.Prefix{}
	}
	return p.Masked()
}

func routeProtocolNames() string {
	return strings.Join([]string{
		evpndv1.RouteProtocol_ROUTE_PROTOCOL_CONNECTED.String(),
		evpndv1.RouteProtocol_ROUTE_PROTOCOL_STATIC.String(),
		evpndv1.RouteProtocol_ROUTE_PROTOCOL_EVPN.String(),
		evpndv1.RouteProtocol_ROUTE_PROTOCOL_OTHER.String(),
	}, ", ")
}

func routeTypeNames() string {
	return strings.Join([]string{
		evpndv1.RouteType_ROUTE_TYPE_MAC_IP.String(),
		evpndv1.RouteType_ROUTE_TYPE_INCLUSIVE_MULTICAST.String(),
		evpndv1.RouteType_ROUTE_TYPE_IP_PREFIX.String(),
	}, ", ")
}
