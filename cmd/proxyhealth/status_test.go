package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/httpapi"
)

func TestStatusFromData(t *testing.T) {
	td := makeData(t)
	// Without view.db: folds the journal.
	r := runBin(t, "status", "--data", td.dir, "--format", "json")
	var p httpapi.Pool
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &p) != nil {
		t.Fatalf("status --data: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if p.Total != 3 || p.Healthy != 2 || p.Unhealthy != 1 || p.Sources["b"].Unhealthy != 1 || p.JournalSeq == 0 || p.UpdatedAt == nil {
		t.Errorf("pool from the journal: %+v", p)
	}
	// With view.db (after a rebuild): the same numbers.
	if r := runBin(t, "rebuild", "--data", td.dir); r.code != 0 {
		t.Fatalf("rebuild: %d %q", r.code, r.stderr)
	}
	r = runBin(t, "status", "--data", td.dir, "--format", "json")
	var pv httpapi.Pool
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &pv) != nil {
		t.Fatalf("status --data with view.db: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if pv.Counts != p.Counts || pv.JournalSeq != p.JournalSeq || len(pv.Sources) != 2 || pv.Sources["a"].Healthy != 2 {
		t.Errorf("pool from view.db %+v\nfrom the journal %+v", pv, p)
	}
	r = runBin(t, "status", "--data", td.dir)
	for _, want := range []string{"pool     3 proxies · 66.7% healthy", "healthy 2 · degraded 0 · unhealthy 1", "SOURCE", "HEALTH", "a", "b"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("table has no %q:\n%s", want, r.stdout)
		}
	}
}

func TestStatusFromServer(t *testing.T) {
	td := makeData(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d, err := startDaemon(t.Context(), proxyhealth.Config{DataDir: td.dir, Sources: []proxyhealth.SourceConfig{{Name: "a"}, {Name: "b"}}},
		ln, "tok", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := d.stop(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	server := strings.TrimSuffix(d.url, "/")
	var r result
	deadline := time.Now().Add(20 * time.Second)
	for {
		r = runBin(t, "status", "--server", server, "--token", "tok", "--format", "json")
		var p httpapi.Pool
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &p) != nil {
			t.Fatalf("status --server: %d %q %q", r.code, r.stdout, r.stderr)
		}
		if p.Total == 3 { // the journal's proxies, folded by the live status
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon never showed the journal's 3 proxies: %+v", p)
		}
	}
	w := startBin(t, []string{"PROXYHEALTH_TOKEN=tok"}, "status", "--server", server, "--watch", "--interval", "100ms")
	w.waitOutput("three refreshes", false, func(s string) (string, bool) { return "", strings.Count(s, "pool     3 proxies") >= 3 })
	w.signal(syscall.SIGINT)
	if code := w.wait(10 * time.Second); code != 0 {
		t.Errorf("status --watch after SIGINT: exit %d", code)
	}
	r = runBin(t, "status", "--server", server)
	if r.code != 1 || !strings.Contains(r.stderr, "401") || !strings.Contains(r.stderr, "bearer token") {
		t.Errorf("without the token: %d %q", r.code, r.stderr)
	}
	oneLine(t, "401", r.stderr)
	r = runBin(t, "status", "--server", "http://127.0.0.1:1")
	if r.code != 1 || !strings.Contains(r.stderr, "no daemon answers") {
		t.Errorf("no daemon: %d %q", r.code, r.stderr)
	}
}
