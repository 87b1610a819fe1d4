// Package config owns evpnd's configuration: the file format (YAML through
// viper, with EVPND_* environment and flag overrides), defaults, and
// validation that reports every problem with its path, value and rule
// before anything is applied.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/evpnd/evpnd/bgp"
	"github.com/evpnd/evpnd/evpn"
	"github.com/evpnd/evpnd/fabric"
	"github.com/evpnd/evpnd/policy"
)

// File is the configuration as written: the keys lab tooling and operators
// rely on, spelled exactly so.
type File struct {
	RouterID    string      `mapstructure:"router-id"`
	ASN         uint32      `mapstructure:"asn"`
	VTEPAddress string      `mapstructure:"vtep-address"`
	NetnsPrefix string      `mapstructure:"netns-prefix"`
	RTPreset    string      `mapstructure:"rt-preset"`
	RouterMAC   string      `mapstructure:"router-mac"`
	AnycastMAC  string      `mapstructure:"anycast-gateway-mac"`
	BGP         BGPFile     `mapstructure:"bgp"`
	Peers       []PeerFile  `mapstructure:"peers"`
	Tenants     []TenantDef `mapstructure:"tenants"`
	Policies    []PolicyDef `mapstructure:"policies"`
	API         APIFile     `mapstructure:"api"`
	Metrics     MetricsFile `mapstructure:"metrics"`
	StateDir    string      `mapstructure:"state-dir"`
	// RepairInterval is in seconds; 0 turns drift repair off.
	RepairInterval  int     `mapstructure:"repair-interval"`
	DupDetection    DupFile `mapstructure:"mac-duplicate-detection"`
	Log             LogFile `mapstructure:"log"`
	GracefulRestart GRFile  `mapstructure:"graceful-restart"`
}

// GRFile is graceful-restart (RFC 4724), for every peer: restart-time is
// how many seconds peers keep this host's routes after its session ends
// without a NOTIFICATION (a restart signal, a crash).
type GRFile struct {
	Enabled     bool `mapstructure:"enabled"`
	RestartTime int  `mapstructure:"restart-time"`
}

// BGPFile is the bgp section.
type BGPFile struct {
	ListenAddresses []string `mapstructure:"listen-addresses"`
	ListenPort      int      `mapstructure:"listen-port"`
}

// PeerFile is one entry of peers.
type PeerFile struct {
	Address           string `mapstructure:"address"`
	ASN               uint32 `mapstructure:"asn"`
	Port              int    `mapstructure:"port"`
	Password          string `mapstructure:"password"`
	HoldTime          int    `mapstructure:"hold-time"`
	KeepaliveInterval int    `mapstructure:"keepalive-interval"`
	Description       string `mapstructure:"description"`
	TTLSecurity       int    `mapstructure:"ttl-security"`
	MaxPrefixes       int    `mapstructure:"max-prefixes"`
	Passive           bool   `mapstructure:"passive"`
}

// TenantDef is one entry of tenants.
type TenantDef struct {
	Name               string       `mapstructure:"name"`
	L3VNI              uint32       `mapstructure:"l3vni"`
	AnycastMAC         string       `mapstructure:"anycast-gateway-mac"`
	AdvertiseConnected *bool        `mapstructure:"advertise-connected"`
	Routes             []RouteDef   `mapstructure:"routes"`
	RouteTargets       RTFile       `mapstructure:"route-targets"`
	Segments           []SegmentDef `mapstructure:"segments"`
}

// RouteDef is one static route of a routed tenant.
type RouteDef struct {
	Prefix string `mapstructure:"prefix"`
	Via    string `mapstructure:"via"`
}

// SegmentDef is one entry of a tenant's segments.
type SegmentDef struct {
	Name         string   `mapstructure:"name"`
	VNI          uint32   `mapstructure:"vni"`
	Ports        []string `mapstructure:"ports"`
	MTU          int      `mapstructure:"mtu"`
	Gateway      []string `mapstructure:"gateway"`
	RouteTargets RTFile   `mapstructure:"route-targets"`
}

// RTFile is a segment's explicit route targets.
type RTFile struct {
	Import []string `mapstructure:"import"`
	Export []string `mapstructure:"export"`
}

// APIFile is the api section.
type APIFile struct {
	Listen string     `mapstructure:"listen"`
	TLS    APITLSFile `mapstructure:"tls"`
}

// APITLSFile is api.tls: the server certificate and the CA that client
// certificates must chain to. Required with a tcp:// listen address.
type APITLSFile struct {
	Cert     string `mapstructure:"cert"`
	Key      string `mapstructure:"key"`
	ClientCA string `mapstructure:"client-ca"`
}

