package sources

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Secrets a test puts in the URL and headers; no error may show them.
const (
	apiKey    = "hdr-s3cret-value"
	querySecr = "q-s3cret-token"
	userSecr  = "pw-s3cret"
)

// provider is a fake proxy list provider.
type provider struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []http.Header // request headers, in order
}

func (p *provider) headers() []http.Header {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]http.Header(nil), p.seen...)
}

// newProvider starts a fake provider on loopback (TLS when tls is true)
// serving mux; it is closed when the test ends.
func newProvider(t *testing.T, useTLS bool, mux *http.ServeMux) *provider {
	t.Helper()
	p := &provider{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.seen = append(p.seen, r.Header.Clone())
		p.mu.Unlock()
		mux.ServeHTTP(w, r)
	})
	p.srv = httptest.NewUnstartedServer(h)
	p.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the TLS tests' handshake errors
	if useTLS {
		p.srv.StartTLS()
	} else {
		p.srv.Start()
	}
	t.Cleanup(p.srv.Close)
	return p
}

// trusting returns a TLS config that trusts the providers' test
// certificates.
func trusting(ps ...*provider) *tls.Config {
	pool := x509.NewCertPool()
	for _, p := range ps {
		if c := p.srv.Certificate(); c != nil {
			pool.AddCert(c)
		}
	}
	return &tls.Config{RootCAs: pool}
}

// secretURL is the provider's URL for path with credentials and a token
// in the query.
func (p *provider) secretURL(path string) string {
	return strings.Replace(p.srv.URL, "://", "://user:"+userSecr+"@", 1) + path + "?token=" + querySecr
}

func checkNoSecrets(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range []string{apiKey, querySecr, userSecr, "token=", "user:"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q shows %q", err, s)
		}
	}
}

// writeRepeated writes chunk until n bytes are written or the client
// goes away.
func writeRepeated(w io.Writer, chunk []byte, n int) {
	for written := 0; written < n; written += len(chunk) {
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
}

func TestFetchPlainJSONAndHeaders(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/list.txt", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "http://10.0.0.1:80 #tags=a weight=2\nsocks5://u:p@10.0.0.2:1080\n")
	})
	mux.HandleFunc("/list.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `["http://10.0.0.1:80", {"url": "socks5://10.0.0.2:1080", "tags": ["b"]}]`)
	})
	for _, useTLS := range []bool{false, true} {
		p := newProvider(t, useTLS, mux)
		f := &Fetcher{TLSConfig: trusting(p)}
		res, err := f.Fetch(context.Background(), Request{URL: p.srv.URL + "/list.txt", Headers: map[string]string{"X-Api-Key": apiKey}})
		if err != nil {
			t.Fatalf("tls=%v: %v", useTLS, err)
		}
		checkEntries(t, res.List.Entries, []wantEntry{{"http://10.0.0.1:80", []string{"a"}, 2, 1}, {"socks5://u:p@10.0.0.2:1080", nil, 0, 2}})
		res, err = f.Fetch(context.Background(), Request{URL: p.srv.URL + "/list.json"})
		if err != nil {
			t.Fatalf("tls=%v: %v", useTLS, err)
		}
		checkEntries(t, res.List.Entries, []wantEntry{{"http://10.0.0.1:80", nil, 0, 1}, {"socks5://10.0.0.2:1080", []string{"b"}, 0, 1}})
		h := p.headers()
		if got := h[0].Get("X-Api-Key"); got != apiKey {
			t.Errorf("tls=%v: the provider got X-Api-Key %q, want the configured value", useTLS, got)
		}
		if h[0].Get("Accept-Encoding") != "gzip" || h[0].Get("User-Agent") != userAgent || h[1].Get("X-Api-Key") != "" {
			t.Errorf("tls=%v: request headers %v, %v", useTLS, h[0], h[1])
		}
	}
}

