package daemon

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	evpndv1 "github.com/evpnd/evpnd/api/evpnd/v1"
	"github.com/evpnd/evpnd/cmd/evpnd/internal/apiserver"
	"github.com/evpnd/evpnd/cmd/evpnd/internal/config"
	"github.com/evpnd/evpnd/cmd/evpnd/internal/store"
)

// request is work the event loop runs for an API call.
type request struct {
	run  func(ctx context.Context)
	done chan struct{}
}

// do runs fn in the event loop and waits for it. A caller that gives up
// waiting does not cancel fn: once started, a change completes.
func (d *Daemon) do(ctx context.Context, fn func(ctx context.Context)) error {
	r := request{run: fn, done: make(chan struct{})}
	select {
	case d.requests <- r:
	case <-ctx.Done():
		return apiserver.Errorf(codes.Canceled, "not started: %v", ctx.Err())
	}
	<-r.done
	return nil
}

// Change implements apiserver.Backend: it runs the change in the event
// loop.
func (d *Daemon) Change(ctx context.Context, c apiserver.Change) (proto.Message, bool, error) {
	var (
		out     proto.Message
		created bool
		err     error
	)
	if e := d.do(ctx, func(ctx context.Context) { out, created, err = d.change(ctx, c) }); e != nil {
		return nil, false, e
	}
	return out, created, err
}

// kindOf names an object's kind, its key and its field in API errors.
func kindOf(m proto.Message) (kind, key string) {
	switch o := m.(type) {
	case *evpndv1.Tenant:
		return "tenant", o.GetName()
	case *evpndv1.Segment:
		return "segment", o.GetTenant() + "/" + o.GetName()
	case *evpndv1.Port:
		return "port", o.GetInterface()
	case *evpndv1.Policy:
		return "policy", o.GetTenant()
	}
	return "", ""
}

func keyOf(m proto.Message) string { _, k := kindOf(m); return k }

func metaOf(m proto.Message) *evpndv1.Meta {
	switch o := m.(type) {
	case *evpndv1.Tenant:
		return o.GetMeta()
	case *evpndv1.Segment:
		return o.GetMeta()
	case *evpndv1.Port:
		return o.GetMeta()
	case *evpndv1.Policy:
		return o.GetMeta()
	}
	return nil
}

func setMeta(m proto.Message, meta *evpndv1.Meta) {
	switch o := m.(type) {
	case *evpndv1.Tenant:
		o.Meta = meta
	case *evpndv1.Segment:
		o.Meta = meta
	case *evpndv1.Port:
		o.Meta = meta
	case *evpndv1.Policy:
		o.Meta = meta
	}
}

// spec is m without Meta and output-only fields: what a client sets.
func spec(m proto.Message) proto.Message {
	m = proto.Clone(m)
	setMeta(m, nil)
	switch o := m.(type) {
	case *evpndv1.Tenant:
		o.Namespace = ""
	case *evpndv1.Segment:
		o.Ports = nil
	}
	return m
}

// list is the API list of kind in objs.
func list(objs *config.APIObjects, kind string) []proto.Message {
	var out []proto.Message
	switch kind {
	case "tenant":
		for _, o := range objs.Tenants {
			out = append(out, o)
		}
	case "segment":
		for _, o := range objs.Segments {
			out = append(out, o)
		}
	case "port":
		for _, o := range objs.Ports {
			out = append(out, o)
		}
	case "policy":
		for _, o := range objs.Policies {
			out = append(out, o)
		}
	}
	return out
}

// put replaces (or with add, appends) an object of objs.
func put(objs *config.APIObjects, m proto.Message) {
	key := keyOf(m)
	switch o := m.(type) {
	case *evpndv1.Tenant:
		objs.Tenants = upsert(objs.Tenants, o, key)
	case *evpndv1.Segment:
		objs.Segments = upsert(objs.Segments, o, key)
	case *evpndv1.Port:
		objs.Ports = upsert(objs.Ports, o, key)
	case *evpndv1.Policy:
		objs.Policies = upsert(objs.Policies, o, key)
	}
}

func upsert[T proto.Message](xs []T, x T, key string) []T {
	if i := slices.IndexFunc(xs, func(y T) bool { return keyOf(y) == key }); i >= 0 {
		xs[i] = x
		return xs
	}
	return append(xs, x)
}

