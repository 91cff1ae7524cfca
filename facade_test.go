package proxyhealth_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// TestReadJournalFilters: the filters of GET /v1/journal and `journal
// replay`, and paging by seq.
func TestReadJournalFilters(t *testing.T) {
	farm := startFarm(t, 3)
	e := open(t, proxyhealth.Config{Sources: []proxyhealth.SourceConfig{
		{Name: "a", Health: fastHealth(), Probe: farmProbe(), Proxies: []string{farm.URL(0), farm.URL(1)}},
		{Name: "b", Health: fastHealth(), Probe: farmProbe(), Proxies: []string{farm.URL(2)}},
	}})
	poll(t, "some checks", func() bool { return e.Journal().Head() > 40 })
	ctx := context.Background()
	collect := func(f proxyhealth.JournalFilter) []*pb.Envelope {
		t.Helper()
		var out []*pb.Envelope
		for env, err := range e.ReadJournal(ctx, f) {
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, env)
		}
		return out
	}
	id, err := proxyhealth.ResolveProxyID(farm.URL(1))
	if err != nil {
		t.Fatal(err)
	}
	for _, env := range collect(proxyhealth.JournalFilter{Proxy: farm.URL(1)}) {
		if env.GetProxyId() != id {
			t.Fatalf("proxy filter let through %s", env.GetProxyId())
		}
	}
	for _, env := range collect(proxyhealth.JournalFilter{Source: "b", Types: []string{"proxy_added"}}) {
		if env.GetSource() != "b" || env.GetProxyAdded() == nil {
			t.Fatalf("source+type filter let through %v", env)
		}
	}
	// Pages of 7 by seq cover everything exactly once, in order.
	var last uint64
	seen := 0
	for {
		page := collect(proxyhealth.JournalFilter{After: last, Limit: 7})
		if len(page) == 0 {
			break
		}
		if len(page) > 7 {
			t.Fatalf("page of %d", len(page))
		}
		for _, env := range page {
			if env.GetSeq() != last+1 {
				t.Fatalf("seq %d after %d", env.GetSeq(), last)
			}
			last = env.GetSeq()
			seen++
		}
		if last >= 40 {
			break
		}
	}
	if seen < 40 {
		t.Fatalf("paged through %d events", seen)
	}
	if err := (proxyhealth.JournalFilter{Types: []string{"nope"}}).Validate(); !errors.Is(err, proxyhealth.ErrBadConfig) {
		t.Fatalf("bad type: %v", err)
	}
}

// TestPauseOneProxy: per-proxy pause and resume, journaled.
func TestPauseOneProxy(t *testing.T) {
	farm := startFarm(t, 2)
	e := open(t, proxyhealth.Config{Sources: []proxyhealth.SourceConfig{{Name: "a", Health: fastHealth(), Probe: farmProbe(), Proxies: []string{farm.URL(0), farm.URL(1)}}}})
	ctx := context.Background()
	id0, _ := proxyhealth.ResolveProxyID(farm.URL(0))
	id1, _ := proxyhealth.ResolveProxyID(farm.URL(1))
	if err := e.PauseProxy(ctx, id0); err != nil {
		t.Fatal(err)
	}
	s0, _ := e.Proxy(ctx, id0)
	s1, _ := e.Proxy(ctx, id1)
	if !s0.State.Paused || s1.State.Paused {
		t.Fatalf("paused: %v %v", s0.State.Paused, s1.State.Paused)
	}
	if err := e.ResumeProxy(ctx, id0); err != nil {
		t.Fatal(err)
	}
	if s0, _ = e.Proxy(ctx, id0); s0.State.Paused {
		t.Fatal("still paused after ResumeProxy")
	}
	if err := e.PauseProxy(ctx, "0000000000000000"); !errors.Is(err, proxyhealth.ErrUnknownProxy) {
		t.Fatalf("unknown proxy: %v", err)
	}
	n := 0
	for env, err := range e.ReadJournal(ctx, proxyhealth.JournalFilter{Proxy: id0, Types: []string{"proxy_paused", "proxy_resumed"}}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		_ = env
	}
	if n != 2 {
		t.Fatalf("%d pause/resume events journaled, want 2", n)
	}
}

// TestDefaultSourceExistsFromFirstUse: AddProxy without a source uses the
// documented default source, created on first use (it answered "unknown
// source").
func TestDefaultSourceExistsFromFirstUse(t *testing.T) {
	farm := startFarm(t, 1)
	e := open(t, proxyhealth.Config{Sources: []proxyhealth.SourceConfig{{Name: "a", Health: fastHealth(), Probe: farmProbe()}}})
	id, err := e.AddProxy(context.Background(), "", farm.URL(0))
	if err != nil {
		t.Fatal(err)
	}
	st, err := e.Proxy(context.Background(), id)
	if err != nil || st.Source != proxyhealth.DefaultSource {
		t.Fatalf("proxy %+v, %v", st, err)
	}
}