// TestFetchValidators: ETag and If-Modified-Since give NotModified on 304,
// and the validators carry over.
func TestFetchValidators(t *testing.T) {
	const lm = "Wed, 21 Oct 2026 07:28:00 GMT"
	mux := http.NewServeMux()
	mux.HandleFunc("/etag", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", `"v1"`)
		io.WriteString(w, "10.0.0.1:80\n")
	})
	mux.HandleFunc("/lm", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-Modified-Since") == lm {
			w.Header().Set("Last-Modified", lm)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Last-Modified", lm)
		io.WriteString(w, "10.0.0.1:80\n")
	})
	mux.HandleFunc("/always304", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNotModified) })
	p := newProvider(t, false, mux)
	var f Fetcher
	ctx := context.Background()

	first, err := f.Fetch(ctx, Request{URL: p.srv.URL + "/etag"})
	if err != nil || first.NotModified || first.ETag != `"v1"` || len(first.List.Entries) != 1 {
		t.Fatalf("first fetch: %+v, %v", first, err)
	}
	again, err := f.Fetch(ctx, Request{URL: p.srv.URL + "/etag", ETag: first.ETag, LastModified: first.LastModified})
	if err != nil || !again.NotModified || again.ETag != `"v1"` || len(again.List.Entries) != 0 {
		t.Fatalf("conditional fetch: %+v, %v; want NotModified keeping the ETag", again, err)
	}
	first, err = f.Fetch(ctx, Request{URL: p.srv.URL + "/lm"})
	if err != nil || first.LastModified != lm {
		t.Fatalf("first fetch: %+v, %v", first, err)
	}
	again, err = f.Fetch(ctx, Request{URL: p.srv.URL + "/lm", LastModified: first.LastModified})
	if err != nil || !again.NotModified || again.LastModified != lm {
		t.Fatalf("If-Modified-Since: %+v, %v; want NotModified", again, err)
	}
	// A 304 to a request without validators is not a list.
	if _, err := f.Fetch(ctx, Request{URL: p.srv.URL + "/always304"}); !errors.Is(err, ErrFetch) || !strings.Contains(err.Error(), "304") {
		t.Fatalf("unconditional 304: %v, want an error naming the status", err)
	}
}

func gzipped(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	io.WriteString(zw, s)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestFetchGzip(t *testing.T) {
	body := gzipped(t, "10.0.0.1:80\n10.0.0.2:80\n")
	mux := http.NewServeMux()
	mux.HandleFunc("/encoded", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(body)
	})
	mux.HandleFunc("/list.txt.gz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/gzip")
		w.Write(body)
	})
	p := newProvider(t, false, mux)
	for _, path := range []string{"/encoded", "/list.txt.gz"} {
		res, err := (&Fetcher{}).Fetch(context.Background(), Request{URL: p.srv.URL + path})
		if err != nil || len(res.List.Entries) != 2 {
			t.Errorf("%s: %v, %v; want 2 entries", path, res.List, err)
		}
	}
}

