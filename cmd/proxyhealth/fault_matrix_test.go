package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/httpapi"
	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

// TestFaultMatrix runs every fault of issue 16's "Faults" bullet against
// the real daemon (the binary TestMain builds) and asserts what its users
// are promised: what /healthz, /v1/pool, /metrics and the log say during
// the fault, that checks go on (the farm keeps counting connections),
// that every event announced over /v1/events is in the journal afterwards
// (journal verify passing), and that the daemon recovers by itself; a
// damaged journal is refused naming the file and the last good seq, and
// `proxyhealth journal salvage` recovers the intact events, on which the
// daemon then starts.
//
// Journal write failures are produced by a real full filesystem (a small
// tmpfs, which needs root): the binary has no fault-injection hook (the
// injected EIO of journal.WithCommitFault is reachable from Go only, and
// covered by TestJournalOutageIsReportedAndOutlived in the root package).
func TestFaultMatrix(t *testing.T) {
	scenarios := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"journal disk full", faultJournalDiskFull},
		{"view.db disk full", faultViewDiskFull},
		{"view.db deleted", faultViewDeleted},
		{"webhook down and slow", faultWebhooks},
		{"check target hangs", faultHangingTargets},
		{"journal truncated", func(t *testing.T) { faultDamagedJournal(t, truncateHalf) }},
		{"journal page overwritten", func(t *testing.T) { faultDamagedJournal(t, smashMiddlePages) }},
	}
	start := time.Now()
	ran, passed := 0, 0
	for _, sc := range scenarios {
		began := time.Now()
		var sub *testing.T
		ok := t.Run(sc.name, func(t *testing.T) { sub = t; sc.run(t) })
		switch {
		case sub == nil: // not selected by -run
			continue
		case sub.Skipped():
			t.Logf("scenario %-26q SKIPPED", sc.name)
		default:
			t.Logf("scenario %-26q passed=%v in %v", sc.name, ok, time.Since(began).Round(10*time.Millisecond))
		}
		ran++
		if ok && !sub.Skipped() {
			passed++
		}
	}
	t.Logf("fault scenarios passed: %d of %d run in %v", passed, ran, time.Since(start).Round(10*time.Millisecond))
}

