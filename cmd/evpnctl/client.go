package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	evpndv1 "github.com/evpnd/evpnd/api/evpnd/v1"
)

// client is a connection to evpnd's API that remembers why dialing failed,
// so errors can say what to do rather than relay gRPC's transport text.
type client struct {
	api     evpndv1.EvpndServiceClient
	conn    *grpc.ClientConn
	target  string // the socket path or host:port, for messages
	tcp     bool
	timeout time.Duration

	mu      sync.Mutex
	dialErr error
}

// endpoint says which transport the flags ask for: the socket unless --addr
// (or EVPNCTL_ADDR) is set and --socket was not given.
func (g *globals) endpoint() (addr string, tcp bool, err error) {
	if g.socketSet && g.addrSet {
		return "", false, usagef("--socket and --addr both given: use one")
	}
	if g.addr == "" || g.socketSet {
		return g.socket, false, nil
	}
	var missing []string
	for _, f := range []struct{ flag, val string }{{"--tls-cert", g.tls.cert}, {"--tls-key", g.tls.key}, {"--tls-ca", g.tls.ca}} {
		if f.val == "" {
			missing = append(missing, f.flag)
		}
	}
	if len(missing) > 0 {
		return "", false, usagef("--addr needs %s: evpnd's API over TCP is mutual TLS only (a client certificate signed by evpnd's api.tls.client-ca, and the CA of its server certificate)",
			strings.Join(missing, ", "))
	}
	if _, _, err := net.SplitHostPort(g.addr); err != nil {
		return "", false, usagef("invalid --addr %q: want host:port", g.addr)
	}
	return g.addr, true, nil
}

// tlsConfig is the client side of the API's mutual TLS.
func (t tlsFiles) config() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.cert, t.key)
	if err != nil {
		return nil, inputError{fmt.Errorf("loading --tls-cert %s and --tls-key %s: %w", t.cert, t.key, err)}
	}
	pem, err := os.ReadFile(t.ca)
	if err != nil {
		return nil, inputError{fmt.Errorf("reading --tls-ca: %w", err)}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, inputError{fmt.Errorf("--tls-ca %s: no PEM certificate in it", t.ca)}
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ServerName:   t.serverName,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

func dial(g *globals) (*client, error) {
	target, tcp, err := g.endpoint()
	if err != nil {
		return nil, err
	}
	c := &client{target: target, tcp: tcp, timeout: g.timeout}
	network, creds := "unix", insecure.NewCredentials()
	if tcp {
		cfg, err := g.tls.config()
		if err != nil {
			return nil, err
		}
		network, creds = "tcp", credentials.NewTLS(cfg)
	}
	dialer := func(ctx context.Context, _ string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, c.target)
		if err != nil {
			c.mu.Lock()
			c.dialErr = err
			c.mu.Unlock()
		}
		return conn, err
	}
	conn, err := grpc.NewClient("passthrough:///"+c.target,
		grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(dialer),
	)
	if err != nil {
		return nil, fmt.Errorf("evpnd at %s: %w", c.target, err)
	}
	c.conn = conn
	c.api = evpndv1.NewEvpndServiceClient(conn)
	return c, nil
}

func (c *client) Close() error { return c.conn.Close() }

// flagOf names the command-line flag behind a request field, for fields
// that come from one.
var flagOf = map[string]string{
	"type": "--type", "vni": "--vni", "rd": "--rd", "mac": "--mac",
	"prefix": "--prefix", "tenant": "--tenant", "origin": "--origin",
	"protocol": "--protocol", "segment": "--segment",
}

// object names the configuration object a call is about, so its errors
// can say which one and what to do.
type object struct {
	kind, name string
	// generation is the one read, sent as the optimistic concurrency check.
	generation int64
}

// explain turns an RPC error into one that tells the user what went wrong
// and what to do. Invalid filter values become usage errors naming the
// flag.
func (c *client) explain(err error) error { return c.explainObject(err, object{}) }

// codeError is an explained RPC error that keeps its gRPC code, so
// callers can tell "not found" from other failures.
type codeError struct {
	code codes.Code
	err  error
}

func (e codeError) Error() string { return e.err.Error() }
func (e codeError) Unwrap() error { return e.err }

// codeOf is the gRPC code behind an explained error; OK for nil.
func codeOf(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	var ce codeError
	if errors.As(err, &ce) {
		return ce.code
	}
	return codes.Unknown
}

// explainObject is explain for a call about obj: invalid objects list
// every field violation, and the configuration error codes get their
// hints.
func (c *client) explainObject(err error, obj object) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	return codeError{st.Code(), c.explainStatus(st, obj)}
}

