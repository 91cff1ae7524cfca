package membership

import (
	"context"
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"
)

// ActorSystemOptions are the options of an actor system a member joins
// with: protoactor logs to logger (nil = nowhere) with its INFO lines
// lowered to DEBUG (a cluster member writes about thirty at start-up).
// protoactor takes its logger when the system is created, so the caller
// passes these to actor.NewActorSystem before Join.
func ActorSystemOptions(logger *slog.Logger) []actor.ConfigOption {
	var h slog.Handler = slog.DiscardHandler
	if logger != nil {
		h = demote{logger.Handler()}
	}
	l := slog.New(h)
	return []actor.ConfigOption{
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return l }),
	}
}

// demote lowers INFO records to DEBUG.
type demote struct{ h slog.Handler }

func (d demote) Enabled(ctx context.Context, l slog.Level) bool {
	if l == slog.LevelInfo {
		l = slog.LevelDebug
	}
	return d.h.Enabled(ctx, l)
}

func (d demote) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelInfo {
		r.Level = slog.LevelDebug
	}
	return d.h.Handle(ctx, r)
}

func (d demote) WithAttrs(as []slog.Attr) slog.Handler { return demote{d.h.WithAttrs(as)} }
func (d demote) WithGroup(g string) slog.Handler       { return demote{d.h.WithGroup(g)} }
