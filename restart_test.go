package proxyhealth_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/internal/clock"
	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/journal"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

func closeEngine(t *testing.T, e *proxyhealth.Engine) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// removalReasons maps each proxy whose stream ends with a ProxyRemoved to
// its reason.
func removalReasons(t *testing.T, e *proxyhealth.Engine) map[string]string {
	t.Helper()
	out := map[string]string{}
	for env, err := range e.Journal().Read(context.Background(), e.Journal().First()) {
		if err != nil {
			t.Fatal(err)
		}
		if r := env.GetProxyRemoved(); r != nil {
			out[env.GetProxyId()] = r.GetReason()
		} else if env.GetProxyAdded() != nil {
			delete(out, env.GetProxyId())
		}
	}
	return out
}

// TestPauseRightAfterOpenReachesResumedProxies: proxies added at run time
// are resumed inside Open, so a pause issued the moment Open returns
// reaches all of them (the daemon resumed them after start-up, and a pause
// in between missed 20 to 91 of them).
func TestPauseRightAfterOpenReachesResumedProxies(t *testing.T) {
	const n = 30
	farm := startFarm(t, n)
	dir := t.TempDir()
	cfg := proxyhealth.Config{
		DataDir: dir, ResumeAddedProxies: true,
		Sources: []proxyhealth.SourceConfig{{Name: "a", Health: fastHealth(), Probe: farmProbe()}},
	}
	e := open(t, cfg)
	ctx := context.Background()
	for i := range n {
		if _, err := e.AddProxy(ctx, "a", farm.URL(i)); err != nil {
			t.Fatal(err)
		}
	}
	closeEngine(t, e)

	e2 := open(t, cfg)
	if err := e2.Pause(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if got := len(e2.ProxyIDs()); got != n {
		t.Fatalf("%d proxies resumed, want %d", got, n)
	}
	if got := len(e2.RunTimeProxies()); got != n {
		t.Fatalf("%d run-time proxies, want %d", got, n)
	}
	for _, id := range e2.ProxyIDs() {
		st, err := e2.Proxy(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if !st.State.Paused {
			t.Fatalf("proxy %s resumed at start-up missed the pause", id)
		}
	}
	poll(t, "the live status to show every proxy paused", func() bool { return e2.Status().Summary().Paused == n })
}

// TestRunTimeProxyWithCredentialsIsCheckedAfterARestart: a proxy added at
// run time with credentials keeps being checked after a restart (its URL
// is kept in credentials.json, 0600, never in the journal); without that
// file it is journaled as removed with the reason, instead of showing its
// last state as if it were still checked.
func TestRunTimeProxyWithCredentialsIsCheckedAfterARestart(t *testing.T) {
	farm := startFarm(t, 1, fakeproxy.WithCredentials("alice", "hunter2-secret"), fakeproxy.WithBehavior(fakeproxy.AuthRequired()))
	dir := t.TempDir()
	cfg := proxyhealth.Config{
		DataDir: dir, ResumeAddedProxies: true, Projections: []proxyhealth.ProjectionSpec{proxyhealth.SQLiteView()},
		Sources: []proxyhealth.SourceConfig{{Health: fastHealth(), Probe: farmProbe()}},
	}
	e := open(t, cfg)
	ctx := context.Background()
	id, err := e.AddProxy(ctx, "", farm.URLWith(0, "http", "alice", "hunter2-secret"))
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, e, id, pb.HealthState_HEALTH_STATE_HEALTHY)
	closeEngine(t, e)

	credPath := filepath.Join(dir, proxyhealth.CredentialsFile)
	fi, err := os.Stat(credPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v, want 0600", credPath, fi.Mode().Perm())
	}
	for _, f := range []string{proxyhealth.JournalFile, proxyhealth.SQLiteViewFile} {
		raw, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(raw), "hunter2") {
			t.Fatalf("the password is in %s", f)
		}
	}

	// Restart: the proxy is checked again, with its credentials.
	e2 := open(t, cfg)
	before := farm.Checks(0)
	poll(t, "the proxy checked again after the restart", func() bool {
		v, ok := e2.Status().Proxy(id)
		return farm.Checks(0) > before && ok && v.State == "healthy" && v.ConsecutiveFailures == 0
	})
	closeEngine(t, e2)

	// Restart without the credentials file: the proxy cannot be checked,
	// so it is journaled as removed, saying why.
	if err := os.Remove(credPath); err != nil {
		t.Fatal(err)
	}
	e3 := open(t, cfg)
	if _, ok := e3.Status().Proxy(id); ok {
		t.Fatal("a proxy nobody checks is still shown in the live status")
	}
	if _, err := e3.Proxy(ctx, id); !errors.Is(err, proxyhealth.ErrUnknownProxy) {
		t.Fatalf("Proxy(%s) = %v, want ErrUnknownProxy", id, err)
	}
	if r := removalReasons(t, e3)[id]; !strings.Contains(r, "credentials") {
		t.Fatalf("removal reason %q, want one naming the missing credentials", r)
	}
}

