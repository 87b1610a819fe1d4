package sdnotify

import (
	"crypto/rand"
	"fmt"
	"math"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listen makes a notify socket at addr, points NOTIFY_SOCKET at it and
// returns a function that reads the next datagram.
func listen(t *testing.T, addr string) func() string {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", addr)
	return func() string {
		t.Helper()
		// A guard against a test that would otherwise hang, not a
		// measurement: the datagram is queued before Notify returns.
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 4096)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("read notification: %v", err)
		}
		return string(buf[:n])
	}
}

func monotonicUsec(t *testing.T) int64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Nano() / 1000
}

func TestNotifyMessages(t *testing.T) {
	read := listen(t, filepath.Join(t.TempDir(), "notify.sock"))
	for _, tc := range []struct {
		send func() error
		want string
	}{
		{Ready, "READY=1"},
		{Stopping, "STOPPING=1"},
		{Watchdog, "WATCHDOG=1"},
		{func() error { return Status("3 tenants, 2 peers up") }, "STATUS=3 tenants, 2 peers up"},
		{func() error { return Status("line one\nline two\r\nthree") }, "STATUS=line one line two three"},
	} {
		if err := tc.send(); err != nil {
			t.Fatalf("send %q: %v", tc.want, err)
		}
		if got := read(); got != tc.want {
			t.Errorf("notification = %q, want %q", got, tc.want)
		}
	}
	sent, err := Notify("READY=1\nSTATUS=up")
	if err != nil || !sent {
		t.Fatalf("Notify = %v, %v; want true, nil", sent, err)
	}
	if got := read(); got != "READY=1\nSTATUS=up" {
		t.Errorf("notification = %q, want both assignments in one datagram", got)
	}
}

func TestReloadingCarriesMonotonicTime(t *testing.T) {
	read := listen(t, filepath.Join(t.TempDir(), "notify.sock"))
	before := monotonicUsec(t)
	if err := Reloading(); err != nil {
		t.Fatal(err)
	}
	after := monotonicUsec(t)
	got := read()
	first, second, ok := strings.Cut(got, "\n")
	if !ok || first != "RELOADING=1" || !strings.HasPrefix(second, "MONOTONIC_USEC=") {
		t.Fatalf("notification = %q, want RELOADING=1 then MONOTONIC_USEC=", got)
	}
	usec, err := strconv.ParseInt(strings.TrimPrefix(second, "MONOTONIC_USEC="), 10, 64)
	if err != nil {
		t.Fatalf("MONOTONIC_USEC in %q: %v", got, err)
	}
	if usec < before || usec > after {
		t.Errorf("MONOTONIC_USEC = %d, want the CLOCK_MONOTONIC reading between %d and %d", usec, before, after)
	}
}

func TestNotifyAbstractSocket(t *testing.T) {
	b := make([]byte, 8)
	rand.Read(b)
	read := listen(t, fmt.Sprintf("@evpnd-sdnotify-test-%x", b))
	if err := Ready(); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "READY=1" {
		t.Errorf("notification = %q, want READY=1", got)
	}
}

func TestNotifyUnset(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	sent, err := Notify("READY=1")
	if sent || err != nil {
		t.Errorf("Notify without NOTIFY_SOCKET = %v, %v; want false, nil", sent, err)
	}
	if err := Ready(); err != nil {
		t.Errorf("Ready without NOTIFY_SOCKET: %v", err)
	}
}

func TestNotifyErrors(t *testing.T) {
	gone := filepath.Join(t.TempDir(), "gone.sock")
	for _, tc := range []struct{ addr, want string }{
		{gone, "notify socket \"" + gone + "\": dial unixgram"},
		{"run/systemd/notify", "only absolute paths and abstract (@) sockets"},
		{"vsock:2:1234", "only absolute paths and abstract (@) sockets"},
	} {
		t.Setenv("NOTIFY_SOCKET", tc.addr)
		sent, err := Notify("READY=1")
		if sent || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Notify to %q = %v, %v; want false and an error containing %q", tc.addr, sent, err, tc.want)
		}
	}
}

func TestWatchdogInterval(t *testing.T) {
	const pid = 4242
	maxUsec := strconv.FormatInt(math.MaxInt64/1000, 10)
	for _, tc := range []struct {
		usec, pid string
		want      time.Duration
		ok        bool
	}{
		{"30000000", "", 30 * time.Second, true},
		{"30000000", "4242", 30 * time.Second, true},
		{"500", "4242", 500 * time.Microsecond, true},
		{maxUsec, "", time.Duration(math.MaxInt64/1000) * time.Microsecond, true},
		{"30000000", "4243", 0, false},
		{"30000000", "self", 0, false},
		{"", "4242", 0, false},
		{"", "", 0, false},
		{"0", "", 0, false},
		{"-5", "", 0, false},
		{"30s", "", 0, false},
		{"18446744073709551615", "", 0, false},
	} {
		got, ok := watchdogInterval(tc.usec, tc.pid, pid)
		if got != tc.want || ok != tc.ok {
			t.Errorf("watchdogInterval(%q, %q) = %v, %v; want %v, %v", tc.usec, tc.pid, got, ok, tc.want, tc.ok)
		}
	}
}

func TestWatchdogIntervalFromEnvironment(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "20000000")
	t.Setenv("WATCHDOG_PID", "1")
	if d, ok := WatchdogInterval(); ok {
		t.Errorf("WatchdogInterval for another process = %v, true; want false", d)
	}
	t.Setenv("WATCHDOG_PID", strconv.Itoa(unix.Getpid()))
	if d, ok := WatchdogInterval(); !ok || d != 20*time.Second {
		t.Errorf("WatchdogInterval = %v, %v; want 20s, true", d, ok)
	}
	t.Setenv("WATCHDOG_USEC", "")
	if d, ok := WatchdogInterval(); ok {
		t.Errorf("WatchdogInterval without WATCHDOG_USEC = %v, true; want false", d)
	}
}
