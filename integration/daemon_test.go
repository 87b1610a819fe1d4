package integration

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pki writes a CA and certificates it signs, as PEM files in dir.
type pki struct {
	dir  string
	ca   *x509.Certificate
	key  *ecdsa.PrivateKey
	name string
}

func newPKI(t *testing.T, dir, name string) *pki {
	t.Helper()
	key := must2(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der := must2(x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key))
	p := &pki{dir: dir, ca: must2(x509.ParseCertificate(der)), key: key, name: name}
	writePEM(t, filepath.Join(dir, name+"-ca.pem"), "CERTIFICATE", der)
	return p
}

// issue writes <name>.pem and <name>-key.pem for a server (with an IP SAN)
// or a client certificate.
func (p *pki) issue(t *testing.T, name string, server bool) (cert, key string) {
	t.Helper()
	k := must2(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der := must2(x509.CreateCertificate(rand.Reader, tmpl, p.ca, &k.PublicKey, p.key))
	cert, key = filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+"-key.pem")
	writePEM(t, cert, "CERTIFICATE", der)
	writePEM(t, key, "PRIVATE KEY", must2(x509.MarshalPKCS8PrivateKey(k)))
	return cert, key
}

func (p *pki) caFile() string { return filepath.Join(p.dir, p.name+"-ca.pem") }

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func must2[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// notifications collects what evpnd sends to $NOTIFY_SOCKET.
func notifications(t *testing.T, path string) <-chan string {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	out := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				close(out)
				return
			}
			out <- string(buf[:n])
		}
	}()
	return out
}

func waitNotify(t *testing.T, ch <-chan string, want string) {
	t.Helper()
	deadline := time.After(converge)
	for {
		select {
		case m, ok := <-ch:
			if !ok {
				t.Fatalf("notify socket closed before %q", want)
			}
			if strings.Contains(m, want) {
				return
			}
		case <-deadline:
			t.Fatalf("evpnd never sent %q to NOTIFY_SOCKET", want)
		}
	}
}

// TestPrivilegedDaemonMTLSAndNotify runs bin/evpnd as systemd would run it
// (NOTIFY_SOCKET set) with its API on TCP behind mutual TLS, in a fresh
// namespace: it reports READY once serving, RELOADING and READY around a
// SIGHUP and STOPPING on SIGTERM; evpnctl with a client certificate from
// the configured CA works, one from another CA is refused.
func TestPrivilegedDaemonMTLSAndNotify(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	for _, b := range []string{"evpnd", "evpnctl"} {
		if _, err := os.Stat(filepath.Join("..", "bin", b)); err != nil {
			t.Skipf("bin/%s is missing: run make build", b)
		}
	}
	evpnd, _ := filepath.Abs("../bin/evpnd")
	evpnctl, _ := filepath.Abs("../bin/evpnctl")
	suffix := make([]byte, 3)
	rand.Read(suffix)
	ns := "evpndt-" + hex.EncodeToString(suffix)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() {
		// Tenants evpnd made are namespaces too: <ns>-<tenant>.
		out, _ := exec.Command("ip", "netns", "list").Output()
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], ns) {
				exec.Command("ip", "netns", "del", f[0]).Run()
			}
		}
	})
	if out, err := exec.Command("ip", "-n", ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}

	dir := t.TempDir()
	good, other := newPKI(t, dir, "good"), newPKI(t, dir, "other")
	srvCert, srvKey := good.issue(t, "server", true)
	cliCert, cliKey := good.issue(t, "client", false)
	badCert, badKey := other.issue(t, "intruder", false)
	conf := filepath.Join(dir, "evpnd.yaml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`router-id: 10.255.0.1
asn: 65000
vtep-address: 10.255.0.1
netns-prefix: %s-
bgp: {listen-port: -1}
api:
  listen: tcp://127.0.0.1:50051
  tls: {cert: %s, key: %s, client-ca: %s}
metrics: {listen: ""}
state-dir: %s
`, ns, srvCert, srvKey, good.caFile(), filepath.Join(dir, "state"))), 0o644); err != nil {
		t.Fatal(err)
	}
	notes := notifications(t, filepath.Join(dir, "notify"))
	var log bytes.Buffer
	cmd := exec.Command("nsenter", "--net=/run/netns/"+ns, evpnd, "--config", conf)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+filepath.Join(dir, "notify"))
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("evpnd log:\n%s", log.String())
		}
	})
	waitNotify(t, notes, "READY=1")

	ctl := func(cert, key string, args ...string) (string, error) {
		argv := append([]string{"--net=/run/netns/" + ns, evpnctl, "--addr", "127.0.0.1:50051",
			"--tls-cert", cert, "--tls-key", key, "--tls-ca", good.caFile(), "--timeout", "5s"}, args...)
		out, err := exec.Command("nsenter", argv...).CombinedOutput()
		return string(out), err
	}
	if out, err := ctl(cliCert, cliKey, "tenant", "create", "red"); err != nil {
		t.Fatalf("evpnctl with a good client certificate: %v: %s", err, out)
	}
	if out, err := ctl(badCert, badKey, "tenant", "create", "intruder"); err == nil {
		t.Fatalf("evpnctl with a certificate of another CA succeeded: %s", out)
	}
	out, err := ctl(cliCert, cliKey, "tenant", "list")
	if err != nil || !strings.Contains(out, "red") || strings.Contains(out, "intruder") {
		t.Fatalf("tenant list: %v: %s; want red and no intruder", err, out)
	}

	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitNotify(t, notes, "RELOADING=1")
	waitNotify(t, notes, "READY=1")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitNotify(t, notes, "STOPPING=1")
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Fatalf("evpnd exited with %v after SIGTERM, want status 0", err)
		}
	case <-time.After(converge):
		t.Fatal("evpnd did not stop after SIGTERM")
	}
}
