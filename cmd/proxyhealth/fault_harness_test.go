package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/httpapi"
	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections/sqlview"
)

// The rig of the fault matrix (TestFaultMatrix): a real daemon over a
// fake farm, an event-stream client connected from its start, and the
// reads of what the daemon tells its users (/healthz, /v1/pool,
// /metrics, /v1/proxies, its log).

// faultWait is the generous deadline of every wait of the fault matrix:
// the machine is shared with other test runs.
const faultWait = 45 * time.Second

// faultRig is one daemon of the fault matrix.
type faultRig struct {
	t    *testing.T
	data string // the daemon's --data
	args []string
	p    *proc
	base string
	hc   *http.Client
	sse  []*sseClient // one per daemon start, connected at its start
	stop context.CancelFunc
}

// startFaultFarm starts a farm of n proxies, all answering.
func startFaultFarm(t *testing.T, n int) *fakeproxy.Farm {
	t.Helper()
	farm, err := fakeproxy.Start(t.Context(), n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(farm.Close)
	return farm
}

// farmList writes the proxy list of farm indexes [from, to) and returns
// its path.
func farmList(t *testing.T, dir, name string, farm *fakeproxy.Farm, from, to int) string {
	t.Helper()
	var b strings.Builder
	for i := from; i < to; i++ {
		b.WriteString(farm.URL(i) + "\n")
	}
	return writeFile(t, dir, name, b.String())
}

// newFaultRig starts the daemon with args and connects an event-stream
// client; the test's cleanup stops both.
func newFaultRig(t *testing.T, data string, args ...string) *faultRig {
	t.Helper()
	r := &faultRig{t: t, data: data, args: args, hc: &http.Client{Timeout: 20 * time.Second}}
	t.Cleanup(r.hc.CloseIdleConnections)
	r.start()
	return r
}

// start (re)starts the daemon and connects a new event-stream client.
func (r *faultRig) start() {
	r.t.Helper()
	r.p = startBin(r.t, nil, r.args...)
	r.base = r.p.apiURL()
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	r.t.Cleanup(cancel)
	c, err := startSSE(ctx, &http.Client{}, r.base, "fault-matrix", 0)
	if err != nil {
		r.t.Fatal(err)
	}
	r.sse = append(r.sse, c)
}

// shutdown stops the daemon with SIGTERM (it must exit 0) and ends the
// event stream.
func (r *faultRig) shutdown() {
	r.t.Helper()
	r.p.signal(syscall.SIGTERM)
	if code := r.p.wait(faultWait); code != 0 {
		r.t.Fatalf("the daemon exited %d after SIGTERM\nstderr:\n%s", code, r.p.stderr)
	}
	r.stop()
	<-r.sse[len(r.sse)-1].done
}

// sseMax returns the highest seq the first event stream received.
func (r *faultRig) sseMax() uint64 {
	evs, _ := r.sse[0].seen()
	if len(evs) == 0 {
		return 0
	}
	return evs[len(evs)-1].seq
}

// keepThrough forgets the events the client received after seq (those a
// damaged journal lost).
func (c *sseClient) keepThrough(seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, ev := range c.events {
		if ev.seq > seq {
			c.events = c.events[:i]
			break
		}
	}
}

// kill stops the daemon with SIGKILL and ends the event stream.
func (r *faultRig) kill() {
	r.t.Helper()
	r.p.signal(syscall.SIGKILL)
	r.p.wait(faultWait)
	r.stop()
	<-r.sse[len(r.sse)-1].done
}

// healthz fetches GET /healthz: its status code and body.
func (r *faultRig) healthz() (int, httpapi.Healthz) {
	r.t.Helper()
	resp, err := r.hc.Get(r.base + "/healthz")
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	var h httpapi.Healthz
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		r.t.Fatalf("GET /healthz (%s): %v", resp.Status, err)
	}
	return resp.StatusCode, h
}

// pool fetches GET /v1/pool.
func (r *faultRig) pool() httpapi.Pool {
	r.t.Helper()
	var p httpapi.Pool
	getJSON(r.t, r.base+"/v1/pool", &p)
	return p
}

// metric returns the value of the /metrics series name{labels} ("" for
// an unlabelled series); ok is false when the series is absent.
func (r *faultRig) metric(name, labels string) (float64, bool) {
	r.t.Helper()
	resp, err := r.hc.Get(r.base + "/metrics")
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatal(err)
	}
	series := name
	if labels != "" {
		series += "{" + labels + "}"
	}
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				r.t.Fatalf("metric %s: %q: %v", series, v, err)
			}
			return f, true
		}
	}
	return 0, false
}

// proxies fetches every proxy of GET /v1/proxies by ID.
func (r *faultRig) proxies() map[string]httpapi.Proxy { return proxyIDs(r.t, r.base, "") }

// projection returns the named projection of a health report.
func projection(ps []httpapi.ProjectionStatus, name string) (httpapi.ProjectionStatus, bool) {
	i := slices.IndexFunc(ps, func(p httpapi.ProjectionStatus) bool { return p.Name == name })
	if i < 0 {
		return httpapi.ProjectionStatus{}, false
	}
	return ps[i], true
}

// sqliteView is the SQLite view's projection name in the health reports.
const sqliteView = "sqlite view"

// waitHealthy waits until /healthz answers 200, the journal takes
// writes, every projection runs and the SQLite view has applied seq
// through (the head as of the call when through is 0).
func (r *faultRig) waitHealthy(what string, through uint64) httpapi.Healthz {
	r.t.Helper()
	var code int
	var h httpapi.Healthz
	if through == 0 {
		_, h = r.healthz()
		through = h.Journal.Head
	}
	testutil.EventuallyExplain(r.t, faultWait, func() bool {
		code, h = r.healthz()
		v, ok := projection(h.Projections, sqliteView)
		return code == http.StatusOK && h.Status == "ok" && h.Journal != nil && h.Journal.Status == "ok" &&
			ok && v.State == "running" && v.Seq >= through
	}, func() string { return fmt.Sprintf("%s: /healthz %d %+v\nstderr:\n%s", what, code, h, r.p.stderr) })
	return h
}

