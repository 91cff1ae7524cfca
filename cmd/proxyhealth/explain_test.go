package main

import (
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/proxyhealth/proxyhealth"
)

// TestJournalExplain: journal explain tells the story of the refusing
// proxy of a real engine's data directory (by URL or ID), the same from
// the data directory and from the daemon's API; the story of a proxy with
// credentials never shows them.
func TestJournalExplain(t *testing.T) {
	td := makeData(t)
	r := cli(t, "journal", "explain", td.dead, "--data", td.dir)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("explain: %+v", r)
	}
	t.Log(r.stdout)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	want := []string{
		"proxy " + id(td.dead) + " " + td.dead + ` (source "b"): unhealthy since `,
		`added: ` + td.dead + ` in source "b"`,
		"checks failed ",
		"degraded (still in rotation): check failed: refused",
		"went unhealthy (out of rotation) after 2 consecutive failures (threshold 2), last: refused",
	}
	if len(lines) != len(want) {
		t.Fatalf("story of the refusing proxy:\n%s", r.stdout)
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d %q lacks %q", i, lines[i], w)
		}
	}
	if byID := cli(t, "journal", "explain", id(td.dead), "--data", td.dir); byID.stdout != r.stdout {
		t.Errorf("explain by ID:\n%s\nby URL:\n%s", byID.stdout, r.stdout)
	}

	creds := cli(t, "journal", "explain", "--data", td.dir, td.healthy2, "--format", "json")
	var st storyJSON
	if creds.code != 0 || json.Unmarshal([]byte(creds.stdout), &st) != nil {
		t.Fatalf("explain --format json: %+v", creds)
	}
	if st.ProxyID != id(td.healthy2) || st.State != "healthy" || st.Source != "a" || st.Events == 0 || len(st.Lines) == 0 || st.Lines[0].Seq != st.FirstSeq ||
		!strings.HasPrefix(st.URL, "socks5h://") || !strings.Contains(st.Lines[0].Text, "carries credentials") {
		t.Errorf("story in JSON: %+v", st)
	}
	if strings.Contains(creds.stdout, "pw") || strings.Contains(creds.stdout, "user") {
		t.Errorf("credentials in the story: %s", creds.stdout)
	}

	// From the daemon's API: the same story, the credentials not sent.
	all := cli(t, "journal", "replay", "--data", td.dir, "--format", "json")
	api := &fakeJournalAPI{token: "tok"}
	for line := range strings.SplitSeq(strings.TrimSpace(all.stdout), "\n") {
		var rec proxyhealth.Record
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		api.recs = append(api.recs, rec)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	for _, p := range []string{td.dead, td.healthy2} {
		off := cli(t, "journal", "explain", p, "--data", td.dir)
		on := cli(t, "journal", "explain", p, "--server", srv.URL, "--token", "tok")
		if on.code != 0 || on.stdout != off.stdout {
			t.Errorf("explain --server: %d %q\n--data: %q", on.code, on.stdout+on.stderr, off.stdout)
		}
	}
	api.mu.Lock()
	for _, q := range api.queries {
		if strings.Contains(q, "pw") || strings.Contains(q, "user") || !strings.Contains(q, "proxy=") {
			t.Errorf("query %s", q)
		}
	}
	api.mu.Unlock()
	if r := cli(t, "journal", "explain", "0123456789abcdef", "--server", srv.URL, "--token", "tok"); r.code != 1 || !strings.Contains(r.stderr, "holds no event of proxy 0123456789abcdef") {
		t.Errorf("unknown proxy from the API: %+v", r)
	}
}

// TestJournalExplainErrors: usage errors exit 2 with one line; an unknown
// proxy, a missing journal or a daemon that does not answer exit 1 and
// say so.
func TestJournalExplainErrors(t *testing.T) {
	for _, args := range [][]string{
		{"journal", "explain"},
		{"journal", "explain", "a", "b"},
		{"journal", "explain", "not a url"},
		{"journal", "explain", "http://user:s3cret@10.0.0.1:99999"},
		{"journal", "explain", "0123456789abcdef", "--format", "yaml"},
		{"journal", "explain", "0123456789abcdef", "--data", "x", "--data", "./x"},
		{"journal", "explain", "0123456789abcdef", "--token", "t"},
	} {
		r := cli(t, args...)
		if r.code != exitUsage || r.stdout != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, r.code, r.stdout, r.stderr)
			continue
		}
		oneLine(t, strings.Join(args, " "), r.stderr)
		if strings.Contains(r.stderr, "s3cret") {
			t.Errorf("%q: credentials in %q", args, r.stderr)
		}
	}
	dir := t.TempDir()
	writeJournal(t, dir, 30)
	if r := cli(t, "journal", "explain", "http://10.0.0.1:8080", "--data", dir); r.code != 1 || !strings.Contains(r.stderr, "holds no event of proxy") || !strings.Contains(r.stderr, journalPath(dir)) {
		t.Errorf("unknown proxy: %+v", r)
	}
	if r := cli(t, "journal", "explain", "0123456789abcdef", "--data", filepath.Join(dir, "nope")); r.code != 1 || !strings.Contains(r.stderr, "no journal at") {
		t.Errorf("no journal: %+v", r)
	}
	srv := httptest.NewServer(&fakeJournalAPI{})
	srv.Close()
	if r := cli(t, "journal", "explain", "0123456789abcdef", "--server", srv.URL); r.code != 1 || !strings.Contains(r.stderr, "no daemon answers at") {
		t.Errorf("no daemon: %+v", r)
	}
	if r := cli(t, "journal", "explain", "--help"); r.code != 0 || !strings.Contains(r.stdout, "Usage: proxyhealth journal explain PROXY") {
		t.Errorf("--help: %+v", r)
	}
}