// faultJournalDiskFull: the data directory is a small tmpfs, filled while
// the daemon runs, then freed.
func faultJournalDiskFull(t *testing.T) {
	mnt := testutil.MountTmpfs(t, "8m")
	const n = 30
	farm := startFaultFarm(t, n)
	list := farmList(t, t.TempDir(), "pool.txt", farm, 0, n)
	data := filepath.Join(mnt, "data")
	r := newFaultRig(t, data, runArgs(data, "--proxies", list)...)
	ids := farmIDs(farm, 0, n)
	r.waitCheckedSince("before the fault", ids, time.Time{})
	r.waitHealthy("before the fault", 0)

	filler := filepath.Join(mnt, "filler")
	fillDisk(t, filler)
	// Commits into pages bbolt already owns may still succeed on a full
	// disk, so the journal's condition may flip back to ok for a moment:
	// each report is polled until it says failing.
	var code int
	var h httpapi.Healthz
	testutil.EventuallyExplain(t, faultWait, func() bool {
		code, h = r.healthz()
		return code == http.StatusServiceUnavailable && h.Status == "failing" && len(h.Causes) > 0 && h.Journal != nil &&
			h.Journal.Status == "failing" && strings.Contains(h.Journal.Error, "no space left on device") &&
			h.Journal.FailedCommits > 0 && h.Journal.Since != nil
	}, func() string { return fmt.Sprintf("/healthz to say the journal fails with ENOSPC: %d %+v", code, h) })
	headAtFault := h.Journal.Head
	var p httpapi.Pool
	testutil.EventuallyExplain(t, faultWait, func() bool {
		p = r.pool()
		return p.Journal != nil && p.Journal.Status == "failing" && strings.Contains(p.Journal.Error, "no space left on device")
	}, func() string { return fmt.Sprintf("/v1/pool to say the journal fails with ENOSPC: %+v", p.Journal) })
	testutil.Eventually(t, faultWait, "proxyhealth_journal_failing 1", func() bool {
		v, ok := r.metric("proxyhealth_journal_failing", "")
		return ok && v == 1
	})
	testutil.Eventually(t, faultWait, "the log to say the journal did not take the events", func() bool {
		return r.logHas("the journal did not take the proxy's events")
	})
	// Checks go on: every proxy is connected to again, several times.
	before := farmChecks(farm, 0, n)
	testutil.EventuallyExplain(t, faultWait, func() bool { return minGrowth(farm, before) >= 3 }, func() string {
		return fmt.Sprintf("every proxy checked 3 more times on the full disk (least: %d)", minGrowth(farm, before))
	})
	// Commands: one answered 503 is never applied later; one answered 2xx
	// (a commit that went through) is journaled. Each goes to another
	// proxy until one is refused.
	var refused, taken []string
	testutil.EventuallyExplain(t, faultWait, func() bool {
		k := len(refused) + len(taken)
		if k == n {
			t.Fatalf("%d pauses on a full disk, none refused", n)
		}
		switch st := send(t.Context(), r.hc, http.MethodPost, r.base+"/v1/proxies/"+ids[k]+"/pause", nil); {
		case st == http.StatusServiceUnavailable:
			refused = append(refused, ids[k])
		case st >= 200 && st < 300:
			taken = append(taken, ids[k])
		default:
			t.Fatalf("POST pause on a full disk answered %d, want 503 (or 2xx for a commit that went through)", st)
		}
		return len(refused) > 0
	}, func() string { return "a pause refused with 503 on the full disk" })
	// Nothing announced that is not persisted: every event streamed so far
	// is at or below the journal's head.
	_, h = r.healthz()
	if evs, _ := r.sse[0].seen(); len(evs) > 0 && evs[len(evs)-1].seq > h.Journal.Head {
		t.Fatalf("the event stream announced seq %d, the journal's head is %d", evs[len(evs)-1].seq, h.Journal.Head)
	}
	failed := h.Journal.FailedCommits
	t.Logf("during the fault the journal's head went %d -> %d; pauses refused %d, taken %d", headAtFault, h.Journal.Head, len(refused), len(taken))

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	r.waitJournal("ok", &code)
	r.waitCheckedSince("after the disk has space again", ids, back)
	h = r.waitHealthy("after the disk has space again", 0)
	if v, ok := r.metric("proxyhealth_journal_failing", ""); !ok || v != 0 {
		t.Fatalf("proxyhealth_journal_failing after recovery: %v, want 0", v)
	}
	all := r.proxies()
	for _, id := range refused {
		if all[id].Paused {
			t.Errorf("proxy %s: the pause refused with 503 during the fault was applied", id)
		}
	}
	for _, id := range taken {
		if !all[id].Paused {
			t.Errorf("proxy %s: the pause answered 2xx during the fault is not in effect", id)
		}
	}
	r.shutdown()
	announced := r.announcedArePersisted()
	r.viewEqualsRebuild()
	t.Logf("failed commits %d, journal head %d after recovery, %d streamed events all in the journal", failed, h.Journal.Head, announced)
}

// waitJournal waits until /healthz says the journal is status ("ok" or
// "failing") and returns the report and its HTTP status.
func (r *faultRig) waitJournal(status string, code *int) httpapi.Healthz {
	r.t.Helper()
	var h httpapi.Healthz
	testutil.EventuallyExplain(r.t, faultWait, func() bool {
		*code, h = r.healthz()
		return h.Journal != nil && h.Journal.Status == status
	}, func() string { return fmt.Sprintf("/healthz to say the journal is %s: %d %+v", status, *code, h) })
	return h
}

// farmChecks returns the connections each farm proxy of [from, to) has
// accepted so far.
func farmChecks(farm *fakeproxy.Farm, from, to int) map[int]uint64 {
	m := map[int]uint64{}
	for i := from; i < to; i++ {
		m[i] = farm.Checks(i)
	}
	return m
}

// minGrowth returns the least number of connections any proxy of before
// accepted since.
func minGrowth(farm *fakeproxy.Farm, before map[int]uint64) uint64 {
	least := uint64(1 << 62)
	for i, b := range before {
		least = min(least, farm.Checks(i)-b)
	}
	return least
}

