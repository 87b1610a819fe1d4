// Package evpndv1 is the gRPC contract of evpnd (service EvpndService),
// generated from evpnd.proto by `make proto`; only this file is written by
// hand. Clients such as evpnctl and orchestrators import it; the daemon's
// implementation lives in cmd/evpnd/internal/apiserver.
package evpndv1
