package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

// fakeJournalAPI serves GET /v1/journal as documented (JSON lines of
// proxyhealth.Record, filters, after= and limit= paging) over a fixed set
// of records, and records the queries it got.
type fakeJournalAPI struct {
	recs  []proxyhealth.Record
	token string
	// cutAfter, when > 0, breaks every answer off after that many lines.
	cutAfter int
	// cutAt, when > 0, breaks every answer off before the event of that
	// seq.
	cutAt uint64

	mu      sync.Mutex
	queries []string
}

func (f *fakeJournalAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.queries = append(f.queries, r.URL.RawQuery)
	cutAfter, cutAt := f.cutAfter, f.cutAt
	f.mu.Unlock()
	fail := func(code int, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
	}
	if r.URL.Path != "/v1/journal" {
		fail(http.StatusNotFound, "no such endpoint")
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		fail(http.StatusUnauthorized, "missing or wrong bearer token")
		return
	}
	q := r.URL.Query()
	for k := range q {
		if !slices.Contains([]string{"proxy", "type", "source", "since", "until", "after", "limit"}, k) {
			fail(http.StatusBadRequest, "unknown query parameter "+k)
			return
		}
	}
	var since, until time.Time
	var err error
	if v := q.Get("since"); v != "" {
		if since, err = time.Parse(time.RFC3339Nano, v); err != nil {
			fail(http.StatusBadRequest, err.Error())
			return
		}
	}
	if v := q.Get("until"); v != "" {
		if until, err = time.Parse(time.RFC3339Nano, v); err != nil {
			fail(http.StatusBadRequest, err.Error())
			return
		}
	}
	after, _ := strconv.ParseUint(q.Get("after"), 10, 64)
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit < 1 || limit > 10000 {
		fail(http.StatusBadRequest, "limit")
		return
	}
	var types []string
	if v := q.Get("type"); v != "" {
		types = strings.Split(v, ",")
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	n := 0
	for _, rec := range f.recs {
		at, _ := time.Parse(time.RFC3339Nano, rec.At)
		if rec.Seq <= after || (q.Get("proxy") != "" && rec.ProxyID != q.Get("proxy")) || (q.Get("source") != "" && rec.Source != q.Get("source")) ||
			(len(types) > 0 && !slices.Contains(types, rec.Type)) || (!since.IsZero() && at.Before(since)) || (!until.IsZero() && !at.Before(until)) {
			continue
		}
		if cutAt > 0 && rec.Seq == cutAt {
			w.(http.Flusher).Flush()    // the status line, if no event was sent
			panic(http.ErrAbortHandler) // the answer breaks off before this event
		}
		if cutAfter > 0 && n == cutAfter {
			panic(http.ErrAbortHandler) // the connection breaks mid-page
		}
		_ = enc.Encode(rec)
		w.(http.Flusher).Flush()
		if n++; n == limit {
			return
		}
	}
}

// cli runs a subcommand in this process.
func cli(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(t.Context(), args, &out, &errb)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// TestJournalFromServer: journal replay and stats --server print what
// they print offline, reading GET /v1/journal page by page (the commands
// needed the bbolt file, which a running daemon locks).
func TestJournalFromServer(t *testing.T) {
	td := makeData(t)
	all := cli(t, "journal", "replay", "--data", td.dir, "--format", "json")
	if all.code != 0 {
		t.Fatalf("offline replay: %+v", all)
	}
	api := &fakeJournalAPI{token: "tok"}
	for line := range strings.SplitSeq(strings.TrimSpace(all.stdout), "\n") {
		var r proxyhealth.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		api.recs = append(api.recs, r)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	defer func(n int) { journalPageSize = n }(journalPageSize)
	journalPageSize = 4

	for _, filter := range [][]string{
		nil,
		{"--type", "state_changed,check_failed"},
		{"--proxy", td.healthy2}, // with credentials: only its ID is sent
		{"--proxy", id(td.dead), "--type", "check_failed"},
		{"--source", "a"},
		{"--since", "1h"},
		{"--since", "2000-01-01", "--until", "2000-01-02"},
	} {
		for _, format := range []string{"text", "json"} {
			args := append([]string{"journal", "replay", "--format", format}, filter...)
			off := cli(t, append(args, "--data", td.dir)...)
			on := cli(t, append(args, "--server", srv.URL, "--token", "tok")...)
			if off.code != 0 || on.code != 0 || on.stdout != off.stdout || on.stderr != "" {
				t.Errorf("%v: --server gave %d %q\n--data gave %d %q", filter, on.code, on.stdout+on.stderr, off.code, off.stdout+off.stderr)
			}
		}
	}
	api.mu.Lock()
	pages := 0
	for _, q := range api.queries {
		if strings.Contains(q, "pw") || strings.Contains(q, "user") {
			t.Errorf("a query carried the proxy's credentials: %s", q)
		}
		if q == "after=0&limit=4" {
			pages++
		}
	}
	api.queries = nil
	api.mu.Unlock()
	if pages != 2 { // text and json, unfiltered: the first page of each
		t.Errorf("unfiltered first pages: %d", pages)
	}

	// Stats: the same numbers; the path is the URL, the size unknown.
	off, on := cli(t, "journal", "stats", "--data", td.dir, "--format", "json"), cli(t, "journal", "stats", "--server", srv.URL, "--token", "tok", "--format", "json")
	var so, sn journalStatsOut
	if off.code != 0 || on.code != 0 || json.Unmarshal([]byte(off.stdout), &so) != nil || json.Unmarshal([]byte(on.stdout), &sn) != nil {
		t.Fatalf("stats: %+v %+v", off, on)
	}
	if sn.Path != srv.URL+"/v1/journal" || sn.SizeBytes != nil || so.SizeBytes == nil {
		t.Errorf("stats --server path %q size %v", sn.Path, sn.SizeBytes)
	}
	so.Path, so.SizeBytes, sn.Path = "", nil, ""
	if fmt.Sprint(so) != fmt.Sprint(sn) || sn.Events != uint64(len(api.recs)) {
		t.Errorf("stats --server %+v\n--data %+v", sn, so)
	}
	off, on = cli(t, "journal", "stats", "--data", td.dir), cli(t, "journal", "stats", "--server", srv.URL, "--token", "tok")
	_, offRest, _ := strings.Cut(off.stdout, "\n")
	first, onRest, _ := strings.Cut(on.stdout, "\n")
	if onRest != offRest || first != "journal   "+srv.URL+"/v1/journal (size not reported by the API)" {
		t.Errorf("text stats --server %q\n--data %q", on.stdout, off.stdout)
	}

	// The token comes from PROXYHEALTH_TOKEN too.
	t.Setenv("PROXYHEALTH_TOKEN", "tok")
	if r := cli(t, "journal", "stats", "--server", srv.URL); r.code != 0 {
		t.Errorf("token from the environment: %+v", r)
	}
	t.Setenv("PROXYHEALTH_TOKEN", "")
}

// TestJournalFromServerErrors: a refused request, a page that breaks off
// and a daemon that does not answer are errors (exit 1) that say so; a
// page that breaks off never passes for the end of the journal.
func TestJournalFromServerErrors(t *testing.T) {
	api := &fakeJournalAPI{token: "tok"}
	for i := range 10 {
		api.recs = append(api.recs, proxyhealth.Record{Seq: uint64(i + 1), At: time.Unix(int64(i), 0).UTC().Format(time.RFC3339Nano), Type: "proxy_added", ProxyID: "0123456789abcdef", Source: "s"})
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	if r := cli(t, "journal", "replay", "--server", srv.URL, "--token", "wrong"); r.code != 1 || !strings.Contains(r.stderr, "401 Unauthorized: missing or wrong bearer token") {
		t.Errorf("wrong token: %+v", r)
	}
	api.cutAfter = 3
	r := cli(t, "journal", "replay", "--server", srv.URL, "--token", "tok")
	if r.code != 1 || !strings.Contains(r.stderr, "the answer broke off after 3 events (seq 3)") || strings.Count(r.stdout, "\n") != 3 {
		t.Errorf("a page that breaks off: %+v", r)
	}
	if r := cli(t, "journal", "stats", "--server", srv.URL, "--token", "tok"); r.code != 1 || !strings.Contains(r.stderr, "broke off") {
		t.Errorf("stats over a page that breaks off: %+v", r)
	}
	srv.Close()
	if r := cli(t, "journal", "replay", "--server", srv.URL); r.code != 1 || !strings.Contains(r.stderr, "no daemon answers at "+srv.URL) {
		t.Errorf("no daemon: %+v", r)
	}
	for _, args := range [][]string{
		{"journal", "stats", "--server", srv.URL, "--data", "x"},
		{"journal", "replay", "--server", srv.URL, "--server", srv.URL + "/"},
		{"journal", "stats", "--server", "ftp://x"},
		{"journal", "replay", "--token", "t"},
	} {
		if r := cli(t, args...); r.code != 2 || r.stderr == "" {
			t.Errorf("%v: %+v", args, r)
		}
	}
}

// TestJournalFromRealDaemon: replay --server against the daemon's own GET
// /v1/journal, in small pages, while it runs; after it stopped, the offline
// replay of the same filters begins with exactly what the daemon served
// (the journal only grows).
func TestJournalFromRealDaemon(t *testing.T) {
	farm, err := fakeproxy.Start(t.Context(), 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(farm.Close)
	if err := farm.Set(2, fakeproxy.Refuse()); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	list := writeFile(t, dir, "pool.txt", farm.URL(0)+"\n"+farm.URLWith(1, "socks5h", "user", "pw")+"\n"+farm.URL(2)+"\n")
	var logs syncBuffer
	data := dir + "/data"
	d, stop := startTestDaemon(t, &logs, nil, "--data", data, "--proxies", list, "--interval", "100ms", "--timeout", "1s",
		"--check-url", testTarget, "--unhealthy-threshold", "2")
	testutil.Eventually(t, 20*time.Second, "some history", func() bool {
		s := d.status.Summary()
		return s.Seq > 60 && s.Unhealthy == 1
	})
	server := strings.TrimSuffix(d.web.url, "/")
	defer func(n int) { journalPageSize = n }(journalPageSize)
	journalPageSize = 7
	filters := [][]string{nil, {"--type", "state_changed,proxy_added"}, {"--proxy", farm.URLWith(1, "socks5h", "user", "pw")}, {"--source", "pool", "--type", "check_failed"}}
	var online []result
	for _, f := range filters {
		r := cli(t, append([]string{"journal", "replay", "--format", "json", "--server", server}, f...)...)
		if r.code != 0 || r.stdout == "" {
			t.Fatalf("%v: %+v", f, r)
		}
		online = append(online, r)
	}
	st := cli(t, "journal", "stats", "--server", server, "--format", "json")
	var stats journalStatsOut
	if st.code != 0 || json.Unmarshal([]byte(st.stdout), &stats) != nil || stats.Events < 60 || stats.FirstSeq != 1 || stats.Proxies != 3 {
		t.Errorf("stats --server: %+v", st)
	}
	stop()
	for i, f := range filters {
		off := cli(t, append([]string{"journal", "replay", "--format", "json", "--data", data}, f...)...)
		if off.code != 0 || !strings.HasPrefix(off.stdout, online[i].stdout) {
			t.Errorf("%v: the daemon served\n%s\nthe journal holds\n%s", f, online[i].stdout, off.stdout)
		}
	}
	if strings.Contains(logs.String(), "pw@") {
		t.Errorf("credentials in the log:\n%s", logs.String())
	}
}
