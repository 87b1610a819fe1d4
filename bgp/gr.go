package bgp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// DefaultRestartTime is how long peers keep this host's routes after its
// session ends without a NOTIFICATION: enough for systemd to restart evpnd
// and for evpnd to reconnect, short enough that a host that died for good
// is forgotten within minutes.
const DefaultRestartTime = 120 * time.Second

// maxRestartTime is the largest restart time the capability can carry
// (12 bits of seconds, RFC 4724 s3).
const maxRestartTime = 4095 * time.Second

// selectionDeferral bounds how long a restarting speaker waits for its
// peers' End-of-RIB before it advertises anyway (RFC 4724 s4.1). It is the
// daemon's convergence deadline, so both give up together.
const selectionDeferral = convergeDeadline

// restartMarker is the file in the state directory that says a previous
// evpnd on this boot ended without withdrawing its routes.
const restartMarker = "bgp-restarting"

// bootIDPath identifies the running kernel: a marker written before a
// reboot does not make the next boot a restart, since the forwarding state
// it speaks for is gone.
var bootIDPath = "/proc/sys/kernel/random/boot_id"

// GracefulRestart is the speaker's RFC 4724 setting. With it every peer
// gets the graceful restart capability for every family evpnd carries, so
// a peer keeps evpnd's routes (as stale) while evpnd restarts, and evpnd
// keeps a restarting peer's routes while it is away.
type GracefulRestart struct {
	Enabled bool
	// RestartTime is how long peers keep this host's routes after its
	// session ends; at most 4095 s, 0 means DefaultRestartTime.
	RestartTime time.Duration
	// StateDir holds the restart marker. Start reads it to know whether
	// it restarts a speaker whose routes the peers may still hold (then
	// the Restart State and Forwarding State bits are set, and updates
	// are deferred until the peers' End-of-RIB); Stop removes it and
	// StopForRestart leaves it, as a crash does. Empty: never restarting.
	StateDir string
}

func (g GracefulRestart) restartSeconds() uint32 {
	t := g.RestartTime
	if t <= 0 {
		t = DefaultRestartTime
	}
	return uint32(min(t, maxRestartTime) / time.Second)
}

// apiGracefulRestart is the peer setting for g; nil when off.
func apiGracefulRestart(g GracefulRestart, restarting bool) *api.GracefulRestart {
	if !g.Enabled {
		return nil
	}
	return &api.GracefulRestart{
		Enabled:      true,
		RestartTime:  g.restartSeconds(),
		DeferralTime: uint32(selectionDeferral / time.Second),
		// GoBGP sets the Restart State bit and the Forwarding State bit of
		// every family from this, and holds back updates until every
		// peer has sent End-of-RIB.
		LocalRestarting: restarting,
	}
}

// mpGracefulRestart puts a family in the capability; nil when off.
func mpGracefulRestart(g GracefulRestart) *api.MpGracefulRestart {
	if !g.Enabled {
		return nil
	}
	return &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
}

// readRestartMarker reports whether dir holds a marker written on this
// boot.
func readRestartMarker(dir string) (bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, restartMarker))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("restart marker: %w", err)
	}
	boot, err := os.ReadFile(bootIDPath)
	if err != nil {
		// Without a boot ID the marker alone decides: claiming a restart
		// after a reboot costs peers a stale route or two until End-of-RIB,
		// not claiming one after a crash costs every route at once.
		return true, nil
	}
	return bytes.Equal(bytes.TrimSpace(b), bytes.TrimSpace(boot)), nil
}

// writeRestartMarker records that this process holds routes the peers will
// keep if it ends without a NOTIFICATION.
func writeRestartMarker(dir string) error {
	boot, err := os.ReadFile(bootIDPath)
	if err != nil {
		boot = nil
	}
	p := filepath.Join(dir, restartMarker)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, bytes.TrimSpace(boot), 0o644); err != nil {
		return fmt.Errorf("restart marker: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("restart marker: %w", err)
	}
	return nil
}

func removeRestartMarker(dir string) error {
	err := os.Remove(filepath.Join(dir, restartMarker))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("restart marker: %w", err)
	}
	return nil
}

// takeRestartMarker reports whether a previous run on this boot ended
// without withdrawing its routes, and marks this run as holding routes
// peers will keep: until Stop removes the marker, a crash or kill leaves
// it for the next start to find.
func (s *Server) takeRestartMarker() bool {
	g := s.cfg.GracefulRestart
	if !g.Enabled || g.StateDir == "" {
		return false
	}
	restarting, err := readRestartMarker(g.StateDir)
	if err != nil {
		s.log.Warn("bgp: cannot tell whether this is a graceful restart; starting afresh", "err", err)
	}
	if err := writeRestartMarker(g.StateDir); err != nil {
		s.log.Warn("bgp: a crash of this run will not be seen as a graceful restart", "err", err)
	}
	if restarting {
		s.log.Info("bgp graceful restart: peers may hold this host's routes as stale; updates wait for their End-of-RIB",
			"restart_time", time.Duration(g.restartSeconds())*time.Second)
	}
	return restarting
}

// Restarting reports whether Start found that it restarts a speaker whose
// routes the peers may still hold, until convergence.
func (s *Server) Restarting() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restarting
}

// StopForRestart ends the watch and leaves the sessions to end with the
// process, without a NOTIFICATION: to peers that negotiated graceful
// restart this is a restart (RFC 4724 s4.2), so they keep this host's
// routes, marked stale, until it is back and has sent End-of-RIB, or
// until the restart time runs out. The marker stays, so the next start
// announces the restart. The caller must exit soon after: the sessions
// stay up until the process ends.
func (s *Server) StopForRestart() {
	if s.bgp == nil {
		return
	}
	s.stopImport()
	s.endWatch()
	s.hold.stop()
	if !s.cfg.GracefulRestart.Enabled {
		// Peers without the capability would only see a dead session:
		// end it properly.
		_ = s.bgp.StopBgp(context.Background(), &api.StopBgpRequest{})
		s.bgp.Stop()
	}
}
