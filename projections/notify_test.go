package projections_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// runNotifier starts n.Run; stop ends Run. n is closed (2 s drain) when
// the test ends, unless the test closed it.
func runNotifier(t *testing.T, j journal.Journal, opts projections.NotifierOptions) (n *projections.Notifier, stop func()) {
	t.Helper()
	n, err := projections.NewNotifier(j, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := n.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	poll(t, "the notifier to replay", func() bool { return n.Applied() == j.Head() })
	stop = func() { cancel(); wg.Wait() }
	t.Cleanup(func() {
		stop()
		cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer ccancel()
		if err := n.Close(cctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return n, stop
}

// collect drains notifications until want have arrived.
func collect(t *testing.T, c <-chan projections.Notification, want int) []projections.Notification {
	t.Helper()
	var out []projections.Notification
	timeout := time.After(10 * time.Second)
	for len(out) < want {
		select {
		case n := <-c:
			out = append(out, n)
		case <-timeout:
			t.Fatalf("got %d notifications, want %d: %+v", len(out), want, out)
		}
	}
	return out
}

func kinds(ns []projections.Notification) string {
	var s []string
	for _, n := range ns {
		if n.IsPool() {
			s = append(s, n.Type)
		} else {
			s = append(s, n.Type+":"+n.ProxyID+":"+n.From+">"+n.To)
		}
	}
	return strings.Join(s, " ")
}

func poolEnv(degraded bool, pct float64) *pb.Envelope {
	e := &pb.Envelope{AtUnixNano: t0.UnixNano()}
	if degraded {
		e.Event = &pb.Envelope_PoolDegraded{PoolDegraded: &pb.PoolDegraded{HealthyPercentage: pct, ThresholdPercentage: 50, Healthy: 4, Total: 10}}
	} else {
		e.Event = &pb.Envelope_PoolRecovered{PoolRecovered: &pb.PoolRecovered{HealthyPercentage: pct, ThresholdPercentage: 50, Healthy: 6, Total: 10}}
	}
	return e
}

func TestNotifierOncePerEpisode(t *testing.T) {
	j := journal.NewMem()
	t.Cleanup(func() { j.Close() }) // after the notifier's cleanup (LIFO)
	p := newPool(t, j, 2)
	n, stop := runNotifier(t, j, projections.NotifierOptions{})
	defer stop()
	c, cancel := n.Subscribe()
	defer cancel()
	for _, to := range []pb.HealthState{healthy, degraded, unhealthy, recovering, unhealthy, recovering,
		pb.HealthState_HEALTH_STATE_FAILED, unknown, degraded, unhealthy, recovering, healthy, degraded, unhealthy, recovering, healthy} {
		p.set(0, to)
	}
	p.set(1, healthy)
	p.append(poolEnv(true, 40), poolEnv(false, 60))
	got := collect(t, c, 6)
	want := "proxy_down:p00:degraded>unhealthy proxy_recovered:p00:recovering>healthy proxy_down:p00:degraded>unhealthy proxy_recovered:p00:recovering>healthy pool_degraded pool_recovered"
	if kinds(got) != want {
		t.Fatalf("notifications\n got %s\nwant %s", kinds(got), want)
	}
	d := got[0]
	if d.URL != "http://10.0.0.1:1000" || d.Source != "s" || d.Reason != "test" || d.Seq == 0 || d.At.IsZero() {
		t.Errorf("proxy_down %+v", d)
	}
	if pd := got[4]; pd.HealthyPercentage != 40 || pd.Threshold != 50 || pd.Healthy != 4 || pd.Total != 10 {
		t.Errorf("pool_degraded %+v", pd)
	}
	poll(t, "all applied", func() bool { return n.Applied() == j.Head() })
	select {
	case extra := <-c:
		t.Fatalf("extra notification %+v", extra)
	default:
	}
}

func TestNotifierRestartKeepsEpisodes(t *testing.T) {
	j := journal.NewMem()
	t.Cleanup(func() { j.Close() }) // after the notifier's cleanup (LIFO)
	p := newPool(t, j, 1)
	p.set(0, healthy)
	n, stop := runNotifier(t, j, projections.NotifierOptions{})
	c, _ := n.Subscribe()
	p.set(0, unhealthy)
	if got := kinds(collect(t, c, 1)); got != "proxy_down:p00:healthy>unhealthy" {
		t.Fatal(got)
	}
	stop()
	p.set(0, recovering) // while no notifier runs

	n, stop = runNotifier(t, j, projections.NotifierOptions{})
	defer stop()
	c, cancel := n.Subscribe()
	defer cancel()
	p.set(0, unhealthy) // same episode: nothing
	p.set(0, recovering)
	p.set(0, healthy)
	if got := kinds(collect(t, c, 1)); got != "proxy_recovered:p00:recovering>healthy" {
		t.Fatal(got)
	}
}

func TestNotificationJSON(t *testing.T) {
	at := time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)
	proxy := projections.Notification{Type: projections.NotifyProxyDown, At: at, Seq: 42, ProxyID: "00000000deadbeef", URL: "http://10.0.0.7:3128",
		Source: "main", From: "degraded", To: "unhealthy", Reason: "3 consecutive failures"}
	b, err := json.Marshal(proxy)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"proxy_down","at":"2025-03-04T05:06:07.123456789Z","seq":42,"proxy_id":"00000000deadbeef","url":"http://10.0.0.7:3128","source":"main","from":"degraded","to":"unhealthy","reason":"3 consecutive failures"}`
	if string(b) != want {
		t.Errorf("proxy JSON\n got %s\nwant %s", b, want)
	}
	pool := projections.Notification{Type: projections.NotifyPoolDegraded, At: at, Seq: 43, HealthyPercentage: 0, Threshold: 50, Healthy: 0, Total: 10}
	b, _ = json.Marshal(pool)
	want = `{"type":"pool_degraded","at":"2025-03-04T05:06:07.123456789Z","seq":43,"healthy_percentage":0,"threshold":50,"healthy":0,"total":10}`
	if string(b) != want {
		t.Errorf("pool JSON\n got %s\nwant %s", b, want)
	}
	for _, n := range []projections.Notification{proxy, pool} {
		b, _ := json.Marshal(n)
		var back projections.Notification
		if err := json.Unmarshal(b, &back); err != nil || back != n {
			t.Errorf("round trip: %+v, %v", back, err)
		}
	}
}

func TestSubscriberDropsOldest(t *testing.T) {
	j := journal.NewMem()
	t.Cleanup(func() { j.Close() }) // after the notifier's cleanup (LIFO)
	n, stop := runNotifier(t, j, projections.NotifierOptions{SubscriberBuffer: 2})
	defer stop()
	c, cancel := n.Subscribe()
	for i := range 5 {
		if _, err := j.Append(context.Background(), []*pb.Envelope{poolEnv(i%2 == 0, float64(i))}); err != nil {
			t.Fatal(err)
		}
	}
	poll(t, "dispatch", func() bool { return n.Stats().Notified == 5 })
	got := collect(t, c, 2)
	if got[0].HealthyPercentage != 3 || got[1].HealthyPercentage != 4 || n.Stats().SubscriberDrops != 3 {
		t.Fatalf("kept %+v, drops %d", got, n.Stats().SubscriberDrops)
	}
	cancel()
	cancel()
	if _, open := <-c; open {
		t.Fatal("channel open after cancel")
	}
}

func TestCallbacksRecoverPanics(t *testing.T) {
	j := journal.NewMem()
	t.Cleanup(func() { j.Close() }) // after the notifier's cleanup (LIFO)
	var mu sync.Mutex
	var seen []string
	n, stop := runNotifier(t, j, projections.NotifierOptions{Callbacks: []func(projections.Notification){
		func(projections.Notification) { panic("boom") },
		func(n projections.Notification) { mu.Lock(); seen = append(seen, n.Type); mu.Unlock() },
	}})
	defer stop()
	j.Append(context.Background(), []*pb.Envelope{poolEnv(true, 1), poolEnv(false, 70)})
	poll(t, "callbacks", func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == 2 })
	_ = n
}

// hookServer is a loopback webhook endpoint that records what it gets.
type hookServer struct {
	*httptest.Server
	mu      sync.Mutex
	got     []projections.Notification
	times   []time.Time
	headers []http.Header
	calls   int
	handle  func(calls int, w http.ResponseWriter, r *http.Request) bool // false: do not record
}

func newHookServer(t *testing.T, handle func(calls int, w http.ResponseWriter, r *http.Request) bool) *hookServer {
	h := &hookServer{handle: handle}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.calls++
		calls := h.calls
		h.mu.Unlock()
		if h.handle != nil && !h.handle(calls, w, r) {
			return
		}
		var n projections.Notification
		if err := json.Unmarshal(body, &n); err != nil {
			t.Errorf("webhook body %q: %v", body, err)
		}
		h.mu.Lock()
		h.got = append(h.got, n)
		h.times = append(h.times, time.Now())
		h.headers = append(h.headers, r.Header.Clone())
		h.mu.Unlock()
	}))
	return h
}

func (h *hookServer) received() []projections.Notification {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.got)
}

func TestWebhookDelivery(t *testing.T) {
	j := journal.NewMem()
	t.Cleanup(func() { j.Close() }) // after the notifier's cleanup (LIFO)
	srv := newHookServer(t, nil)
	defer srv.Close()
	p := newPool(t, j, 1)
	p.set(0, healthy)
	n, stop := runNotifier(t, j, projections.NotifierOptions{Webhooks: []projections.WebhookOptions{{
		URL: srv.URL + "/hook/s3cret?token=abc", Headers: map[string]string{"Authorization": "Bearer x"}}}})
	defer stop()
	var lat []time.Duration
	for i := range 20 {
		to := unhealthy
		if i%2 == 1 {
			to = healthy
		}
		p.set(0, to)
		committed := time.Now()
		poll(t, "webhook delivery", func() bool { return len(srv.received()) == i+1 })
		srv.mu.Lock()
		lat = append(lat, srv.times[i].Sub(committed))
		srv.mu.Unlock()
	}
	slices.Sort(lat)
	t.Logf("journal commit → webhook received, 20 notifications over loopback: median %v, max %v", lat[len(lat)/2], lat[len(lat)-1])
	got := srv.received()
	if got[0].Type != projections.NotifyProxyDown || got[1].Type != projections.NotifyProxyRecovered || got[0].ProxyID != "p00" {
		t.Errorf("got %s", kinds(got))
	}
	h := srv.headers[0]
	if h.Get("Content-Type") != "application/json" || h.Get("Authorization") != "Bearer x" || h.Get("X-Proxyhealth-Event") != "proxy_down" || h.Get("X-Proxyhealth-Seq") == "" {
		t.Errorf("headers %v", h)
	}
	// The server records a delivery before it answers; the notifier counts
	// it once it has read the answer.
	poll(t, "the notifier to count 20 deliveries", func() bool { return n.Stats().Webhooks[0].Delivered == 20 })
	if s := n.Stats().Webhooks[0]; s.Delivered != 20 || s.Failed != 0 || s.Target != srv.URL {
		t.Errorf("stats %+v", s)
	}
}

func TestWebhookRetriesServerErrors(t *testing.T) {
	j := journal.NewMem()
	t.Cleanup(func() { j.Close() }) // after the notifier's cleanup (LIFO)
	srv := newHookServer(t, func(calls int, w http.ResponseWriter, r *http.Request) bool {
		if calls <= 2 {
			w.WriteHeader(http.StatusInternalServerError)
			return false
		}
		return true
	})
	defer srv.Close()
	n, stop := runNotifier(t, j, projections.NotifierOptions{Webhooks: []projections.WebhookOptions{{URL: srv.URL, BackoffBase: time.Millisecond, BackoffMax: 4 * time.Millisecond}}})
	defer stop()
	j.Append(context.Background(), []*pb.Envelope{poolEnv(true, 10)})
	// The server records the request before the notifier reads the answer:
	// wait for the notifier's count, not only the server's.
	poll(t, "delivery after retries", func() bool { return len(srv.received()) == 1 && n.Stats().Webhooks[0].Delivered == 1 })
	if s := n.Stats().Webhooks[0]; s.Delivered != 1 || s.Retries != 2 || s.Failed != 0 {
		t.Fatalf("stats %+v", s)
	}
	// A 4xx is not retried.
	bad := newHookServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) bool {
		w.WriteHeader(http.StatusBadRequest)
		return false
	})
	defer bad.Close()
	n2, stop2 := runNotifier(t, j, projections.NotifierOptions{Webhooks: []projections.WebhookOptions{{URL: bad.URL, BackoffBase: time.Millisecond}}})
	defer stop2()
	j.Append(context.Background(), []*pb.Envelope{poolEnv(false, 90)})
	poll(t, "failure", func() bool { return n2.Stats().Webhooks[0].Failed == 1 })
	if s := n2.Stats().Webhooks[0]; s.Retries != 0 {
		t.Fatalf("4xx retried: %+v", s)
	}
}

// TestBlackholeWebhookDoesNotDelayOthers: one endpoint never answers; the
// other receives everything while the first is still stuck on its first
// request. Close then cancels the stuck request.
func TestBlackholeWebhookDoesNotDelayOthers(t *testing.T) {
	j := journal.NewMem()
	t.Cleanup(func() { j.Close() }) // after the notifier's cleanup (LIFO)
	release := make(chan struct{})
	hole := newHookServer(t, func(_ int, _ http.ResponseWriter, r *http.Request) bool {
		select {
		case <-r.Context().Done():
		case <-release:
		}
		return false
	})
	defer hole.Close()
	defer close(release)
	good := newHookServer(t, nil)
	defer good.Close()
	n, stop := runNotifier(t, j, projections.NotifierOptions{Webhooks: []projections.WebhookOptions{
		{URL: hole.URL, Timeout: time.Minute},
		{URL: good.URL},
	}})
	start := time.Now()
	for i := range 30 {
		j.Append(context.Background(), []*pb.Envelope{poolEnv(i%2 == 0, float64(i))})
	}
	poll(t, "the healthy webhook", func() bool { return len(good.received()) == 30 && n.Stats().Webhooks[1].Delivered == 30 })
	t.Logf("healthy webhook got 30 notifications in %v while the blackhole held its first request", time.Since(start))
	hole.mu.Lock()
	holeCalls := hole.calls
	hole.mu.Unlock()
	if holeCalls != 1 {
		t.Fatalf("blackhole saw %d requests, want 1 (still pending)", holeCalls)
	}
	s := n.Stats().Webhooks
	if s[1].Delivered != 30 || s[0].Delivered != 0 || s[0].Queued != 29 {
		t.Fatalf("stats %+v", s)
	}
	// Close gives up on the blackhole at its deadline.
	stop()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := n.Close(ctx); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "30 webhook notification") {
		t.Fatalf("Close: %v", err)
	}
	if s := n.Stats().Webhooks[0]; s.Dropped != 30 {
		t.Fatalf("blackhole stats after Close %+v", s)
	}
}

func TestWebhookQueueDropsOldest(t *testing.T) {
	j := journal.NewMem()
	t.Cleanup(func() { j.Close() }) // after the notifier's cleanup (LIFO)
	release := make(chan struct{})
	srv := newHookServer(t, func(calls int, _ http.ResponseWriter, _ *http.Request) bool {
		if calls == 1 {
			<-release
		}
		return true
	})
	defer srv.Close()
	n, stop := runNotifier(t, j, projections.NotifierOptions{Webhooks: []projections.WebhookOptions{{URL: srv.URL, QueueSize: 2}}})
	defer stop()
	j.Append(context.Background(), []*pb.Envelope{poolEnv(true, 1)})
	poll(t, "the first request", func() bool { srv.mu.Lock(); defer srv.mu.Unlock(); return srv.calls == 1 })
	for i := 2; i <= 5; i++ {
		j.Append(context.Background(), []*pb.Envelope{poolEnv(i%2 == 1, float64(i))})
	}
	poll(t, "dispatch", func() bool { return n.Stats().Notified == 5 })
	if s := n.Stats().Webhooks[0]; s.Dropped != 2 || s.Queued != 2 {
		t.Fatalf("stats %+v", s)
	}
	close(release)
	poll(t, "deliveries", func() bool { return len(srv.received()) == 3 })
	var pcts []float64
	for _, n := range srv.received() {
		pcts = append(pcts, n.HealthyPercentage)
	}
	if fmt.Sprint(pcts) != "[1 4 5]" {
		t.Fatalf("delivered %v, want the first (in flight) and the two newest", pcts)
	}
}

// TestWebhookURLSecretsNeverLogged: errors and logs show scheme://host only.
func TestWebhookURLSecretsNeverLogged(t *testing.T) {
	j := journal.NewMem()
	t.Cleanup(func() { j.Close() }) // after the notifier's cleanup (LIFO)
	var buf bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, nil))
	// A closed port: every attempt fails with "connection refused".
	dead := httptest.NewServer(http.NotFoundHandler())
	url := dead.URL + "/services/T000/B000/s3cretT0ken?key=hunter2"
	dead.Close()
	n, stop := runNotifier(t, j, projections.NotifierOptions{Logger: log, Webhooks: []projections.WebhookOptions{{URL: url, MaxAttempts: 2, BackoffBase: time.Millisecond, QueueSize: 1}}})
	defer stop()
	for i := range 3 {
		j.Append(context.Background(), []*pb.Envelope{poolEnv(i%2 == 0, 1)})
	}
	poll(t, "failures", func() bool { s := n.Stats().Webhooks[0]; return s.Failed+s.Dropped == 3 })
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	if strings.Contains(out, "s3cret") || strings.Contains(out, "hunter2") || !strings.Contains(out, strings.TrimPrefix(dead.URL, "http://")) {
		t.Fatalf("log:\n%s", out)
	}
	for _, bad := range []string{"ftp://user:pw@host/s3cret", "://s3cret", "http:///s3cret"} {
		_, err := projections.NewNotifier(j, projections.NotifierOptions{Webhooks: []projections.WebhookOptions{{URL: bad}}})
		if !errors.Is(err, projections.ErrBadOption) || strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "pw") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if _, err := projections.NewNotifier(j, projections.NotifierOptions{Webhooks: []projections.WebhookOptions{{URL: "https://h", Types: []string{"nope"}}}}); !errors.Is(err, projections.ErrBadOption) {
		t.Errorf("unknown type: %v", err)
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestWebhookSignature: with a secret, every body carries its HMAC-SHA256
// (the receiver recomputes it); without one, no signature header.
func TestWebhookSignature(t *testing.T) {
	j := journal.NewMem()
	t.Cleanup(func() { j.Close() })
	var mu sync.Mutex
	var sigs, bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		sigs, bodies = append(sigs, r.Header.Get(projections.SignatureHeader)), append(bodies, string(body))
		mu.Unlock()
	}))
	defer srv.Close()
	p := newPool(t, j, 1)
	p.set(0, healthy)
	_, stop := runNotifier(t, j, projections.NotifierOptions{Webhooks: []projections.WebhookOptions{
		{URL: srv.URL + "/signed", Secret: "k3y"}, {URL: srv.URL + "/plain"}}})
	defer stop()
	p.set(0, unhealthy)
	poll(t, "both deliveries", func() bool { mu.Lock(); defer mu.Unlock(); return len(sigs) == 2 })
	mu.Lock()
	defer mu.Unlock()
	signed := 0
	for i, sig := range sigs {
		if sig == "" {
			continue
		}
		signed++
		m := hmac.New(sha256.New, []byte("k3y"))
		m.Write([]byte(bodies[i]))
		if want := "sha256=" + hex.EncodeToString(m.Sum(nil)); sig != want {
			t.Errorf("signature %q, want %q", sig, want)
		}
	}
	if signed != 1 {
		t.Errorf("%d signed deliveries, want 1 (only the webhook with a secret)", signed)
	}
	if err := projections.ValidateWebhook(0, projections.WebhookOptions{URL: "ftp://x"}); !errors.Is(err, projections.ErrBadOption) {
		t.Errorf("ValidateWebhook(ftp) = %v", err)
	}
}
