package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/httpapi"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
	"github.com/proxyhealth/proxyhealth/journal"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
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
	d := startDataDaemon(t, td, "tok", nil)
	defer func() {
		if err := d.stop(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	server := strings.TrimSuffix(d.web.url, "/")
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

// copyData copies the files of a data directory into a new one.
func copyData(t *testing.T, from string) string { return testutil.CopyDir(t, from) }

// writeShortJournal replaces dir's journal.db by one holding only the
// first n events of the original: a journal that lost history.
func writeShortJournal(t *testing.T, dir string, n int) {
	t.Helper()
	path := filepath.Join(dir, proxyhealth.JournalFile)
	src, err := journal.OpenBolt(path, journal.WithReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	var envs []*pb.Envelope
	for env, err := range src.Read(t.Context(), 1) {
		if err != nil {
			t.Fatal(err)
		}
		if len(envs) == n {
			break
		}
		c := proto.Clone(env).(*pb.Envelope)
		c.Seq, c.PrevSeq = 0, 0
		envs = append(envs, c)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	dst, err := journal.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(envs) > 0 {
		if _, err := dst.Append(t.Context(), envs); err != nil {
			t.Fatal(err)
		}
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestStatusDataChecksJournal checks that status --data reports the
// journal's head beside the view's seq, and says so (exiting non-zero)
// when the journal cannot back the view: missing, empty, damaged or
// behind; and that a journal locked by a running daemon gives a warning
// suggesting --server while the view is still reported.
func TestStatusDataChecksJournal(t *testing.T) {
	td := makeData(t)
	if r := runBin(t, "rebuild", "--data", td.dir); r.code != 0 {
		t.Fatalf("rebuild: %d %q", r.code, r.stderr)
	}
	r := runBin(t, "status", "--data", td.dir, "--format", "json")
	var p httpapi.Pool
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &p) != nil || p.JournalSeq < 6 || r.stderr != "" {
		t.Fatalf("status --data: %d %q %q", r.code, r.stdout, r.stderr)
	}
	seq := p.JournalSeq
	r = runBin(t, "status", "--data", td.dir)
	if want := fmt.Sprintf("view.db at seq %d · journal.db head seq %d (up to date)", seq, seq); r.code != 0 || !strings.Contains(r.stdout, want) {
		t.Errorf("status --data, journal up to date: %d %q, want %q", r.code, r.stdout, want)
	}

	for _, c := range []struct {
		name    string
		damage  func(t *testing.T, dir string)
		code    int
		summary string // in the table
		stderr  string
	}{
		{"missing", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, proxyhealth.JournalFile)); err != nil {
				t.Fatal(err)
			}
		}, 1, "no journal.db", "no journal at"},
		{"zero bytes", func(t *testing.T, dir string) {
			if err := os.Truncate(filepath.Join(dir, proxyhealth.JournalFile), 0); err != nil {
				t.Fatal(err)
			}
		}, 1, "journal.db empty (0 bytes)", "is empty (0 bytes)"},
		{"no event", func(t *testing.T, dir string) { writeShortJournal(t, dir, 0) }, 1,
			"journal.db head seq 0, behind the view", fmt.Sprintf("holds no event but the view is at seq %d", seq)},
		{"behind", func(t *testing.T, dir string) { writeShortJournal(t, dir, 3) }, 1,
			"journal.db head seq 3, behind the view", fmt.Sprintf("ends at seq 3 but the view is at seq %d", seq)},
		{"truncated", func(t *testing.T, dir string) {
			if err := os.Truncate(filepath.Join(dir, proxyhealth.JournalFile), 4096); err != nil {
				t.Fatal(err)
			}
		}, 1, "journal.db damaged", "the journal cannot be read"},
		{"not a journal", func(t *testing.T, dir string) {
			writeFile(t, dir, proxyhealth.JournalFile, strings.Repeat("not a journal\n", 4096))
		}, 1, "journal.db damaged", "the journal cannot be read"},
	} {
		dir := copyData(t, td.dir)
		c.damage(t, dir)
		for _, format := range []string{"table", "json"} {
			r := runBin(t, "status", "--data", dir, "--format", format)
			if r.code != c.code || !strings.Contains(r.stderr, c.stderr) {
				t.Errorf("%s (%s): exit %d, stderr %q; want exit %d and %q", c.name, format, r.code, r.stderr, c.code, c.stderr)
			}
			oneLine(t, c.name, r.stderr)
			if format == "table" && !strings.Contains(r.stdout, c.summary) {
				t.Errorf("%s: table %q has no %q", c.name, r.stdout, c.summary)
			}
			var p httpapi.Pool
			if format == "json" && (json.Unmarshal([]byte(r.stdout), &p) != nil || p.JournalSeq != seq || p.Total != 3) {
				t.Errorf("%s: the view's numbers are still shown: %q", c.name, r.stdout)
			}
		}
	}

	// A running daemon holds the journal's lock: status says so, suggests
	// --server, and reports from the view.
	dir := copyData(t, td.dir)
	j, err := journal.OpenBolt(filepath.Join(dir, proxyhealth.JournalFile))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := j.Close(); err != nil {
			t.Error(err)
		}
	}()
	r = runBin(t, "status", "--data", dir, "--format", "json")
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &p) != nil || p.JournalSeq != seq || p.Total != 3 ||
		!strings.Contains(r.stderr, "is locked") || !strings.Contains(r.stderr, "status --server") {
		t.Errorf("journal locked: %d %q %q", r.code, r.stdout, r.stderr)
	}
	oneLine(t, "locked", r.stderr)
}

