package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunExitCodes(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, []byte("router-id: 10.0.0.1\nasn: 65001\nvtep-address: 10.0.0.1\ntenants: [{name: blue, segments: [{name: web, vni: 100}]}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("router-id: 10.0.0.1\nasn: 65001\nvtep-address: 10.0.0.1\npeers: [{address: 10.0.0.254, asn: 65000, colour: blue}]\ntenants: [{name: blue, segments: [{name: web, vni: 16777216}]}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr []string
	}{
		{"check good", []string{"--check", "--config", good}, 0, "configuration is valid (0 peers, 1 tenants)", nil},
		{"check bad", []string{"--check", "--config", bad}, 2, "", []string{
			"peers[0].colour: unknown key",
			"tenants[0].segments[0].vni: 16777216 is out of range 1..16777215",
		}},
		{"run bad never starts", []string{"--config", bad}, 2, "", []string{"2 problem(s)"}},
		{"missing file", []string{"--check", "--config", filepath.Join(dir, "nope.yaml")}, 2, "", []string{"nope.yaml"}},
		{"stray argument", []string{good}, 2, "", []string{"did you mean --config"}},
		{"unknown flag", []string{"--colour"}, 2, "", []string{"unknown flag: --colour"}},
		{"flag override checked", []string{"--check", "--config", good, "--log-level", "loud"}, 2, "", []string{`log.level: "loud"`}},
		{"version", []string{"--version"}, 0, "evpnd dev", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), tc.args, &out, &errb)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, errb.String())
			}
			if !strings.Contains(out.String(), tc.stdout) {
				t.Errorf("stdout %q lacks %q", out.String(), tc.stdout)
			}
			for _, s := range tc.stderr {
				if !strings.Contains(errb.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, errb.String())
				}
			}
		})
	}
}
