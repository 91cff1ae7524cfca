package transport

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/fwdproxy"
	"github.com/proxyhealth/proxyhealth/rotation"
)

// fakeRotator hands out its members round-robin, honouring Exclude, and
// records every pick request and every outcome.
type fakeRotator struct {
	mu       sync.Mutex
	members  []rotation.Pick
	next     int
	picks    []rotation.Request
	outcomes []rotation.Outcome
}

func newRotator(t testing.TB, urls ...string) *fakeRotator {
	t.Helper()
	r := &fakeRotator{}
	for i, s := range urls {
		u := mustURL(t, s)
		p := rotation.Pick{}
		p.ID = "p" + strconv.Itoa(i)
		p.URL = u
		p.Scheme = u.Scheme
		r.members = append(r.members, p)
	}
	return r
}

func (r *fakeRotator) Pick(req rotation.Request) (rotation.Pick, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	req.Exclude = slices.Clone(req.Exclude)
	r.picks = append(r.picks, req)
	for range r.members {
		m := r.members[r.next%len(r.members)]
		r.next++
		if !slices.Contains(req.Exclude, m.ID) {
			return m, nil
		}
	}
	return rotation.Pick{}, rotation.ErrNoProxy
}

func (r *fakeRotator) ReportOutcome(o rotation.Outcome) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.outcomes = append(r.outcomes, o)
	return nil
}

func (r *fakeRotator) Outcomes() []rotation.Outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.outcomes)
}

func (r *fakeRotator) Picks() []rotation.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.picks)
}

// origin is an httptest server that records which proxy each request came
// through. Paths: /status/N answers N; anything else 200 "hello".
type origin struct {
	srv      *httptest.Server
	newConns atomic.Int64
	mu       sync.Mutex
	seen     []seenRequest
}

type seenRequest struct {
	via        string // fwdproxy.ViaHeader, set by a named fwdproxy.Proxy in absolute form
	remoteAddr string
	proxyAuth  string
}

func startOrigin(t testing.TB, useTLS bool) *origin {
	t.Helper()
	o := &origin{}
	o.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.seen = append(o.seen, seenRequest{via: r.Header.Get(fwdproxy.ViaHeader), remoteAddr: r.RemoteAddr, proxyAuth: r.Header.Get("Proxy-Authorization")})
		o.mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		if code, err := strconv.Atoi(r.URL.Path[min(len(r.URL.Path), len("/status/")):]); err == nil && len(r.URL.Path) > len("/status/") {
			w.WriteHeader(code)
			_, _ = io.WriteString(w, "status "+strconv.Itoa(code))
			return
		}
		_, _ = io.WriteString(w, "hello")
	}))
	o.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			o.newConns.Add(1)
		}
	}
	if useTLS {
		o.srv.StartTLS()
	} else {
		o.srv.Start()
	}
	t.Cleanup(o.srv.Close)
	return o
}

func (o *origin) Seen() []seenRequest {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.seen)
}

// newTransport starts a Transport over r and closes it at the end of the
// test.
func newTransport(t testing.TB, r Rotator, o Options) *Transport {
	t.Helper()
	tr, err := New(r, o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// get sends a GET through tr and returns the status and body.
func get(t testing.TB, tr http.RoundTripper, target string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", target, err)
	}
	return resp.StatusCode, string(b)
}

// hangupProxy accepts connections, reads a request head and hangs up
// without answering: the request was sent, no answer came.
type hangupProxy struct {
	ln    net.Listener
	heads atomic.Int64
	wg    sync.WaitGroup
}

func startHangupProxy(t testing.TB) *hangupProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hangupProxy{ln: ln}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				var buf []byte
				b := make([]byte, 512)
				for !strings.Contains(string(buf), "\r\n\r\n") {
					n, err := c.Read(b)
					if err != nil {
						return
					}
					buf = append(buf, b[:n]...)
				}
				h.heads.Add(1)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); h.wg.Wait() })
	return h
}

func (h *hangupProxy) URL() string { return "http://" + h.ln.Addr().String() }
