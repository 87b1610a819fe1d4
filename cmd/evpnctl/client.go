package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	evpndv1 "github.com/evpnd/evpnd/api/evpnd/v1"
)

// client is a connection to evpnd's API socket that remembers why dialing
// failed, so errors can say what to do rather than relay gRPC's transport
// text.
type client struct {
	api     evpndv1.EvpndServiceClient
	conn    *grpc.ClientConn
	socket  string
	timeout time.Duration

	mu      sync.Mutex
	dialErr error
}

func dial(g *globals) (*client, error) {
	c := &client{socket: g.socket, timeout: g.timeout}
	dialer := func(ctx context.Context, _ string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, "unix", c.socket)
		if err != nil {
			c.mu.Lock()
			c.dialErr = err
			c.mu.Unlock()
		}
		return conn, err
	}
	conn, err := grpc.NewClient("passthrough:///"+c.socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(dialer),
	)
	if err != nil {
		return nil, fmt.Errorf("evpnd at %s: %w", c.socket, err)
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
	"protocol": "--protocol",
}

// explain turns an RPC error into one that tells the user what went wrong
// and what to do. Invalid arguments become usage errors.
func (c *client) explain(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	c.mu.Lock()
	dialErr := c.dialErr
	c.mu.Unlock()
	switch st.Code() {
	case codes.Unavailable:
		if dialErr != nil {
			return c.unreachable(dialErr)
		}
		return fmt.Errorf("evpnd at %s is unavailable: %s (is it shutting down?)", c.socket, st.Message())
	case codes.DeadlineExceeded:
		if dialErr != nil {
			return c.unreachable(dialErr)
		}
		return fmt.Errorf("evpnd at %s did not answer within %s (use --timeout to wait longer)", c.socket, c.timeout)
	case codes.InvalidArgument:
		var msgs []string
		for _, d := range st.Details() {
			br, ok := d.(*errdetails.BadRequest)
			if !ok {
				continue
			}
			for _, fv := range br.GetFieldViolations() {
				field := fv.GetField()
				if f, ok := flagOf[field]; ok {
					field = f
				}
				msgs = append(msgs, "invalid "+field+": "+fv.GetDescription())
			}
		}
		if len(msgs) == 0 {
			msgs = append(msgs, st.Message())
		}
		return usageError{errors.New(strings.Join(msgs, "; "))}
	case codes.Unimplemented:
		return fmt.Errorf("evpnd at %s does not implement this request (is it older than evpnctl?): %s", c.socket, st.Message())
	}
	return fmt.Errorf("evpnd at %s: %s: %s", c.socket, strings.ToLower(st.Code().String()), st.Message())
}

func (c *client) unreachable(err error) error {
	var hint string
	switch {
	case errors.Is(err, fs.ErrNotExist):
		hint = "no such file (is evpnd running? use --socket)"
	case errors.Is(err, syscall.ECONNREFUSED):
		hint = "connection refused (the socket is stale: is evpnd running? use --socket)"
	case errors.Is(err, fs.ErrPermission):
		hint = "permission denied (the API socket is root only: run evpnctl as root)"
	default:
		hint = err.Error() + " (is evpnd running? use --socket)"
	}
	return fmt.Errorf("cannot reach evpnd at %s: %s", c.socket, hint)
}

// listAll calls a List RPC page by page, following next_page_token until
// the last page, and returns every row.
func listAll[T any](ctx context.Context, g *globals, page func(ctx context.Context, api evpndv1.EvpndServiceClient, token string) ([]T, string, error)) ([]T, error) {
	var all []T
	err := call(ctx, g, func(ctx context.Context, api evpndv1.EvpndServiceClient) error {
		token := ""
		for {
			rows, next, err := page(ctx, api, token)
			if err != nil {
				return err
			}
			all = append(all, rows...)
			if token = next; token == "" {
				return nil
			}
		}
	})
	return all, err
}
