// Package kernel owns the primitives every kernel-facing package of evpnd
// shares: running code on a thread locked into a network namespace, and
// the one wrapper through which netlink dumps retry when the kernel
// reports them interrupted by a concurrent change.
package kernel

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// InNetns runs fn on a thread locked into ns and moves the thread back
// before unlocking it. If the thread cannot be moved back it stays locked,
// so the Go runtime retires it instead of reusing a thread in the wrong
// namespace.
func InNetns(ns netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get thread namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter namespace: %w", err)
	}
	fnErr := fn()
	if err := netns.Set(orig); err != nil {
		return errors.Join(fnErr, fmt.Errorf("restore thread namespace: %w", err))
	}
	runtime.UnlockOSThread()
	return fnErr
}

// dumpAttempts bounds the retries of an interrupted dump: a namespace
// that changes on every attempt is reported, not spun on.
const dumpAttempts = 5

// Dump runs a netlink dump, retrying when the kernel reports the dump was
// interrupted by a concurrent change.
func Dump[T any](what string, fn func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for range dumpAttempts {
		v, err = fn()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return v, fmt.Errorf("dump %s: %w", what, err)
	}
	return v, nil
}
