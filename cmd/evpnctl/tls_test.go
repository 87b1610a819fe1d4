package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	evpndv1 "github.com/evpnd/evpnd/api/evpnd/v1"
)

// testCA issues certificates for the mutual TLS test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "evpnctl test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a PEM certificate and key for name.
func (ca *testCA) issue(t *testing.T, name string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func TestMutualTLS(t *testing.T) {
	ca := newTestCA(t)
	serverCert, serverKey := ca.issue(t, "evpnd.test", x509.ExtKeyUsageServerAuth)
	clientCert, clientKey := ca.issue(t, "operator", x509.ExtKeyUsageClientAuth)
	dir := t.TempDir()
	files := map[string][]byte{"ca.pem": ca.pem, "client.pem": clientCert, "client.key": clientKey}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pair, err := tls.X509KeyPair(serverCert, serverKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(creds))
	s := newAPIServer()
	evpndv1.RegisterEvpndServiceServer(gs, s)
	done := make(chan struct{})
	go func() {
		defer close(done)
		gs.Serve(l)
	}()
	t.Cleanup(func() { gs.Stop(); <-done })

	env := map[string]string{
		addrEnv:    l.Addr().String(),
		tlsCertEnv: filepath.Join(dir, "client.pem"), tlsKeyEnv: filepath.Join(dir, "client.key"), tlsCAEnv: filepath.Join(dir, "ca.pem"),
	}
	stdout, stderr, code := evpnctl(env, "--tls-server-name", "evpnd.test", "tenant", "list")
	if code != exitOK || !strings.HasPrefix(stdout, "NAME ") || !strings.Contains(stdout, "blue") {
		t.Fatalf("tenant list over mTLS: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// The certificate is for evpnd.test, not 127.0.0.1.
	_, stderr, code = evpnctl(env, "tenant", "list")
	if code != exitError || !strings.HasPrefix(stderr, "evpnctl: TLS handshake with evpnd at "+l.Addr().String()+" failed: ") ||
		!strings.HasSuffix(stderr, "(check --tls-ca, --tls-cert, --tls-key and --tls-server-name)\n") {
		t.Errorf("wrong server name: exit %d, stderr %q", code, stderr)
	}
	// --socket on the command line wins over EVPNCTL_ADDR.
	missing := filepath.Join(dir, "none.sock")
	_, stderr, code = evpnctl(env, "--socket", missing, "tenant", "list")
	if code != exitError || !strings.Contains(stderr, "cannot reach evpnd at "+missing) {
		t.Errorf("--socket over %s: exit %d, stderr %q", addrEnv, code, stderr)
	}
	// Nothing listening.
	env[addrEnv] = "127.0.0.1:1"
	_, stderr, code = evpnctl(env, "tenant", "list")
	if want := "evpnctl: cannot reach evpnd at 127.0.0.1:1: connection refused: is evpnd running? (use --addr or EVPNCTL_ADDR for another address)\n"; code != exitError || stderr != want {
		t.Errorf("refused: exit %d, stderr %q, want %q", code, stderr, want)
	}
	env[tlsCAEnv] = filepath.Join(dir, "client.key")
	_, stderr, code = evpnctl(env, "tenant", "list")
	if code != exitUsage || !strings.Contains(stderr, "no PEM certificate in it") {
		t.Errorf("bad CA file: exit %d, stderr %q", code, stderr)
	}
}
