package config

import (
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"regexp"
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

	c.RTPreset = evpn.Preset(f.RTPreset)
	if !contains(evpn.Presets, c.RTPreset) {
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
			sc.Import = rts(s.RouteTargets.Import, sp+".route-targets.import", bad)
			sc.Export = rts(s.RouteTargets.Export, sp+".route-targets.export", bad)
			tc.Segments = append(tc.Segments, sc)
		}
		c.Tenants = append(c.Tenants, tc)
	}

	// api, state, log
	c.APIListen = f.API.Listen
	switch {
	case strings.HasPrefix(f.API.Listen, "unix://"):
		if p := strings.TrimPrefix(f.API.Listen, "unix://"); !filepath.IsAbs(p) {
			bad("api.listen", f.API.Listen, "must be unix:///absolute/path")
		}
	case strings.HasPrefix(f.API.Listen, "tcp://"):
		bad("api.listen", f.API.Listen, "is TCP: the API over TCP requires mutual TLS, which this version does not offer yet; use unix:///path")
	default:
		bad("api.listen", f.API.Listen, "must be unix:///absolute/path")
	}
	if !filepath.IsAbs(f.StateDir) {
		bad("state-dir", f.StateDir, "must be an absolute path")
	}
	c.StateDir = f.StateDir
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

func contains[T comparable](list []T, v T) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func joinPresets() string {
	s := make([]string, len(evpn.Presets))
	for i, p := range evpn.Presets {
		s[i] = string(p)
	}
	return strings.Join(s, ", ")
}