// TestNextCheckAtIsTheActorsDueTime: the live status shows the due time the
// proxy's actor armed (it showed a recomputation with a fixed jitter
// sample, which was never the real schedule).
func TestNextCheckAtIsTheActorsDueTime(t *testing.T) {
	farm := startFarm(t, 3)
	h := fastHealth()
	h.Interval = time.Hour // one check, then a long, jittered wait
	e := open(t, proxyhealth.Config{Sources: []proxyhealth.SourceConfig{{Name: "a", Health: h, Probe: farmProbe(), Proxies: []string{farm.URL(0), farm.URL(1), farm.URL(2)}}}})
	ctx := context.Background()
	for _, id := range e.ProxyIDs() {
		// Until the proxy is healthy its checks follow each other closely
		// (an unknown proxy is re-probed at SuspectInterval): the actor may
		// run one between the two reads below. Healthy, it waits an hour.
		poll(t, "the proxy healthy and its long wait scheduled", func() bool {
			v, _ := e.Status().Proxy(id)
			return v.State == "healthy" && v.NextCheckAt.After(time.Now().Add(time.Minute))
		})
		st, err := e.Proxy(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		v, _ := e.Status().Proxy(id)
		if !v.NextCheckAt.Equal(st.NextCheckAt) {
			t.Errorf("proxy %s: live status says next check at %v, its actor %v", id, v.NextCheckAt, st.NextCheckAt)
		}
	}
	// Paused: nothing scheduled.
	if err := e.Pause(ctx, ""); err != nil {
		t.Fatal(err)
	}
	for _, id := range e.ProxyIDs() {
		poll(t, "a paused proxy to show no next check", func() bool { v, _ := e.Status().Proxy(id); return v.NextCheckAt.IsZero() })
	}
}

// TestTailReplaysThenFollows: Tail gives the journal from a seq, then what
// commits after, exactly once and in order.
func TestTailReplaysThenFollows(t *testing.T) {
	farm := startFarm(t, 2)
	e := open(t, proxyhealth.Config{Sources: []proxyhealth.SourceConfig{{Name: "a", Health: fastHealth(), Probe: farmProbe(), Proxies: []string{farm.URL(0), farm.URL(1)}}}})
	poll(t, "some events", func() bool { return e.JournalHead() > 5 })
	tail := e.Tail(3)
	defer tail.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	want, target := uint64(3), e.JournalHead()+3 // and a few that commit later
	for want <= target {
		env, err := tail.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if env.GetSeq() != want {
			t.Fatalf("seq %d, want %d", env.GetSeq(), want)
		}
		want++
	}
	if _, err := proxyhealth.ParseProxy("http://u:secret@[::1"); err == nil || !errors.Is(err, proxyhealth.ErrBadConfig) || strings.Contains(err.Error(), "secret") {
		t.Fatalf("ParseProxy of a bad URL: %v", err)
	}
	info, err := proxyhealth.ParseProxy("socks5://u:secret@127.0.0.1:1080")
	if err != nil || !info.HasCredentials || strings.Contains(info.Redacted, "secret") || info.ID == "" {
		t.Fatalf("ParseProxy: %+v %v", info, err)
	}
}

// TestCheckProxyOnce: a one-off check through the facade.
func TestCheckProxyOnce(t *testing.T) {
	farm := startFarm(t, 1)
	r, err := proxyhealth.CheckProxy(context.Background(), farm.URL(0), farmProbe())
	if err != nil || !r.OK || r.Proxy.ID == "" || r.Total <= 0 || r.Config.Timeout != farmProbe().Timeout {
		t.Fatalf("check: %+v %v", r, err)
	}
	if _, err := proxyhealth.CheckProxy(context.Background(), "gopher://u:secret@127.0.0.1:1", farmProbe()); err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("bad URL: %v", err)
	}
}

// TestCommandsReadYourWrites: when a command returns, the live status
// shows its effect (the demo's API test listed the proxy it had just added
// and found nothing, now and then).
func TestCommandsReadYourWrites(t *testing.T) {
	e := open(t, proxyhealth.Config{Sources: []proxyhealth.SourceConfig{{Name: "a", Health: fastHealth(), Probe: farmProbe()}}})
	ctx := context.Background()
	for i := range 50 {
		id, err := e.AddProxy(ctx, "a", fmt.Sprintf("http://127.0.0.%d:9", i+2))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := e.Status().Proxy(id); !ok {
			t.Fatalf("proxy %d: AddProxy returned, but the status does not show it", i)
		}
		if err := e.PauseProxy(ctx, id); err != nil {
			t.Fatal(err)
		}
		if v, _ := e.Status().Proxy(id); !v.Paused {
			t.Fatalf("proxy %d: PauseProxy returned, but the status does not show it paused", i)
		}
		if err := e.RemoveProxy(ctx, id); err != nil {
			t.Fatal(err)
		}
		if _, ok := e.Status().Proxy(id); ok {
			t.Fatalf("proxy %d: RemoveProxy returned, but the status still shows it", i)
		}
	}
}
