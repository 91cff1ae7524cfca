package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/httpapi"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

// holdOpen makes the daemons of the test wait in their engine's Open
// until the returned release is called (with the error Open should
// return instead, or nil to open); opening is signalled when a daemon
// gets there.
func holdOpen(t *testing.T) (opening <-chan struct{}, release func(error)) {
	t.Helper()
	at := make(chan struct{}, 1)
	resume := make(chan error, 1)
	openEngine = func(ctx context.Context, cfg proxyhealth.Config) (*proxyhealth.Engine, error) {
		at <- struct{}{}
		select {
		case err := <-resume:
			if err != nil {
				return nil, err
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return proxyhealth.Open(ctx, cfg)
	}
	t.Cleanup(func() { openEngine = proxyhealth.Open })
	return at, func(err error) { resume <- err }
}

// startingAddr returns the API address the daemon logged in its
// "proxyhealth starting" line.
func startingAddr(t *testing.T, logs *testutil.SyncBuffer) string {
	t.Helper()
	recs := logRecords(t, logs.String(), "proxyhealth starting")
	if len(recs) == 0 {
		t.Fatalf("no \"proxyhealth starting\" line in the logs:\n%s", logs.String())
	}
	addr, _ := recs[0]["listen"].(string)
	return addr
}

// getStatus GETs url; a request that gets no answer within 10 s fails
// the test (a daemon that does not serve yet leaves it in the listen
// queue).
func getStatus(t *testing.T, url string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestRunAnswersWhileStarting: from the moment it listens, the daemon
// answers its API's address: while the engine opens, /healthz says
// "starting" and everything else 503, at once; once it is open, the API
// itself. A start that fails closes the address.
func TestRunAnswersWhileStarting(t *testing.T) {
	for _, fails := range []bool{false, true} {
		name := "opens"
		if fails {
			name = "fails"
		}
		t.Run(name, func(t *testing.T) {
			opening, release := holdOpen(t)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var stdout, stderr testutil.SyncBuffer
			exited := make(chan int, 1)
			go func() {
				exited <- runDaemon(ctx, runArgs(filepath.Join(t.TempDir(), "data"))[1:], &stdout, &stderr)
			}()
			select {
			case <-opening:
			case code := <-exited:
				t.Fatalf("the daemon exited with %d before it opened its engine:\n%s", code, stderr.String())
			}
			base := "http://" + startingAddr(t, &stderr)

			code, body := getStatus(t, base+"/healthz")
			var h httpapi.Healthz
			if err := json.Unmarshal([]byte(body), &h); err != nil || code != http.StatusServiceUnavailable || h.Status != "starting" || h.Version != version {
				t.Errorf("GET /healthz while starting: %d %s (%v); want 503 {\"status\": \"starting\", \"version\": %q}", code, body, err, version)
			}
			if code, body := getStatus(t, base+"/v1/pool"); code != http.StatusServiceUnavailable || !strings.Contains(body, "starting") {
				t.Errorf("GET /v1/pool while starting: %d %s; want 503 saying it is starting", code, body)
			}

			if fails {
				release(errors.New("injected: the journal cannot be opened"))
				select {
				case code := <-exited:
					if code != exitFailure || !strings.Contains(stderr.String(), "injected: the journal cannot be opened") {
						t.Errorf("a failed start: exit %d, stderr:\n%s", code, stderr.String())
					}
				case <-time.After(time.Minute):
					t.Fatal("the daemon did not exit after its engine failed to open")
				}
				if c, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), time.Second); err == nil {
					c.Close()
					t.Errorf("the API's address still accepts connections after a failed start")
				}
				return
			}
			release(nil)
			testutil.Eventually(t, time.Minute, "/healthz to answer 200 once the engine is open", func() bool {
				code, _ := getStatus(t, base+"/healthz")
				return code == http.StatusOK
			})
			if !strings.Contains(stderr.String(), `"msg":"proxyhealth started"`) {
				t.Errorf("/healthz answered 200 before \"proxyhealth started\" was logged:\n%s", stderr.String())
			}
			if code, body := getStatus(t, base+"/v1/pool"); code != http.StatusOK {
				t.Errorf("GET /v1/pool once started: %d %s", code, body)
			}
			cancel()
			select {
			case code := <-exited:
				if code != exitOK {
					t.Errorf("exit %d after the stop, stderr:\n%s", code, stderr.String())
				}
			case <-time.After(time.Minute):
				t.Fatal("the daemon did not stop")
			}
		})
	}
}