// checkedSince returns how many of ids the daemon shows checked after
// at, and the others.
func (r *faultRig) checkedSince(ids []string, at time.Time) (int, []string) {
	r.t.Helper()
	all := r.proxies()
	n := 0
	var stale []string
	for _, id := range ids {
		if p, ok := all[id]; ok && p.LastCheckAt != nil && p.LastCheckAt.After(at) {
			n++
		} else {
			stale = append(stale, id)
		}
	}
	return n, stale
}

// waitCheckedSince waits until the daemon shows every one of ids checked
// (and journaled) after at.
func (r *faultRig) waitCheckedSince(what string, ids []string, at time.Time) {
	r.t.Helper()
	testutil.EventuallyExplain(r.t, faultWait, func() bool {
		n, _ := r.checkedSince(ids, at)
		return n == len(ids)
	}, func() string {
		_, stale := r.checkedSince(ids, at)
		return fmt.Sprintf("%s: every proxy checked after %s (not yet: %d of %d)", what, at.Format(time.RFC3339Nano), len(stale), len(ids))
	})
}

// logHas reports whether the daemon's log has a line whose msg contains
// msg.
func (r *faultRig) logHas(msg string) bool { return countLog(r.p.stderr.String(), msg) > 0 }

// countLog counts the JSON log lines whose msg contains msg.
func countLog(log, msg string) int {
	n := 0
	for line := range strings.SplitSeq(log, "\n") {
		var rec struct {
			Msg string `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && strings.Contains(rec.Msg, msg) {
			n++
		}
	}
	return n
}

// fillDisk writes path until its filesystem is full.
func fillDisk(t *testing.T, path string) { testutil.FillDisk(t, path) }

// farmIDs returns the proxy IDs of farm indexes [from, to).
func farmIDs(farm *fakeproxy.Farm, from, to int) []string {
	var ids []string
	for i := from; i < to; i++ {
		ids = append(ids, id(farm.URL(i)))
	}
	return ids
}

// announcedArePersisted checks, with the daemon stopped, that journal
// verify passes and that every event any of the rig's event streams
// received is in the journal, byte for byte as the stream sent it. It
// returns how many events the streams received.
func (r *faultRig) announcedArePersisted() int {
	r.t.Helper()
	t := r.t
	if v := runBin(t, "journal", "verify", "--data", r.data); v.code != 0 || !strings.HasPrefix(v.stdout, "journal OK") {
		t.Fatalf("journal verify: exit %d\n%s%s", v.code, v.stdout, v.stderr)
	}
	j, err := journal.OpenBolt(filepath.Join(r.data, proxyhealth.JournalFile), journal.WithReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	from := uint64(0)
	for _, c := range r.sse {
		if evs, _ := c.seen(); len(evs) > 0 && (from == 0 || evs[0].seq < from) {
			from = evs[0].seq
		}
	}
	journaled := map[uint64]string{}
	if from > 0 {
		for env, err := range j.Read(t.Context(), from) {
			if err != nil {
				t.Fatalf("reading the journal from %d: %v", from, err)
			}
			b, err := json.Marshal(proxyhealth.RecordOf(env))
			if err != nil {
				t.Fatal(err)
			}
			journaled[env.GetSeq()] = string(b)
		}
	}
	n := 0
	for _, c := range r.sse {
		evs, _ := c.seen()
		for _, ev := range evs {
			got, ok := journaled[ev.seq]
			if !ok {
				t.Errorf("the event stream announced seq %d, the journal (head %d) lacks it: %s", ev.seq, j.Head(), ev.data)
			} else if got != ev.data {
				t.Errorf("the event stream announced seq %d as\n  %s\nthe journal has\n  %s", ev.seq, ev.data, got)
			}
			n++
		}
	}
	return n
}

// viewEqualsRebuild checks, with the daemon stopped, that the view.db it
// left is at the journal's head and equal, table by table, to a rebuild
// of the journal.
func (r *faultRig) viewEqualsRebuild() {
	r.t.Helper()
	t := r.t
	j, err := journal.OpenBolt(filepath.Join(r.data, proxyhealth.JournalFile), journal.WithReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	scratch := t.TempDir()
	kept := filepath.Join(scratch, "kept.db")
	for _, suffix := range []string{"", "-wal"} {
		if err := copyViewFile(filepath.Join(r.data, proxyhealth.SQLiteViewFile+suffix), kept+suffix); err != nil && suffix == "" {
			t.Fatalf("copying the view: %v", err)
		}
	}
	keptDump, offset := dumpView(t, kept)
	if offset != j.Head() {
		t.Fatalf("after a clean stop the view is at seq %d, the journal at %d", offset, j.Head())
	}
	rebuilt := filepath.Join(scratch, "rebuilt.db")
	if err := sqlview.RebuildFile(t.Context(), rebuilt, j, sqlview.Options{}); err != nil {
		t.Fatal(err)
	}
	rebuiltDump, _ := dumpView(t, rebuilt)
	if a, b := sortedKeys(keptDump), sortedKeys(rebuiltDump); !slices.Equal(a, b) {
		t.Fatalf("the view has tables %v, a rebuild %v", a, b)
	}
	for name, rows := range rebuiltDump {
		if !slices.Equal(keptDump[name], rows) {
			t.Errorf("view table %s differs from a rebuild: %s", name, firstDiff(keptDump[name], rows))
		}
	}
}
