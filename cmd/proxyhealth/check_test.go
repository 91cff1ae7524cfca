package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
)

func TestCheck(t *testing.T) {
	farm, err := fakeproxy.Start(t.Context(), 3, fakeproxy.WithCredentials("alice", "s3cr3t"))
	if err != nil {
		t.Fatal(err)
	}
	defer farm.Close()
	if err := farm.Set(1, fakeproxy.Refuse()); err != nil {
		t.Fatal(err)
	}
	if err := farm.Set(2, fakeproxy.AuthRequired()); err != nil {
		t.Fatal(err)
	}

	r := runBin(t, "check", farm.URL(0), "--check-url", testTarget)
	if r.code != 0 || !strings.Contains(r.stdout, "result   ok, status 200") || !strings.Contains(r.stdout, "latency  connect ") {
		t.Errorf("healthy proxy: %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = runBin(t, "check", "--check-url", testTarget, farm.URL(1))
	if r.code != 1 || !strings.Contains(r.stdout, "FAILED: refused") {
		t.Errorf("refusing proxy: %d %q", r.code, r.stdout)
	}
	// socks5h with the right credentials, JSON output; the password is
	// never printed.
	r = runBin(t, "check", farm.URLWith(2, "socks5h", "alice", "s3cr3t"), "--check-url", testTarget, "--format", "json")
	var out checkOutput
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || !out.OK || out.LatencyMS <= 0 || out.Proxy != redacted(farm.URLWith(2, "socks5h", "alice", "s3cr3t")) {
		t.Errorf("socks5h with credentials: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(r.stdout+r.stderr, "s3cr3t") {
		t.Error("the password was printed")
	}
	r = runBin(t, "check", farm.URLWith(2, "http", "alice", "wrong"), "--check-url", testTarget, "--format", "json")
	if r.code != 1 || !strings.Contains(r.stdout, `"error_class": "proxy_auth_required"`) || strings.Contains(r.stdout, "wrong") {
		t.Errorf("wrong credentials: %d %q", r.code, r.stdout)
	}
	// A latency ceiling turns a slow pass into too_slow.
	if err := farm.Set(0, fakeproxy.Slow(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	r = runBin(t, "check", farm.URL(0), "--check-url", testTarget, "--latency-ceiling", "100ms")
	if r.code != 1 || !strings.Contains(r.stdout, "FAILED: too_slow") {
		t.Errorf("slow proxy: %d %q", r.code, r.stdout)
	}
	// Through an https proxy with the farm's CA.
	ca := writeFile(t, t.TempDir(), "ca.pem", string(farm.CACertPEM()))
	if err := farm.Set(0, fakeproxy.OK()); err != nil {
		t.Fatal(err)
	}
	r = runBin(t, "check", farm.URLWith(0, "https", "", ""), "--check-url", testTarget, "--ca-file", ca)
	if r.code != 0 {
		t.Errorf("https proxy with --ca-file: %d %q %q", r.code, r.stdout, r.stderr)
	}
}
