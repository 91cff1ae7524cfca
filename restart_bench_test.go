package proxyhealth_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/internal/clock"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/probe"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// BenchmarkRestartAged measures a restart of an engine whose journal holds
// some history, after a clean stop (stop=clean: Close saved the live
// status's checkpoint, LiveCheckpointFile), after a crash before any
// checkpoint (stop=crash: each proxy's snapshot from every
// actors.DefaultSnapshotEvery events, and the whole journal folded), and
// after a crash just before the running engine's next periodic checkpoint
// (stop=crash-checkpointed: the checkpoint stands for the journal as it
// was DefaultCheckpointEvery before the crash, the snapshots as after a
// crash): how long Open takes (the journal opened, the
// live status folded, every proxy's actor recovered: from the live status
// since e781422, before from its snapshot and stream), and
// how much CPU the engine uses until it is idle again (work it does in the
// background after Open: the pool monitor and the notifier folded the
// whole journal there before they started from the live status). The
// journal is written beforehand as a daemon would have written it: each
// proxy's ProxyAdded, then one passed check per proxy and interval (and
// the state changes the state machine decides), each proxy's snapshot
// every actors.DefaultSnapshotEvery events, through journal.Bolt. The
// clock is a fake one that stays at the end of the history, so no check
// runs during the measure. No SQLite view: it keeps its own offset.
//
// Reported: open-s (Open), settle-s (until the process uses no more CPU),
// cpu-s (the process's CPU from Open's start until settled), journal-events
// and, for comparison across histories, open-us/proxy.
func BenchmarkRestartAged(b *testing.B) {
	for _, c := range []struct {
		proxies  int
		interval time.Duration
		history  string
	}{
		// The daemon's sizes of issue 14: 10,000 proxies checked every
		// 10 s, 100,000 every 60 s (BenchmarkDaemon).
		{10_000, 10 * time.Second, "2m"},
		{10_000, 10 * time.Second, "20m"},
		{10_000, 10 * time.Second, "1h"},
		{100_000, 60 * time.Second, "3m"},
		{100_000, 60 * time.Second, "30m"},
	} {
		history, err := time.ParseDuration(c.history)
		if err != nil {
			b.Fatal(err)
		}
		for _, stop := range []string{"clean", "crash", "crash-checkpointed"} {
			b.Run(fmt.Sprintf("proxies=%d/history=%s/stop=%s", c.proxies, c.history, stop), func(b *testing.B) {
				benchRestartAged(b, c.proxies, c.interval, history, stop)
			})
		}
	}
}

