package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoad10kTenants loads a config of 10,000 tenants, each with a segment
// and a port, and refuses the same config with one VNI clash, naming only
// that clash: a large config is neither too slow to matter nor reported
// as a flood of problems.
func TestLoad10kTenants(t *testing.T) {
	var b strings.Builder
	b.WriteString("router-id: 10.0.0.1\nasn: 65000\nvtep-address: 10.0.0.1\ntenants:\n")
	for i := 0; i < 10000; i++ {
		fmt.Fprintf(&b, "  - name: t%05d\n    segments:\n      - {name: s, vni: %d, ports: [p%05d]}\n", i, 1000+i, i)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(good, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Tenants) != 10000 || len(cfg.Segments()) != 10000 {
		t.Fatalf("%d tenants, %d segments; want 10000 each", len(cfg.Tenants), len(cfg.Segments()))
	}
	bad := filepath.Join(dir, "bad.yaml")
	clash := strings.Replace(b.String(), "vni: 10999,", "vni: 1000,", 1)
	if err := os.WriteFile(bad, []byte(clash), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad, nil)
	cerr, ok := err.(*Error)
	if !ok || len(cerr.Problems) != 1 || !strings.Contains(cerr.Problems[0], "tenants[9999].segments[0].vni: 1000 is already used by tenants[0].segments[0]") {
		t.Fatalf("got %v; want exactly the one VNI clash", err)
	}
}