// TestFetchRefuses: each bad answer of a provider gives a clear error
// wrapping the right sentinels, and no error shows a secret.
func TestFetchRefuses(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, "<html>login</html>")
	})
	mux.HandleFunc("/html-as-text", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "\n<!doctype html><p>your key "+apiKey+" is invalid</p>")
	})
	mux.HandleFunc("/long-line", func(w http.ResponseWriter, r *http.Request) {
		writeRepeated(w, bytes.Repeat([]byte{'a'}, 32<<10), 10<<20)
	})
	mux.HandleFunc("/garbage", func(w http.ResponseWriter, r *http.Request) {
		rng := rand.New(rand.NewPCG(1, 2))
		buf := make([]byte, 1<<20)
		for i := range buf {
			buf[i] = byte(rng.Uint32())
		}
		w.Write(buf)
	})
	mux.HandleFunc("/million", func(w http.ResponseWriter, r *http.Request) { writeLines(w, 1_000_000) })
	mux.HandleFunc("/dups", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "10.0.0.1:80\n10.0.0.2:80\nhttp://10.0.0.1\n")
	})
	mux.HandleFunc("/loop-a", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/loop-b", http.StatusFound) })
	mux.HandleFunc("/loop-b", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/loop-a", http.StatusFound) })
	mux.HandleFunc("/chain/", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, r.URL.Path+"x", http.StatusFound)
	})
	mux.HandleFunc("/missing", http.NotFound)
	mux.HandleFunc("/denied", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "bad key", http.StatusUnauthorized) })
	mux.HandleFunc("/empty", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("/declared-big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "2048")
		writeRepeated(w, []byte("# padding line\n"), 2048)
	})
	mux.HandleFunc("/chunked-big", func(w http.ResponseWriter, r *http.Request) {
		for range 200 {
			if _, err := io.WriteString(w, "# padding line\n"); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	})
	bomb := gzipped(t, strings.Repeat("# a comment line, repeated\n", 400_000)) // 10.8 MB inflated
	mux.HandleFunc("/bomb", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(bomb)
	})
	mux.HandleFunc("/bad-gzip", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		io.WriteString(w, "this is not gzip at all")
	})
	mux.HandleFunc("/brotli", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "br")
		io.WriteString(w, "xx")
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	mux.HandleFunc("/slow-body", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "10.0.0.1:80\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	mux.HandleFunc("/cut", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		io.WriteString(w, "10.0.0.1:80\n10.0.0.2:80\n10.0.")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the server drops the connection
	})
	plain := newProvider(t, false, mux)
	secure := newProvider(t, true, mux)
	mux.HandleFunc("/to-http", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.srv.URL+"/dups", http.StatusFound)
	})
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedURL := "http://" + closed.Addr().String() + "/list"
	closed.Close()

	small := Limits{MaxBytes: 1024}
	tests := []struct {
		name   string
		url    string
		f      Fetcher
		kinds  []error
		reason string
	}{
		{"HTML content type", plain.secretURL("/html"), Fetcher{}, []error{ErrParse, ErrNotList}, "answered HTML (Content-Type text/html)"},
		{"HTML body", plain.secretURL("/html-as-text"), Fetcher{}, []error{ErrParse, ErrNotList}, ":2: this looks like HTML"},
		{"10 MB line", plain.secretURL("/long-line"), Fetcher{}, []error{ErrParse, ErrTooLarge}, ":1: line longer than 65536 bytes"},
		{"binary garbage", plain.secretURL("/garbage"), Fetcher{}, []error{ErrParse, ErrNotList}, ""},
		{"1,000,000 lines", plain.secretURL("/million"), Fetcher{}, []error{ErrParse, ErrTooLarge}, ":100001: more than 100000 proxies"},
		{"duplicates", plain.secretURL("/dups"), Fetcher{}, []error{ErrParse, ErrDuplicate}, ":3: http://10.0.0.1:80 is already listed on line 1"},
		{"redirect loop", plain.secretURL("/loop-a"), Fetcher{}, []error{ErrFetch, ErrRedirect}, "a redirect loop"},
		{"too many redirects", plain.secretURL("/chain/"), Fetcher{}, []error{ErrFetch, ErrRedirect}, "more than 5 redirects"},
		{"https to http", secure.secretURL("/to-http"), Fetcher{TLSConfig: trusting(secure)}, []error{ErrFetch, ErrRedirect}, "a redirect from https to http://127.0.0.1"},
		{"unknown authority", secure.secretURL("/dups"), Fetcher{TLSConfig: &tls.Config{RootCAs: x509.NewCertPool()}}, []error{ErrFetch, ErrTLS}, "TLS error: the server's certificate is not trusted"},
		{"plain HTTP on https", strings.Replace(plain.secretURL("/dups"), "http://", "https://", 1), Fetcher{}, []error{ErrFetch, ErrTLS}, "TLS error"},
		{"404", plain.secretURL("/missing"), Fetcher{}, []error{ErrFetch}, "answered 404 Not Found"},
		{"401", plain.secretURL("/denied"), Fetcher{}, []error{ErrFetch}, "answered 401 Unauthorized: check the source's headers"},
		{"204", plain.secretURL("/empty"), Fetcher{}, []error{ErrFetch}, "answered 204 No Content, not 200 OK"},
		{"declared too large", plain.secretURL("/declared-big"), Fetcher{Limits: small}, []error{ErrFetch, ErrTooLarge}, "the body is 2048 bytes (Content-Length), over the 1 KiB limit"},
		{"chunked too large", plain.secretURL("/chunked-big"), Fetcher{Limits: small}, []error{ErrFetch, ErrTooLarge}, "over the 1 KiB limit"},
		{"gzip bomb", plain.secretURL("/bomb"), Fetcher{Limits: Limits{MaxBytes: 1 << 20}}, []error{ErrParse, ErrTooLarge}, "larger than 1 MiB"},
		{"corrupt gzip", plain.secretURL("/bad-gzip"), Fetcher{}, []error{ErrParse, ErrNotList}, "corrupt"},
		{"unsupported encoding", plain.secretURL("/brotli"), Fetcher{}, []error{ErrFetch}, "unsupported Content-Encoding"},
		{"timeout", plain.secretURL("/slow"), Fetcher{Timeout: 200 * time.Millisecond}, []error{ErrFetch, context.DeadlineExceeded}, "no complete answer within 200ms (timeout)"},
		{"slow body", plain.secretURL("/slow-body"), Fetcher{Timeout: 200 * time.Millisecond}, []error{ErrFetch, context.DeadlineExceeded}, "reading the body: no complete answer within 200ms (timeout)"},
		{"connection cut", plain.secretURL("/cut"), Fetcher{}, []error{ErrFetch}, "reading the body"},
		{"connection refused", refusedURL + "?token=" + querySecr, Fetcher{}, []error{ErrFetch}, "connection refused"},
		{"not http", "ftp://user:" + userSecr + "@example.com/list?token=" + querySecr, Fetcher{}, []error{ErrFetch}, "not an http:// or https:// URL"},
		{"bad header value", plain.secretURL("/dups"), Fetcher{}, []error{ErrFetch, ErrHeaders}, "header X-Bad: the value contains a line break"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			headers := map[string]string{"X-Api-Key": apiKey}
			if tt.name == "bad header value" {
				headers["X-Bad"] = apiKey + "\r\nX-Injected: 1"
			}
			res, err := tt.f.Fetch(context.Background(), Request{URL: tt.url, Headers: headers})
			if err == nil {
				t.Fatalf("Fetch accepted it: %v", res.List)
			}
			if len(res.List.Entries) != 0 || res.NotModified {
				t.Errorf("Fetch returned %v with its error", res)
			}
			for _, k := range tt.kinds {
				if !errors.Is(err, k) {
					t.Errorf("error %q does not wrap %v", err, k)
				}
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("error %q does not say %q", err, tt.reason)
			}
			if want := DisplayURL(tt.url); !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %q does not start with the list's URL %q", err, want)
			}
			checkNoSecrets(t, err)
			t.Logf("%s", err)
		})
	}
}

