package bgp

import (
	"context"
	"log/slog"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

// slogAdapter routes GoBGP's logs into evpnd's slog logger. GoBGP logs a
// lot at info (every path it installs at debug); evpnd maps levels one to
// one and lets the handler filter.
type slogAdapter struct {
	log   *slog.Logger
	level gobgplog.LogLevel
}

func (a *slogAdapter) emit(l slog.Level, msg string, fields gobgplog.Fields) {
	if !a.log.Enabled(context.Background(), l) {
		return
	}
	args := make([]any, 0, 2*len(fields))
	for k, v := range fields {
		if k == "Key" {
			k = "peer"
		}
		args = append(args, k, v)
	}
	a.log.Log(context.Background(), l, msg, args...)
}

func (a *slogAdapter) Panic(msg string, fields gobgplog.Fields) {
	a.emit(slog.LevelError, msg, fields)
	panic(msg)
}

func (a *slogAdapter) Fatal(msg string, fields gobgplog.Fields) {
	// GoBGP calls Fatal for conditions it cannot continue from (a gRPC
	// listener it was asked to open); evpnd never asks for those, so a
	// Fatal is a broken invariant worth a crash with the message.
	a.emit(slog.LevelError, msg, fields)
	panic("gobgp fatal: " + msg)
}

func (a *slogAdapter) Error(msg string, fields gobgplog.Fields) { a.emit(slog.LevelError, msg, fields) }
func (a *slogAdapter) Warn(msg string, fields gobgplog.Fields)  { a.emit(slog.LevelWarn, msg, fields) }
func (a *slogAdapter) Info(msg string, fields gobgplog.Fields)  { a.emit(slog.LevelInfo, msg, fields) }
func (a *slogAdapter) Debug(msg string, fields gobgplog.Fields) { a.emit(slog.LevelDebug, msg, fields) }
func (a *slogAdapter) SetLevel(level gobgplog.LogLevel)         { a.level = level }
func (a *slogAdapter) GetLevel() gobgplog.LogLevel {
	// GoBGP asks before building expensive debug fields; answer from the
	// handler so debug work is skipped unless evpnd logs at debug.
	if a.log.Enabled(context.Background(), slog.LevelDebug) {
		return gobgplog.DebugLevel
	}
	return gobgplog.InfoLevel
}