func (c *client) explainStatus(st *status.Status, obj object) error {
	c.mu.Lock()
	dialErr := c.dialErr
	c.mu.Unlock()
	switch st.Code() {
	case codes.Unavailable:
		if dialErr != nil {
			return c.unreachable(dialErr)
		}
		if strings.Contains(st.Message(), "handshake") {
			return fmt.Errorf("TLS handshake with evpnd at %s failed: %s (check --tls-ca, --tls-cert, --tls-key and --tls-server-name)", c.target, st.Message())
		}
		return fmt.Errorf("evpnd at %s is unavailable: %s (is it shutting down?)", c.target, st.Message())
	case codes.DeadlineExceeded:
		if dialErr != nil {
			return c.unreachable(dialErr)
		}
		return fmt.Errorf("evpnd at %s did not answer within %s (use --timeout to wait longer)", c.target, c.timeout)
	case codes.InvalidArgument:
		var violations []*errdetails.BadRequest_FieldViolation
		for _, d := range st.Details() {
			if br, ok := d.(*errdetails.BadRequest); ok {
				violations = append(violations, br.GetFieldViolations()...)
			}
		}
		if obj.kind != "" {
			lines := []string{st.Message()}
			for _, fv := range violations {
				lines = append(lines, "  "+fv.GetField()+": "+fv.GetDescription())
			}
			return inputError{errors.New(strings.Join(lines, "\n"))}
		}
		var msgs []string
		for _, fv := range violations {
			field := fv.GetField()
			if f, ok := flagOf[field]; ok {
				field = f
			}
			msgs = append(msgs, "invalid "+field+": "+fv.GetDescription())
		}
		if len(msgs) == 0 {
			msgs = append(msgs, st.Message())
		}
		return usageError{errors.New(strings.Join(msgs, "; "))}
	case codes.NotFound:
		if obj.kind != "" {
			return fmt.Errorf("%s ('evpnctl %s list' shows what exists)", st.Message(), obj.kind)
		}
	case codes.AlreadyExists:
		if obj.kind != "" {
			verb := "update"
			if obj.kind == "port" {
				verb = "detach' then 'evpnctl port attach"
			}
			return fmt.Errorf("%s (use 'evpnctl %s %s' to change it)", st.Message(), obj.kind, verb)
		}
	case codes.FailedPrecondition:
		return errors.New(st.Message())
	case codes.Aborted:
		if obj.kind != "" {
			return fmt.Errorf("%s %s was changed by someone else since it was read (generation %d); run the command again",
				obj.kind, obj.name, obj.generation)
		}
	case codes.Unimplemented:
		return fmt.Errorf("evpnd at %s does not implement this request (is it older than evpnctl?): %s", c.target, st.Message())
	case codes.PermissionDenied, codes.Unauthenticated:
		return fmt.Errorf("evpnd at %s refused the request: %s", c.target, st.Message())
	}
	return fmt.Errorf("evpnd at %s: %s: %s", c.target, strings.ToLower(st.Code().String()), st.Message())
}

// unreachable explains a failed dial.
func (c *client) unreachable(err error) error {
	if errors.Is(err, fs.ErrPermission) && !c.tcp {
		return fmt.Errorf("permission denied on %s: the API socket is root only (mode 0600); run evpnctl as root", c.target)
	}
	var why string
	switch {
	case errors.Is(err, fs.ErrNotExist):
		why = "no such socket"
	case errors.Is(err, syscall.ECONNREFUSED) && !c.tcp:
		why = "connection refused, the socket is stale"
	case errors.Is(err, syscall.ECONNREFUSED):
		why = "connection refused"
	default:
		why = err.Error()
	}
	hint := "(use --socket or " + socketEnv + " for another socket)"
	if c.tcp {
		hint = "(use --addr or " + addrEnv + " for another address)"
	}
	return fmt.Errorf("cannot reach evpnd at %s: %s: is evpnd running? %s", c.target, why, hint)
}

// call dials evpnd, runs fn with the --timeout deadline and explains its
// error.
func call(ctx context.Context, g *globals, fn func(ctx context.Context, api evpndv1.EvpndServiceClient) error) error {
	return callObject(ctx, g, object{}, fn)
}

// callObject is call for a request about obj.
func callObject(ctx context.Context, g *globals, obj object, fn func(ctx context.Context, api evpndv1.EvpndServiceClient) error) error {
	if err := g.checkOutput(); err != nil {
		return err
	}
	c, err := dial(g)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	if err := fn(ctx, c.api); err != nil {
		return c.explainObject(err, obj)
	}
	return nil
}

// listAll calls a List RPC page by page, following next_page_token until
// the last page, and returns every row.
func listAll[T any](ctx context.Context, g *globals, page func(ctx context.Context, api evpndv1.EvpndServiceClient, token string) ([]T, string, error)) ([]T, error) {
	var all []T
	err := call(ctx, g, func(ctx context.Context, api evpndv1.EvpndServiceClient) error {
		var err error
		all, err = pages(ctx, api, page)
		return err
	})
	return all, err
}

// pages follows next_page_token on an open connection.
func pages[T any](ctx context.Context, api evpndv1.EvpndServiceClient, page func(ctx context.Context, api evpndv1.EvpndServiceClient, token string) ([]T, string, error)) ([]T, error) {
	var all []T
	token := ""
	for {
		rows, next, err := page(ctx, api, token)
		if err != nil {
			return nil, err
		}
		all = append(all, rows...)
		if token = next; token == "" {
			return all, nil
		}
	}
}
