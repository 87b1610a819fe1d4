package apiserver_test

import (
	"context"
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
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/evpnd/evpnd/cmd/evpnd/internal/apiserver"
)

// testCA is a certificate authority made for one test, its certificate in
// File.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	dir  string
	File string
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func serial(t *testing.T) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func writePEM(t *testing.T, path string, blocks ...*pem.Block) string {
	t.Helper()
	var b []byte
	for _, blk := range blocks {
		b = append(b, pem.EncodeToMemory(blk)...)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func keyBlock(t *testing.T, k *ecdsa.PrivateKey) *pem.Block {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return &pem.Block{Type: "PRIVATE KEY", Bytes: der}
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key := newKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	return &testCA{
		cert: cert, key: key, dir: dir,
		File: writePEM(t, filepath.Join(dir, name+".pem"), &pem.Block{Type: "CERTIFICATE", Bytes: der}),
	}
}

// issue signs a certificate for name: a server certificate valid for
// 127.0.0.1 and localhost, or a client certificate. It returns the PEM
// files of the certificate and its key.
func (ca *testCA) issue(t *testing.T, name string, server bool) (cert, key string) {
	t.Helper()
	k := newKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &k.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert = writePEM(t, filepath.Join(ca.dir, name+".pem"), &pem.Block{Type: "CERTIFICATE", Bytes: der})
	key = writePEM(t, filepath.Join(ca.dir, name+"-key.pem"), keyBlock(t, k))
	return cert, key
}

// tlsFixture is a CA with a server, a client it signed, and a client signed
// by another CA.
type tlsFixture struct {
	ca, otherCA               *testCA
	server                    apiserver.TLSFiles
	clientCert, clientKey     string
	strangerCert, strangerKey string
}

func newTLSFixture(t *testing.T) *tlsFixture {
	f := &tlsFixture{ca: newCA(t, "evpnd-test-ca"), otherCA: newCA(t, "other-ca")}
	cert, key := f.ca.issue(t, "evpnd-server", true)
	f.server = apiserver.TLSFiles{Cert: cert, Key: key, ClientCA: f.ca.File}
	f.clientCert, f.clientKey = f.ca.issue(t, "evpnctl-test", false)
	f.strangerCert, f.strangerKey = f.otherCA.issue(t, "stranger", false)
	return f
}

// serveTLS serves the gRPC health service on a tcp endpoint opened by
// apiserver.Open and returns its address and the common names of the
// client certificates the server verified, per call.
func serveTLS(t *testing.T, files *apiserver.TLSFiles) (addr string, callers func() []string) {
	t.Helper()
	ep, err := apiserver.Open("tcp://127.0.0.1:0", files)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var names []string
	record := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		p, _ := peer.FromContext(ctx)
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 {
			mu.Lock()
			names = append(names, ti.State.VerifiedChains[0][0].Subject.CommonName)
			mu.Unlock()
		}
		return handler(ctx, req)
	}
	srv := grpc.NewServer(append(ep.Options, grpc.UnaryInterceptor(record))...)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ep.Listener) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ep.Listener.Addr().String(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), names...)
	}
}

// check makes one health call to addr with creds.
func check(t *testing.T, addr string, creds credentials.TransportCredentials) (*healthpb.HealthCheckResponse, error) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A guard against hanging, not a measurement: every case below ends
	// in well under a second.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	return healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
}

func clientTLS(t *testing.T, cert, key, ca, serverName string) credentials.TransportCredentials {
	t.Helper()
	c, err := apiserver.ClientTLS(cert, key, ca, serverName)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// presentAlways is a client that sends its certificate whatever CAs the
// server asks for. Go clients otherwise send none when their certificate is
// not from an acceptable CA, which would test the missing-certificate case
// again rather than the server's verification.
func presentAlways(t *testing.T, cert, key string, roots *x509.CertPool) credentials.TransportCredentials {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return credentials.NewTLS(&tls.Config{
		RootCAs:              roots,
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil },
	})
}

func TestTLSAcceptsClientOfCA(t *testing.T) {
	f := newTLSFixture(t)
	addr, callers := serveTLS(t, &f.server)
	if !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
		t.Fatalf("listener address = %q, want 127.0.0.1 with the port picked for :0", addr)
	}
	for _, serverName := range []string{"", "localhost"} {
		resp, err := check(t, addr, clientTLS(t, f.clientCert, f.clientKey, f.ca.File, serverName))
		if err != nil {
			t.Fatalf("health check with server name %q: %v", serverName, err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health status = %v, want SERVING", resp.GetStatus())
		}
	}
	if got := callers(); len(got) != 2 || got[0] != "evpnctl-test" || got[1] != "evpnctl-test" {
		t.Errorf("verified callers = %q, want the client certificate's name twice", got)
	}
}

