package apiserver

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"google.golang.org/grpc/credentials"
)

// TLSFiles are the server certificate/key and the CA bundle client
// certificates must chain to. All are PEM files.
type TLSFiles struct{ Cert, Key, ClientCA string }

// minTLS is TLS 1.3 rather than 1.2 with a suite list: the API's clients
// are evpnctl and orchestrators built on current gRPC stacks, which all
// speak 1.3, and 1.3 has no weak suites to exclude, always has forward
// secrecy and encrypts the client certificate, which names the caller.
const minTLS = tls.VersionTLS13

// serverTLS is the server side of the API's mutual TLS: only clients whose
// certificate chains to files.ClientCA complete the handshake.
func serverTLS(files *TLSFiles) (*tls.Config, error) {
	cert, err := loadKeyPair(files.Cert, files.Key)
	if err != nil {
		return nil, err
	}
	cas, err := loadCAs(files.ClientCA)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   minTLS,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    cas,
		NextProtos:   []string{"h2"},
	}, nil
}

// ClientTLS builds client credentials from a client cert/key and the CA
// that signed the server's certificate; serverName overrides the name
// checked (empty: the host of the address dialled).
func ClientTLS(cert, key, ca, serverName string) (credentials.TransportCredentials, error) {
	pair, err := loadKeyPair(cert, key)
	if err != nil {
		return nil, err
	}
	cas, err := loadCAs(ca)
	if err != nil {
		return nil, err
	}
	// An empty ServerName is filled in by gRPC from the dialled authority.
	return credentials.NewTLS(&tls.Config{
		MinVersion:   minTLS,
		Certificates: []tls.Certificate{pair},
		RootCAs:      cas,
		ServerName:   serverName,
		NextProtos:   []string{"h2"},
	}), nil
}

// loadKeyPair reads a certificate chain (leaf first) and its private key.
// It does what tls.LoadX509KeyPair does, with errors that say which file is
// wrong and how.
func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	chain, err := readCerts(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate %s: %w", certFile, err)
	}
	key, err := readKey(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("key %s: %w", keyFile, err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(chain[0].PublicKey) {
		return tls.Certificate{}, fmt.Errorf("key %s does not match certificate %s", keyFile, certFile)
	}
	pair := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		pair.Certificate = append(pair.Certificate, c.Raw)
	}
	return pair, nil
}

// loadCAs reads a bundle of CA certificates.
func loadCAs(file string) (*x509.CertPool, error) {
	certs, err := readCerts(file)
	if err != nil {
		return nil, fmt.Errorf("ca %s: %w", file, err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// readCerts parses every CERTIFICATE block of a PEM file; there must be at
// least one, and blocks of other types are ignored (a bundle may carry a
// key next to the chain).
func readCerts(file string) ([]*x509.Certificate, error) {
	data, err := readPEM(file)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no certificate in PEM")
	}
	return certs, nil
}

// readKey parses the first private key of a PEM file, in any of the
// encodings openssl and cfssl write.
func readKey(file string) (crypto.Signer, error) {
	data, err := readPEM(file)
	if err != nil {
		return nil, err
	}
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("no private key in PEM")
		}
		if !strings.HasSuffix(b.Type, "PRIVATE KEY") {
			continue
		}
		var key any
		switch b.Type {
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		default:
			return nil, fmt.Errorf("%s is not supported (encrypted keys are not)", b.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.Type, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%s: a %T cannot sign", b.Type, key)
		}
		return signer, nil
	}
}

func readPEM(file string) ([]byte, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		// The path is already in the caller's context.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("unreadable: %w", err)
	}
	return data, nil
}