// writeLines writes n distinct proxy lines.
func writeLines(w io.Writer, n int) {
	bw := make([]byte, 0, 32<<10)
	for i := range n {
		bw = fmt.Appendf(bw, "http://10.%d.%d.%d:8080\n", i>>16&255, i>>8&255, i&255)
		if len(bw) > 31<<10 {
			if _, err := w.Write(bw); err != nil {
				return
			}
			bw = bw[:0]
		}
	}
	w.Write(bw)
}

// TestFetchCanceled: a canceled context ends the fetch with an error
// wrapping context.Canceled.
func TestFetchCanceled(t *testing.T) {
	started := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
	})
	p := newProvider(t, false, mux)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-started
		cancel()
	}()
	_, err := (&Fetcher{}).Fetch(ctx, Request{URL: p.srv.URL + "/slow"})
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrFetch) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
}

// TestFetchRedirectHeaders: the caller's headers follow a redirect on the
// same host and are dropped when it leads to another host.
func TestFetchRedirectHeaders(t *testing.T) {
	list := http.NewServeMux()
	list.HandleFunc("/list", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "10.0.0.1:80\n") })
	target := newProvider(t, false, list)
	mux := http.NewServeMux()
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.srv.URL+"/list", http.StatusFound)
	})
	mux.HandleFunc("/here", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/list", http.StatusFound) })
	mux.HandleFunc("/list", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "10.0.0.1:80\n") })
	origin := newProvider(t, false, mux)
	var f Fetcher
	for _, path := range []string{"/elsewhere", "/here"} {
		if _, err := f.Fetch(context.Background(), Request{URL: origin.srv.URL + path, Headers: map[string]string{"X-Api-Key": apiKey}}); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	if h := target.headers(); len(h) != 1 || h[0].Get("X-Api-Key") != "" {
		t.Errorf("the other host got headers %v, want no X-Api-Key", h)
	}
	if h := origin.headers(); len(h) != 3 || h[2].Get("X-Api-Key") != apiKey {
		t.Errorf("the same host's redirect target got headers %v, want the X-Api-Key", h)
	}
}

func TestDisplayURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:pw@Example.com:8443/lists/eu.txt?key=k#frag": "https://Example.com:8443/lists/eu.txt",
		"HTTP://example.com":                   "http://example.com",
		"not a url":                            "(unparsable URL)",
		"http://[::1]:80/a%20b?x=y":            "http://[::1]:80/a%20b",
		"://nothing":                           "(unparsable URL)",
		"http://h/" + strings.Repeat("p", 300): "http://h/" + strings.Repeat("p", 190) + "…",
	} {
		if got := DisplayURL(in); got != want {
			t.Errorf("DisplayURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNextRefresh(t *testing.T) {
	for _, tt := range []struct {
		interval       time.Duration
		jitter, sample float64
		want           time.Duration
	}{
		{0, DefaultRefreshJitter, 0.5, DefaultRefresh},
		{10 * time.Minute, 0.1, 0, 9 * time.Minute},
		{10 * time.Minute, 0.1, 1, 11 * time.Minute},
		{time.Minute, 5, 0, 0},
		{time.Minute, -1, 0.9, time.Minute},
	} {
		if got := NextRefresh(tt.interval, tt.jitter, tt.sample); got != tt.want {
			t.Errorf("NextRefresh(%v, %v, %v) = %v, want %v", tt.interval, tt.jitter, tt.sample, got, tt.want)
		}
	}
}
