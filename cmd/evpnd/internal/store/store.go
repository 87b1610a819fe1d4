// Package store owns the persistence of API-created configuration objects
// (tenants, segments, ports, policies) in state-dir, so that every change
// the gRPC API acknowledged survives a crash, a kill -9 or a reboot.
//
// The whole State lives in one file, state-dir/state.json, replaced
// atomically on every Commit: write a temporary file in the same
// directory, fsync it, rename it over state.json, fsync the directory.
// A reader therefore sees either the previous file or the new one, never
// a mix, and once Commit returns nil the new file is durable. Objects
// created through the API are few (thousands at most) and change at human
// or orchestrator speed, so rewriting the whole file is simpler and safer
// than a log that needs compaction and its own recovery.
//
// # File format
//
// state.json is indented JSON with a trailing newline, so that an operator
// can read it with cat and diff two of them:
//
//	{
//	  "version": 1,
//	  "tenants": [ <evpnd.v1.Tenant>, ... ],
//	  "segments": [ <evpnd.v1.Segment>, ... ],
//	  "ports": [ <evpnd.v1.Port>, ... ],
//	  "policies": [ <evpnd.v1.Policy>, ... ]
//	}
//
// Each element is the protojson encoding of the API message with the
// proto field names as keys ("anycast_gateway_mac", as in the config
// file), so the file reads like the API's own JSON. Lists are sorted
// (tenants by name, segments by tenant then name, ports by interface,
// policies by tenant), so the same State always gives the same bytes.
//
// version is 1. A later format gets a new number; this code refuses any
// number it does not know, and refuses unknown keys and fields, rather than
// start with objects silently missing. Temporary files are named
// state.json.tmp-*; Open removes any left by an interrupted Commit.
package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	evpndv1 "github.com/evpnd/evpnd/api/evpnd/v1"
)

const (
	// FileName is the state file inside state-dir.
	FileName = "state.json"
	// Version is the file format this package writes and reads.
	Version = 1

	tempPrefix = FileName + ".tmp-"
)

// Store holds the committed State and the file it lives in.
type Store struct {
	dir  string
	path string

	mu    sync.Mutex
	state State    // committed: equal to the file on disk, sorted
	lock  *os.File // held by Lock

	// afterStep, when set by a test, runs after each step of a Commit's
	// file replacement, so a crash test can die at every one of them.
	afterStep func(step string)
}

// Steps of replace, in order, as passed to afterStep.
const (
	stepCreated   = "created"
	stepWritten   = "written"
	stepSynced    = "synced"
	stepClosed    = "closed"
	stepRenamed   = "renamed"
	stepDirSynced = "dir-synced"
)

func (s *Store) step(name string) {
	if s.afterStep != nil {
		s.afterStep(name)
	}
}

// Open opens (creating with mode 0700 if missing) dir and loads
// dir/state.json. A missing file is an empty State. A file that cannot be
// parsed, or has an unknown version, is an error naming the path and the
// problem: evpnd then refuses to start rather than silently drop objects.
// Leftover temporary files from an interrupted Commit are removed; they
// never hold an acknowledged change, since Commit acknowledges only after
// the rename.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir %s: %w", dir, err)
	}
	s := &Store{dir: dir, path: filepath.Join(dir, FileName)}
	if err := removeTemps(dir); err != nil {
		return nil, fmt.Errorf("state dir %s: %w", dir, err)
	}
	data, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", s.path, err)
	}
	st, err := decode(data)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", s.path, err)
	}
	// A hand-edited file may be out of order; State promises sorted lists.
	st.Sort()
	s.state = st
	return s, nil
}

// Path is dir/state.json.
func (s *Store) Path() string { return s.path }

// State returns a deep copy of the committed state.
func (s *Store) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state.Clone()
}

