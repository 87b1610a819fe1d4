package lab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Role is what the runner starts inside a node's namespace.
type Role string

// The node roles of a lab.
const (
	RoleEvpnd    Role = "evpnd"    // bin/evpnd with the node's bound evpnd.yaml
	RoleFRR      Role = "frr"      // FRR bgpd, with or without zebra
	RoleBridge   Role = "bridge"   // a namespace holding one Linux bridge
	RoleWorkload Role = "workload" // a plain namespace; exec only
)

// Labels a topology may set on a node to steer the runner. Real containerlab
// ignores them.
const (
	// LabelRole forces a node's role (evpnd, frr, bridge, workload) when its
	// image does not tell.
	LabelRole = "evpnd.role"
	// LabelFRRZebra set to "false" runs bgpd -Z alone (a pure route
	// reflector). FRR containers always run zebra, so the default is zebra +
	// bgpd; a bound daemons file cannot turn zebra off either.
	LabelFRRZebra = "evpnd.frr/zebra"
	// LabelCapabilities on an evpnd node runs evpnd with only these Linux
	// capabilities (comma-separated names without CAP_, e.g.
	// "net_admin,net_bind_service,sys_admin", the systemd unit's set);
	// the runner checks that the running evpnd has exactly them.
	LabelCapabilities = "evpnd.capabilities"
)

// Bind targets the runner looks for among a node's binds.
const (
	frrConfTarget   = "/etc/frr/frr.conf"
	evpndConfSuffix = "evpnd.yaml"
)

// maxIfName is IFNAMSIZ-1: the longest interface name Linux accepts.
const maxIfName = 15

// Topology is a parsed and validated containerlab topology.
type Topology struct {
	Name  string
	File  string // absolute path of the topology file
	Dir   string // directory binds are relative to
	Nodes []*Node
	Links []Link
}

// Node is one topology node with its kind defaults applied.
type Node struct {
	Name   string
	Kind   string
	Image  string
	Role   Role
	Binds  []Bind
	Exec   []string
	Labels map[string]string
	Env    map[string]string
}

// Bind is a containerlab bind "source:target[:mode]" with source resolved
// against the topology file's directory.
type Bind struct {
	Source string
	Target string
}

// Endpoint is one end of a link: a node and the interface name it gets there.
type Endpoint struct {
	Node      string
	Interface string
}

func (e Endpoint) String() string { return e.Node + ":" + e.Interface }

// Link is a point-to-point link between two endpoints.
type Link struct {
	A, B Endpoint
}

// Node returns the node called name, or nil.
func (t *Topology) Node(name string) *Node {
	for _, n := range t.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// BindFor returns the source of the bind whose target is target, or "".
func (n *Node) BindFor(target string) string {
	for _, b := range n.Binds {
		if b.Target == target {
			return b.Source
		}
	}
	return ""
}

// FRRConfig is the host path of the node's bound frr.conf.
func (n *Node) FRRConfig() string { return n.BindFor(frrConfTarget) }

// EvpndConfig is the host path of the node's bound evpnd config: the bind
// whose target ends in evpnd.yaml.
func (n *Node) EvpndConfig() string {
	for _, b := range n.Binds {
		if strings.HasSuffix(b.Target, evpndConfSuffix) {
			return b.Source
		}
	}
	return ""
}

// Capabilities is the node's LabelCapabilities as names, nil when unset.
func (n *Node) Capabilities() []string {
	v := strings.TrimSpace(n.Labels[LabelCapabilities])
	if v == "" {
		return nil
	}
	var out []string
	for _, c := range strings.Split(v, ",") {
		out = append(out, strings.ToLower(strings.TrimSpace(c)))
	}
	return out
}

// RunsZebra reports whether an FRR node runs zebra next to bgpd.
func (n *Node) RunsZebra() bool { return n.Labels[LabelFRRZebra] != "false" }

// The containerlab file as it is written; fields the runner does not use are
// ignored so that real containerlab files parse.
type clabFile struct {
	Name     string `yaml:"name"`
	Topology struct {
		Defaults clabNode            `yaml:"defaults"`
		Kinds    map[string]clabNode `yaml:"kinds"`
		Nodes    map[string]clabNode `yaml:"nodes"`
		Links    []struct {
			Endpoints []string `yaml:"endpoints"`
		} `yaml:"links"`
	} `yaml:"topology"`
}

type clabNode struct {
	Kind   string            `yaml:"kind"`
	Image  string            `yaml:"image"`
	Binds  []string          `yaml:"binds"`
	Exec   []string          `yaml:"exec"`
	Labels map[string]string `yaml:"labels"`
	Env    map[string]string `yaml:"env"`
}

var (
	nodeNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)
	ifNameRE   = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)
	labNameRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
)

// maxNodeName keeps "<labid>-<node>" and "<labid>-<node>-<tenant>" short
// enough to read in `ip netns` listings; namespace names themselves are not
// limited to 15 characters.
const maxNodeName = 32

// LoadTopology reads and validates a containerlab topology file.
func LoadTopology(path string) (*Topology, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("topology %s: %w", path, err)
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return nil, fmt.Errorf("read topology: %w", err)
	}
	t, err := ParseTopology(data, filepath.Dir(abs))
	if err != nil {
		return nil, fmt.Errorf("topology %s: %w", abs, err)
	}
	t.File = abs
	return t, nil
}

