package proxyhealth_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
)

// provider is a fake proxy-list provider.
type provider struct {
	mu     sync.Mutex
	body   string
	status int
	etag   string
	apiKey string
	hits   int
}

func (p *provider) set(status int, body, etag string) {
	p.mu.Lock()
	p.status, p.body, p.etag = status, body, etag
	p.mu.Unlock()
}

func (p *provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hits++
	if r.Header.Get("X-Api-Key") != p.apiKey {
		http.Error(w, "bad key", http.StatusForbidden)
		return
	}
	if p.etag != "" && r.Header.Get("If-None-Match") == p.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if p.etag != "" {
		w.Header().Set("ETag", p.etag)
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(p.status)
	fmt.Fprint(w, p.body)
}

func sourceEvents(t *testing.T, e *proxyhealth.Engine) []string {
	t.Helper()
	var out []string
	for env, err := range e.ReadJournal(context.Background(), proxyhealth.JournalFilter{Types: []string{"source_refreshed", "source_refresh_failed", "source_shrink_held"}}) {
		if err != nil {
			t.Fatal(err)
		}
		r := proxyhealth.RecordOf(env)
		out = append(out, r.Type)
	}
	return out
}

func runningSet(e *proxyhealth.Engine) string {
	ids := e.ProxyIDs()
	slices.Sort(ids)
	return strings.Join(ids, ",")
}

// TestASlowProviderNeverHoldsUpTheEngine: Open returns while the
// provider hangs, the configured proxies are checked meanwhile, and the
// list's proxies arrive once the provider answers.
func TestASlowProviderNeverHoldsUpTheEngine(t *testing.T) {
	farm := startFarm(t, 2)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		fmt.Fprintln(w, farm.URL(1))
	}))
	defer srv.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e, err := proxyhealth.Open(ctx, proxyhealth.Config{Sources: []proxyhealth.SourceConfig{{Name: "s", Health: fastHealth(), Probe: farmProbe(),
		Proxies: []string{farm.URL(0)}, List: proxyhealth.SourceList{URL: srv.URL, Refresh: time.Hour}}}})
	if err != nil {
		t.Fatalf("Open while the provider hangs: %v", err)
	}
	defer closeEngine(t, e)
	id0, _ := proxyhealth.ResolveProxyID(farm.URL(0))
	id1, _ := proxyhealth.ResolveProxyID(farm.URL(1))
	before := farm.Checks(0)
	poll(t, "checks of the configured proxy while the provider hangs", func() bool { return farm.Checks(0) >= before+3 })
	if _, ok := e.Status().Proxy(id1); ok {
		t.Fatal("the list's proxy is there before the provider answered")
	}
	close(release)
	poll(t, "the list's proxy once the provider answers", func() bool { _, ok := e.Status().Proxy(id1); return ok })
	// The list applies together with the configured proxy, which stays.
	both := []string{id0, id1}
	slices.Sort(both)
	poll(t, "the configured proxy and the list's", func() bool { return runningSet(e) == strings.Join(both, ",") })
}