// DupFile is mac-duplicate-detection (RFC 7432 s15.1): a MAC that moves
// max-moves times within window seconds is frozen until cleared.
type DupFile struct {
	MaxMoves int `mapstructure:"max-moves"`
	Window   int `mapstructure:"window"`
}

// MetricsFile is the metrics section.
type MetricsFile struct {
	// Listen is host:port of the Prometheus endpoint; empty serves none.
	Listen string `mapstructure:"listen"`
}

// APITLS is the API's mutual TLS material (files, PEM).
type APITLS struct {
	Cert, Key, ClientCA string
}

// LogFile is the log section.
type LogFile struct {
	Level  string `mapstructure:"level"`
	Format string `mapstructure:"format"`
}

// Config is a validated configuration in typed values.
type Config struct {
	RouterID    netip.Addr
	ASN         uint32
	VTEP        netip.Addr
	NetnsPrefix string
	RTPreset    evpn.Preset
	RouterMAC   net.HardwareAddr
	BGP         bgp.Config
	Tenants     []Tenant
	Policies    []policy.Policy
	APIListen   string
	// APITLS is set when APIListen is tcp://.
	APITLS        APITLS
	MetricsListen string
	StateDir      string
	// RepairInterval is how often state changed behind evpnd's back is
	// put back; 0 never.
	RepairInterval time.Duration
	// DupMaxMoves 0 turns duplicate MAC detection off.
	DupMaxMoves int
	DupWindow   time.Duration
	LogLevel    slog.Level
	LogFormat   string
}

// Tenant is a validated tenant.
type Tenant struct {
	Name     string
	Segments []Segment
	// L3 is set for a routed tenant (l3vni configured).
	L3 *TenantL3
}

// TenantL3 is a validated routed tenant.
type TenantL3 struct {
	VNI                evpn.VNI
	AnycastMAC         net.HardwareAddr
	AdvertiseConnected bool
	Routes             []Route
	Import, Export     []evpn.RT
}

// Route is a validated static route.
type Route struct {
	Prefix netip.Prefix
	Via    netip.Addr
}

// Segment is a validated segment.
type Segment struct {
	Name     string
	VNI      evpn.VNI
	Ports    []string
	MTU      int
	Gateways []netip.Prefix
	Import   []evpn.RT
	Export   []evpn.RT
}

// Defaults, also the documented ones.
const (
	DefaultNetnsPrefix = "evpn-"
	DefaultRTPreset    = evpn.PresetFRR
	DefaultListenPort  = 179
	DefaultAPIListen   = "unix:///run/evpnd/evpnd.sock"
	DefaultStateDir    = "/var/lib/evpnd"
	// DefaultMetricsListen keeps /metrics on loopback unless asked.
	DefaultMetricsListen = "127.0.0.1:9469"
	// DefaultRepairInterval bounds how long a hand-made change to evpnd's
	// kernel or nftables state lasts.
	DefaultRepairInterval = 30
	// DefaultAnycastMAC is the distributed gateway MAC every host answers
	// with (locally administered); set anycast-gateway-mac to the value
	// the rest of the fabric uses.
	DefaultAnycastMAC = "02:00:00:00:00:01"
)

// Error is a refused configuration: every problem found, each one line
// "path: value: rule".
type Error struct {
	Source   string
	Problems []string
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "config %s: %d problem(s):", e.Source, len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p)
	}
	return b.String()
}

// Flags registers the flags that override config keys.
func Flags(fs *pflag.FlagSet) {
	fs.String("router-id", "", "BGP router ID (config key router-id)")
	fs.Uint32("asn", 0, "local AS number (config key asn)")
	fs.String("vtep-address", "", "VXLAN source address on the underlay (config key vtep-address)")
	fs.String("netns-prefix", "", "tenant namespace prefix (config key netns-prefix)")
	fs.String("api-listen", "", "API endpoint, unix:///path or tcp://host:port with mTLS (config key api.listen)")
	fs.String("metrics-listen", "", "Prometheus /metrics host:port (config key metrics.listen)")
	fs.String("state-dir", "", "state directory (config key state-dir)")
	fs.String("log-level", "", "debug, info, warn or error (config key log.level)")
	fs.String("log-format", "", "text or json (config key log.format)")
}

var flagKeys = map[string]string{
	"router-id": "router-id", "asn": "asn", "vtep-address": "vtep-address",
	"netns-prefix": "netns-prefix", "api-listen": "api.listen", "state-dir": "state-dir", "metrics-listen": "metrics.listen",
	"log-level": "log.level", "log-format": "log.format",
}

