package endpoint

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/rotation"
)

// fakeRotator hands out a fixed list of upstreams: round-robin, or by a
// hash of the key for sticky, skipping Exclude; it records every pick
// request and outcome.
type fakeRotator struct {
	mu       sync.Mutex
	ups      []rotation.Pick
	next     int
	picks    []rotation.Request
	outcomes []rotation.Outcome
	noProxy  bool
}

func newRotator(t testing.TB, urls ...string) *fakeRotator {
	t.Helper()
	r := &fakeRotator{}
	for i, s := range urls {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		var p rotation.Pick
		p.ID, p.URL, p.Scheme = fmt.Sprintf("p%d", i), u, u.Scheme
		r.ups = append(r.ups, p)
	}
	return r
}

func (r *fakeRotator) Pick(req rotation.Request) (rotation.Pick, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	req.Exclude = slices.Clone(req.Exclude)
	r.picks = append(r.picks, req)
	if r.noProxy || len(r.ups) == 0 {
		return rotation.Pick{}, rotation.ErrNoProxy
	}
	start := 0
	if req.Strategy == rotation.Sticky {
		h := fnv.New32a()
		h.Write([]byte(req.Key))
		start = int(h.Sum32() % uint32(len(r.ups)))
	} else {
		start = r.next
		r.next = (r.next + 1) % len(r.ups)
	}
	for i := range r.ups {
		p := r.ups[(start+i)%len(r.ups)]
		if !slices.Contains(req.Exclude, p.ID) {
			return p, nil
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

// startServer serves r on a fresh 127.0.0.1 port and closes it when the
// test ends, checking that Serve returned nil.
func startServer(t testing.TB, r Rotator, cfg Config) (*Server, string) {
	t.Helper()
	s, err := New(r, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve returned %v", err)
		}
	})
	return s, ln.Addr().String()
}

// origin is an httptest server recording the requests it gets.
type origin struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []*http.Request
}

func newOrigin(t testing.TB, tlsOn bool) *origin {
	o := &origin{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.reqs = append(o.reqs, r.Clone(context.Background()))
		o.mu.Unlock()
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Origin", "yes")
		switch r.URL.Path {
		case "/404":
			w.WriteHeader(http.StatusNotFound)
		}
		fmt.Fprintf(w, "origin says hi to %s %s (body %q)", r.Method, r.URL.Path, body)
	})
	if tlsOn {
		o.Server = httptest.NewTLSServer(h)
	} else {
		o.Server = httptest.NewServer(h)
	}
	t.Cleanup(o.Close)
	return o
}

func (o *origin) Requests() []*http.Request {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.reqs)
}

// proxyClient is an http.Client sending everything through proxyURL.
func proxyClient(t testing.TB, proxyURL string, roots *tls.Config) *http.Client {
	u, err := url.Parse(proxyURL)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{Proxy: http.ProxyURL(u), TLSClientConfig: roots}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

func get(t testing.TB, c *http.Client, target string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", target, err)
	}
	return resp, string(b)
}

// dumpResponse renders everything a client received (status, headers,
// body), for credential checks.
func dumpResponse(resp *http.Response, body string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", resp.Status)
	resp.Header.Write(&b)
	b.WriteString(body)
	return b.String()
}

// socks5Dial is a minimal SOCKS5 client: it offers user/pass when user is
// set (else no auth), CONNECTs to host:port by name and returns the
// connection and the reply code (or the auth failure as an error).
func socks5Dial(addr, user, pass, target string) (net.Conn, byte, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, 0, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fail := func(err error) (net.Conn, byte, error) { c.Close(); return nil, 0, err }
	method := byte(0)
	if user != "" {
		method = 2
	}
	if _, err := c.Write([]byte{5, 1, method}); err != nil {
		return fail(err)
	}
	br := bufio.NewReader(c)
	var rep [2]byte
	if _, err := io.ReadFull(br, rep[:]); err != nil {
		return fail(err)
	}
	if rep[1] != method {
		return fail(fmt.Errorf("socks5: server chose method %#x", rep[1]))
	}
	if method == 2 {
		msg := append([]byte{1, byte(len(user))}, user...)
		msg = append(append(msg, byte(len(pass))), pass...)
		if _, err := c.Write(msg); err != nil {
			return fail(err)
		}
		if _, err := io.ReadFull(br, rep[:]); err != nil {
			return fail(err)
		}
		if rep[1] != 0 {
			return fail(errSocksAuth)
		}
	}
	host, port, _ := net.SplitHostPort(target)
	var pn int
	fmt.Sscan(port, &pn)
	msg := append([]byte{5, 1, 0, 3, byte(len(host))}, host...)
	msg = append(msg, byte(pn>>8), byte(pn))
	if _, err := c.Write(msg); err != nil {
		return fail(err)
	}
	var r [10]byte
	if _, err := io.ReadFull(br, r[:]); err != nil {
		return fail(err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, r[1], nil
}

var errSocksAuth = errors.New("socks5: authentication failed")
