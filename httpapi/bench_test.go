package httpapi_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/httpapi"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// benchServer is a server over n proxies in 4 sources, each with one
// check and one state change.
func benchServer(b *testing.B, n int) (*httpapi.Server, *journal.Mem) {
	b.Helper()
	return benchServerOf(b, n, func(f *fakeEngine) httpapi.Engine { return f })
}

// benchServerOf is benchServer serving the engine that eng makes of the
// fake one.
func benchServerOf(b *testing.B, n int, eng func(*fakeEngine) httpapi.Engine) (*httpapi.Server, *journal.Mem) {
	b.Helper()
	j := journal.NewMem()
	live := projections.NewLive(projections.LiveOptions{})
	var envs []*pb.Envelope
	at := t0
	for i := range n {
		id, src := fmt.Sprintf("%016x", i), fmt.Sprintf("src%d", i%4)
		for _, e := range []*pb.Envelope{addedEnv(id, src, fmt.Sprintf("http://10.%d.%d.%d:3128", i>>16&255, i>>8&255, i&255)),
			okEnv(id, src, time.Duration(i%50+1)*time.Millisecond), changeEnv(id, src, unknown, healthy)} {
			at = at.Add(time.Millisecond)
			e.AtUnixNano = at.UnixNano()
			envs = append(envs, e)
		}
	}
	if _, err := j.Append(context.Background(), envs); err != nil {
		b.Fatal(err)
	}
	live.Apply(envs...)
	srv, err := httpapi.New(eng(&fakeEngine{j: j}), httpapi.Options{Status: live})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close(); _ = j.Close() })
	return srv, j
}

func benchGET(b *testing.B, h http.Handler, path string) {
	req := httptest.NewRequest("GET", path, nil)
	req.Host = "localhost" // httptest's example.com is not a name of the server
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("%s: %d %s", path, w.Code, w.Body)
		}
	}
}

// BenchmarkPool measures GET /v1/pool over 10,000 proxies.
func BenchmarkPool(b *testing.B) {
	srv, _ := benchServer(b, 10000)
	benchGET(b, srv, "/v1/pool")
}

// BenchmarkPoolHealth is BenchmarkPool with the engine's health in the
// answer, as the daemon's GET /v1/pool has it.
func BenchmarkPoolHealth(b *testing.B) {
	at := t0.Add(time.Hour)
	he := &healthEngine{h: proxyhealth.Health{OK: true, Journal: proxyhealth.JournalHealth{LastCommitAt: at, Head: 30_000},
		Projections: []proxyhealth.ProjectionHealth{
			{Name: "history", State: proxyhealth.ProjectionRunning, Seq: 30_000},
			{Name: "live", State: proxyhealth.ProjectionRunning, Seq: 29_990, Lag: 10},
			{Name: "sqlite", State: proxyhealth.ProjectionRunning, Since: at, Seq: 29_000, Lag: 1000},
		}}}
	srv, _ := benchServerOf(b, 10000, func(f *fakeEngine) httpapi.Engine { he.fakeEngine = f; return he })
	benchGET(b, srv, "/v1/pool")
}

// BenchmarkListProxies measures a 100-proxy page of GET /v1/proxies over
// 10,000 proxies, filtered by source.
func BenchmarkListProxies(b *testing.B) {
	srv, _ := benchServer(b, 10000)
	benchGET(b, srv, "/v1/proxies?source=src2&limit=100&offset=1000")
}

// BenchmarkEventsReplay measures an SSE client resuming from the start of
// a 30,000-event journal, over loopback HTTP, until it has read every
// event.
func BenchmarkEventsReplay(b *testing.B) {
	srv, j := benchServer(b, 10000)
	hs := httptest.NewServer(srv)
	defer hs.Close()
	head := j.Head()
	b.ReportAllocs()
	for b.Loop() {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", hs.URL+"/v1/events", nil)
		req.Header.Set("Last-Event-ID", "0")
		resp, err := hs.Client().Do(req)
		if err != nil {
			b.Fatal(err)
		}
		r := bufio.NewReaderSize(resp.Body, 64<<10)
		want := fmt.Sprintf("id: %d\n", head)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				b.Fatal(err)
			}
			if strings.HasPrefix(line, want) {
				break
			}
		}
		cancel()
		resp.Body.Close()
	}
	b.ReportMetric(float64(head)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkPick measures GET /v1/pick (one proxy by the default
// strategy, round-robin; ten; sticky) on a real engine checking a fake farm
// of 200 proxies every 30 s, through the handler (no network).
func BenchmarkPick(b *testing.B) {
	r := newRotationEngineEvery(b, 200, 30*time.Second)
	srv, err := httpapi.New(r.eng, httpapi.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Close)
	for _, q := range []string{"", "?n=10", "?strategy=sticky&key=session-1"} {
		b.Run("q="+q, func(b *testing.B) { benchGET(b, srv, "/v1/pick"+q) })
	}
}