// Load reads path (may be empty: environment and flags only), applies
// EVPND_* environment variables and the flags that were set, and validates.
// A refused configuration is an *Error.
func Load(path string, fs *pflag.FlagSet) (*Config, error) {
	f, err := Read(path, fs)
	if err != nil {
		return nil, err
	}
	return f.Check(SourceName(path))
}

// SourceName is how errors name the configuration's origin.
func SourceName(path string) string {
	if path == "" {
		return "(environment)"
	}
	return path
}

// Check validates f, reporting every problem as an *Error from source.
func (f File) Check(source string) (*Config, error) {
	cfg, problems := f.Validate()
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, &Error{Source: source, Problems: slices.Compact(problems)}
	}
	return cfg, nil
}

// Read reads path with the environment and flag overrides into a File,
// refusing unknown keys and values of the wrong type (an *Error); the
// values themselves are checked by Validate.
func Read(path string, fs *pflag.FlagSet) (File, error) {
	v := viper.New()
	v.SetEnvPrefix("EVPND")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_", "-", "_"))
	v.AutomaticEnv()
	v.SetDefault("router-id", "")
	v.SetDefault("asn", 0)
	v.SetDefault("vtep-address", "")
	v.SetDefault("netns-prefix", DefaultNetnsPrefix)
	v.SetDefault("rt-preset", string(DefaultRTPreset))
	v.SetDefault("router-mac", "")
	v.SetDefault("anycast-gateway-mac", DefaultAnycastMAC)
	v.SetDefault("bgp.listen-addresses", []string{})
	v.SetDefault("bgp.listen-port", DefaultListenPort)
	v.SetDefault("api.listen", DefaultAPIListen)
	v.SetDefault("metrics.listen", DefaultMetricsListen)
	v.SetDefault("state-dir", DefaultStateDir)
	v.SetDefault("repair-interval", DefaultRepairInterval)
	v.SetDefault("mac-duplicate-detection.max-moves", evpn.DefaultDupMaxMoves)
	v.SetDefault("mac-duplicate-detection.window", int(evpn.DefaultDupWindow/time.Second))
	v.SetDefault("graceful-restart.enabled", true)
	v.SetDefault("graceful-restart.restart-time", int(bgp.DefaultRestartTime/time.Second))
	v.SetDefault("log.level", "info")
	v.SetDefault("log.format", "text")
	source := SourceName(path)
	if path != "" {
		v.SetConfigFile(path)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return File{}, &Error{Source: source, Problems: []string{fmt.Sprintf("cannot read: %v", err)}}
		}
	}
	if fs != nil {
		for flag, key := range flagKeys {
			if f := fs.Lookup(flag); f != nil && f.Changed {
				if err := v.BindPFlag(key, f); err != nil {
					return File{}, fmt.Errorf("flag %s: %w", flag, err)
				}
			}
		}
	}

	var problems []string
	problems = append(problems, unknownKeys("", v.AllSettings(), reflect.TypeOf(File{}))...)
	var f File
	err := v.Unmarshal(&f, func(dc *mapstructure.DecoderConfig) {
		// Environment values are strings; weak typing lets EVPND_ASN=65001
		// decode while "vni: abc" is still refused.
		dc.WeaklyTypedInput = true
		dc.ErrorUnused = false // unknown keys are reported above, with their paths
	})
	if err != nil {
		problems = append(problems, decodeProblems(err)...)
	}
	if len(problems) > 0 {
		// Report the values' problems too, so one run lists everything.
		_, vp := f.Validate()
		problems = append(problems, vp...)
		sort.Strings(problems)
		return File{}, &Error{Source: source, Problems: slices.Compact(problems)}
	}
	return f, nil
}

// decodeProblems flattens mapstructure's joined errors into one line each.
func decodeProblems(err error) []string {
	var out []string
	var de *mapstructure.DecodeError
	if errors.As(err, &de) {
		return []string{fmt.Sprintf("%s: %v", de.Name(), de.Unwrap())}
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "*"))
		if line == "" || strings.HasPrefix(line, "decoding failed") {
			continue
		}
		out = append(out, strings.TrimSpace(line))
	}
	return out
}

// unknownKeys walks the settings against File's mapstructure tags and
// reports every key the schema does not have, with its path.
func unknownKeys(prefix string, val any, t reflect.Type) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []string
	switch t.Kind() {
	case reflect.Struct:
		m, ok := val.(map[string]any)
		if !ok {
			return nil // a type error, reported by the decoder
		}
		fields := map[string]reflect.Type{}
		for i := 0; i < t.NumField(); i++ {
			fields[t.Field(i).Tag.Get("mapstructure")] = t.Field(i).Type
		}
		for k, sub := range m {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			ft, ok := fields[k]
			if !ok {
				out = append(out, fmt.Sprintf("%s: unknown key", p))
				continue
			}
			out = append(out, unknownKeys(p, sub, ft)...)
		}
	case reflect.Slice:
		items, ok := val.([]any)
		if !ok {
			return nil
		}
		for i, it := range items {
			out = append(out, unknownKeys(fmt.Sprintf("%s[%d]", prefix, i), it, t.Elem())...)
		}
	}
	return out
}