// TestConfiguredProxyDroppedFromTheConfigIsRemovedAtStart: a configured
// proxy that the configuration no longer lists is journaled as removed at
// start-up (it was shown with its last state, or resumed as if it had been
// added through the API).
func TestConfiguredProxyDroppedFromTheConfigIsRemovedAtStart(t *testing.T) {
	farm := startFarm(t, 2)
	dir := t.TempDir()
	cfg := proxyhealth.Config{
		DataDir: dir, ResumeAddedProxies: true,
		Sources: []proxyhealth.SourceConfig{{Name: "a", Health: fastHealth(), Probe: farmProbe(), Proxies: []string{farm.URL(0), farm.URL(1)}}},
	}
	e := open(t, cfg)
	gone := e.ProxyIDs()
	closeEngine(t, e)

	cfg.Sources[0].Proxies = []string{farm.URL(0)}
	e2 := open(t, cfg)
	if got := len(e2.ProxyIDs()); got != 1 {
		t.Fatalf("%d proxies after the restart, want 1", got)
	}
	if s := e2.Status().Summary(); s.Total != 1 {
		t.Fatalf("live status counts %d proxies, want 1", s.Total)
	}
	reasons := removalReasons(t, e2)
	n := 0
	for _, id := range gone {
		if r, ok := reasons[id]; ok {
			n++
			if !strings.Contains(r, "no longer lists") {
				t.Fatalf("removal reason %q", r)
			}
		}
	}
	if n != 1 {
		t.Fatalf("%d removals journaled, want 1", n)
	}
}

// TestEmptyJournalIsRefusedUnlessStartingFresh: an empty journal.db (its
// history truncated away) was silently started over; now Open refuses it,
// naming the file and what to do, unless StartFresh says so.
func TestEmptyJournalIsRefusedUnlessStartingFresh(t *testing.T) {
	farm := startFarm(t, 1)
	dir := t.TempDir()
	cfg := proxyhealth.Config{
		DataDir: dir,
		Sources: []proxyhealth.SourceConfig{{Name: "a", Health: fastHealth(), Probe: farmProbe(), Proxies: []string{farm.URL(0)}}},
	}
	e := open(t, cfg)
	poll(t, "a check recorded", func() bool { return e.Journal().Head() > 2 })
	closeEngine(t, e)
	path := filepath.Join(dir, proxyhealth.JournalFile)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := proxyhealth.Open(ctx, cfg)
	if !errors.Is(err, proxyhealth.ErrHistoryLost) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "--start-fresh") {
		t.Fatalf("Open on an empty journal: %v; want ErrHistoryLost naming the file and --start-fresh", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Fatalf("the refused journal file was changed: %v %v", fi, err)
	}
	cfg.StartFresh = true
	e2 := open(t, cfg)
	if len(e2.ProxyIDs()) != 1 {
		t.Fatalf("fresh start: %v", e2.ProxyIDs())
	}
}