// TestAListSourceFollowsItsProvider: a source whose proxies come from a
// provider's list URL (with an API key): the list's proxies are monitored
// with their tags; a vanished proxy stays for its grace period; a failed
// fetch keeps the last good list and is journaled and shown; a list that
// shrinks too much is held until confirmed; 304 Not Modified is honoured;
// after a restart with the provider down, the saved list is used.
func TestAListSourceFollowsItsProvider(t *testing.T) {
	farm := startFarm(t, 5)
	line := func(i int, extra string) string { return farm.URL(i) + extra + "\n" }
	prov := &provider{apiKey: "k-123"}
	prov.set(200, "# provider list\n"+line(0, " #tags=de")+line(1, " #tags=us weight=2")+line(2, "")+line(3, ""), "")
	srv := httptest.NewServer(prov)
	defer srv.Close()
	dir := t.TempDir()
	ctx := context.Background()
	sc := proxyhealth.SourceConfig{Name: "prov", Health: fastHealth(), Probe: farmProbe(),
		List: proxyhealth.SourceList{URL: srv.URL + "/list.txt?token=secret", Headers: map[string]string{"X-Api-Key": "k-123"}, Refresh: time.Hour}}
	cfg := proxyhealth.Config{DataDir: dir, Sources: []proxyhealth.SourceConfig{sc}}
	e := open(t, cfg)
	id := func(i int) string { s, _ := proxyhealth.ResolveProxyID(farm.URL(i)); return s }
	want := func(is ...int) string {
		var ids []string
		for _, i := range is {
			ids = append(ids, id(i))
		}
		slices.Sort(ids)
		return strings.Join(ids, ",")
	}
	// Open does not wait for the provider: the refresher reads the list
	// right after.
	poll(t, "the list's 4 proxies", func() bool { return runningSet(e) == want(0, 1, 2, 3) })
	poll(t, "the list's metadata in the status", func() bool {
		v, _ := e.Status().Proxy(id(1))
		return strings.Join(v.Tags, ",") == "us" && v.Weight == 2
	})

	// Proxy 2 vanishes, proxy 4 appears: 4 is added at once, 2 stays for
	// its grace (two refreshes).
	prov.set(200, line(0, " #tags=de")+line(1, " #tags=us weight=2")+line(3, "")+line(4, ""), "")
	if err := e.RefreshSource(ctx, "prov"); err != nil {
		t.Fatal(err)
	}
	if got := runningSet(e); got != want(0, 1, 2, 3, 4) {
		t.Fatalf("after one refresh without proxy 2: %s", got)
	}
	if err := e.RefreshSource(ctx, "prov"); err != nil {
		t.Fatal(err)
	}
	if got := runningSet(e); got != want(0, 1, 3, 4) {
		t.Fatalf("after two refreshes without proxy 2: %s", got)
	}

	// The provider fails: the list stays, the failure is journaled and shown.
	prov.set(503, "try later", "")
	if err := e.RefreshSource(ctx, "prov"); err != nil {
		t.Fatal(err)
	}
	if got := runningSet(e); got != want(0, 1, 3, 4) {
		t.Fatalf("after a failed fetch: %s", got)
	}
	var src proxyhealth.SourceSummary
	for _, s := range e.Status().Summary().Sources {
		if s.Name == "prov" {
			src = s
		}
	}
	if !strings.Contains(src.LastError, "503") || strings.Contains(src.LastError, "secret") || strings.Contains(src.LastError, "k-123") || src.LastRefresh.IsZero() {
		t.Errorf("source status after a failure: %+v", src)
	}

	// It shrinks to one proxy (3 of 4 lost, more than the 50 % guard):
	// held, then confirmed.
	prov.set(200, line(0, ""), `"v2"`)
	if err := e.RefreshSource(ctx, "prov"); err != nil {
		t.Fatal(err)
	}
	if got := runningSet(e); got != want(0, 1, 3, 4) {
		t.Fatalf("a shrunk list was applied: %s", got)
	}
	if err := e.ConfirmSource(ctx, "prov"); err != nil {
		t.Fatal(err)
	}
	if got := runningSet(e); got != want(0) {
		t.Fatalf("after confirming the shrunk list: %s", got)
	}
	if err := e.ConfirmSource(ctx, "prov"); !errors.Is(err, proxyhealth.ErrNothingHeld) {
		t.Errorf("confirm with nothing held: %v", err)
	}
	// Unchanged since: 304.
	if err := e.RefreshSource(ctx, "prov"); err != nil {
		t.Fatal(err)
	}
	got := sourceEvents(t, e)
	wantEvents := "[source_refreshed source_refreshed source_refreshed source_refresh_failed source_shrink_held source_refreshed source_refreshed]"
	if fmt.Sprint(got) != wantEvents {
		t.Errorf("source events %v\nwant %s", got, wantEvents)
	}
	closeEngine(t, e)
	b, err := os.ReadFile(filepath.Join(dir, proxyhealth.ListsDir, "prov.json"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, proxyhealth.ListsDir, "prov.json")); fi.Mode().Perm() != 0o600 {
		t.Errorf("saved list mode %v, want 0600", fi.Mode().Perm())
	}
	_ = b

	// Restart with the provider down: the saved list is monitored.
	prov.set(500, "down", "")
	e2 := open(t, cfg)
	if got := runningSet(e2); got != want(0) {
		t.Fatalf("after a restart with the provider down: %s", got)
	}
}

// TestAShrunkListAppliesWhenOfferedAgain: a list that shrank too much is
// applied on its own once offered ConfirmAfter times in a row; one offered
// only once in between is not.
func TestAShrunkListAppliesWhenOfferedAgain(t *testing.T) {
	farm := startFarm(t, 4)
	prov := &provider{}
	all := farm.URL(0) + "\n" + farm.URL(1) + "\n" + farm.URL(2) + "\n" + farm.URL(3) + "\n"
	prov.set(200, all, "")
	srv := httptest.NewServer(prov)
	defer srv.Close()
	ctx := context.Background()
	e := open(t, proxyhealth.Config{Sources: []proxyhealth.SourceConfig{{Name: "p", Health: fastHealth(), Probe: farmProbe(),
		List: proxyhealth.SourceList{URL: srv.URL, Refresh: time.Hour, ConfirmAfter: 2}}}})
	poll(t, "the 4 proxies", func() bool { return len(e.ProxyIDs()) == 4 })
	prov.set(200, farm.URL(0)+"\n", "")
	if err := e.RefreshSource(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if n := len(e.ProxyIDs()); n != 4 {
		t.Fatalf("the shrunk list applied at once: %d proxies", n)
	}
	// Back to normal, then shrunk again: the count starts over.
	prov.set(200, all, "")
	if err := e.RefreshSource(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	prov.set(200, farm.URL(0)+"\n", "")
	if err := e.RefreshSource(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if n := len(e.ProxyIDs()); n != 4 {
		t.Fatalf("held list applied after one offer: %d proxies", n)
	}
	if err := e.RefreshSource(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if n := len(e.ProxyIDs()); n != 1 {
		t.Fatalf("offered twice in a row (confirm_after 2): %d proxies, want 1", n)
	}
}