// Fabric is the datapath's view of the configuration.
func (c *Config) Fabric() fabric.Config {
	fc := fabric.Config{NetnsPrefix: c.NetnsPrefix, VTEP: c.VTEP}
	for _, t := range c.Tenants {
		ft := fabric.Tenant{Name: t.Name}
		for _, s := range t.Segments {
			fs := fabric.Segment{Name: s.Name, VNI: s.VNI, MTU: s.MTU, Ports: s.Ports, Gateways: s.Gateways}
			if len(s.Gateways) > 0 && t.L3 != nil {
				fs.GatewayMAC = t.L3.AnycastMAC
			}
			ft.Segments = append(ft.Segments, fs)
		}
		for _, p := range c.Policies {
			if p.Tenant == t.Name && p.NAT != nil {
				ft.Uplink = &fabric.Uplink{Interface: p.NAT.Interface, Address: p.NAT.Address,
					Gateway: p.NAT.Gateway, Public: p.PublicAddresses()}
			}
		}
		if t.L3 != nil {
			l3 := &fabric.TenantL3{VNI: t.L3.VNI, RouterMAC: c.RouterMAC}
			for _, r := range t.L3.Routes {
				l3.Routes = append(l3.Routes, fabric.StaticRoute{Prefix: r.Prefix, Via: r.Via})
			}
			ft.L3 = l3
		}
		fc.Tenants = append(fc.Tenants, ft)
	}
	return fc
}

// rdIndexes assigns every VNI of this host (L2 and L3) the index of its RD
// <router-id>:<index>. Indexes are stable for a given set of VNIs: each VNI
// takes its low 16 bits unless a lower VNI of this host took them first.
func (c *Config) rdIndexes() map[evpn.VNI]uint16 {
	var vnis []evpn.VNI
	for _, t := range c.Tenants {
		if t.L3 != nil {
			vnis = append(vnis, t.L3.VNI)
		}
		for _, s := range t.Segments {
			vnis = append(vnis, s.VNI)
		}
	}
	slices.Sort(vnis)
	used := map[uint16]bool{}
	idx := make(map[evpn.VNI]uint16, len(vnis))
	for _, v := range vnis {
		i := uint16(v)
		for used[i] {
			i++
		}
		used[i] = true
		idx[v] = i
	}
	return idx
}

// L3 derives the routed side of every routed tenant: RD, RTs, router MAC
// and the prefixes this host routes itself (gateway subnets, static routes).
func (c *Config) L3() []evpn.L3 {
	idx := c.rdIndexes()
	var out []evpn.L3
	for _, t := range c.Tenants {
		if t.L3 == nil {
			continue
		}
		out = append(out, evpn.NewL3(c.RouterID, c.ASN, c.RTPreset, idx[t.L3.VNI], t.Name, t.L3.VNI,
			t.L3.Import, t.L3.Export, c.RouterMAC, c.LocalPrefixes(t)))
	}
	return out
}

// LocalPrefixes are the prefixes this host routes for tenant t: its gateway
// subnets and its static routes.
func (c *Config) LocalPrefixes(t Tenant) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range t.Segments {
		for _, g := range s.Gateways {
			out = append(out, g.Masked())
		}
	}
	if t.L3 != nil {
		for _, r := range t.L3.Routes {
			out = append(out, r.Prefix)
		}
	}
	return out
}

// Segments derives the EVPN segments (RD, RTs, and the routed side of
// their tenant) of the configuration.
func (c *Config) Segments() []evpn.Segment {
	idx := c.rdIndexes()
	l3 := map[string]*evpn.L3{}
	for _, l := range c.L3() {
		l3[l.Tenant] = &l
	}
	var out []evpn.Segment
	for _, t := range c.Tenants {
		for _, s := range t.Segments {
			seg := evpn.NewSegment(c.RouterID, c.ASN, c.RTPreset, idx[s.VNI], t.Name, s.Name, s.VNI, s.Import, s.Export)
			seg.L3 = l3[t.Name]
			out = append(out, seg)
		}
	}
	slices.SortFunc(out, func(a, b evpn.Segment) int { return int(a.VNI) - int(b.VNI) })
	return out
}

// seconds is a config duration in whole seconds.
func seconds(n int) time.Duration { return time.Duration(n) * time.Second }
