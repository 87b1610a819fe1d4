package store

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzOpen feeds arbitrary bytes to Open as state.json. Open must either
// refuse them with an error naming the file, or return a State that
// commits and reopens equal: anything Open accepts, Commit can write back.
func FuzzOpen(f *testing.F) {
	full := fullState()
	full.Sort()
	valid, err := encode(full)
	if err != nil {
		f.Fatal(err)
	}
	small, err := encode(crashState(3))
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		string(valid),
		string(small),
		string(valid[:len(valid)/3]),
		"",
		"{}",
		"null",
		`{"version": 1}`,
		`{"version": 2}`,
		`{"version": 1, "tenants": [null]}`,
		`{"version": 1, "tenants": [{"name": "b"}, {"name": "a", "advertiseConnected": true}]}`,
		`{"version": 1, "tenants": [{"name": "a"}, {"name": "a", "l3vni": 7}]}`,
		`{"version": 1, "VERSION": 1, "Tenants": [{"name": "x"}]}`,
		`{"version": 1, "policies": [{"tenant": "t", "meta": {"create_time": "1970-01-01T00:00:00.000000001Z"}}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, FileName)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(dir)
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("open error %q does not name %s", err, path)
			}
			return
		}
		st := s.State()
		if err := s.Commit(st); err != nil {
			t.Fatalf("commit of an opened state: %v", err)
		}
		again, err := Open(dir)
		if err != nil {
			t.Fatalf("reopen after commit: %v", err)
		}
		if got := again.State(); !got.Equal(st) {
			t.Fatalf("state changed across commit and reopen:\nopened %v\nreopened %v", st, got)
		}
	})
}