func remove(objs *config.APIObjects, kind, key string) {
	match := func(m proto.Message) bool { return keyOf(m) == key }
	switch kind {
	case "tenant":
		objs.Tenants = slices.DeleteFunc(objs.Tenants, func(o *evpndv1.Tenant) bool { return match(o) })
	case "segment":
		objs.Segments = slices.DeleteFunc(objs.Segments, func(o *evpndv1.Segment) bool { return match(o) })
	case "port":
		objs.Ports = slices.DeleteFunc(objs.Ports, func(o *evpndv1.Port) bool { return match(o) })
	case "policy":
		objs.Policies = slices.DeleteFunc(objs.Policies, func(o *evpndv1.Policy) bool { return match(o) })
	}
}

func cloneObjects(o config.APIObjects) config.APIObjects {
	s := store.State(o).Clone()
	return config.APIObjects(s)
}

// change validates, persists and applies one API change, in the loop.
func (d *Daemon) change(ctx context.Context, c apiserver.Change) (proto.Message, bool, error) {
	kind, key := kindOf(c.Object)
	if kind == "" {
		return nil, false, apiserver.Errorf(codes.Internal, "change of unknown object %T", c.Object)
	}
	fileObjs := d.fileObjects()
	var inFile proto.Message
	for _, m := range list(&fileObjs, kind) {
		if keyOf(m) == key {
			inFile = m
		}
	}
	var stored proto.Message
	for _, m := range list(&d.api, kind) {
		if keyOf(m) == key {
			stored = m
		}
	}
	readOnly := func() error {
		return apiserver.Errorf(codes.FailedPrecondition,
			"%s %q is declared in the config file %s and is read-only through the API: change the file and reload evpnd (SIGHUP)",
			kind, key, d.source)
	}
	staleGen := func(gen int64) error {
		if c.Generation != 0 && c.Generation != gen {
			return apiserver.Errorf(codes.Aborted,
				"%s %q is at generation %d, not %d: it changed since it was read; read it again and retry", kind, key, gen, c.Generation)
		}
		return nil
	}

	next := cloneObjects(d.api)
	now := timestamppb.Now()
	var obj proto.Message
	created := false
	switch c.Op {
	case apiserver.OpCreate:
		if stored != nil || inFile != nil {
			cur := stored
			if cur == nil {
				cur = inFile
			}
			if proto.Equal(spec(cur), spec(c.Object)) {
				return d.view(kind, key), false, nil
			}
			if stored == nil {
				return nil, false, readOnly()
			}
			return nil, false, apiserver.Errorf(codes.AlreadyExists,
				"%s %q already exists with other settings (generation %d): update it instead", kind, key, metaOf(stored).GetGeneration())
		}
		obj = spec(c.Object)
		setMeta(obj, &evpndv1.Meta{Generation: 1, Source: evpndv1.Source_SOURCE_API, CreateTime: now, UpdateTime: now})
		put(&next, obj)
		created = true
	case apiserver.OpUpdate:
		if inFile != nil {
			return nil, false, readOnly()
		}
		if stored == nil {
			return nil, false, apiserver.Errorf(codes.NotFound, "%s %q not found: create it first", kind, key)
		}
		m := metaOf(stored)
		if err := staleGen(m.GetGeneration()); err != nil {
			return nil, false, err
		}
		if proto.Equal(spec(stored), spec(c.Object)) {
			return d.view(kind, key), false, nil
		}
		obj = spec(c.Object)
		setMeta(obj, &evpndv1.Meta{Generation: m.GetGeneration() + 1, Source: evpndv1.Source_SOURCE_API,
			CreateTime: m.GetCreateTime(), UpdateTime: now})
		put(&next, obj)
	case apiserver.OpDelete:
		if inFile != nil {
			return nil, false, readOnly()
		}
		if stored == nil {
			if c.AllowMissing {
				return nil, false, nil
			}
			return nil, false, apiserver.Errorf(codes.NotFound, "%s %q not found", kind, key)
		}
		if err := staleGen(metaOf(stored).GetGeneration()); err != nil {
			return nil, false, err
		}
		if err := d.dependents(kind, key); err != nil {
			return nil, false, err
		}
		remove(&next, kind, key)
	}
	s := store.State(next)
	s.Sort()
	next = config.APIObjects(s)

	// Validate with the changed object last, so a clash with another
	// object is reported on the one the caller sent.
	lastObjs := cloneObjects(next)
	if c.Op != apiserver.OpDelete {
		remove(&lastObjs, kind, key)
		put(&lastObjs, obj)
	}
	merged, place, probs := config.Merge(d.file, lastObjs)
	_, vprobs := merged.Validate()
	probs = append(probs, vprobs...)
	if len(probs) > 0 {
		fvs := translate(probs, merged, placeOf(place, kind, c.Object), kind)
		if c.Op == apiserver.OpDelete {
			msgs := make([]string, len(fvs))
			for i, fv := range fvs {
				msgs[i] = fv.Field + ": " + fv.Description
			}
			return nil, false, apiserver.Errorf(codes.FailedPrecondition, "deleting %s %q would leave the configuration invalid: %s",
				kind, key, strings.Join(msgs, "; "))
		}
		return nil, false, apiserver.InvalidObject(fvs)
	}
	merged, place, _ = config.Merge(d.file, next)
	cfg, probs := merged.Validate()
	if len(probs) > 0 {
		return nil, false, apiserver.Errorf(codes.Internal, "invariant broken: objects valid in one order are invalid in another: %v", probs)
	}
	if err := d.store.Commit(store.State(next)); err != nil {
		d.log.Error("api change not saved", "kind", kind, "key", key, "err", err)
		return nil, false, apiserver.Errorf(codes.Unavailable, "%s %q not saved, nothing changed: %v", kind, key, err)
	}
	old := d.cfg
	d.mu.Lock()
	d.api, d.merged, d.place, d.cfg = next, merged, place, cfg
	d.mu.Unlock()
	d.log.Info("api change", "op", c.Op.String(), "kind", kind, "key", key)
	d.reconcile(ctx, old, cfg)
	if c.Op == apiserver.OpDelete {
		return nil, false, nil
	}
	return d.view(kind, key), created, nil
}