// faultViewDiskFull: view.db is a symbolic link into a small tmpfs (the
// journal stays on a disk with room), which is filled while the daemon
// runs, then freed.
func faultViewDiskFull(t *testing.T) {
	mnt := testutil.MountTmpfs(t, "4m")
	const n = 30
	farm := startFaultFarm(t, n)
	dir := t.TempDir()
	list := farmList(t, dir, "pool.txt", farm, 0, n)
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	// The link's target exists (empty): the view does not create a file
	// through a dangling link.
	target := writeFile(t, mnt, proxyhealth.SQLiteViewFile, "")
	if err := os.Symlink(target, filepath.Join(data, proxyhealth.SQLiteViewFile)); err != nil {
		t.Fatal(err)
	}
	r := newFaultRig(t, data, runArgs(data, "--proxies", list)...)
	ids := farmIDs(farm, 0, n)
	r.waitCheckedSince("before the fault", ids, time.Time{})
	r.waitHealthy("before the fault", 0)

	filler := filepath.Join(mnt, "filler")
	fillDisk(t, filler)
	var code int
	var h httpapi.Healthz
	var v httpapi.ProjectionStatus
	testutil.EventuallyExplain(t, faultWait, func() bool {
		code, h = r.healthz()
		v, _ = projection(h.Projections, sqliteView)
		return v.State == "failing" && v.Lag > 0
	}, func() string { return fmt.Sprintf("/healthz to say the view is failing and behind: %d %+v", code, h) })
	if code != http.StatusServiceUnavailable || h.Journal.Status != "ok" || !strings.Contains(v.Error, "full") {
		t.Fatalf("/healthz with view.db on a full disk: %d %+v", code, h)
	}
	var p httpapi.Pool
	testutil.EventuallyExplain(t, faultWait, func() bool {
		p = r.pool()
		pv, ok := projection(p.Projections, sqliteView)
		return ok && pv.State == "failing" && pv.Lag > 0
	}, func() string {
		return fmt.Sprintf("/v1/pool to say the view is failing and behind: %+v", p.Projections)
	})
	testutil.Eventually(t, faultWait, `proxyhealth_projection_up{projection="sqlite view"} 0`, func() bool {
		up, ok := r.metric("proxyhealth_projection_up", `projection="sqlite view"`)
		return ok && up == 0
	})
	testutil.Eventually(t, faultWait, "the log to say the view is failing", func() bool { return r.logHas("SQLite view failing") })
	// The journal takes writes and checks go on: its head moves.
	head := h.Journal.Head
	testutil.Eventually(t, faultWait, "the journal to go on while the view fails", func() bool {
		_, h := r.healthz()
		return h.Journal.Head >= head+uint64(2*n)
	})
	testutil.Eventually(t, faultWait, "the view's lag to grow", func() bool {
		lag, _ := r.metric("proxyhealth_projection_lag_events", `projection="sqlite view"`)
		return lag > float64(v.Lag)
	})

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	_, h = r.healthz()
	h = r.waitHealthy("after the view's disk has space again", h.Journal.Head)
	testutil.Eventually(t, faultWait, "the log to say the view works again", func() bool { return r.logHas("SQLite view working again") })
	r.shutdown()
	announced := r.announcedArePersisted()
	r.viewEqualsRebuild()
	t.Logf("view caught up through seq %d; %d streamed events all in the journal", h.Journal.Head, announced)
}

// faultViewDeleted: view.db is removed while the daemon runs.
func faultViewDeleted(t *testing.T) {
	const n = 30
	farm := startFaultFarm(t, n)
	dir := t.TempDir()
	list := farmList(t, dir, "pool.txt", farm, 0, n)
	data := filepath.Join(dir, "data")
	r := newFaultRig(t, data, runArgs(data, "--proxies", list)...)
	ids := farmIDs(farm, 0, n)
	r.waitCheckedSince("before the fault", ids, time.Time{})
	r.waitHealthy("before the fault", 0)

	path := filepath.Join(data, proxyhealth.SQLiteViewFile)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	_, h := r.healthz()
	deletedAt := h.Journal.Head
	testutil.EventuallyExplain(t, faultWait, func() bool { return r.logHas("SQLite view file missing") }, func() string {
		return "the log to say view.db is missing and being rebuilt:\n" + r.p.stderr.String()
	})
	testutil.Eventually(t, faultWait, "view.db to be back", func() bool { _, err := os.Stat(path); return err == nil })
	h = r.waitHealthy("after view.db was deleted", deletedAt+1)
	r.shutdown()
	announced := r.announcedArePersisted()
	r.viewEqualsRebuild()
	t.Logf("deleted at seq %d, rebuilt and caught up through %d; %d streamed events all in the journal", deletedAt, h.Journal.Head, announced)
}

