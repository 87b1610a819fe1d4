package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	evpndv1 "github.com/evpnd/evpnd/api/evpnd/v1"
)

// jsonOptions keep the JSON stable for scripts: proto field names, and
// every scalar and list present even when empty, so a key never vanishes.
var jsonOptions = protojson.MarshalOptions{UseProtoNames: true, EmitDefaultValues: true}

// writeJSON writes {"<key>": [rows...]} indented. protojson's own
// whitespace is deliberately unstable, so it is normalised here.
func writeJSON[M proto.Message](w io.Writer, key string, rows []M) error {
	raw, err := keyedJSON(key, rows)
	if err != nil {
		return err
	}
	return writeIndented(w, raw)
}

// writeRows writes the {"<key>": [rows...]} of the show commands as JSON or
// YAML, or returns false for a table.
func writeRows[M proto.Message](w io.Writer, output, key string, rows []M) (bool, error) {
	switch output {
	case "json":
		return true, writeJSON(w, key, rows)
	case "yaml":
		raw, err := keyedJSON(key, rows)
		if err != nil {
			return true, err
		}
		return true, writeYAML(w, raw)
	}
	return false, nil
}

func keyedJSON[M proto.Message](key string, rows []M) ([]byte, error) {
	items, err := jsonList(rows)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", key, err)
	}
	raw, err := json.Marshal(map[string]json.RawMessage{key: items})
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", key, err)
	}
	return raw, nil
}

// jsonList is rows as one JSON array.
func jsonList[M proto.Message](rows []M) ([]byte, error) {
	items := make([]json.RawMessage, len(rows))
	for i, r := range rows {
		b, err := jsonOptions.Marshal(r)
		if err != nil {
			return nil, err
		}
		items[i] = b
	}
	return json.Marshal(items)
}

// writeList writes the objects of a resource list as a JSON or YAML list,
// or returns false for a table.
func writeList[M proto.Message](w io.Writer, output string, rows []M) (bool, error) {
	if output != "json" && output != "yaml" {
		return false, nil
	}
	raw, err := jsonList(rows)
	if err != nil {
		return true, fmt.Errorf("encoding the list: %w", err)
	}
	if output == "yaml" {
		return true, writeYAML(w, raw)
	}
	return true, writeIndented(w, raw)
}

// writeObject writes one object as JSON or YAML, or returns false for a
// table.
// showOne prints one object: whole with -o json|yaml, else as a table row.
func showOne[T proto.Message](w io.Writer, output string, obj T, table func(io.Writer, []T) error) error {
	if ok, err := writeObject(w, output, obj); ok {
		return err
	}
	return table(w, []T{obj})
}

func writeObject(w io.Writer, output string, m proto.Message) (bool, error) {
	if output != "json" && output != "yaml" {
		return false, nil
	}
	raw, err := jsonOptions.Marshal(m)
	if err != nil {
		return true, fmt.Errorf("encoding %s: %w", m.ProtoReflect().Descriptor().Name(), err)
	}
	if output == "yaml" {
		return true, writeYAML(w, raw)
	}
	return true, writeIndented(w, raw)
}

// writeJSONLine writes m as one compact line: JSON Lines, for watch.
func writeJSONLine(w io.Writer, m proto.Message) error {
	raw, err := jsonOptions.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", m.ProtoReflect().Descriptor().Name(), err)
	}
	var out bytes.Buffer
	if err := json.Compact(&out, raw); err != nil {
		return fmt.Errorf("encoding %s: %w", m.ProtoReflect().Descriptor().Name(), err)
	}
	out.WriteByte('\n')
	_, err = w.Write(out.Bytes())
	return err
}

func writeIndented(w io.Writer, raw []byte) error {
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", "  "); err != nil {
		return fmt.Errorf("encoding json: %w", err)
	}
	out.WriteByte('\n')
	_, err := w.Write(out.Bytes())
	return err
}

// writeYAML writes JSON as block-style YAML with the keys in the same
// order; JSON is YAML, so it is parsed as a node tree and its JSON styling
// dropped. Strings that would read as another type stay quoted.
func writeYAML(w io.Writer, raw []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("encoding yaml: %w", err)
	}
	var plain func(n *yaml.Node)
	plain = func(n *yaml.Node) {
		n.Style = 0
		for _, c := range n.Content {
			plain(c)
		}
	}
	plain(&doc)
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return fmt.Errorf("encoding yaml: %w", err)
	}
	return enc.Close()
}