// TestStatusListsPausedProxies: status shows which proxies are paused
// (it only counted them per source), from a daemon, from view.db and from
// the journal alone.
func TestStatusListsPausedProxies(t *testing.T) {
	td := makeData(t)
	d := startDataDaemon(t, td, "", nil)
	stopped := false
	defer func() {
		if !stopped {
			_ = d.stop(context.Background())
		}
	}()
	if err := d.eng.PauseProxy(t.Context(), id(td.dead)); err != nil {
		t.Fatal(err)
	}
	if err := d.eng.PauseProxy(t.Context(), id(td.healthy2)); err != nil {
		t.Fatal(err)
	}
	check := func(how string, r result) {
		t.Helper()
		if r.code != 0 {
			t.Fatalf("%s: %d %q", how, r.code, r.stderr)
		}
		_, list, ok := strings.Cut(r.stdout, "\npaused   2 proxies, not checked until resumed")
		if !ok {
			t.Fatalf("%s: no paused section:\n%s", how, r.stdout)
		}
		for _, want := range []string{id(td.dead) + "  b       unhealthy  " + td.dead, id(td.healthy2) + "  a       healthy    " + redacted(td.healthy2)} {
			if !strings.Contains(list, want) {
				t.Errorf("%s: no line %q in\n%s", how, want, list)
			}
		}
		if strings.Contains(list, id(td.healthy1)) || strings.Contains(list, "user") {
			t.Errorf("%s: lists a proxy that is not paused, or credentials:\n%s", how, list)
		}
	}
	server := strings.TrimSuffix(d.web.url, "/")
	var r result
	testutil.EventuallyExplain(t, 20*time.Second, func() bool {
		r = runBin(t, "status", "--server", server)
		return strings.Contains(r.stdout, "\npaused   2 proxies")
	}, func() string {
		return fmt.Sprintf("status --server to list 2 paused proxies: %q %q", r.stdout, r.stderr)
	})
	check("--server", r)
	stopped = true
	if err := d.stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	check("--data with view.db", runBin(t, "status", "--data", td.dir))
	if err := os.Remove(filepath.Join(td.dir, "view.db")); err != nil {
		t.Fatal(err)
	}
	check("--data without view.db", runBin(t, "status", "--data", td.dir))
}

// TestStatusDataWithALaggingView: status --data reads the view (fast, and
// readable beside a running daemon) and says how many journal events the
// view has not applied yet.
func TestStatusDataWithALaggingView(t *testing.T) {
	td := makeData(t)
	r := runBin(t, "status", "--data", td.dir, "--format", "json")
	var full httpapi.Pool
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &full) != nil || full.JournalSeq <= 3 {
		t.Fatalf("status --data without a view: %d %q %q", r.code, r.stdout, r.stderr)
	}
	// A view of the first 3 events (the proxies added, none checked yet).
	short := copyData(t, td.dir)
	writeShortJournal(t, short, 3)
	if r := runBin(t, "rebuild", "--data", short); r.code != 0 {
		t.Fatalf("rebuild: %d %q", r.code, r.stderr)
	}
	raw, err := os.ReadFile(filepath.Join(short, "view.db"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, td.dir, "view.db", string(raw))
	r = runBin(t, "status", "--data", td.dir, "--format", "json")
	var p httpapi.Pool
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &p) != nil || p.JournalSeq != 3 || p.Total != 3 || p.Unknown != 3 {
		t.Fatalf("status --data with a view at seq 3: %d %+v %q", r.code, p, r.stderr)
	}
	r = runBin(t, "status", "--data", td.dir)
	line := fmt.Sprintf("view.db at seq 3 · journal.db head seq %d (%d events not yet in the view", full.JournalSeq, full.JournalSeq-3)
	if r.code != 0 || !strings.Contains(r.stdout, line) {
		t.Errorf("table: %d %q, want %q", r.code, r.stdout, line)
	}
}

