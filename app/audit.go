package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/coupond/coupond/audit"
	"github.com/coupond/coupond/config"
	"github.com/coupond/coupond/engine"
)

// Audit opens the configured store (and Redis, when configured: the
// in-memory engine lives inside the serving process and cannot be reached
// from here) and checks every invariant audit knows, reading only.
func Audit(ctx context.Context, cfg config.Config, log *slog.Logger, grace time.Duration) (audit.Report, error) {
	s, err := openStore(ctx, cfg, log)
	if err != nil {
		return audit.Report{}, err
	}
	defer s.Close()
	var e engine.Engine
	if cfg.Redis.URL != "" {
		if e, err = openEngine(ctx, cfg); err != nil {
			return audit.Report{}, err
		}
		if c, ok := e.(interface{ Close() error }); ok {
			defer c.Close()
		}
	}
	return audit.Run(ctx, audit.Config{Store: s, Engine: e, Grace: grace})
}