// table writes aligned columns, two spaces apart, like kubectl.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)}
	t.row(header...)
	return t
}

// row writes one line; an empty cell reads "-" so columns stay readable.
func (t *table) row(cells ...string) {
	for i, c := range cells {
		if c == "" {
			cells[i] = "-"
		}
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

func peersTable(w io.Writer, peers []*evpndv1.Peer) error {
	t := newTable(w, "NEIGHBOR", "AS", "STATE", "UP/DOWN", "RECEIVED", "ACCEPTED", "ADVERTISED", "DESCRIPTION")
	for _, p := range peers {
		t.row(p.GetAddress(), u64(uint64(p.GetAsn())), enumName(p.GetState().String(), "PEER_STATE_"),
			uptime(p.GetUptime().AsDuration()), u64(p.GetReceived()), u64(p.GetAccepted()), u64(p.GetAdvertised()),
			p.GetDescription())
	}
	return t.flush()
}

func routesTable(w io.Writer, routes []*evpndv1.Route) error {
	t := newTable(w, "TYPE", "ROUTE", "NEXT HOP", "VNI", "ROUTE TARGETS", "ATTRIBUTES", "FROM")
	for _, r := range routes {
		labels := r.GetLabels()
		if pmsi := r.GetPmsiTunnel(); len(labels) == 0 && pmsi != nil {
			labels = []uint32{pmsi.GetLabel()}
		}
		vnis := make([]string, len(labels))
		for i, l := range labels {
			vnis[i] = u64(uint64(l))
		}
		from := r.GetPeer()
		if r.GetLocal() {
			from = "local"
		}
		t.row(typeName(r.GetType()), r.GetNlri(), r.GetNextHop(), strings.Join(vnis, ","),
			strings.Join(r.GetRouteTargets(), ","), routeAttributes(r), from)
	}
	return t.flush()
}

func typeName(t evpndv1.RouteType) string {
	for name, rt := range routeTypes {
		if rt == t {
			return name
		}
	}
	return enumName(t.String(), "ROUTE_TYPE_")
}

// routeAttributes summarises the path attributes that matter when reading
// EVPN: encapsulation, router MAC, MAC mobility, PMSI tunnel.
func routeAttributes(r *evpndv1.Route) string {
	var a []string
	if e := r.GetEncapsulation(); e != evpndv1.Encapsulation_ENCAPSULATION_UNSPECIFIED {
		a = append(a, enumName(e.String(), "ENCAPSULATION_"))
	}
	if m := r.GetRouterMac(); m != "" {
		a = append(a, "rmac="+m)
	}
	if mm := r.GetMacMobility(); mm != nil {
		a = append(a, "seq="+u64(uint64(mm.GetSequence())))
		if mm.GetSticky() {
			a = append(a, "sticky")
		}
	}
	if p := r.GetPmsiTunnel(); p != nil {
		typ := enumName(p.GetType().String(), "PMSI_TUNNEL_TYPE_")
		if p.GetType() == evpndv1.PmsiTunnelType_PMSI_TUNNEL_TYPE_INGRESS_REPLICATION {
			typ = "ir"
		}
		a = append(a, "pmsi="+typ+":"+p.GetEndpoint())
	}
	return strings.Join(a, " ")
}

func macsTable(w io.Writer, macs []*evpndv1.Mac) error {
	t := newTable(w, "TENANT", "VNI", "MAC", "PORT", "VTEP", "TYPE")
	for _, m := range macs {
		typ := "local"
		if m.GetRemote() {
			typ = "remote"
		}
		t.row(m.GetTenant(), u64(uint64(m.GetVni())), m.GetMac(), m.GetPort(), m.GetVtep(), typ)
	}
	return t.flush()
}

func tenantRoutesTable(w io.Writer, routes []*evpndv1.TenantRoute) error {
	t := newTable(w, "TENANT", "PREFIX", "NEXT HOPS", "DEVICE", "PROTOCOL")
	for _, r := range routes {
		t.row(r.GetTenant(), r.GetPrefix(), strings.Join(r.GetNextHops(), ","), r.GetDevice(),
			enumName(r.GetProtocol().String(), "ROUTE_PROTOCOL_"))
	}
	return t.flush()
}

// enumName is an enum value's name without its prefix, in lower case with
// dashes: PEER_STATE_ESTABLISHED -> established.
func enumName(name, prefix string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(name, prefix)), "_", "-")
}

