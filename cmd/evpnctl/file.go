package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Input files are YAML or JSON (JSON is YAML) with the config file's keys
// (anycast-gateway-mac) or the API's (anycast_gateway_mac): the API's field
// names are the config keys with '-' for '_'. The file is checked against
// the message's descriptor first, so a problem names its path and line the
// way evpnd's config errors do, then decoded by protojson.

// readInput reads -f FILE, "-" being stdin, and returns the name to use in
// messages.
func readInput(name string, in io.Reader) ([]byte, string, error) {
	if name == "-" {
		b, err := io.ReadAll(in)
		if err != nil {
			return nil, "", fmt.Errorf("reading stdin: %w", err)
		}
		return b, "(stdin)", nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, "", inputError{fmt.Errorf("reading -f: %w", err)}
	}
	return b, name, nil
}

// fileProblems is every problem found in an input file, one per line.
type fileProblems struct {
	file     string
	problems []string
}

func (p *fileProblems) add(n *yaml.Node, path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	p.problems = append(p.problems, fmt.Sprintf("%s:%d: %s", p.file, n.Line, msg))
}

func (p *fileProblems) err() error {
	if len(p.problems) == 0 {
		return nil
	}
	return inputError{fmt.Errorf("%s", strings.Join(p.problems, "\n"))}
}

// schema says how a file's keys map to messages beyond their fields.
type schema struct {
	// refused are keys a message may not have here, with the hint that
	// says what to do instead.
	refused map[protoreflect.FullName]map[string]string
	// lists are keys that are not fields of a message but lists of
	// another message, such as a config tenant's segments.
	lists map[protoreflect.FullName]map[string]protoreflect.MessageDescriptor
}

// parseYAML parses a file into its top node; an empty file is refused.
func parseYAML(data []byte, file string) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, inputError{fmt.Errorf("%s: %s", file, strings.TrimPrefix(err.Error(), "yaml: "))}
	}
	if len(doc.Content) == 0 {
		return nil, inputError{fmt.Errorf("%s: the file is empty", file)}
	}
	return resolve(doc.Content[0]), nil
}

func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// keyName is a file key as the API spells it.
func keyName(k string) string { return strings.ReplaceAll(k, "-", "_") }

// configKey is an API field name as the config file spells it.
func configKey(name string) string { return strings.ReplaceAll(name, "_", "-") }

// message converts a mapping node to the JSON value of md, with the
// API's field names.
func (s schema) message(n *yaml.Node, md protoreflect.MessageDescriptor, path string, p *fileProblems) map[string]any {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		p.add(n, path, "want a mapping of %s's keys, got %s", md.Name(), describe(n))
		return nil
	}
	out := map[string]any{}
	seen := map[string]string{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolve(n.Content[i+1])
		name := keyName(k.Value)
		sub := k.Value
		if path != "" {
			sub = path + "." + k.Value
		}
		if prev, ok := seen[name]; ok {
			p.add(k, sub, "given twice (also as %s)", prev)
			continue
		}
		seen[name] = k.Value
		if hint, ok := s.refused[md.FullName()][name]; ok {
			if hint == "" {
				p.add(k, path, "unknown field %q", k.Value)
			} else {
				p.add(k, path, "field %q is not allowed here: %s", k.Value, hint)
			}
			continue
		}
		if item, ok := s.lists[md.FullName()][name]; ok {
			if isNull(v) {
				continue
			}
			if v.Kind != yaml.SequenceNode {
				p.add(v, sub, "want a list, got %s", describe(v))
				continue
			}
			var items []any
			for j, it := range v.Content {
				items = append(items, s.message(it, item, fmt.Sprintf("%s[%d]", sub, j), p))
			}
			out[name] = items
			continue
		}
		fd := md.Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			p.add(k, path, "unknown field %q (want %s)", k.Value, fieldList(s, md))
			continue
		}
		if isNull(v) {
			continue
		}
		if val, ok := s.field(v, fd, sub, p); ok {
			out[name] = val
		}
	}
	return out
}

// fieldList names the keys md takes, as the config file spells them.
func fieldList(s schema, md protoreflect.MessageDescriptor) string {
	var names []string
	for i := 0; i < md.Fields().Len(); i++ {
		name := string(md.Fields().Get(i).Name())
		if _, refused := s.refused[md.FullName()][name]; !refused {
			names = append(names, configKey(name))
		}
	}
	for name := range s.lists[md.FullName()] {
		names = append(names, configKey(name))
	}
	slices.Sort(names)
	return "one of: " + strings.Join(names, ", ")
}

