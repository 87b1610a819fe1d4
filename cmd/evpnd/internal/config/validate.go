package config

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/evpnd/evpnd/bgp"
	"github.com/evpnd/evpnd/evpn"
)

// nameRE is what a tenant or segment name may be: it becomes part of a
// namespace name (a file under /run/netns) and of log keys.
var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_-]*$`)

// prefixRE is what a namespace prefix may be.
var prefixRE = regexp.MustCompile(`^[a-zA-Z0-9_.-]*$`)

// maxNetnsName keeps namespace names short enough for every tool that
// prints them; the kernel allows more, people do not read more.
const maxNetnsName = 64

// Validate checks every field and returns the typed configuration, or the
// problems found (all of them, never just the first).
func (f File) Validate() (*Config, []string) {
	var probs []string
	bad := func(path string, value any, rule string, args ...any) {
		probs = append(probs, fmt.Sprintf("%s: %s", path, fmt.Sprintf("%s %s", quote(value), fmt.Sprintf(rule, args...))))
	}
	c := &Config{}

	c.RouterID = ipv4(f.RouterID, "router-id", true, bad)
	if f.ASN == 0 {
		bad("asn", f.ASN, "is not set: the local AS number is required (1..4294967295)")
	}
	c.ASN = f.ASN
	c.VTEP = ipv4(f.VTEPAddress, "vtep-address", true, bad)

	if !prefixRE.MatchString(f.NetnsPrefix) {
		bad("netns-prefix", f.NetnsPrefix, "may hold only letters, digits, '_', '.' and '-'")
	}
	c.NetnsPrefix = f.NetnsPrefix

	c.RouterMAC = unicastMAC(f.RouterMAC, "router-mac", bad)
	if f.RouterMAC == "" && c.RouterID.IsValid() {
		// One router MAC per host, derived so it is unique wherever the
		// router ID is: 02:52 ("R", locally administered) + router ID.
		a := c.RouterID.As4()
		c.RouterMAC = net.HardwareAddr{0x02, 0x52, a[0], a[1], a[2], a[3]}
	}
	anycast := unicastMAC(f.AnycastMAC, "anycast-gateway-mac", bad)

	c.RTPreset = evpn.Preset(f.RTPreset)
	if !slices.Contains(evpn.Presets, c.RTPreset) {
		bad("rt-preset", f.RTPreset, "is not one of %s", joinPresets())
	}

	// bgp
	for i, a := range f.BGP.ListenAddresses {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			bad(fmt.Sprintf("bgp.listen-addresses[%d]", i), a, "is not an IP address")
			continue
		}
		c.BGP.ListenAddresses = append(c.BGP.ListenAddresses, ip)
	}
	if p := f.BGP.ListenPort; p != -1 && (p < 1 || p > 65535) {
		bad("bgp.listen-port", p, "is out of range 1..65535 (or -1: do not listen)")
	}
	c.BGP.ListenPort = int32(f.BGP.ListenPort)
	c.BGP.RouterID, c.BGP.ASN, c.BGP.NextHop = c.RouterID, c.ASN, c.VTEP

	seenPeer := map[netip.Addr]int{}
	for i, p := range f.Peers {
		path := fmt.Sprintf("peers[%d]", i)
		pc := bgp.PeerConfig{ASN: p.ASN, Password: p.Password, Description: p.Description}
		ip, err := netip.ParseAddr(p.Address)
		switch {
		case p.Address == "":
			bad(path+".address", p.Address, "is not set: every peer needs an address")
		case err != nil:
			bad(path+".address", p.Address, "is not an IP address")
		default:
			pc.Address = ip
			if j, dup := seenPeer[ip]; dup {
				bad(path+".address", p.Address, "duplicates peers[%d].address", j)
			}
			seenPeer[ip] = i
		}
		if p.ASN == 0 {
			bad(path+".asn", p.ASN, "is not set: every peer needs an AS number (equal to asn for iBGP)")
		}
		if p.Port < 0 || p.Port > 65535 {
			bad(path+".port", p.Port, "is out of range 1..65535 (0: 179)")
		}
		pc.Port = uint16(p.Port)
		if len(p.Password) > 80 {
			bad(path+".password", "(hidden)", "is longer than 80 bytes, the TCP-MD5 key limit (RFC 2385)")
		}
		if h := p.HoldTime; h != 0 && (h < 3 || h > 65535) {
			bad(path+".hold-time", h, "is out of range 3..65535 seconds (0: default 90)")
		}
		if k := p.KeepaliveInterval; k < 0 || k > 21845 {
			bad(path+".keepalive-interval", k, "is out of range 1..21845 seconds (0: default hold-time/3)")
		} else if k != 0 && p.HoldTime != 0 && k*3 > p.HoldTime {
			bad(path+".keepalive-interval", k, "must be at most a third of hold-time (%d)", p.HoldTime)
		}
		pc.HoldTime, pc.KeepaliveInterval = seconds(p.HoldTime), seconds(p.KeepaliveInterval)
		// 255 hops would accept TTL 1, which is no check at all.
		if n := p.TTLSecurity; n < 0 || n > 254 {
			bad(path+".ttl-security", n, "is out of range 1..254 hops (0: off)")
		} else {
			pc.TTLSecurity = uint8(n)
		}
		if n := p.MaxPrefixes; n < 0 || n > math.MaxUint32 {
			bad(path+".max-prefixes", n, "is out of range 1..4294967295 routes per family (0: no limit)")
		} else {
			pc.MaxPrefixes = uint32(n)
		}
		pc.Passive = p.Passive
		c.BGP.Peers = append(c.BGP.Peers, pc)
	}

	// tenants
	seenTenant := map[string]int{}
	seenVNI := map[uint32]string{}
	seenPort := map[string]string{}
	for i, t := range f.Tenants {
		path := fmt.Sprintf("tenants[%d]", i)
		switch {
		case t.Name == "":
			bad(path+".name", t.Name, "is not set: every tenant needs a name")
		case !nameRE.MatchString(t.Name):
			bad(path+".name", t.Name, "cannot be part of a namespace name: use letters, digits, '_' and '-', starting with a letter or digit")
		case len(f.NetnsPrefix)+len(t.Name) > maxNetnsName:
			bad(path+".name", t.Name, "makes namespace %q longer than %d characters", f.NetnsPrefix+t.Name, maxNetnsName)
		}
		if j, dup := seenTenant[t.Name]; dup && t.Name != "" {
			bad(path+".name", t.Name, "duplicates tenants[%d].name", j)
		}
		seenTenant[t.Name] = i
		tc := Tenant{Name: t.Name}
		if t.L3VNI != 0 {
			l3 := &TenantL3{VNI: evpn.VNI(t.L3VNI), AnycastMAC: anycast, AdvertiseConnected: true}
			if !l3.VNI.Valid() {
				bad(path+".l3vni", t.L3VNI, "is out of range 1..%d", evpn.MaxVNI)
			} else if other, dup := seenVNI[t.L3VNI]; dup {
				bad(path+".l3vni", t.L3VNI, "is already used by %s (a VNI is one segment on the whole underlay)", other)
			} else {
				seenVNI[t.L3VNI] = path + ".l3vni"
			}
			if t.AnycastMAC != "" {
				l3.AnycastMAC = unicastMAC(t.AnycastMAC, path+".anycast-gateway-mac", bad)
			}
			if t.AdvertiseConnected != nil {
				l3.AdvertiseConnected = *t.AdvertiseConnected
			}
			l3.Import = rts(t.RouteTargets.Import, path+".route-targets.import", bad)
			l3.Export = rts(t.RouteTargets.Export, path+".route-targets.export", bad)
			tc.L3 = l3
		} else {
			for _, k := range []struct {
				set  bool
				name string
			}{{len(t.Routes) > 0, "routes"}, {t.AnycastMAC != "", "anycast-gateway-mac"},
				{t.AdvertiseConnected != nil, "advertise-connected"},
				{len(t.RouteTargets.Import)+len(t.RouteTargets.Export) > 0, "route-targets"}} {
				if k.set {
					bad(path+"."+k.name, "(set)", "needs %s.l3vni: only a routed tenant has it", path)
				}
			}
		}
		seenSeg := map[string]int{}
		for k, s := range t.Segments {
			sp := fmt.Sprintf("%s.segments[%d]", path, k)
			switch {
			case s.Name == "":
				bad(sp+".name", s.Name, "is not set: every segment needs a name")
			case !nameRE.MatchString(s.Name):
				bad(sp+".name", s.Name, "may hold only letters, digits, '_' and '-', starting with a letter or digit")
			}
			if j, dup := seenSeg[s.Name]; dup && s.Name != "" {
				bad(sp+".name", s.Name, "duplicates %s.segments[%d].name", path, j)
			}
			seenSeg[s.Name] = k
			if !evpn.VNI(s.VNI).Valid() {
				bad(sp+".vni", s.VNI, "is out of range 1..%d", evpn.MaxVNI)
			} else if other, dup := seenVNI[s.VNI]; dup {
				bad(sp+".vni", s.VNI, "is already used by %s (a VNI is one segment on the whole underlay)", other)
			} else {
				seenVNI[s.VNI] = sp
			}
			if s.MTU != 0 && (s.MTU < 1280 || s.MTU > 9000) {
				bad(sp+".mtu", s.MTU, "is out of range 1280..9000 (0: underlay MTU - 50)")
			}
			for j, port := range s.Ports {
				pp := fmt.Sprintf("%s.ports[%d]", sp, j)
				if !validIfName(port) {
					bad(pp, port, "is not an interface name: 1..15 characters, no '/', ':' or white space")
					continue
				}
				if other, dup := seenPort[port]; dup {
					bad(pp, port, "is already attached at %s", other)
				}
				seenPort[port] = pp
			}
			sc := Segment{Name: s.Name, VNI: evpn.VNI(s.VNI), Ports: s.Ports, MTU: s.MTU}
			for j, g := range s.Gateway {
				gp := fmt.Sprintf("%s.gateway[%d]", sp, j)
				if tc.L3 == nil {
					bad(gp, g, "needs %s.l3vni: a gateway makes the tenant routed", path)
					continue
				}
				pfx, err := netip.ParsePrefix(g)
				switch {
				case err != nil:
					bad(gp, g, "is not an address with its subnet length, e.g. 172.31.1.254/24 or 2001:db8:1::1/64")
					continue
				case pfx.Addr() == pfx.Masked().Addr() && pfx.Bits() < pfx.Addr().BitLen()-1:
					bad(gp, g, "is the subnet's own address; give the gateway's address, e.g. %s", lastHost(pfx))
					continue
				}
				for _, prev := range sc.Gateways {
					if prev.Overlaps(pfx) {
						bad(gp, g, "overlaps %s on the same segment", prev)
					}
				}
				for _, os := range tc.Segments {
					for _, prev := range os.Gateways {
						if prev.Overlaps(pfx) {
							bad(gp, g, "overlaps %s of segment %q", prev, os.Name)
						}
					}
				}
				sc.Gateways = append(sc.Gateways, pfx)
			}
			sc.Import = rts(s.RouteTargets.Import, sp+".route-targets.import", bad)
			sc.Export = rts(s.RouteTargets.Export, sp+".route-targets.export", bad)
			tc.Segments = append(tc.Segments, sc)
		}
		if tc.L3 != nil {
			tc.L3.Routes = routes(t.Routes, path, tc, bad)
		}
		c.Tenants = append(c.Tenants, tc)
	}

	c.Policies = policies(f.Policies, c.Tenants, &probs, bad)

	// api, metrics, state, log
	c.APIListen = f.API.Listen
	tlsSet := f.API.TLS != (APITLSFile{})
	switch {
	case strings.HasPrefix(f.API.Listen, "unix://"):
		if p := strings.TrimPrefix(f.API.Listen, "unix://"); !filepath.IsAbs(p) {
			bad("api.listen", f.API.Listen, "must be unix:///absolute/path or tcp://host:port")
		}
		if tlsSet {
			bad("api.tls", "(set)", "applies only to a tcp:// api.listen; the unix socket is protected by its mode 0600")
		}
	case strings.HasPrefix(f.API.Listen, "tcp://"):
		if _, _, err := net.SplitHostPort(strings.TrimPrefix(f.API.Listen, "tcp://")); err != nil {
			bad("api.listen", f.API.Listen, "must be tcp://host:port")
		}
		for _, k := range []struct{ key, path string }{
			{"api.tls.cert", f.API.TLS.Cert}, {"api.tls.key", f.API.TLS.Key}, {"api.tls.client-ca", f.API.TLS.ClientCA},
		} {
			switch {
			case k.path == "":
				bad(k.key, k.path, "is not set: the API over TCP requires mutual TLS (api.tls.cert, api.tls.key and api.tls.client-ca)")
			case !filepath.IsAbs(k.path):
				bad(k.key, k.path, "must be an absolute path")
			default:
				if _, err := os.Stat(k.path); err != nil {
					bad(k.key, k.path, "cannot be read: %v", errors.Unwrap(err))
				}
			}
		}
		c.APITLS = APITLS{Cert: f.API.TLS.Cert, Key: f.API.TLS.Key, ClientCA: f.API.TLS.ClientCA}
	default:
		bad("api.listen", f.API.Listen, "must be unix:///absolute/path or tcp://host:port")
	}
	if f.Metrics.Listen != "" {
		if _, port, err := net.SplitHostPort(f.Metrics.Listen); err != nil || port == "" {
			bad("metrics.listen", f.Metrics.Listen, "must be host:port (e.g. 127.0.0.1:9469), or empty to serve no metrics")
		}
	}
	c.MetricsListen = f.Metrics.Listen
	if !filepath.IsAbs(f.StateDir) {
		bad("state-dir", f.StateDir, "must be an absolute path")
	}
	c.StateDir = f.StateDir
	if rt := f.GracefulRestart.RestartTime; f.GracefulRestart.Enabled && (rt < 1 || rt > 4095) {
		bad("graceful-restart.restart-time", rt, "is out of range 1..4095 seconds (the capability's 12 bits)")
	}
	c.BGP.GracefulRestart = bgp.GracefulRestart{
		Enabled:     f.GracefulRestart.Enabled,
		RestartTime: seconds(f.GracefulRestart.RestartTime),
		StateDir:    f.StateDir,
	}
	if f.RepairInterval < 0 || f.RepairInterval > 86400 {
		bad("repair-interval", f.RepairInterval, "is out of range 0..86400 seconds (0: never repair)")
	}
	c.RepairInterval = seconds(f.RepairInterval)
	if m := f.DupDetection.MaxMoves; m < 0 || m > 1000 {
		bad("mac-duplicate-detection.max-moves", m, "is out of range 0..1000 (0: no detection)")
	}
	if w := f.DupDetection.Window; f.DupDetection.MaxMoves > 0 && (w < 1 || w > 86400) {
		bad("mac-duplicate-detection.window", w, "is out of range 1..86400 seconds")
	}
	c.DupMaxMoves, c.DupWindow = f.DupDetection.MaxMoves, seconds(f.DupDetection.Window)
	switch strings.ToLower(f.Log.Level) {
	case "debug":
		c.LogLevel = slog.LevelDebug
	case "info":
		c.LogLevel = slog.LevelInfo
	case "warn", "warning":
		c.LogLevel = slog.LevelWarn
	case "error":
		c.LogLevel = slog.LevelError
	default:
		bad("log.level", f.Log.Level, "is not one of debug, info, warn, error")
	}
	switch f.Log.Format {
	case "text", "json":
		c.LogFormat = f.Log.Format
	default:
		bad("log.format", f.Log.Format, "is not one of text, json")
	}
	if len(probs) > 0 {
		return nil, probs
	}
	return c, nil
}

func ipv4(s, path string, required bool, bad func(string, any, string, ...any)) netip.Addr {
	if s == "" {
		if required {
			bad(path, s, "is not set: an IPv4 address is required")
		}
		return netip.Addr{}
	}
	ip, err := netip.ParseAddr(s)
	if err != nil || !ip.Is4() {
		bad(path, s, "is not an IPv4 address")
		return netip.Addr{}
	}
	return ip
}

func rts(in []string, path string, bad func(string, any, string, ...any)) []evpn.RT {
	var out []evpn.RT
	for i, s := range in {
		rt, err := evpn.ParseRT(s)
		if err != nil {
			bad(fmt.Sprintf("%s[%d]", path, i), s, "is not a route target (<asn>:<number> or <ipv4>:<number>)")
			continue
		}
		out = append(out, rt)
	}
	return out
}

func routes(in []RouteDef, path string, t Tenant, bad func(string, any, string, ...any)) []Route {
	var out []Route
	for i, r := range in {
		rp := fmt.Sprintf("%s.routes[%d]", path, i)
		pfx, err := netip.ParsePrefix(r.Prefix)
		if err != nil {
			bad(rp+".prefix", r.Prefix, "is not a prefix, e.g. 0.0.0.0/0 or 198.51.100.0/24")
			continue
		}
		if pfx != pfx.Masked() {
			bad(rp+".prefix", r.Prefix, "has host bits set; did you mean %s?", pfx.Masked())
			continue
		}
		via, err := netip.ParseAddr(r.Via)
		if err != nil {
			bad(rp+".via", r.Via, "is not an IP address")
			continue
		}
		if via.Is4() != pfx.Addr().Is4() {
			bad(rp+".via", r.Via, "is not of the same family as prefix %s", pfx)
			continue
		}
		onLink := false
		for _, s := range t.Segments {
			for _, g := range s.Gateways {
				if g.Masked().Contains(via) {
					onLink = true
				}
			}
		}
		if !onLink {
			bad(rp+".via", r.Via, "is on none of the tenant's gateway subnets; a next hop must be a workload on a local segment")
			continue
		}
		out = append(out, Route{Prefix: pfx, Via: via})
	}
	return out
}

// lastHost is the conventional gateway address of a subnet: its last host.
func lastHost(p netip.Prefix) netip.Prefix {
	b := p.Masked().Addr().AsSlice()
	host := p.Addr().BitLen() - p.Bits()
	for i := len(b) - 1; i >= 0 && host > 0; i-- {
		n := min(host, 8)
		b[i] |= byte(1<<n - 1)
		host -= n
	}
	a, _ := netip.AddrFromSlice(b)
	if a.Is4() {
		a = a.Prev() // not the broadcast address
	}
	return netip.PrefixFrom(a, p.Bits())
}

func unicastMAC(s, path string, bad func(string, any, string, ...any)) net.HardwareAddr {
	if s == "" {
		return nil
	}
	m, err := net.ParseMAC(s)
	if err != nil || len(m) != 6 {
		bad(path, s, "is not a MAC address (aa:bb:cc:dd:ee:ff)")
		return nil
	}
	if m[0]&1 == 1 {
		bad(path, s, "is a multicast MAC; a gateway or router MAC must be unicast")
		return nil
	}
	return m
}

func validIfName(s string) bool {
	if len(s) == 0 || len(s) > 15 || s == "." || s == ".." {
		return false
	}
	return !strings.ContainsAny(s, "/: \t\n")
}

func quote(v any) string {
	if s, ok := v.(string); ok {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprint(v)
}

func joinPresets() string {
	s := make([]string, len(evpn.Presets))
	for i, p := range evpn.Presets {
		s[i] = string(p)
	}
	return strings.Join(s, ", ")
}
