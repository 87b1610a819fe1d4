// Package sdnotify owns evpnd's side of systemd's notification protocol
// (sd_notify(3)): telling the service manager that the daemon is ready,
// reloading or stopping, its one-line status, and watchdog keep-alives.
// It speaks the protocol directly (one datagram per message to
// $NOTIFY_SOCKET) and does nothing when evpnd does not run under systemd.
package sdnotify

import (
	"fmt"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Notify sends state, newline-separated VAR=value assignments, to the
// service manager. It returns false and no error when $NOTIFY_SOCKET is
// unset, that is when not started by systemd with Type=notify.
func Notify(state string) (bool, error) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return false, nil
	}
	// A leading '@' names a socket in the abstract namespace; Go's
	// sockaddr conversion turns it into the leading NUL the kernel wants.
	// systemd also hands VMs vsock: addresses, which a host daemon never
	// gets.
	if addr[0] != '/' && addr[0] != '@' {
		return false, fmt.Errorf("notify socket %q: only absolute paths and abstract (@) sockets are supported", addr)
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("notify socket %q: %w", addr, err)
	}
	defer conn.Close()
	n, err := conn.Write([]byte(state))
	if err != nil {
		return false, fmt.Errorf("notify socket %q: %w", addr, err)
	}
	if n != len(state) {
		return false, fmt.Errorf("notify socket %q: sent %d of %d bytes", addr, n, len(state))
	}
	return true, nil
}

// Ready tells systemd that start-up is complete: with Type=notify, units
// ordered after evpnd start only now.
func Ready() error {
	_, err := Notify("READY=1")
	return err
}

// Reloading tells systemd that evpnd is reloading its configuration; send
// Ready when done. The monotonic timestamp is what Type=notify-reload
// (systemd 253 and later) matches the reload against; older systemd
// ignores it.
func Reloading() error {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return fmt.Errorf("read monotonic clock: %w", err)
	}
	usec := ts.Nano() / int64(time.Microsecond)
	_, err := Notify("RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatInt(usec, 10))
	return err
}

// Stopping tells systemd that evpnd is shutting down, so it is shown as
// deactivating rather than failed while it withdraws its routes.
func Stopping() error {
	_, err := Notify("STOPPING=1")
	return err
}

// Status sets the one-line status systemctl status shows; line breaks,
// which would end the assignment, become spaces.
func Status(msg string) error {
	msg = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(msg)
	_, err := Notify("STATUS=" + msg)
	return err
}

// Watchdog sends a watchdog keep-alive.
func Watchdog() error {
	_, err := Notify("WATCHDOG=1")
	return err
}

// WatchdogInterval returns the watchdog timeout systemd enforces
// (WatchdogSec=) and true when it applies to this process. Keep-alives
// should go out at half of it or more often, as sd_watchdog_enabled(3)
// advises.
func WatchdogInterval() (time.Duration, bool) {
	return watchdogInterval(os.Getenv("WATCHDOG_USEC"), os.Getenv("WATCHDOG_PID"), os.Getpid())
}

func watchdogInterval(usecEnv, pidEnv string, pid int) (time.Duration, bool) {
	usec, err := strconv.ParseUint(usecEnv, 10, 64)
	if err != nil || usec == 0 || usec > uint64(math.MaxInt64/int64(time.Microsecond)) {
		return 0, false
	}
	// WATCHDOG_PID names the process the watchdog is for; a child that
	// inherited the environment must not answer for its parent.
	if pidEnv != "" {
		if p, err := strconv.Atoi(pidEnv); err != nil || p != pid {
			return 0, false
		}
	}
	return time.Duration(usec) * time.Microsecond, true
}
