package membership

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/proxyhealth/proxyhealth/internal/etcdtest"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

const testTTL = 2 * time.Second

func testConfig(e *etcdtest.Etcd, name string) Config {
	return Config{Cluster: name, Endpoints: e.Endpoints(), Advertise: "127.0.0.1:0", TTL: testTTL}
}

// join joins a member of cluster name; the test's cleanup leaves.
func join(t testing.TB, e *etcdtest.Etcd, cfg Config) *Member {
	t.Helper()
	sys := actor.NewActorSystem(ActorSystemOptions(cfg.Logger)...)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m, err := Join(ctx, sys, cfg)
	if err != nil {
		t.Fatalf("join %s: %v", cfg.Cluster, err)
	}
	t.Cleanup(func() { leave(t, m) })
	return m
}

func leave(t testing.TB, m *Member) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Leave(ctx); err != nil && err != ErrLeft {
		t.Errorf("leave %s: %v", m.Self(), err)
	}
}

func joinN(t testing.TB, e *etcdtest.Etcd, name string, n int) []*Member {
	t.Helper()
	ms := make([]*Member, n)
	for i := range ms {
		ms[i] = join(t, e, testConfig(e, name))
	}
	return ms
}

func selves(ms []*Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Self()
	}
	slices.Sort(out)
	return out
}

// allSee waits until every member's list is exactly want.
func allSee(t testing.TB, ms []*Member, want []string, timeout time.Duration) {
	t.Helper()
	testutil.EventuallyExplain(t, timeout, func() bool {
		for _, m := range ms {
			if !slices.Equal(m.Members(), want) {
				return false
			}
		}
		return true
	}, func() string {
		var b strings.Builder
		b.WriteString("every member to list " + strings.Join(want, ",") + "; they list:")
		for _, m := range ms {
			b.WriteString(" [" + strings.Join(m.Members(), ",") + "]")
		}
		return b.String()
	})
}

// recorder is a slog handler that keeps the records.
type recorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.recs = append(r.recs, rec)
	r.mu.Unlock()
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

// count returns how many records at level have msg containing sub and an
// attribute equal to val.
func (r *recorder) count(level slog.Level, sub, val string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range r.recs {
		if rec.Level != level || !strings.Contains(rec.Message, sub) {
			continue
		}
		found := val == ""
		rec.Attrs(func(a slog.Attr) bool {
			if a.Value.String() == val {
				found = true
				return false
			}
			return true
		})
		if found {
			n++
		}
	}
	return n
}