// dependents refuses to delete an object others still hang on.
func (d *Daemon) dependents(kind, key string) error {
	var deps []string
	for _, t := range d.merged.Tenants {
		switch kind {
		case "tenant":
			if t.Name != key {
				continue
			}
			for _, s := range t.Segments {
				deps = append(deps, "segment "+t.Name+"/"+s.Name)
			}
		case "segment":
			for _, s := range t.Segments {
				if t.Name+"/"+s.Name == key {
					for _, p := range s.Ports {
						deps = append(deps, "port "+p)
					}
				}
			}
		}
	}
	if kind == "tenant" {
		for _, p := range d.merged.Policies {
			if p.Tenant == key {
				deps = append(deps, "policy "+key)
			}
		}
	}
	if len(deps) == 0 {
		return nil
	}
	return apiserver.Errorf(codes.FailedPrecondition, "%s %q is still used by %s: delete or detach those first",
		kind, key, strings.Join(deps, ", "))
}

func placeOf(p config.Placement, kind string, m proto.Message) string {
	switch o := m.(type) {
	case *evpndv1.Tenant:
		return p.Tenants[o.GetName()]
	case *evpndv1.Segment:
		return p.Segments[[2]string{o.GetTenant(), o.GetName()}]
	case *evpndv1.Port:
		return p.Ports[o.GetInterface()]
	case *evpndv1.Policy:
		return p.Policies[o.GetTenant()]
	}
	return ""
}

var pathRE = regexp.MustCompile(`(tenants|segments|policies)\[(\d+)\]`)

// humanize replaces indexes of the merged file by names:
// "tenants[2].segments[0]" -> "tenants[blue].segments[web]".
func humanize(s string, merged config.File) string {
	tenant := -1
	return pathRE.ReplaceAllStringFunc(s, func(m string) string {
		sub := pathRE.FindStringSubmatch(m)
		i, _ := strconv.Atoi(sub[2])
		switch sub[1] {
		case "tenants":
			if i < len(merged.Tenants) {
				tenant = i
				return "tenants[" + merged.Tenants[i].Name + "]"
			}
		case "segments":
			if tenant >= 0 && i < len(merged.Tenants[tenant].Segments) {
				return "segments[" + merged.Tenants[tenant].Segments[i].Name + "]"
			}
		case "policies":
			if i < len(merged.Policies) {
				return "policies[" + merged.Policies[i].Tenant + "]"
			}
		}
		return m
	})
}

// apiFieldNames maps the policy model's field names, which policy
// validation reports, to the API's.
var apiFieldNames = strings.NewReplacer(
	".target.portGroup", ".port_group", ".target.port", ".port", ".target.segment", ".segment", ".target", ".port",
	"addressGroups", "address_groups", "portGroups", "port_groups", "icmpTypes", "icmp_types",
	"remote.addressGroup", "remote.address_group", "floatingIPs", "floating_ips", "portForwards", "port_forwards",
	"egressRate", "egress.rate", "egressBurst", "egress.burst", "ingressRate", "ingress.rate", "ingressBurst", "ingress.burst",
	"internalPort", "internal_port",
)