// ParseTopology parses and validates a containerlab topology; relative bind
// sources are resolved against dir. All problems found are returned joined,
// each naming its field path.
func ParseTopology(data []byte, dir string) (*Topology, error) {
	var f clabFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("parse yaml: %w", err)
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	t := &Topology{Name: f.Name, Dir: dir}
	switch {
	case f.Name == "":
		bad("name: missing")
	case !labNameRE.MatchString(f.Name):
		bad("name: %q has characters other than letters, digits, '_', '-', '.'", f.Name)
	}
	if len(f.Topology.Nodes) == 0 {
		bad("topology.nodes: no nodes")
	}

	names := make([]string, 0, len(f.Topology.Nodes))
	for name := range f.Topology.Nodes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		path := "topology.nodes." + name
		if !nodeNameRE.MatchString(name) || len(name) > maxNodeName {
			bad("%s: node name %q must be 1..%d letters, digits, '_' or '-'", path, name, maxNodeName)
			continue
		}
		n, err := buildNode(name, f.Topology.Nodes[name], f.Topology.Kinds, f.Topology.Defaults, dir)
		if err != nil {
			bad("%s: %w", path, err)
			continue
		}
		t.Nodes = append(t.Nodes, n)
	}

	type ifKey struct{ node, ifName string }
	used := make(map[ifKey]string)
	for i, l := range f.Topology.Links {
		path := fmt.Sprintf("topology.links[%d].endpoints", i)
		if len(l.Endpoints) != 2 {
			bad("%s: want 2 endpoints, have %d", path, len(l.Endpoints))
			continue
		}
		var eps [2]Endpoint
		ok := true
		for j, raw := range l.Endpoints {
			epPath := fmt.Sprintf("%s[%d]", path, j)
			ep, err := parseEndpoint(raw)
			if err != nil {
				bad("%s: %w", epPath, err)
				ok = false
				continue
			}
			if _, known := f.Topology.Nodes[ep.Node]; !known {
				bad("%s: %q names unknown node %q", epPath, raw, ep.Node)
				ok = false
				continue
			}
			k := ifKey{ep.Node, ep.Interface}
			if prev, dup := used[k]; dup {
				bad("%s: interface %q is already used by %s", epPath, raw, prev)
				ok = false
				continue
			}
			used[k] = epPath
			eps[j] = ep
		}
		if ok {
			t.Links = append(t.Links, Link{A: eps[0], B: eps[1]})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}

func parseEndpoint(raw string) (Endpoint, error) {
	node, ifName, found := strings.Cut(raw, ":")
	if !found || node == "" || ifName == "" || strings.Contains(ifName, ":") {
		return Endpoint{}, fmt.Errorf("%q is not \"node:interface\"", raw)
	}
	if !ifNameRE.MatchString(ifName) || len(ifName) > maxIfName {
		return Endpoint{}, fmt.Errorf("%q: interface name %q must be 1..%d characters of letters, digits, '_', '-', '.'", raw, ifName, maxIfName)
	}
	if ifName == "lo" {
		return Endpoint{}, fmt.Errorf("%q: interface name lo is reserved", raw)
	}
	return Endpoint{Node: node, Interface: ifName}, nil
}

// buildNode applies containerlab's inheritance: defaults, then the node's
// kind, then the node itself; maps merge key by key, lists are replaced.
func buildNode(name string, cn clabNode, kinds map[string]clabNode, defaults clabNode, dir string) (*Node, error) {
	kindName := cn.Kind
	if kindName == "" {
		kindName = defaults.Kind
	}
	if kindName == "" {
		return nil, errors.New("kind: missing")
	}
	layers := []clabNode{defaults, kinds[kindName], cn}
	n := &Node{Name: name, Kind: kindName, Labels: map[string]string{}, Env: map[string]string{}}
	var rawBinds []string
	for _, l := range layers {
		if l.Image != "" {
			n.Image = l.Image
		}
		if l.Binds != nil {
			rawBinds = l.Binds
		}
		if l.Exec != nil {
			n.Exec = l.Exec
		}
		for k, v := range l.Labels {
			n.Labels[k] = v
		}
		for k, v := range l.Env {
			n.Env[k] = v
		}
	}
	for i, raw := range rawBinds {
		parts := strings.Split(raw, ":")
		if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
			return nil, fmt.Errorf("binds[%d]: %q is not \"source:target[:mode]\"", i, raw)
		}
		src := parts[0]
		if !filepath.IsAbs(src) {
			src = filepath.Join(dir, src)
		}
		n.Binds = append(n.Binds, Bind{Source: src, Target: parts[1]})
	}
	role, err := nodeRole(n)
	if err != nil {
		return nil, err
	}
	n.Role = role
	switch role {
	case RoleFRR:
		if n.FRRConfig() == "" {
			return nil, fmt.Errorf("binds: an frr node needs a bind with target %s", frrConfTarget)
		}
	case RoleEvpnd:
		if n.EvpndConfig() == "" {
			return nil, fmt.Errorf("binds: an evpnd node needs a bind whose target ends in %s", evpndConfSuffix)
		}
	}
	return n, nil
}

func nodeRole(n *Node) (Role, error) {
	if r, ok := n.Labels[LabelRole]; ok {
		switch Role(r) {
		case RoleEvpnd, RoleFRR, RoleBridge, RoleWorkload:
			return Role(r), nil
		}
		return "", fmt.Errorf("labels.%s: %q is not one of evpnd, frr, bridge, workload", LabelRole, r)
	}
	switch {
	case n.Kind == "bridge":
		return RoleBridge, nil
	case strings.Contains(n.Image, "evpnd"):
		return RoleEvpnd, nil
	case strings.Contains(n.Image, "frrouting/frr"):
		return RoleFRR, nil
	}
	return RoleWorkload, nil
}