func benchRestartAged(b *testing.B, proxies int, interval, history time.Duration, stop string) {
	if stop == "crash-checkpointed" && history <= proxyhealth.DefaultCheckpointEvery {
		b.Skipf("a history of %v holds no checkpoint %v before its end", history, proxyhealth.DefaultCheckpointEvery)
	}
	dir := b.TempDir()
	urls := benchProxyURLs(proxies)
	h := events.DefaultConfig()
	h.Interval = interval
	end, n := writeAgedJournal(b, filepath.Join(dir, proxyhealth.JournalFile), "a", urls, h, history, nil)
	cfg := proxyhealth.Config{DataDir: dir, Clock: clock.NewFake(end),
		Sources: []proxyhealth.SourceConfig{{Name: "a", Health: h, Probe: farmProbe(), Proxies: urls}}}
	ctx := context.Background()
	checkpoint := filepath.Join(dir, proxyhealth.LiveCheckpointFile)
	var periodic []byte
	switch stop {
	case "clean":
		// The run before: it stops cleanly, leaving its checkpoint.
		e, err := proxyhealth.Open(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		if err := e.Close(ctx); err != nil {
			b.Fatal(err)
		}
	case "crash-checkpointed":
		// The events are spread evenly over the history.
		since := uint64(float64(n) * float64(proxyhealth.DefaultCheckpointEvery) / float64(history))
		if err := proxyhealth.SaveLiveCheckpointAt(ctx, dir, n-since); err != nil {
			b.Fatal(err)
		}
		var err error
		if periodic, err = os.ReadFile(checkpoint); err != nil {
			b.Fatal(err)
		}
	}
	var open, settle, cpu time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		switch _, err := os.Stat(checkpoint); stop {
		case "clean":
			if err != nil {
				b.Fatalf("no checkpoint after a clean stop: %v", err)
			}
		case "crash":
			if err == nil {
				if err := os.Remove(checkpoint); err != nil { // the crash: Close never ran
					b.Fatal(err)
				}
			}
		default: // the crash came after the running engine's last checkpoint
			if err := os.WriteFile(checkpoint, periodic, 0o600); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		cpu0 := cpuTime()
		start := time.Now()
		e, err := proxyhealth.Open(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		open += time.Since(start)
		settle += waitIdle(b, 10*time.Minute).Sub(start)
		cpu += cpuTime() - cpu0
		b.StopTimer()
		if got := len(e.ProxyIDs()); got != proxies {
			b.Fatalf("%d proxies after the restart, want %d", got, proxies)
		}
		if err := e.Close(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	per := float64(b.N)
	b.ReportMetric(open.Seconds()/per, "open-s")
	b.ReportMetric(settle.Seconds()/per, "settle-s")
	b.ReportMetric(cpu.Seconds()/per, "cpu-s")
	b.ReportMetric(float64(n), "journal-events")
	b.ReportMetric(float64(open.Microseconds())/per/float64(proxies), "open-us/proxy")
}

// writeAgedJournal writes to path what a source named source of the
// proxies urls, checked every h.Interval, journals over history, with each
// proxy's snapshot saved every actors.DefaultSnapshotEvery of its events,
// and returns the time of the last check and the number of events. Every
// check passes, but those fails names (proxy i's check of round r; nil:
// none), which are refused connections.
func writeAgedJournal(b testing.TB, path, source string, urls []string, h events.Config, history time.Duration, fails func(i, round int) bool) (time.Time, uint64) {
	b.Helper()
	ctx := context.Background()
	j, err := journal.OpenBolt(path)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := j.Close(); err != nil {
			b.Fatal(err)
		}
	}()
	states := make([]events.State, len(urls))
	snapped := make([]uint64, len(urls))
	const chunk = 8192
	batch := make([]*pb.Envelope, 0, 2*chunk)
	owner := make([]int, 0, 2*chunk)
	commit := func() {
		if _, err := j.Append(ctx, batch); err != nil {
			b.Fatal(err)
		}
		for k, env := range batch {
			i := owner[k]
			states[i] = events.Evolve(states[i], env)
			if states[i].StreamSeq-snapped[i] >= 100 {
				if err := j.SaveSnapshot(ctx, events.ToSnapshot(states[i])); err != nil {
					b.Fatal(err)
				}
				snapped[i] = states[i].StreamSeq
			}
		}
		batch, owner = batch[:0], owner[:0]
	}
	decide := func(i int, cmd events.Command) {
		envs, err := events.Decide(states[i], cmd, h)
		if err != nil {
			b.Fatal(err)
		}
		for _, env := range envs {
			batch, owner = append(batch, env), append(owner, i)
		}
		if len(batch) >= chunk {
			commit()
		}
	}
	at := t0
	for i, raw := range urls {
		u, err := probe.ParseProxyURL(raw)
		if err != nil {
			b.Fatal(err)
		}
		states[i] = events.NewState(u.ID())
		decide(i, events.Add{At: at, URLRedacted: u.Redacted(), Source: source, Origin: pb.ProxyOrigin_PROXY_ORIGIN_CONFIG})
	}
	commit()
	ok := events.CheckResult{StatusCode: 200, Latency: events.Latency{Connect: time.Millisecond, FirstByte: 2 * time.Millisecond, Total: 3 * time.Millisecond}}
	failed := events.CheckResult{Class: pb.FailureClass_FAILURE_CLASS_REFUSED, Message: "connection refused", Latency: events.Latency{Total: time.Millisecond}}
	for round, end := 0, t0.Add(history); at.Before(end); at, round = at.Add(h.Interval), round+1 {
		for i := range urls {
			res := ok
			if fails != nil && fails(i, round) {
				res = failed
			}
			// Spread over the interval, as the actors' jitter does.
			decide(i, events.CheckCompleted{At: at.Add(time.Duration(i) * h.Interval / time.Duration(len(urls))), Result: res})
		}
	}
	commit()
	return at, j.Head()
}

// waitIdle waits until the process uses less than 5 ms of CPU in 200 ms
// (its background work done), for at most timeout (testutil.Within every
// 200 ms), and returns when that quiet span began.
func waitIdle(b *testing.B, timeout time.Duration) time.Time {
	b.Helper()
	var at, quietFrom time.Time
	var prev time.Duration
	idle := testutil.Within(timeout, 200*time.Millisecond, func() bool {
		now, cur := time.Now(), cpuTime()
		quiet := !at.IsZero() && cur-prev < 5*time.Millisecond
		if quiet {
			quietFrom = at
		}
		at, prev = now, cur
		return quiet
	})
	if !idle {
		b.Fatalf("the engine still busy %v after Open", timeout)
	}
	return quietFrom
}
