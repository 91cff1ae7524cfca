package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/httpapi"
	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

// endpointAddr waits for the daemon's "rotating endpoint" log line and
// returns the endpoint's address.
func (p *proc) endpointAddr() string {
	return p.waitOutput("rotating endpoint log line", true, func(s string) (string, bool) {
		for line := range strings.SplitSeq(s, "\n") {
			var rec struct {
				Msg    string `json:"msg"`
				Listen string `json:"listen"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "rotating endpoint" {
				return rec.Listen, true
			}
		}
		return "", false
	})
}

// TestRunServe: `run --serve` is a rotating forward proxy: real clients
// (curl -x, curl --socks5-hostname, Go's http.Client) reach the target
// through the healthy proxies of the pool, spread over them, and never
// through a dead one.
func TestRunServe(t *testing.T) {
	curl := testutil.Program(t, "the rotating endpoint with curl", "curl")
	farm, err := fakeproxy.Start(t.Context(), 4, fakeproxy.WithBody("served by the farm"))
	if err != nil {
		t.Fatal(err)
	}
	defer farm.Close()
	if err := farm.Set(3, fakeproxy.Refuse()); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	list := writeFile(t, dir, "pool.txt", farm.URL(0)+"\n"+farm.URL(1)+"\n"+farm.URL(2)+"\n"+farm.URL(3)+"\n")
	p := startBin(t, nil, runArgs(filepath.Join(dir, "data"), "--proxies", list, "--serve", "127.0.0.1:0", "--strategy", "least-latency")...)
	base, addr := p.apiURL(), p.endpointAddr()
	waitPool(t, base, "3 healthy, 1 down", func(pl httpapi.Pool) bool { return pl.Healthy == 3 && pl.Unhealthy+pl.Degraded == 1 })
	before := [4]uint64{farm.Checks(0), farm.Checks(1), farm.Checks(2), farm.Checks(3)}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, args := range [][]string{
		{"-x", "http://" + addr, testTarget},
		{"--socks5-hostname", addr, testTarget},
	} {
		out, err := exec.CommandContext(ctx, curl, append([]string{"-sS", "--max-time", "10"}, args...)...).CombinedOutput()
		if err != nil || string(out) != "served by the farm" {
			t.Fatalf("curl %v: %v\n%s", args, err, out)
		}
	}
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: addr})}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	for range 30 {
		resp, err := client.Get(testTarget)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "served by the farm" {
			t.Fatalf("through the endpoint: %s %q", resp.Status, body)
		}
	}
	used := 0
	for i := range 3 {
		if farm.Checks(i) > before[i] {
			used++
		}
	}
	if used < 2 {
		t.Errorf("the requests went through %d of the 3 healthy proxies, want them spread", used)
	}
	if farm.Checks(3) != before[3] {
		t.Errorf("the dead proxy got traffic")
	}
	// The API reports the endpoint's traffic.
	var tr httpapi.Traffic
	getJSON(t, base+"/v1/traffic", &tr)
	if tr.Endpoint == nil || tr.Endpoint.OK < 32 {
		t.Errorf("GET /v1/traffic: %+v, want the endpoint's 32 requests", tr.Endpoint)
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(30 * time.Second); code != 0 {
		t.Fatalf("SIGTERM: exit %d\n%s", code, p.stderr)
	}
}

// TestRunServeRefusesAnOpenProxy: off loopback the endpoint needs users;
// a bad strategy is named.
func TestRunServeRefusesAnOpenProxy(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	r := runBin(t, "run", "--data", data, "--listen", "127.0.0.1:0", "--serve", "0.0.0.0:8899")
	if r.code != 2 || !strings.Contains(r.stderr, "--serve 0.0.0.0:8899") || !strings.Contains(r.stderr, "serve.users") {
		t.Errorf("--serve off loopback without users: %d %q", r.code, r.stderr)
	}
	r = runBin(t, "run", "--data", data, "--listen", "127.0.0.1:0", "--strategy", "fastest")
	if r.code != 2 || !strings.Contains(r.stderr, "--strategy") || !strings.Contains(r.stderr, "least-latency") {
		t.Errorf("--strategy fastest: %d %q", r.code, r.stderr)
	}
	cfg := writeFile(t, t.TempDir(), "c.yaml", "serve:\n  listen: 0.0.0.0:8899\n  users:\n    - name: alice\n      password_env: NOPE_NOT_SET\n")
	r = runBin(t, "run", "--data", data, "--listen", "127.0.0.1:0", "--config", cfg)
	if r.code != 2 || !strings.Contains(r.stderr, "c.yaml:4") || !strings.Contains(r.stderr, "NOPE_NOT_SET") {
		t.Errorf("a user whose password is not set: %d %q", r.code, r.stderr)
	}
}