// TestStatusShowsEjectionsAndPanicMode: the pool table counts ejected
// proxies and says when picks are in panic mode.
func TestStatusShowsEjectionsAndPanicMode(t *testing.T) {
	var b strings.Builder
	p := httpapi.Pool{Counts: httpapi.Counts{Total: 4, Healthy: 1, Unhealthy: 3, Ejected: 1}, PanicMode: true}
	printPoolTable(&b, p, time.Now())
	if !strings.Contains(b.String(), "ejected 1") || !strings.Contains(b.String(), "PANIC MODE") {
		t.Errorf("pool table:\n%s", b.String())
	}
	b.Reset()
	p.PanicMode = false
	printPoolTable(&b, p, time.Now())
	if strings.Contains(b.String(), "PANIC") {
		t.Errorf("panic mode shown while off:\n%s", b.String())
	}
}

// TestStatusByTag: status --tag lists the proxies carrying the tag with
// their state, tags and weight; --tag needs a daemon.
func TestStatusByTag(t *testing.T) {
	td := makeData(t)
	d := startDataDaemon(t, td, "", func(a *proxyhealth.SourceConfig) { a.Tags, a.Weight = []string{"res"}, 2 })
	defer func() {
		if err := d.stop(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	r := runBin(t, "status", "--server", strings.TrimSuffix(d.web.url, "/"), "--tag", "res")
	if r.code != 0 || !strings.Contains(r.stdout, "tag res: 2 proxies") || !strings.Contains(r.stdout, id(td.healthy1)) ||
		strings.Contains(r.stdout, id(td.dead)) || !strings.Contains(r.stdout, "res   2") {
		t.Errorf("status --tag res: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r := runBin(t, "status", "--data", td.dir, "--tag", "res"); r.code != 2 || !strings.Contains(r.stderr, "--server") {
		t.Errorf("status --data --tag: %d %q", r.code, r.stderr)
	}
}

// startDataDaemon starts a daemon (API token token, "" for none) over td's
// data directory. Its configuration lists the journal's proxies, as
// sources "a" (the two healthy ones; edit changes it) and "b" (the dead
// one): a proxy the configuration no longer lists is removed at start-up.
// The caller stops it.
func startDataDaemon(t *testing.T, td testData, token string, edit func(a *proxyhealth.SourceConfig)) *daemon {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := proxyhealth.SourceConfig{Name: "a", Proxies: []string{td.healthy1, td.healthy2}}
	if edit != nil {
		edit(&a)
	}
	d, err := startDaemon(t.Context(), proxyhealth.Config{DataDir: td.dir, Sources: []proxyhealth.SourceConfig{
		a, {Name: "b", Proxies: []string{td.dead}}}},
		ln, token, slog.New(slog.DiscardHandler), false)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// statusPoolServer is a daemon's API on loopback that answers GET /v1/pool with
// p (the JSON contract status reads) and records the queries it got.
func statusPoolServer(t *testing.T, p httpapi.Pool) (*httptest.Server, *[]string) {
	t.Helper()
	var queries []string
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/pool" {
			http.NotFound(w, r)
			return
		}
		queries = append(queries, r.URL.RawQuery)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(p)
	}))
	t.Cleanup(hs.Close)
	return hs, &queries
}

func runStatusAt(t *testing.T, url string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if code := runStatus(ctx, []string{"--server", url}, &out, &errOut); code != exitOK {
		t.Fatalf("status --server %s: exit %d, stderr %q", url, code, errOut.String())
	}
	return out.String()
}

