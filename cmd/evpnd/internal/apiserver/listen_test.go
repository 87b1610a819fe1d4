package apiserver_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/evpnd/evpnd/cmd/evpnd/internal/apiserver"
)

func TestOpenUnix(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "evpnd.sock")
	ep, err := apiserver.Open("unix://"+sock, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Listener.Close()
	if len(ep.Options) != 0 {
		t.Errorf("unix endpoint has %d server options, want none: its mode is the access control", len(ep.Options))
	}
	fi, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, want a socket with 0600", fi.Mode())
	}
}

func TestOpenRejects(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "evpnd.sock")
	files := &apiserver.TLSFiles{Cert: "/c.pem", Key: "/k.pem", ClientCA: "/ca.pem"}
	for _, tc := range []struct {
		addr  string
		files *apiserver.TLSFiles
		want  string
	}{
		{"tcp://127.0.0.1:0", nil, "mutual TLS is required"},
		{"unix://" + sock, files, "tls applies only to tcp://"},
		{"tcp://127.0.0.1", files, "want tcp://host:port"},
		{"tcp://127.0.0.1:http", files, `port "http" is not a number`},
		{"tcp://127.0.0.1:70000", files, `port "70000" is not a number`},
		{"tcp://127.0.0.1:0", files, "api tls: certificate /c.pem: unreadable"},
		{"udp://127.0.0.1:1", files, `scheme "udp" is not supported`},
	} {
		ep, err := apiserver.Open(tc.addr, tc.files)
		if err == nil {
			ep.Listener.Close()
			t.Errorf("Open(%q) succeeded, want error containing %q", tc.addr, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%q) = %v, want error containing %q", tc.addr, err, tc.want)
		}
	}
	if _, err := os.Lstat(sock); err == nil {
		t.Error("Open made a unix socket although it refused the address")
	}
}