// TestDataDirectoryIsPrivate: the data directory and its files are
// owner-only whatever the umask (view.db and the directory were 0644/0755
// under umask 022).
func TestDataDirectoryIsPrivate(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "data")
	e := open(t, proxyhealth.Config{DataDir: dir, Projections: []proxyhealth.ProjectionSpec{proxyhealth.SQLiteView()}, Sources: []proxyhealth.SourceConfig{{Health: fastHealth(), Probe: farmProbe()}}})
	ctx := context.Background()
	if _, err := e.AddProxy(ctx, "", "http://u:p@127.0.0.1:9"); err != nil {
		t.Fatal(err)
	}
	closeEngine(t, e)
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("data directory mode %v, want 0700", fi.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		fi, err := en.Info()
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v; want no group or other bits", en.Name(), fi.Mode().Perm())
		}
	}
}

// TestViewAheadOfTheJournalIsRefusedUnlessStartingFresh: a journal replaced
// by an older copy (or truncated) left the view ahead of it; the view was
// quietly moved aside and rebuilt from what was left. Now Open refuses,
// naming both files and what to do, unless StartFresh says so.
func TestViewAheadOfTheJournalIsRefusedUnlessStartingFresh(t *testing.T) {
	farm := startFarm(t, 2)
	dir := t.TempDir()
	cfg := proxyhealth.Config{
		DataDir: dir, Projections: []proxyhealth.ProjectionSpec{proxyhealth.SQLiteView()},
		Sources: []proxyhealth.SourceConfig{{Name: "a", Health: fastHealth(), Probe: farmProbe(), Proxies: []string{farm.URL(0), farm.URL(1)}}},
	}
	e := open(t, cfg)
	closeEngine(t, e)
	journalPath := filepath.Join(dir, proxyhealth.JournalFile)
	old, err := os.ReadFile(journalPath)
	if err != nil {
		t.Fatal(err)
	}
	e = open(t, cfg)
	start := e.Journal().Head()
	poll(t, "more events", func() bool { return e.Journal().Head() > start+10 })
	closeEngine(t, e)
	if err := os.WriteFile(journalPath, old, 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = proxyhealth.Open(ctx, cfg)
	if !errors.Is(err, proxyhealth.ErrHistoryLost) || !strings.Contains(err.Error(), proxyhealth.SQLiteViewFile) || !strings.Contains(err.Error(), "--start-fresh") {
		t.Fatalf("Open with the view ahead of the journal: %v; want ErrHistoryLost naming the view and --start-fresh", err)
	}
	cfg.StartFresh = true
	e2 := open(t, cfg)
	caughtUp(t, e2, "sqlite view")
}

// TestDroppedProxiesAreRemovedInFewCommits: the proxies a restart no
// longer monitors are journaled as removed many to an append, not one
// commit each inside Open.
func TestDroppedProxiesAreRemovedInFewCommits(t *testing.T) {
	const n = 40
	farm := startFarm(t, n)
	dir := t.TempDir()
	urls := make([]string, n)
	for i := range urls {
		urls[i] = farm.URL(i)
	}
	var commits atomic.Int64
	cfg := proxyhealth.Config{
		DataDir: dir, ResumeAddedProxies: true,
		OnJournalCommit: func(c journal.CommitStats) {
			if c.Events > 0 {
				commits.Add(1)
			}
		},
		Sources: []proxyhealth.SourceConfig{{Name: "a", Health: fastHealth(), Probe: farmProbe(), Proxies: urls}},
	}
	e := open(t, cfg)
	closeEngine(t, e)

	cfg.Sources[0].Proxies = urls[:1]
	cfg.Clock = clock.NewFake(time.Now()) // no check commits anything meanwhile
	commits.Store(0)
	start := time.Now()
	e2 := open(t, cfg)
	t.Logf("Open with %d proxies dropped: %v, %d commits", n-1, time.Since(start), commits.Load())
	if got := commits.Load(); got > 3 {
		t.Fatalf("the removal of %d proxies took %d commits", n-1, got)
	}
	removed := 0
	for _, r := range removalReasons(t, e2) {
		if strings.Contains(r, "no longer lists") {
			removed++
		}
	}
	if removed != n-1 || e2.Status().Summary().Total != 1 {
		t.Fatalf("%d removals journaled, %d proxies in the status; want %d and 1", removed, e2.Status().Summary().Total, n-1)
	}
}