// statusClusterPool is a member's cluster-wide GET /v1/pool: this member checks
// 3 of 10 proxies, m2 answered, m3 did not.
func statusClusterPool() httpapi.Pool {
	st := proxyhealth.ClusterStatus{Name: "prod", Self: "10.0.0.1:7946", Members: []string{"10.0.0.1:7946", "10.0.0.2:7946", "10.0.0.3:7946"},
		Fresh: true, Checked: 3, Configured: 10, Replicas: 7}
	return httpapi.Pool{Counts: httpapi.Counts{Total: 7, Healthy: 7, HealthPercentage: 100},
		Sources: map[string]httpapi.SourceCounts{"a": {Counts: httpapi.Counts{Total: 7, Healthy: 7, HealthPercentage: 100}}},
		Cluster: &st,
		ClusterAnswer: &httpapi.ClusterAnswer{Members: []string{"10.0.0.1:7946", "10.0.0.2:7946"},
			Missing: []httpapi.MissingMember{{Member: "10.0.0.3:7946", Error: "timeout after 1s"}}}}
}

// TestStatusCluster: status --server on a cluster member names the
// cluster and this member's membership, lists every member with what is
// known of its share and whether it answered, then the cluster's pool.
func TestStatusCluster(t *testing.T) {
	hs, queries := statusPoolServer(t, statusClusterPool())
	out := runStatusAt(t, hs.URL)
	for _, want := range []string{
		"cluster  prod · 3 members · this member 10.0.0.1:7946: fresh\n",
		"the counts below are the cluster's: 2 of 3 members answered; the proxies of the members that did not answer are not counted\n",
		"MEMBER         CHECKS     ANSWER\n",
		"10.0.0.1:7946  3 (30.0%)  this member\n",
		// The only other member that answered checks the rest it counted.
		"10.0.0.2:7946  4 (40.0%)  answered\n",
		"10.0.0.3:7946  -          did not answer: timeout after 1s\n",
		"configured 10 proxies in the shared configuration; this member holds 7 other members' proxy states for a takeover\n",
		"pool     7 proxies · 100.0% healthy",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status has no %q:\n%s", want, out)
		}
	}
	if strings.Index(out, "cluster  prod") > strings.Index(out, "pool     ") {
		t.Errorf("the cluster is not listed first:\n%s", out)
	}
	if len(*queries) != 1 || (*queries)[0] != "" {
		t.Errorf("status asked /v1/pool with %q; want the API's default scope (the cluster)", *queries)
	}

	// Three members answered: the two others' shares only together; a
	// lost membership says so.
	p := statusClusterPool()
	p.ClusterAnswer.Members, p.ClusterAnswer.Missing = p.Cluster.Members, nil
	p.Total = 10
	p.Cluster.Fresh, p.Cluster.Lost, p.Cluster.Error = false, true, "lease 42 expired"
	hs, _ = statusPoolServer(t, p)
	out = runStatusAt(t, hs.URL)
	for _, want := range []string{
		"this member 10.0.0.1:7946: LOST: it checks nothing and must be restarted to rejoin (lease 42 expired)\n",
		"the counts below are the cluster's: 3 of 3 members answered\n",
		"10.0.0.2:7946  -          answered\n",
		"the 2 other members that answered check 7 (70.0%) together",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("all answered, lost: status has no %q:\n%s", want, out)
		}
	}

	// scope=local answers (no cluster_answer): the counts are this
	// member's.
	p = statusClusterPool()
	p.ClusterAnswer = nil
	hs, _ = statusPoolServer(t, p)
	if out := runStatusAt(t, hs.URL); !strings.Contains(out, "the counts below are this member's proxies only\n") ||
		!strings.Contains(out, "10.0.0.2:7946  -          -\n") {
		t.Errorf("without a cluster answer:\n%s", out)
	}
}

// TestStatusNotClusterUnchanged: outside a cluster status prints the pool
// table and nothing else, byte for byte.
func TestStatusNotClusterUnchanged(t *testing.T) {
	p := statusClusterPool()
	p.Cluster, p.ClusterAnswer = nil, nil
	hs, _ := statusPoolServer(t, p)
	var want bytes.Buffer
	printPoolTable(&want, p, time.Now()) // UpdatedAt is nil: no clock in the output
	if got := runStatusAt(t, hs.URL); got != want.String() {
		t.Errorf("status outside a cluster:\n%q\nwant\n%q", got, want.String())
	}
}
