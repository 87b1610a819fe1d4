// Package integration owns evpnd's lab tests: containerlab topologies under
// topologies/, brought up as network namespaces on this machine by the
// runner in integration/lab, with FRR as route reflector, ToR and third-party
// host, and real traffic between workload namespaces deciding pass or fail.
// Run them as root: go test ./integration/ -run Lab -v.
//
// Production code never imports this package or integration/lab.
package integration
