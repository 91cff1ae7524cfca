package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/journal/journaltest"
)

// testData is a data directory written by a real engine: sources "a" (two
// healthy proxies) and "b" (one refusing connections, so unhealthy).
type testData struct {
	dir                string
	healthy1, healthy2 string // URLs
	dead               string
}

func makeData(t *testing.T) testData {
	t.Helper()
	ctx := t.Context()
	farm, err := fakeproxy.Start(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer farm.Close()
	if err := farm.Set(2, fakeproxy.Refuse()); err != nil {
		t.Fatal(err)
	}
	td := testData{dir: t.TempDir(), healthy1: farm.URL(0), healthy2: farm.URLWith(1, "socks5h", "user", "pw"), dead: farm.URL(2)}
	h := proxyhealth.DefaultHealthConfig()
	h.Interval, h.SuspectInterval, h.UnhealthyThreshold, h.RecoveryCooldown = 100*time.Millisecond, 100*time.Millisecond, 2, time.Hour
	pc := proxyhealth.ProbeConfig{TargetURL: testTarget, Timeout: time.Second}
	eng, err := proxyhealth.Open(ctx, proxyhealth.Config{DataDir: td.dir, Sources: []proxyhealth.SourceConfig{
		{Name: "a", Health: h, Probe: pc, Proxies: []string{td.healthy1, td.healthy2}},
		{Name: "b", Health: h, Probe: pc, Proxies: []string{td.dead}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, "the refusing proxy to become unhealthy", func() bool {
		st, err := eng.Proxy(ctx, id(td.dead))
		if err != nil {
			t.Fatal(err)
		}
		return st.State.Health.String() == "HEALTH_STATE_UNHEALTHY"
	})
	if err := eng.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return td
}

func TestJournalReplay(t *testing.T) {
	td := makeData(t)
	r := runBin(t, "journal", "replay", "--data", td.dir, "--format", "json")
	if r.code != 0 {
		t.Fatalf("replay: %d %q", r.code, r.stderr)
	}
	var recs []map[string]any
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		recs = append(recs, m)
	}
	if len(recs) < 6 {
		t.Fatalf("%d events", len(recs))
	}
	for i, m := range recs {
		if m["seq"].(float64) != float64(i+1) {
			t.Fatalf("event %d has seq %v", i, m["seq"])
		}
		if _, err := time.Parse(time.RFC3339Nano, m["at"].(string)); err != nil {
			t.Errorf("at %v: %v", m["at"], err)
		}
		for _, k := range []string{"proxy_id", "source", "type"} {
			if _, ok := m[k]; !ok {
				t.Errorf("event %v has no %s", m, k)
			}
		}
	}
	if strings.Contains(r.stdout, "pw") && strings.Contains(r.stdout, "user:") {
		t.Error("credentials in the replay")
	}

	// Filters.
	r = runBin(t, "journal", "replay", "--data", td.dir, "--proxy", td.dead, "--type", "state_changed,check_failed", "--format", "json")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	sawChange := false
	for _, l := range lines {
		var rec proxyhealth.Record
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		if rec.ProxyID != id(td.dead) || (rec.Type != "state_changed" && rec.Type != "check_failed") {
			t.Errorf("filtered replay gave %+v", rec)
		}
		if rec.Type == "check_failed" && (rec.ErrorClass != "refused" || rec.LatencyMS == nil) {
			t.Errorf("check_failed %+v", rec)
		}
		if rec.Type == "state_changed" && rec.To == "unhealthy" {
			sawChange = true
			if rec.From != "degraded" || rec.Reason == "" {
				t.Errorf("state change %+v", rec)
			}
		}
	}
	if !sawChange {
		t.Errorf("no change to unhealthy in %q", r.stdout)
	}
	r = runBin(t, "journal", "replay", "--data", td.dir, "--source", "a", "--type", "proxy_added")
	if r.code != 0 || strings.Count(r.stdout, "\n") != 2 || !strings.Contains(r.stdout, "socks5h://~") || !strings.Contains(r.stdout, "@127.0.0.1") || !strings.Contains(r.stdout, "(with credentials)") {
		t.Errorf("text replay of source a: %q", r.stdout)
	}
	// A window that ends before it starts is a mistake, said as such
	// (GET /v1/journal refuses it too).
	if r := runBin(t, "journal", "replay", "--data", td.dir, "--since", "1h", "--until", "2000-01-01"); r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, "is not before until") {
		t.Errorf("empty window: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r := runBin(t, "journal", "replay", "--data", td.dir, "--since", "2000-01-01", "--until", "2000-01-02"); r.code != 0 || r.stdout != "" {
		t.Errorf("a window without events: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r := runBin(t, "journal", "replay", "--data", td.dir, "--since", "1h"); r.code != 0 || strings.Count(r.stdout, "\n") != len(recs) {
		t.Errorf("--since 1h: %d lines, want %d", strings.Count(r.stdout, "\n"), len(recs))
	}
	if r := runBin(t, "journal", "replay", "--data", filepath.Join(td.dir, "nope")); r.code != 1 || !strings.Contains(r.stderr, "no journal at") {
		t.Errorf("missing journal: %d %q", r.code, r.stderr)
	}
}

func TestJournalVerifyAndStats(t *testing.T) {
	td := makeData(t)
	r := runBin(t, "journal", "verify", "--data", td.dir)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "journal OK: ") {
		t.Fatalf("verify: %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = runBin(t, "journal", "stats", "--data", td.dir, "--format", "json")
	var st journalStatsOut
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil {
		t.Fatalf("stats: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if st.Proxies != 3 || len(st.Sources) != 2 || st.ByType["proxy_added"] != 3 || st.ByType["state_changed"] < 3 ||
		st.Events != st.HeadSeq || st.SizeBytes == nil || *st.SizeBytes == 0 || st.FirstAt == nil || st.Span == "" {
		t.Errorf("stats %+v", st)
	}
	r = runBin(t, "journal", "stats", "--data", td.dir)
	if r.code != 0 || !strings.Contains(r.stdout, "proxies   3 in 2 sources (a, b)") || !strings.Contains(r.stdout, "  check_failed") {
		t.Errorf("text stats: %q", r.stdout)
	}

	// A damaged copy fails verification.
	raw, err := os.ReadFile(journalPath(td.dir))
	if err != nil {
		t.Fatal(err)
	}
	bad := t.TempDir()
	for i := 4096 * 2; i < len(raw); i += 4096 {
		for k := 16; k < 4096 && i+k < len(raw); k += 97 {
			raw[i+k] ^= 0xff
		}
	}
	if err := os.WriteFile(journalPath(bad), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	r = runBin(t, "journal", "verify", "--data", bad)
	if r.code == 0 {
		t.Errorf("verify of a damaged journal: exit 0, %q", r.stdout)
	}
	if r.stderr == "" {
		t.Error("no explanation for the damaged journal")
	}
	// Not a journal at all.
	other := t.TempDir()
	writeFile(t, other, "journal.db", strings.Repeat("not bbolt ", 1000))
	if r := runBin(t, "journal", "verify", "--data", other); r.code != 1 || !strings.Contains(r.stderr, "not a") {
		t.Errorf("verify of a non-journal: %d %q", r.code, r.stderr)
	}
}

// writeJournal writes a journal of n events of 10 proxies into dir.
func writeJournal(t *testing.T, dir string, n int) {
	t.Helper()
	j, err := journal.OpenBolt(journalPath(dir), journal.WithUnsafeNoSync())
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		journaltest.Append(t, j, journaltest.Succeeded(journaltest.ProxyID(i%10), time.Duration(i)*time.Second))
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestJournalVerifyDamagedNeverCrashes: a journal truncated at 8192 or
// 65536 bytes made verify die with SIGSEGV inside bbolt; a 0-byte one
// made it fail with "bad file descriptor".
func TestJournalVerifyDamagedNeverCrashes(t *testing.T) {
	good := t.TempDir()
	writeJournal(t, good, 3000)
	raw, err := os.ReadFile(journalPath(good))
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{0, 8192, 65536} {
		dir := t.TempDir()
		if err := os.WriteFile(journalPath(dir), raw[:size], 0o600); err != nil {
			t.Fatal(err)
		}
		for _, sub := range []string{"verify", "stats", "replay"} {
			r := runBin(t, "journal", sub, "--data", dir)
			if r.code != 1 || strings.Contains(r.stderr, "SIGSEGV") || strings.Contains(r.stderr, "goroutine ") {
				t.Fatalf("journal %s of a journal truncated at %d: exit %d, %s", sub, size, r.code, r.stderr)
			}
			if !strings.Contains(r.stderr, journalPath(dir)) {
				t.Errorf("journal %s of a journal truncated at %d does not name the file: %s", sub, size, r.stderr)
			}
			want := "salvage"
			if size == 0 {
				want = "holds no data"
			}
			if !strings.Contains(r.stderr, want) {
				t.Errorf("journal %s of a journal truncated at %d: %q, want it to say %q", sub, size, r.stderr, want)
			}
		}
	}
}

// TestJournalSalvage: salvage copies the intact events of a damaged
// journal into a new file that verifies, and leaves the original alone.
func TestJournalSalvage(t *testing.T) {
	dir := t.TempDir()
	writeJournal(t, dir, 3000)
	raw, err := os.ReadFile(journalPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(journalPath(dir), raw[:65536], 0o600); err != nil {
		t.Fatal(err)
	}
	r := runBin(t, "journal", "salvage", "--data", dir)
	if r.code != 0 {
		t.Fatalf("salvage: exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"salvaged ", "journal.salvaged.db", "mv " + journalPath(dir), "proxyhealth rebuild"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("salvage output lacks %q:\n%s", want, r.stdout)
		}
	}
	t.Log(r.stdout)
	if after, _ := os.ReadFile(journalPath(dir)); len(after) != 65536 || string(after) != string(raw[:65536]) {
		t.Fatal("salvage modified the damaged journal")
	}
	out := filepath.Join(dir, "journal.salvaged.db")
	moved := t.TempDir()
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, moved, "journal.db", string(data))
	if r := runBin(t, "journal", "verify", "--data", moved); r.code != 0 || !strings.Contains(r.stdout, "journal OK") {
		t.Fatalf("verify of the salvaged journal: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := runBin(t, "journal", "salvage", "--data", dir); r.code != 1 || !strings.Contains(r.stderr, "exists") {
		t.Fatalf("salvage onto an existing file: exit %d %s", r.code, r.stderr)
	}
	if r := runBin(t, "journal", "salvage", "--data", t.TempDir()); r.code != 1 || !strings.Contains(r.stderr, "no journal") {
		t.Fatalf("salvage without a journal: exit %d %s", r.code, r.stderr)
	}
}
