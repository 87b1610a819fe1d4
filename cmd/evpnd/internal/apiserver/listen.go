package apiserver

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Endpoint is where the API listens and the gRPC options that go with it.
type Endpoint struct {
	Listener net.Listener
	// Options carry the transport credentials: mutual TLS for tcp, none
	// for the unix socket, whose mode 0600 is the access control.
	Options []grpc.ServerOption
}

// Open opens the API endpoint named by addr.
//
// "unix:///abs/path" is a socket created mode 0600 (root only, as the API
// can change the datapath), its parent directory with 0755 if missing; a
// stale socket left by a crashed evpnd is replaced, a socket some process
// still serves is not. files must be nil: the mode is the access control.
//
// "tcp://host:port" (port 0 picks a free one, see Listener.Addr) requires
// files: anyone who can reach the port could otherwise drive the datapath,
// so clients must present a certificate that chains to files.ClientCA.
func Open(addr string, files *TLSFiles) (*Endpoint, error) {
	scheme, rest, ok := strings.Cut(addr, "://")
	if !ok {
		return nil, fmt.Errorf("api address %q: want unix:///path/to.sock or tcp://host:port", addr)
	}
	switch scheme {
	case "unix":
		if files != nil {
			return nil, fmt.Errorf("api address %q: tls applies only to tcp://; the unix socket is protected by its mode 0600", addr)
		}
		l, err := listenUnix(addr, rest)
		if err != nil {
			return nil, err
		}
		return &Endpoint{Listener: l}, nil
	case "tcp":
		return openTCP(addr, rest, files)
	default:
		return nil, fmt.Errorf("api address %q: scheme %q is not supported; use unix:///path/to.sock or tcp://host:port", addr, scheme)
	}
}

// Listen opens a unix:// endpoint, which needs no server options. It is
// Open without TLS material, so a tcp:// addr fails.
func Listen(addr string) (net.Listener, error) {
	ep, err := Open(addr, nil)
	if err != nil {
		return nil, err
	}
	return ep.Listener, nil
}

func openTCP(addr, hostport string, files *TLSFiles) (*Endpoint, error) {
	if files == nil {
		return nil, fmt.Errorf("api address %q: mutual TLS is required for tcp:// (set api.tls.cert, api.tls.key and api.tls.client-ca)", addr)
	}
	_, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, fmt.Errorf("api address %q: want tcp://host:port: %w", addr, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return nil, fmt.Errorf("api address %q: port %q is not a number in 0..65535", addr, port)
	}
	// The files are read before the port is bound, so bad material does
	// not leave a listener behind.
	cfg, err := serverTLS(files)
	if err != nil {
		return nil, fmt.Errorf("api tls: %w", err)
	}
	l, err := net.Listen("tcp", hostport)
	if err != nil {
		return nil, fmt.Errorf("api address %q: %w", addr, err)
	}
	return &Endpoint{Listener: l, Options: []grpc.ServerOption{grpc.Creds(credentials.NewTLS(cfg))}}, nil
}

func listenUnix(addr, rest string) (net.Listener, error) {
	if !filepath.IsAbs(rest) {
		return nil, fmt.Errorf("api address %q: socket path must be absolute (unix:///path/to.sock)", addr)
	}
	path := filepath.Clean(rest)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("api socket %s: %w", path, err)
	}
	if err := removeStale(path); err != nil {
		return nil, fmt.Errorf("api socket %s: %w", path, err)
	}
	l, err := listenPrivate(path)
	if err != nil {
		return nil, fmt.Errorf("api socket %s: %w", path, err)
	}
	return l, nil
}

// removeStale removes a socket at path that nobody accepts on. It refuses to
// remove anything that is not a socket, or a socket that is in use.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("exists and is not a socket; not replacing it")
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("another process is serving it (is evpnd already running?)")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("probing existing socket: %w", err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("removing stale socket: %w", err)
	}
	return nil
}

// listenPrivate binds the socket inside a fresh 0700 directory, makes it 0600
// and only then renames it to path, so there is no moment at which a
// non-root process could connect through umask-derived permissions.
func listenPrivate(path string) (net.Listener, error) {
	dir, err := os.MkdirTemp(filepath.Dir(path), ".evpnd-api-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, err
	}
	// The listener would unlink the temporary name on Close; unixListener
	// removes the final name instead.
	l.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		l.Close()
		return nil, err
	}
	return &unixListener{UnixListener: l, addr: &net.UnixAddr{Name: path, Net: "unix"}}, nil
}

// unixListener is a unix socket listener bound under another name and
// renamed to addr.
type unixListener struct {
	*net.UnixListener
	addr *net.UnixAddr
}

func (l *unixListener) Addr() net.Addr { return l.addr }

func (l *unixListener) Close() error {
	err := l.UnixListener.Close()
	if rerr := os.Remove(l.addr.Name); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, fmt.Errorf("removing socket: %w", rerr))
	}
	return err
}
