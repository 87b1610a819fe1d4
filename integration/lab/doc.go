// Package lab owns the lab runner of the integration tests: it reads
// containerlab topology files (*.clab.yml) and brings them up on this one
// machine as network namespaces joined by veth pairs, with FRR daemons and
// evpnd running inside the node namespaces, and tears them down again
// without leaving a namespace behind.
//
// Only tests and the lab CLI (integration/cmd/lab) import it; production
// code never does.
package lab