// field converts a value node to the JSON value of fd. A single value
// where a list is wanted is a list of one, as in the config file
// ("gateway: 10.1.0.1/24").
func (s schema) field(n *yaml.Node, fd protoreflect.FieldDescriptor, path string, p *fileProblems) (any, bool) {
	if fd.IsMap() {
		p.add(n, path, "map fields are not supported in files")
		return nil, false
	}
	if fd.IsList() {
		items := []*yaml.Node{n}
		if n.Kind == yaml.SequenceNode {
			items = n.Content
		}
		out := []any{}
		ok := true
		for i, it := range items {
			sub := path
			if n.Kind == yaml.SequenceNode {
				sub = fmt.Sprintf("%s[%d]", path, i)
			}
			v, good := s.single(resolve(it), fd, sub, p)
			ok = ok && good
			out = append(out, v)
		}
		return out, ok
	}
	return s.single(n, fd, path, p)
}

func (s schema) single(n *yaml.Node, fd protoreflect.FieldDescriptor, path string, p *fileProblems) (any, bool) {
	if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
		switch fd.Message().FullName() {
		case "google.protobuf.Timestamp", "google.protobuf.Duration":
			if n.Kind != yaml.ScalarNode {
				p.add(n, path, "want a %s, got %s", fd.Message().Name(), describe(n))
				return nil, false
			}
			return n.Value, true
		}
		m := s.message(n, fd.Message(), path, p)
		return m, m != nil
	}
	if n.Kind != yaml.ScalarNode || isNull(n) {
		p.add(n, path, "want a single value, got %s", describe(n))
		return nil, false
	}
	v := n.Value
	switch fd.Kind() {
	case protoreflect.StringKind, protoreflect.BytesKind:
		// Any scalar: ports: [80, 443] means the strings, as in the config
		// file.
		return v, true
	case protoreflect.BoolKind:
		b, err := strconv.ParseBool(v)
		if err != nil || n.ShortTag() == "!!int" {
			p.add(n, path, "want true or false, got %q", v)
			return nil, false
		}
		return b, true
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByName(protoreflect.Name(v)); ev != nil {
			return v, true
		}
		p.add(n, path, "%q is not a %s", v, fd.Enum().Name())
		return nil, false
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return parseInt(n, path, 32, p)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return parseInt(n, path, 64, p)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return parseUint(n, path, 32, p)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return parseUint(n, path, 64, p)
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			p.add(n, path, "want a number, got %q", v)
			return nil, false
		}
		return f, true
	}
	p.add(n, path, "unsupported field kind %s", fd.Kind())
	return nil, false
}

func parseInt(n *yaml.Node, path string, bits int, p *fileProblems) (any, bool) {
	i, err := strconv.ParseInt(n.Value, 0, bits)
	if err != nil {
		p.add(n, path, "want a whole number of %d bits, got %q", bits, n.Value)
		return nil, false
	}
	return i, true
}

func parseUint(n *yaml.Node, path string, bits int, p *fileProblems) (any, bool) {
	u, err := strconv.ParseUint(n.Value, 0, bits)
	if err != nil {
		p.add(n, path, "want a whole number 0..%d, got %q", uint64(1)<<bits-1, n.Value)
		return nil, false
	}
	return u, true
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	if isNull(n) {
		return "nothing"
	}
	return strconv.Quote(n.Value)
}

// unmarshal fills m from the JSON value a schema produced.
func unmarshal(v map[string]any, m proto.Message, file string) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(raw, m); err != nil {
		// The schema check above leaves protojson little to refuse; what
		// it does is the file's fault.
		return inputError{fmt.Errorf("%s: %s", file, strings.TrimPrefix(err.Error(), "proto: "))}
	}
	return nil
}

// applyHint is what to do with a file of several objects.
const applyHint = "a file with tenants: and policies: is applied with 'evpnctl apply -f'"

// objectSchema is the schema of a single-object file (create -f, update
// -f): the API's fields, with a hint where the config file's form differs.
var objectSchema = schema{refused: map[protoreflect.FullName]map[string]string{
	"evpnd.v1.Tenant": {
		"segments": "create segments with 'evpnctl segment create' or write the tenant in a file for 'evpnctl apply -f'",
		"tenants":  applyHint, "policies": applyHint,
	},
	"evpnd.v1.Segment": {"tenants": applyHint, "policies": applyHint},
	"evpnd.v1.Policy":  {"tenants": applyHint, "policies": applyHint},
}}

// readObject reads a single object of m's type from -f FILE.
func readObject(name string, in io.Reader, m proto.Message) (string, error) {
	data, file, err := readInput(name, in)
	if err != nil {
		return "", err
	}
	n, err := parseYAML(data, file)
	if err != nil {
		return "", err
	}
	p := &fileProblems{file: file}
	v := objectSchema.message(n, m.ProtoReflect().Descriptor(), "", p)
	if err := p.err(); err != nil {
		return "", err
	}
	return file, unmarshal(v, m, file)
}