// faultWebhooks: two daemons check two halves of one farm with the same
// settings; one of them has a webhook to a closed port and one to a
// server that accepts and never answers. Its checks, its event stream
// and its API go on like the other's.
func faultWebhooks(t *testing.T) {
	const half = 20
	farm := startFaultFarm(t, 2*half)
	// A quarter of each half flaps, so that notifications flow.
	for i := range 2 * half {
		if i%4 == 0 {
			if err := farm.Set(i, fakeproxy.Flaky(0.5)); err != nil {
				t.Fatal(err)
			}
		}
	}
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	silent := startSilentServer(t)

	dir := t.TempDir()
	cfg := writeFile(t, dir, "hooks.yaml", "webhooks:\n"+
		"  - url: http://"+closedAddr+"/down\n    timeout: 2s\n"+
		"  - url: http://"+silent.addr()+"/slow\n    timeout: 5m\n")
	args := []string{"--recovery-cooldown", "1s", "--max-recovery-attempts", "0"}
	hooked := newFaultRig(t, filepath.Join(dir, "hooked"), runArgs(filepath.Join(dir, "hooked"),
		append(args, "--config", cfg, "--proxies", farmList(t, dir, "a.txt", farm, 0, half))...)...)
	plain := newFaultRig(t, filepath.Join(dir, "plain"), runArgs(filepath.Join(dir, "plain"),
		append(args, "--proxies", farmList(t, dir, "b.txt", farm, half, 2*half))...)...)
	hooked.waitCheckedSince("the hooked daemon", farmIDs(farm, 0, half), time.Time{})
	plain.waitCheckedSince("the plain daemon", farmIDs(farm, half, 2*half), time.Time{})
	testutil.Eventually(t, faultWait, "the silent webhook target to be connected to", func() bool { return silent.accepted() > 0 })

	// A window of equal length for both: connections to each half, events
	// streamed, and the API's answers (each within the client's 20 s).
	a0, b0 := farmChecks(farm, 0, half), farmChecks(farm, half, 2*half)
	ea, eb := hooked.sse[0].count(), plain.sse[0].count()
	var worst [2]time.Duration
	testutil.Within(8*time.Second, 200*time.Millisecond, func() bool {
		for k, r := range []*faultRig{hooked, plain} {
			began := time.Now()
			r.pool()
			worst[k] = max(worst[k], time.Since(began))
		}
		return false
	})
	var ca, cb uint64
	for i, b := range a0 {
		ca += farm.Checks(i) - b
	}
	for i, b := range b0 {
		cb += farm.Checks(i) - b
	}
	sa, sb := hooked.sse[0].count()-ea, plain.sse[0].count()-eb
	t.Logf("in the window: hooked %d checks, %d events, slowest /v1/pool %v; plain %d checks, %d events, slowest /v1/pool %v",
		ca, sa, worst[0], cb, sb, worst[1])
	if ca*10 < cb*7 {
		t.Errorf("the daemon with dead webhooks checked %d times, the one without %d: below 70%%", ca, cb)
	}
	if sa == 0 || sa*10 < sb*5 {
		t.Errorf("the daemon with dead webhooks streamed %d events, the one without %d", sa, sb)
	}
	if m := minGrowth(farm, a0); m == 0 {
		t.Error("a proxy of the daemon with dead webhooks was not checked in the window")
	}
	testutil.EventuallyExplain(t, faultWait, func() bool { return hooked.logHas("webhook delivery failed") }, func() string {
		return "the log to say a webhook delivery to the closed port failed:\n" + hooked.p.stderr.String()
	})
	if c, _ := hooked.healthz(); c != http.StatusOK {
		t.Errorf("/healthz of the daemon with dead webhooks: %d", c)
	}
	// A SIGTERM would wait up to the 30 s stop timeout for the webhooks
	// and leave the view behind (TestKnownBugStopWithADeadWebhook): the
	// daemon is killed, which must lose nothing announced either.
	hooked.kill()
	plain.shutdown()
	hooked.announcedArePersisted()
	plain.announcedArePersisted()
}

