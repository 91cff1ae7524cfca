package httpapi_test

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/httpapi"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

// Event streams are bounded: past MaxStreams a new one answers 503 with
// Retry-After, and a slot frees when a stream ends.
func TestEventStreamsAreBounded(t *testing.T) {
	f := newFixture(t, httpapi.Options{MaxStreams: 2})
	open := func() (*http.Response, context.CancelFunc) {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", f.http.URL+"/v1/events", nil)
		resp, err := f.http.Client().Do(req)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		return resp, cancel
	}
	var cancels []context.CancelFunc
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	for range 2 {
		resp, cancel := open()
		cancels = append(cancels, cancel)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("stream within the bound: %s", resp.Status)
		}
		defer resp.Body.Close()
	}
	resp, cancel := open()
	cancel()
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a stream past the bound: %s, Retry-After %q", resp.Status, resp.Header.Get("Retry-After"))
	}
	// Plain requests have their own slots.
	if code, _ := f.do("GET", "/v1/pool", ""); code != http.StatusOK {
		t.Errorf("GET /v1/pool with the streams full: %d", code)
	}
	cancels[0]()
	testutil.Eventually(t, 10*time.Second, "a stream slot frees when a stream ends", func() bool {
		resp, cancel := open()
		defer cancel()
		defer resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// Requests served at once are bounded: past MaxRequests a request answers
// 503 with Retry-After until one ends.
func TestConcurrentRequestsAreBounded(t *testing.T) {
	release := make(chan struct{})
	var entered sync.WaitGroup
	entered.Add(2)
	f := newFixture(t, httpapi.Options{MaxRequests: 2, Reload: func(ctx context.Context) (proxyhealth.ReconcileDiff, error) {
		entered.Done()
		<-release
		return proxyhealth.ReconcileDiff{}, nil
	}})
	var done sync.WaitGroup
	for range 2 {
		done.Add(1)
		go func() {
			defer done.Done()
			req, _ := http.NewRequest("POST", f.http.URL+"/v1/reload", nil)
			if resp, err := f.http.Client().Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	entered.Wait()
	resp := f.doResp("GET", "/v1/pool", "")
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("a request past the bound: %s, Retry-After %q", resp.Status, resp.Header.Get("Retry-After"))
	}
	close(release)
	done.Wait()
	if code, _ := f.do("GET", "/v1/pool", ""); code != http.StatusOK {
		t.Errorf("after the requests ended: %d", code)
	}
}

// A client that sends its body too slowly is cut off at BodyReadTimeout,
// and its request slot frees.
func TestSlowBodyIsCutOff(t *testing.T) {
	f := newFixture(t, httpapi.Options{MaxRequests: 1, BodyReadTimeout: 200 * time.Millisecond})
	c, err := net.Dial("tcp", strings.TrimPrefix(f.http.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Headers and the first byte of a 100-byte body, then nothing.
	if _, err := c.Write([]byte("POST /v1/proxies HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second)) // a bound on the test, far above the server's
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the server neither answered nor closed the connection of a client whose body never came")
	}
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Fatalf("a body that never came was answered %s", resp.Status)
		}
	} // or the server closed the connection: cut off either way
	if code, _ := f.do("GET", "/v1/pool", ""); code != http.StatusOK {
		t.Errorf("the slow client still holds the only request slot: %d", code)
	}
}
