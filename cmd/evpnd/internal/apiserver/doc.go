// Package apiserver owns evpnd's gRPC API endpoint: the listener (a
// root-only unix socket, or TCP with mutual TLS), the gRPC server with
// health checking and reflection, the EvpndService implementation, and the
// Hub that fans the daemon's events out to watch streams. It checks the
// shape of requests (required keys, filters, paging) and leaves every rule
// about configuration objects to Backend, which validates them with the
// config file; it holds no state of its own besides the watchers.
package apiserver