// silentServer accepts connections and never answers; it closes them
// when the test ends.
type silentServer struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	done  chan struct{}
}

func startSilentServer(t *testing.T) *silentServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &silentServer{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-s.done
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range s.conns {
			c.Close()
		}
	})
	return s
}

func (s *silentServer) addr() string { return s.ln.Addr().String() }

func (s *silentServer) accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// faultHangingTargets: a third of the farm accepts connections and never
// answers, with fewer check slots (--concurrency) than hanging proxies:
// if a hanging check kept its slot, the limiter would fill and the other
// proxies would no longer be checked.
func faultHangingTargets(t *testing.T) {
	const n, hang, slots = 30, 10, 4
	farm := startFaultFarm(t, n)
	dir := t.TempDir()
	list := farmList(t, dir, "pool.txt", farm, 0, n)
	data := filepath.Join(dir, "data")
	r := newFaultRig(t, data, runArgs(data, "--proxies", list, "--concurrency", fmt.Sprint(slots),
		"--recovery-cooldown", "1s", "--max-recovery-attempts", "0")...)
	ids := farmIDs(farm, 0, n)
	r.waitCheckedSince("before the fault", ids, time.Time{})
	for i := range hang {
		if err := farm.Set(i, fakeproxy.Blackhole()); err != nil {
			t.Fatal(err)
		}
	}
	hanging := farmIDs(farm, 0, hang)
	// Every hanging proxy's check times out, more than once (each held a
	// slot for the whole timeout), and the pool says so.
	testutil.EventuallyExplain(t, faultWait, func() bool {
		all := r.proxies()
		for _, id := range hanging {
			if p := all[id]; p.State != "unhealthy" && p.State != "recovering" || p.LastErrorClass != "timeout" {
				return false
			}
		}
		return true
	}, func() string {
		return fmt.Sprintf("every hanging proxy unhealthy by timeouts: %+v", r.proxies()[hanging[0]])
	})
	began := time.Now()
	hb := farmChecks(farm, 0, hang)
	before := farmChecks(farm, hang, n)
	// Over a stretch in which the hanging proxies are each tried again,
	// every answering proxy is checked again and again.
	testutil.EventuallyExplain(t, faultWait, func() bool { return minGrowth(farm, hb) >= 2 && minGrowth(farm, before) >= 5 }, func() string {
		return fmt.Sprintf("each hanging proxy tried twice more (least %d) and each answering one checked 5 more times (least %d)",
			minGrowth(farm, hb), minGrowth(farm, before))
	})
	r.waitCheckedSince("the answering proxies", farmIDs(farm, hang, n), began)
	p := r.pool()
	if p.Healthy != n-hang {
		t.Errorf("/v1/pool: %d healthy, want the %d answering proxies", p.Healthy, n-hang)
	}
	zombies := countLog(r.p.stderr.String(), "check outlived twice its timeout")
	r.shutdown()
	announced := r.announcedArePersisted()
	t.Logf("answering proxies checked at least %d times each while %d hung on %d slots; %d checks cancelled as zombies; %d streamed events in the journal",
		minGrowth(farm, before), hang, slots, zombies, announced)
}

// truncateHalf cuts the journal file to half its size (rounded down to
// a 4 KiB page).
func truncateHalf(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()/2&^4095); err != nil {
		t.Fatal(err)
	}
}