// translate turns the merged file's problems into field violations of the
// object at prefix: its own fields as "<kind>.<field>", anything else by
// its humanized file path.
func translate(probs []string, merged config.File, prefix, kind string) []apiserver.FieldViolation {
	var out []apiserver.FieldViolation
	for _, s := range probs {
		p := config.SplitProblem(s)
		desc := humanize(p.Description, merged)
		switch {
		case p.Path == "":
			out = append(out, apiserver.FieldViolation{Field: kind, Description: desc})
		case prefix != "" && (p.Path == prefix || strings.HasPrefix(p.Path, prefix+".") || strings.HasPrefix(p.Path, prefix+"[")) &&
			!strings.HasPrefix(p.Path[len(prefix):], ".segments["):
			field := kind + apiFieldNames.Replace(config.APIField(p.Path[len(prefix):]))
			if kind == "port" {
				field = "port.interface"
			}
			out = append(out, apiserver.FieldViolation{Field: field, Description: desc})
		default:
			out = append(out, apiserver.FieldViolation{Field: humanize(p.Path, merged), Description: desc})
		}
	}
	return out
}

// fileObjects are the objects the config file declares, in API form.
func (d *Daemon) fileObjects() config.APIObjects {
	var o config.APIObjects
	for _, t := range d.file.Tenants {
		o.Tenants = append(o.Tenants, config.TenantToProto(t))
		for _, s := range t.Segments {
			o.Segments = append(o.Segments, config.SegmentToProto(t.Name, s))
			for _, p := range s.Ports {
				o.Ports = append(o.Ports, &evpndv1.Port{Interface: p, Tenant: t.Name, Segment: s.Name})
			}
		}
	}
	for _, p := range d.file.Policies {
		o.Policies = append(o.Policies, config.PolicyToProto(p))
	}
	return o
}

// Objects implements apiserver.Backend.
func (d *Daemon) Objects(context.Context) (config.APIObjects, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.objectsLocked(), nil
}

// objectsLocked lists every object with Meta and output-only fields.
func (d *Daemon) objectsLocked() config.APIObjects {
	cfgMeta := &evpndv1.Meta{Generation: 1, Source: evpndv1.Source_SOURCE_CONFIG,
		CreateTime: timestamppb.New(d.loaded), UpdateTime: timestamppb.New(d.loaded)}
	stored := map[string]*evpndv1.Meta{}
	for _, k := range []string{"tenant", "segment", "port", "policy"} {
		for _, m := range list(&d.api, k) {
			stored[k+" "+keyOf(m)] = metaOf(m)
		}
	}
	meta := func(kind, key string) *evpndv1.Meta {
		if m, ok := stored[kind+" "+key]; ok {
			return proto.Clone(m).(*evpndv1.Meta)
		}
		return proto.Clone(cfgMeta).(*evpndv1.Meta)
	}
	var o config.APIObjects
	ns := d.cfg.NetnsPrefix
	for _, t := range d.merged.Tenants {
		pt := config.TenantToProto(t)
		pt.Namespace = ns + t.Name
		pt.Meta = meta("tenant", t.Name)
		o.Tenants = append(o.Tenants, pt)
		for _, s := range t.Segments {
			ps := config.SegmentToProto(t.Name, s)
			ps.Meta = meta("segment", t.Name+"/"+s.Name)
			o.Segments = append(o.Segments, ps)
			for _, p := range s.Ports {
				o.Ports = append(o.Ports, &evpndv1.Port{Interface: p, Tenant: t.Name, Segment: s.Name, Meta: meta("port", p)})
			}
		}
	}
	for _, p := range d.merged.Policies {
		pp := config.PolicyToProto(p)
		pp.Meta = meta("policy", p.Tenant)
		o.Policies = append(o.Policies, pp)
	}
	return o
}

// view is one object as Objects lists it.
func (d *Daemon) view(kind, key string) proto.Message {
	d.mu.RLock()
	o := d.objectsLocked()
	d.mu.RUnlock()
	for _, m := range list(&o, kind) {
		if keyOf(m) == key {
			return m
		}
	}
	panic(fmt.Sprintf("invariant: %s %q was just stored but is not listed", kind, key))
}
