package proxyhealth

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/probe"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// withSpawnWave sets spawnWave to n for the test.
func withSpawnWave(t *testing.T, n int) {
	old := spawnWave
	spawnWave = n
	t.Cleanup(func() { spawnWave = old })
}

// wavesEngine opens an engine with source "s", whose proxies (nothing
// listens at them) are checked once a minute.
func wavesEngine(t *testing.T) *Engine {
	t.Helper()
	h := events.DefaultConfig()
	h.Interval = time.Minute
	e, err := Open(context.Background(), Config{DataDir: t.TempDir(), Sources: []SourceConfig{{
		Name: "s", Health: h, Probe: probe.Config{TargetURL: "http://probe.test/generate_204", Timeout: time.Second},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return e
}

func waveEntries(n int) []ProxyEntry {
	entries := make([]ProxyEntry, n)
	for i := range entries {
		entries[i] = ProxyEntry{URL: fmt.Sprintf("http://127.0.0.1:%d", 1+i)}
	}
	return entries
}

// TestAddProxiesInWaves: a list longer than a wave starts in several waves,
// and each of its proxies is running and journaled when the call returns.
func TestAddProxiesInWaves(t *testing.T) {
	withSpawnWave(t, 3)
	e := wavesEngine(t)
	ctx := context.Background()
	ids, err := e.addProxies(ctx, "s", waveEntries(10), pb.ProxyOrigin_PROXY_ORIGIN_API)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 10 {
		t.Fatalf("%d IDs, want 10", len(ids))
	}
	for _, id := range ids {
		e.mu.Lock()
		p := e.proxies.Get(id)
		e.mu.Unlock()
		if p == nil || p.pid == nil {
			t.Fatalf("proxy %s: %+v, want one with its actor", id, p)
		}
		if e.journal.StreamHead(id) == 0 {
			t.Fatalf("proxy %s: its ProxyAdded is not journaled", id)
		}
	}
}

// TestAddProxiesForgetsTheWavesItNeverStarted: when a wave's spawn request
// fails, the proxies of the later waves are not left registered without
// an actor.
func TestAddProxiesForgetsTheWavesItNeverStarted(t *testing.T) {
	withSpawnWave(t, 3)
	e := wavesEngine(t)
	e.mu.Lock()
	src := e.sources["s"].pid
	e.mu.Unlock()
	if err := e.sys.Root.StopFuture(src).Wait(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ids, err := e.addProxies(ctx, "s", waveEntries(10), pb.ProxyOrigin_PROXY_ORIGIN_API)
	if err == nil || !errors.Is(err, actor.ErrDeadLetter) {
		t.Fatalf("add with the source's actor stopped: %v, want a dead letter", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, id := range ids[3:] {
		if p := e.proxies.Get(id); p != nil {
			t.Errorf("proxy %s of a later wave is registered (%+v)", id, p)
		}
	}
}