func u64(n uint64) string { return strconv.FormatUint(n, 10) }

// uptime reads like FRR's peer up/down column: hh:mm:ss under a day,
// then 1d02h03m, then 1w2d03h.
func uptime(d time.Duration) string {
	s := int64(d / time.Second)
	const day, week = 24 * 3600, 7 * 24 * 3600
	switch {
	case s < day:
		return fmt.Sprintf("%02d:%02d:%02d", s/3600, s%3600/60, s%60)
	case s < week:
		return fmt.Sprintf("%dd%02dh%02dm", s/day, s%day/3600, s%3600/60)
	}
	return fmt.Sprintf("%dw%dd%02dh", s/week, s%week/day, s%day/3600)
}

// source is where an object is declared: config or api.
func source(m *evpndv1.Meta) string {
	return enumName(m.GetSource().String(), "SOURCE_")
}

func generation(m *evpndv1.Meta) string {
	if m.GetGeneration() == 0 {
		return ""
	}
	return strconv.FormatInt(m.GetGeneration(), 10)
}

// nonZero is n, or "" (shown as "-") for 0, a field left to its default.
func nonZero(n uint64) string {
	if n == 0 {
		return ""
	}
	return u64(n)
}

func tenantsTable(w io.Writer, tenants []*evpndv1.Tenant) error {
	t := newTable(w, "NAME", "L3VNI", "NAMESPACE", "SOURCE", "GEN")
	for _, x := range tenants {
		t.row(x.GetName(), nonZero(uint64(x.GetL3Vni())), x.GetNamespace(), source(x.GetMeta()), generation(x.GetMeta()))
	}
	return t.flush()
}

func segmentsTable(w io.Writer, segments []*evpndv1.Segment) error {
	t := newTable(w, "TENANT", "NAME", "VNI", "MTU", "GATEWAYS", "PORTS", "SOURCE", "GEN")
	for _, s := range segments {
		mtu := ""
		if s.GetMtu() > 0 {
			mtu = strconv.Itoa(int(s.GetMtu()))
		}
		t.row(s.GetTenant(), s.GetName(), u64(uint64(s.GetVni())), mtu, strings.Join(s.GetGateway(), ","),
			strings.Join(s.GetPorts(), ","), source(s.GetMeta()), generation(s.GetMeta()))
	}
	return t.flush()
}

func portsTable(w io.Writer, ports []*evpndv1.Port) error {
	t := newTable(w, "INTERFACE", "TENANT", "SEGMENT", "SOURCE", "GEN")
	for _, p := range ports {
		t.row(p.GetInterface(), p.GetTenant(), p.GetSegment(), source(p.GetMeta()), generation(p.GetMeta()))
	}
	return t.flush()
}

func policiesTable(w io.Writer, policies []*evpndv1.Policy) error {
	t := newTable(w, "TENANT", "RULES", "GROUPS", "NAT", "QOS", "SOURCE", "GEN")
	for _, p := range policies {
		nat := "no"
		if p.GetNat() != nil {
			nat = "yes"
		}
		t.row(p.GetTenant(), strconv.Itoa(len(p.GetRules())), strconv.Itoa(len(p.GetAddressGroups())+len(p.GetPortGroups())),
			nat, strconv.Itoa(len(p.GetQos())), source(p.GetMeta()), generation(p.GetMeta()))
	}
	return t.flush()
}

func countersTable(w io.Writer, counters []*evpndv1.PolicyCounter) error {
	t := newTable(w, "TENANT", "RULE", "PACKETS", "BYTES")
	for _, c := range counters {
		t.row(c.GetTenant(), c.GetRule(), u64(c.GetPackets()), u64(c.GetBytes()))
	}
	return t.flush()
}

func neighborsTable(w io.Writer, neighbors []*evpndv1.Neighbor) error {
	t := newTable(w, "TENANT", "VNI", "IP", "MAC", "ORIGIN", "STATE")
	for _, n := range neighbors {
		origin := "local"
		if n.GetRemote() {
			origin = "remote"
		}
		t.row(n.GetTenant(), u64(uint64(n.GetVni())), n.GetIp(), n.GetMac(), origin, n.GetState())
	}
	return t.flush()
}
