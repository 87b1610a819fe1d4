package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// readmeYAML returns the yaml blocks of the repository README.
func readmeYAML(f *testing.F) [][]byte {
	b, err := os.ReadFile("../../../../README.md")
	if err != nil {
		f.Fatalf("readme: %v", err)
	}
	var out [][]byte
	for _, part := range bytes.Split(b, []byte("```yaml\n"))[1:] {
		if end := bytes.Index(part, []byte("```")); end >= 0 {
			out = append(out, part[:end])
		}
	}
	if len(out) == 0 {
		f.Fatal("readme has no yaml example")
	}
	return out
}

// FuzzLoad writes arbitrary bytes as a config file: Load never panics,
// refuses with an *Error listing at least one problem or returns a config,
// and gives the same answer twice.
func FuzzLoad(f *testing.F) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		f.Fatalf("testdata: %v (%d files)", err, len(files))
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, b := range readmeYAML(f) {
		f.Add(b)
	}
	f.Add([]byte(""))
	f.Add([]byte("router-id: 10.0.0.1\nasn: 65001\nvtep-address: 10.0.0.1\n"))
	f.Add([]byte("asn: -1\ntenants: {name: x}\n"))
	f.Add([]byte("peers: [{address: 10.0.0.2, asn: 99999999999}]\n"))
	f.Add([]byte("tenants: [{name: a, segments: [{name: s, vni: 16777216}]}]\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Add([]byte("\t- :\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "evpnd.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(path, nil)
		cfg2, err2 := Load(path, nil)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("refusal is a %T, want *config.Error: %v", err, err)
			}
			if len(ce.Problems) == 0 {
				t.Fatalf("refusal lists no problem: %v", err)
			}
			if cfg != nil {
				t.Fatalf("refusal came with a config: %+v", cfg)
			}
			if err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("second load differs:\n %v\n %v", err, err2)
			}
			return
		}
		if cfg == nil {
			t.Fatal("no config and no error")
		}
		if err2 != nil {
			t.Fatalf("second load refused what the first accepted: %v", err2)
		}
		if !reflect.DeepEqual(cfg, cfg2) {
			t.Fatalf("second load differs:\n %+v\n %+v", cfg, cfg2)
		}
	})
}