func TestTLSRejects(t *testing.T) {
	f := newTLSFixture(t)
	addr, callers := serveTLS(t, &f.server)
	roots := x509.NewCertPool()
	roots.AddCert(f.ca.cert)
	for _, tc := range []struct {
		name  string
		creds credentials.TransportCredentials
	}{
		{"no client certificate", credentials.NewTLS(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS13})},
		{"client certificate of another ca", presentAlways(t, f.strangerCert, f.strangerKey, roots)},
		{"plaintext", insecure.NewCredentials()},
		{"server name not in the server certificate", clientTLS(t, f.clientCert, f.clientKey, f.ca.File, "evpnd.example")},
		{"server certificate not signed by the trusted ca", clientTLS(t, f.clientCert, f.clientKey, f.otherCA.File, "")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := check(t, addr, tc.creds)
			if status.Code(err) != codes.Unavailable {
				t.Errorf("health check: err = %v, want code Unavailable (failed handshake)", err)
			}
		})
	}
	if got := callers(); len(got) != 0 {
		t.Errorf("the server answered calls from %q, want none", got)
	}
}

func TestTLSProtocol(t *testing.T) {
	f := newTLSFixture(t)
	addr, _ := serveTLS(t, &f.server)
	pair, err := tls.LoadX509KeyPair(f.clientCert, f.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(f.ca.cert)
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots, ServerName: "localhost", NextProtos: []string{"h2"}}

	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	st := c.ConnectionState()
	c.Close()
	if st.Version != tls.VersionTLS13 || st.NegotiatedProtocol != "h2" {
		t.Errorf("negotiated %s with ALPN %q, want TLS 1.3 with h2", tls.VersionName(st.Version), st.NegotiatedProtocol)
	}

	old := cfg.Clone()
	old.MaxVersion = tls.VersionTLS12
	if c, err := tls.Dial("tcp", addr, old); err == nil {
		c.Close()
		t.Error("a TLS 1.2 client completed the handshake, want it refused")
	}
}

func TestOpenTLSMaterialErrors(t *testing.T) {
	f := newTLSFixture(t)
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pem")
	_, otherKey := f.ca.issue(t, "other-server", true)
	keyOnly := writePEM(t, filepath.Join(dir, "key-only.pem"), keyBlock(t, newKey(t)))
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not pem\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badDER := writePEM(t, filepath.Join(dir, "bad-der.pem"), &pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}})
	with := func(edit func(*apiserver.TLSFiles)) *apiserver.TLSFiles {
		files := f.server
		edit(&files)
		return &files
	}
	for _, tc := range []struct {
		name  string
		files *apiserver.TLSFiles
		want  string
	}{
		{"missing certificate", with(func(x *apiserver.TLSFiles) { x.Cert = missing }),
			"certificate " + missing + ": unreadable: no such file or directory"},
		{"missing key", with(func(x *apiserver.TLSFiles) { x.Key = missing }),
			"key " + missing + ": unreadable: no such file or directory"},
		{"missing client ca", with(func(x *apiserver.TLSFiles) { x.ClientCA = missing }),
			"ca " + missing + ": unreadable: no such file or directory"},
		{"key of another certificate", with(func(x *apiserver.TLSFiles) { x.Key = otherKey }),
			"key " + otherKey + " does not match certificate " + f.server.Cert},
		{"client ca without certificates", with(func(x *apiserver.TLSFiles) { x.ClientCA = keyOnly }),
			"ca " + keyOnly + ": no certificate in PEM"},
		{"certificate file not pem", with(func(x *apiserver.TLSFiles) { x.Cert = garbage }),
			"certificate " + garbage + ": no certificate in PEM"},
		{"key file without a key", with(func(x *apiserver.TLSFiles) { x.Key = f.server.Cert }),
			"key " + f.server.Cert + ": no private key in PEM"},
		{"certificate that does not parse", with(func(x *apiserver.TLSFiles) { x.Cert = badDER }),
			"certificate " + badDER + ": certificate 1: x509:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ep, err := apiserver.Open("tcp://127.0.0.1:0", tc.files)
			if err == nil {
				ep.Listener.Close()
				t.Fatalf("Open succeeded, want error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open: %v, want error containing %q", err, tc.want)
			}
		})
	}
}

func TestClientTLSMaterialErrors(t *testing.T) {
	f := newTLSFixture(t)
	missing := filepath.Join(t.TempDir(), "missing.pem")
	if _, err := apiserver.ClientTLS(f.clientCert, f.strangerKey, f.ca.File, ""); err == nil ||
		!strings.Contains(err.Error(), "key "+f.strangerKey+" does not match certificate "+f.clientCert) {
		t.Errorf("ClientTLS with a foreign key: err = %v, want a key mismatch naming both files", err)
	}
	if _, err := apiserver.ClientTLS(f.clientCert, f.clientKey, missing, ""); err == nil ||
		!strings.Contains(err.Error(), "ca "+missing+": unreadable") {
		t.Errorf("ClientTLS with a missing ca: err = %v, want it to name the file", err)
	}
}