// Commit makes next the committed state, durably: it writes a temporary
// file in dir (mode 0600), fsyncs it, renames it over state.json, and
// fsyncs dir. Only then does the in-memory state change. Commit keeps its
// own sorted copy of next; the caller's value is not modified or retained.
//
// On any error the previous state stays committed in memory, the error
// says what failed, and the caller must not acknowledge the change. Up to
// the rename the file on disk is untouched too. If only the final fsync of
// dir fails, the new file is in place but may not survive a power loss;
// the change was not acknowledged, so either outcome is allowed, and the
// next successful Commit rewrites the whole file anyway.
//
// Commit is safe for concurrent use, though the daemon calls it from one
// goroutine.
func (s *Store) Commit(next State) error {
	if err := next.checkNil(); err != nil {
		return fmt.Errorf("commit %s: %w", s.path, err)
	}
	next = next.Clone()
	next.Sort()
	data, err := encode(next)
	if err != nil {
		return fmt.Errorf("commit %s: %w", s.path, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.replace(data); err != nil {
		return fmt.Errorf("commit %s: %w", s.path, err)
	}
	s.state = next
	return nil
}

// replace puts data in state.json atomically and durably.
func (s *Store) replace(data []byte) (err error) {
	// CreateTemp opens with mode 0600 and a name no one else uses, so two
	// processes racing on one dir cannot interleave writes into one file.
	f, err := os.CreateTemp(s.dir, tempPrefix+"*")
	if err != nil {
		return fmt.Errorf("create temporary file: %w", err)
	}
	tmp := f.Name()
	s.step(stepCreated)
	renamed := false
	defer func() {
		if !renamed {
			// Best effort: Open removes leftovers anyway.
			_ = os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	s.step(stepWritten)
	// Without this fsync the rename can reach the disk before the data,
	// and a power loss leaves an empty or partial state.json.
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	s.step(stepSynced)
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	s.step(stepClosed)
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	renamed = true
	s.step(stepRenamed)
	// The rename lives in the directory; until the directory is synced a
	// power loss can bring back the old state.json.
	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("sync directory %s after rename: %w", s.dir, err)
	}
	s.step(stepDirSynced)
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}

// removeTemps removes temporary files of interrupted Commits. They are
// never the committed state: Commit renames before it acknowledges.
func removeTemps(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), tempPrefix) || !e.Type().IsRegular() {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			errs = append(errs, fmt.Errorf("remove leftover temporary file: %w", err))
		}
	}
	return errors.Join(errs...)
}

// file is the on-disk layout of version 1.
type file struct {
	Version  int               `json:"version"`
	Tenants  []json.RawMessage `json:"tenants"`
	Segments []json.RawMessage `json:"segments"`
	Ports    []json.RawMessage `json:"ports"`
	Policies []json.RawMessage `json:"policies"`
}

var (
	marshalOptions   = protojson.MarshalOptions{UseProtoNames: true}
	unmarshalOptions = protojson.UnmarshalOptions{DiscardUnknown: false}
)

// encode returns the file bytes of st, which must be sorted.
func encode(st State) ([]byte, error) {
	f := file{Version: Version}
	var err error
	if f.Tenants, err = marshalAll("tenants", st.Tenants); err != nil {
		return nil, err
	}
	if f.Segments, err = marshalAll("segments", st.Segments); err != nil {
		return nil, err
	}
	if f.Ports, err = marshalAll("ports", st.Ports); err != nil {
		return nil, err
	}
	if f.Policies, err = marshalAll("policies", st.Policies); err != nil {
		return nil, err
	}
	// json.Marshal compacts the RawMessages, which drops the random
	// whitespace protojson inserts on purpose; Indent then lays the file
	// out the same way every time.
	compact, err := json.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	var buf bytes.Buffer
	buf.Grow(len(compact) * 2)
	if err := json.Indent(&buf, compact, "", "  "); err != nil {
		return nil, fmt.Errorf("indent: %w", err)
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

func marshalAll[M message](key string, in []M) ([]json.RawMessage, error) {
	// Never nil: an empty list is written as [], which reads better than
	// null and says the list is known to be empty.
	out := make([]json.RawMessage, 0, len(in))
	for i, m := range in {
		b, err := marshalOptions.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", key, i, err)
		}
		out = append(out, b)
	}
	return out, nil
}

// decode parses file bytes. It reads the version first, leniently, so
// that a file of a later format is reported as such rather than as a pile
// of unknown keys.
func decode(data []byte) (State, error) {
	var head struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return State{}, fmt.Errorf("not a state file: %w", err)
	}
	if head.Version == nil {
		return State{}, errors.New("version: missing")
	}
	if *head.Version != Version {
		return State{}, fmt.Errorf("version: %d is not supported (this evpnd reads version %d)", *head.Version, Version)
	}
	var f file
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return State{}, err
	}
	var st State
	var err error
	if st.Tenants, err = unmarshalAll[evpndv1.Tenant]("tenants", f.Tenants); err != nil {
		return State{}, err
	}
	if st.Segments, err = unmarshalAll[evpndv1.Segment]("segments", f.Segments); err != nil {
		return State{}, err
	}
	if st.Ports, err = unmarshalAll[evpndv1.Port]("ports", f.Ports); err != nil {
		return State{}, err
	}
	if st.Policies, err = unmarshalAll[evpndv1.Policy]("policies", f.Policies); err != nil {
		return State{}, err
	}
	return st, nil
}

func unmarshalAll[T any, M interface {
	*T
	proto.Message
}](key string, in []json.RawMessage) ([]M, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := make([]M, 0, len(in))
	for i, raw := range in {
		m := M(new(T))
		if err := unmarshalOptions.Unmarshal(raw, m); err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", key, i, err)
		}
		out = append(out, m)
	}
	return out, nil
}
