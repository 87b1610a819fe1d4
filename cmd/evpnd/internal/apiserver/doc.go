// Package apiserver owns evpnd's gRPC API endpoint: the listener (a root-only
// unix socket), the gRPC server with health checking and reflection, and the
// EvpndService implementation, which reads the daemon's state through
// Backend and does the filtering, validation and paging of list requests.
// It holds no state of its own: every answer comes from Backend.
package apiserver
