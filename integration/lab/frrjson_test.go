package lab

import (
	"encoding/json"
	"net/netip"
	"sort"
	"testing"
)

// frrRoutes is `show bgp l2vpn evpn route json` from FRR 8.4.4 acting as
// route reflector for an FRR host with VNI 100 (captured in a lab run).
const frrRoutes = `{"10.0.0.3:2":{"rd":"10.0.0.3:2","[2]:[0]:[48]:[5a:14:ad:f5:80:04]":{"prefix":"[2]:[0]:[48]:[5a:14:ad:f5:80:04]","prefixLen":352,"paths":[[{"valid":true,"bestpath":true,"selectionReason":"First path received","pathFrom":"internal","routeType":2,"ethTag":0,"macLen":48,"mac":"5a:14:ad:f5:80:04","locPrf":100,"weight":0,"peerId":"10.0.0.3","path":"","origin":"IGP","extendedCommunity":{"string":"RT:65000:100 ET:8"},"nexthops":[{"ip":"10.0.0.3","hostname":"host3","afi":"ipv4","used":true}]}]]},"[3]:[0]:[32]:[10.0.0.3]":{"prefix":"[3]:[0]:[32]:[10.0.0.3]","prefixLen":352,"paths":[[{"valid":true,"bestpath":true,"selectionReason":"First path received","pathFrom":"internal","routeType":3,"ethTag":0,"ipLen":32,"ip":"10.0.0.3","locPrf":100,"weight":0,"peerId":"10.0.0.3","path":"","origin":"IGP","extendedCommunity":{"string":"RT:65000:100 ET:8"},"nexthops":[{"ip":"10.0.0.3","hostname":"host3","afi":"ipv4","used":true}]}]]}},"numPrefix":2,"numPaths":2}`

func TestParseEVPNRoutes(t *testing.T) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal([]byte(frrRoutes), &top); err != nil {
		t.Fatal(err)
	}
	routes, err := parseEVPNRoutes(top)
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(routes, func(i, j int) bool { return routes[i].Type < routes[j].Type })
	if len(routes) != 2 {
		t.Fatalf("%d routes, want 2: %+v", len(routes), routes)
	}
	vtep := netip.MustParseAddr("10.0.0.3")
	mac, ip := routes[0], routes[1]
	if mac.Type != 2 || mac.MAC.String() != "5a:14:ad:f5:80:04" || mac.IP.IsValid() || mac.NextHop != vtep ||
		mac.RD != "10.0.0.3:2" || !mac.Best || !mac.Valid {
		t.Errorf("type-2 = %+v", mac)
	}
	if ip.Type != 3 || ip.IP != vtep || ip.NextHop != vtep || ip.MAC != nil || ip.PeerID != "10.0.0.3" {
		t.Errorf("type-3 = %+v", ip)
	}
	for _, r := range routes {
		if !r.HasExtCommunity("RT:65000:100") || !r.HasExtCommunity("ET:8") || r.HasExtCommunity("RT:65000:101") {
			t.Errorf("%s: ext communities %v, want RT:65000:100 and ET:8 only", r.Prefix, r.ExtCommunities)
		}
	}
}
