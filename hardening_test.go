package proxyhealth_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections"
)

// outage is a journal fault switched on and off by the test: while on,
// every commit fails with EIO, as a failing disk's would.
type outage struct{ on atomic.Bool }

func (o *outage) fault() error {
	if o.on.Load() {
		return fmt.Errorf("write journal.db: %w", syscall.EIO)
	}
	return nil
}

// checkedSince reports how many of the engine's proxies have a check
// recorded after t, and the IDs of the others.
func checkedSince(e *proxyhealth.Engine, t time.Time) (int, []string) {
	n := 0
	var stale []string
	for _, id := range e.ProxyIDs() {
		v, ok := e.Status().Proxy(id)
		if ok && v.LastCheckAt.After(t) {
			n++
		} else {
			stale = append(stale, id)
		}
	}
	return n, stale
}

// TestJournalOutageIsReportedAndOutlived is the regression test of a
// disk-full episode that stopped most checks for good while /healthz said
// "ok": with every commit failing (EIO injected at the journal's commit),
// checks go on, nothing is announced, the engine reports the journal as
// failing, commands fail with ErrJournalFailing and are never applied
// later, and once commits succeed again the engine resumes by itself:
// every proxy is checked and recorded again, and the projections catch up.
func TestJournalOutageIsReportedAndOutlived(t *testing.T) {
	const n = 20
	farm := startFarm(t, n+1)
	var urls []string
	for i := range n {
		urls = append(urls, farm.URL(i))
	}
	var o outage
	cfg := proxyhealth.WithJournalOptions(proxyhealth.Config{
		DataDir: t.TempDir(),
		Sources: []proxyhealth.SourceConfig{{Name: "a", Health: fastHealth(), Probe: farmProbe(), Proxies: urls}},
	}, journal.WithCommitFault(o.fault))
	e := open(t, cfg)
	poll(t, "every proxy checked", func() bool { c, _ := checkedSince(e, time.Time{}); return c == n })
	if h := e.Health(); !h.OK {
		t.Fatalf("healthy engine reports %+v", h)
	}

	o.on.Store(true)
	poll(t, "the journal reported as failing", func() bool { return e.Health().Journal.Failing })
	head := e.Journal().Head()
	farmBefore := farm.TotalChecks()
	h := e.Health()
	if h.OK || h.Journal.FailedCommits == 0 || !strings.Contains(h.Journal.Error, "input/output error") || len(h.Causes()) == 0 {
		t.Fatalf("health during the outage: %+v (causes %q)", h, h.Causes())
	}
	// Checks go on while nothing can be recorded (before the fix most
	// proxy actors were stopped for good by their supervisor).
	poll(t, "checks to go on during the outage", func() bool { return farm.TotalChecks() >= farmBefore+3*n })
	if got := e.Journal().Head(); got != head {
		t.Fatalf("the journal moved during the outage: %d → %d", head, got)
	}
	// Commands are refused, not applied later.
	actx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.AddProxy(actx, "a", farm.URL(n)); !errors.Is(err, proxyhealth.ErrJournalFailing) {
		t.Fatalf("AddProxy during the outage: %v, want ErrJournalFailing", err)
	}
	if err := e.Pause(actx, ""); !errors.Is(err, proxyhealth.ErrJournalFailing) {
		t.Fatalf("Pause during the outage: %v, want ErrJournalFailing", err)
	}
	// More failures than the supervisor would have tolerated (10 a minute).
	poll(t, "a long outage", func() bool { return e.Health().Journal.FailedCommits > 30 })

	back := time.Now()
	o.on.Store(false)
	poll(t, "the journal reported healthy again", func() bool { return !e.Health().Journal.Failing })
	testutil.EventuallyExplain(t, 20*time.Second, func() bool { c, _ := checkedSince(e, back); return c == n }, func() string {
		_, stale := checkedSince(e, back)
		return fmt.Sprintf("every proxy checked and recorded again after the outage (not yet: %v)", stale)
	})
	caughtUp(t, e)
	if slicesContain(e.ProxyIDs(), "") || len(e.ProxyIDs()) != n {
		t.Fatalf("proxies after the outage: %d, want %d (the refused add must not be applied)", len(e.ProxyIDs()), n)
	}
	for _, v := range listAll(e) {
		if v.Paused {
			t.Fatalf("proxy %s is paused: the refused pause was applied", v.ID)
		}
		if v.URLRedacted == farm.URL(n) {
			t.Fatalf("the refused add was applied later: %+v", v)
		}
	}
	if err := e.Journal().Check(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// caughtUp waits until every projection runs and has applied the
// journal's head as of the call; the named ones must be among them.
func caughtUp(t *testing.T, e *proxyhealth.Engine, names ...string) {
	t.Helper()
	head := e.Journal().Head()
	testutil.EventuallyExplain(t, 20*time.Second, func() bool {
		h := e.Health()
		seen := 0
		for _, p := range h.Projections {
			if p.State != proxyhealth.ProjectionRunning || p.Seq != 0 && p.Seq < head {
				return false
			}
			if slicesContain(names, p.Name) {
				seen++
			}
		}
		return h.OK && seen == len(names)
	}, func() string { return fmt.Sprintf("every projection running and past seq %d: %+v", head, e.Health()) })
}

func listAll(e *proxyhealth.Engine) []projections.ProxyView {
	_, all := e.Status().List(projections.ListFilter{}, 0, 1<<30)
	return all
}

func slicesContain(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// fill writes a file until the filesystem is full.
func fill(t *testing.T, path string) { testutil.FillDisk(t, path) }

// TestDiskFullEpisodeOnARealFilesystem replays the reported episode on a
// small tmpfs: the disk fills up while the engine runs, and space comes
// back. The engine must report it, keep checking, and recover by itself:
// every proxy recorded again, the SQLite view caught up and equal to a
// rebuild.
func TestDiskFullEpisodeOnARealFilesystem(t *testing.T) {
	dir := testutil.MountTmpfs(t, "8m")
	const n = 40
	farm := startFarm(t, n)
	var urls []string
	for i := range n {
		urls = append(urls, farm.URL(i))
	}
	e := open(t, proxyhealth.Config{
		DataDir: filepath.Join(dir, "data"), Projections: []proxyhealth.ProjectionSpec{proxyhealth.SQLiteView()},
		Sources: []proxyhealth.SourceConfig{{Name: "a", Health: fastHealth(), Probe: farmProbe(), Proxies: urls}},
	})
	poll(t, "every proxy checked", func() bool { c, _ := checkedSince(e, time.Time{}); return c == n })

	filler := filepath.Join(dir, "filler")
	fill(t, filler)
	poll(t, "the journal reported as failing", func() bool { return e.Health().Journal.Failing })
	h := e.Health()
	if h.OK || !strings.Contains(h.Journal.Error, "no space left on device") {
		t.Fatalf("health on a full disk: %+v", h)
	}
	farmBefore := farm.TotalChecks()
	poll(t, "checks to go on while the disk is full", func() bool { return farm.TotalChecks() >= farmBefore+2*n })

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	testutil.EventuallyExplain(t, 30*time.Second, func() bool {
		c, _ := checkedSince(e, back)
		return c == n && e.Health().OK
	}, func() string {
		_, stale := checkedSince(e, back)
		return fmt.Sprintf("the engine to recover by itself (health %+v; not checked since: %d proxies)", e.Health(), len(stale))
	})
	caughtUp(t, e, "sqlite view")
	if err := e.Journal().Check(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestAppendHealthIsHealth: AppendHealth is Health with the projections
// written into the caller's array, whatever it held.
func TestAppendHealthIsHealth(t *testing.T) {
	e := open(t, proxyhealth.Config{DataDir: t.TempDir()})
	buf := make([]proxyhealth.ProjectionHealth, 1, 8)
	buf[0].Name = "stale"
	var want, got proxyhealth.Health
	poll(t, "AppendHealth to answer as Health does", func() bool {
		want, got = e.Health(), e.AppendHealth(buf)
		return reflect.DeepEqual(got, want)
	})
	if len(got.Projections) == 0 || &got.Projections[0] != &buf[0] {
		t.Fatalf("AppendHealth's projections %+v are not in the given array", got.Projections)
	}
	// GET /v1/pool asks for it with every request: outside a cluster it
	// allocates nothing (the cluster's status went to the heap on every
	// call before).
	if n := testing.AllocsPerRun(100, func() { e.AppendHealth(buf) }); n != 0 {
		t.Errorf("AppendHealth made %.1f allocations a call, want none", n)
	}
}