// smashMiddlePages overwrites four pages in the middle of the journal
// file with garbage, keeping its size.
func smashMiddlePages(t *testing.T, path string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	at := len(raw) / 2 &^ 4095
	for i := at; i < at+4*4096 && i < len(raw); i++ {
		raw[i] = byte(i*131 + 7)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

// faultDamagedJournal: a daemon records a few thousand events and stops;
// damage makes the next start fail with an error naming journal.db and
// pointing at salvage; `journal salvage` names the last good seq and
// recovers the events through it, byte for byte as the event stream
// announced them; after the steps its output prints (mv, mv, rebuild),
// the daemon starts on the salvaged journal and checks every proxy.
//
// The daemon's refusal does not name the last good seq (salvage's output
// does): TestKnownBugDamagedJournalRefusalNamesLastGoodSeq.
func faultDamagedJournal(t *testing.T, damage func(*testing.T, string)) {
	const n = 60
	farm := startFaultFarm(t, n)
	dir := t.TempDir()
	list := farmList(t, dir, "pool.txt", farm, 0, n)
	data := filepath.Join(dir, "data")
	r := newFaultRig(t, data, runArgs(data, "--proxies", list)...)
	testutil.Eventually(t, faultWait, "2000 events journaled", func() bool { _, h := r.healthz(); return h.Journal.Head >= 2000 })
	r.shutdown()
	path := filepath.Join(data, proxyhealth.JournalFile)
	damage(t, path)

	res := runBinTimeout(t, faultWait, runArgs(data, "--proxies", list)...)
	refusal := strings.TrimSpace(res.stderr[max(strings.LastIndex(res.stderr, "proxyhealth run:"), 0):])
	if res.code != 1 || strings.Contains(res.stderr, "goroutine ") || strings.Contains(res.stderr, "proxyhealth started") {
		t.Fatalf("the daemon on a damaged journal: exit %d\n%s", res.code, res.stderr)
	}
	for _, want := range []string{path, "damaged", "proxyhealth journal salvage"} {
		if !strings.Contains(refusal, want) {
			t.Errorf("the daemon's refusal does not say %q: %s", want, refusal)
		}
	}
	t.Logf("refusal: %s", refusal)

	sal := runBin(t, "journal", "salvage", "--data", data)
	if sal.code != 0 {
		t.Fatalf("journal salvage: exit %d\n%s%s", sal.code, sal.stdout, sal.stderr)
	}
	var events, first, lastGood uint64
	if _, err := fmt.Sscanf(sal.stdout, "salvaged %d events (seq %d to %d)", &events, &first, &lastGood); err != nil || first != 1 || lastGood != events {
		t.Fatalf("journal salvage does not say which events it recovered (%v):\n%s", err, sal.stdout)
	}
	announced := r.sseMax()
	if lastGood == 0 || lastGood >= announced {
		t.Fatalf("journal salvage recovered through seq %d of the %d announced:\n%s", lastGood, announced, sal.stdout)
	}
	t.Logf("%v: salvaged", time.Now().Format(time.StampMilli))
	salvaged := filepath.Join(data, "journal.salvaged.db")
	steps := []string{"mv " + path + " " + path + ".damaged", "mv " + salvaged + " " + path, "proxyhealth rebuild --data " + data}
	for _, step := range steps {
		if !strings.Contains(sal.stdout, step) {
			t.Fatalf("journal salvage does not print the step %q:\n%s", step, sal.stdout)
		}
	}
	if err := os.Rename(path, path+".damaged"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(salvaged, path); err != nil {
		t.Fatal(err)
	}
	if rb := runBin(t, "rebuild", "--data", data); rb.code != 0 {
		t.Fatalf("rebuild on the salvaged journal: exit %d\n%s%s", rb.code, rb.stdout, rb.stderr)
	}
	// What the stream announced through the last good seq is recovered
	// byte for byte; what came after it is what the damage destroyed.
	r.sse[0].keepThrough(lastGood)
	recovered := r.announcedArePersisted()

	t.Logf("%v: restarting", time.Now().Format(time.StampMilli))
	r.start()
	t.Logf("%v: restarted", time.Now().Format(time.StampMilli))
	waitPool(t, r.base, "showing every proxy", func(p httpapi.Pool) bool { return p.Total == n })
	r.waitCheckedSince("on the salvaged journal", farmIDs(farm, 0, n), time.Now())
	r.waitHealthy("on the salvaged journal", 0)
	t.Logf("%v: healthy", time.Now().Format(time.StampMilli))
	r.shutdown()
	t.Logf("%v: stopped", time.Now().Format(time.StampMilli))
	r.announcedArePersisted()
	r.viewEqualsRebuild()
	t.Logf("salvage recovered seq 1..%d of %d announced; %d announced events through it identical in the salvaged journal", lastGood, announced, recovered)
}

// runBinTimeout runs the binary to completion within d.
func runBinTimeout(t *testing.T, d time.Duration, args ...string) result {
	t.Helper()
	p := startBin(t, nil, args...)
	code := p.wait(d)
	return result{code: code, stdout: p.stdout.String(), stderr: p.stderr.String()}
}
