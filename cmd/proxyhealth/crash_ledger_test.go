package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/httpapi"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections/sqlview"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// The offline half of the kill -9 test: after each kill, the journal the
// daemon left is read (read-only, the daemon is dead) and compared with
// what the clients saw and were answered, the view it kept with a
// rebuild, and the state the next daemon showed with the journal's fold.

// crashStats are the figures the test reports.
type crashStats struct {
	rounds        int
	startupKills  int    // rounds killed during start-up
	ckptRestores  int    // starts that restored the live status from its checkpoint
	events        int    // journal events read and folded
	sseEvents     int    // events received over /v1/events and found in the journal
	sseNotes      int    // notifications received and matched to their event
	writes2xx     int    // writes answered 2xx whose effect was found in the journal
	writesUnknown int    // writes not answered (the kill) or answered otherwise
	outcomes      int    // outcomes answered 202
	resumed       int    // proxies compared after a restart with the journal's fold
	viewTables    int    // view tables compared with a rebuild
	viewRows      int    // rows in them
	viewOffset    uint64 // the offset of the last view compared
	losses        int    // something acknowledged or seen that the journal lacks
	mismatches    int    // anything else that disagrees
}

// proxyTuple is what GET /v1/proxies shows of a proxy that comes from the
// journal alone.
type proxyTuple struct {
	source, state string
	paused        bool
	cf, cs        uint32
	lastCheck     int64
}

func tupleOfState(s events.State) proxyTuple {
	var lc int64
	if !s.LastCheckAt.IsZero() {
		lc = s.LastCheckAt.UnixNano()
	}
	return proxyTuple{source: s.Source, state: events.StateName(s.Health), paused: s.Paused,
		cf: s.ConsecutiveFailures, cs: s.ConsecutiveSuccesses, lastCheck: lc}
}

func tupleOfAPI(p httpapi.Proxy) proxyTuple {
	var lc int64
	if p.LastCheckAt != nil {
		lc = p.LastCheckAt.UnixNano()
	}
	return proxyTuple{source: p.Source, state: p.State, paused: p.Paused,
		cf: p.ConsecutiveFailures, cs: p.ConsecutiveSuccesses, lastCheck: lc}
}

// resumeSnapshot is what a restarted daemon showed before any write of
// the test: every proxy, and the journal seq its live status had applied
// just after (through).
type resumeSnapshot struct {
	proxies []httpapi.Proxy
	through uint64
}

// roundRecord is what one round's clients saw and were answered.
type roundRecord struct {
	round      int
	writesFrom uint64 // the journal seq before the writers started
	writes     []apiWrite
	sse        []*sseClient
	resume     *resumeSnapshot // nil in the first round (nothing to resume)
	final      bool            // stopped by SIGTERM, not killed
}

// ledger is what the test knows of the journal across rounds: its head
// at the last kill and every proxy's fold through it.
type ledger struct {
	t      *testing.T
	data   string
	head   uint64
	states map[string]events.State
	stats  crashStats
}

func newLedger(t *testing.T, data string) *ledger {
	return &ledger{t: t, data: data, states: map[string]events.State{}}
}

// lose and mismatch report a failure and count it.
func (l *ledger) lose(format string, args ...any) {
	l.t.Helper()
	l.stats.losses++
	l.t.Errorf("LOSS: "+format, args...)
}

func (l *ledger) mismatch(format string, args ...any) {
	l.t.Helper()
	l.stats.mismatches++
	l.t.Errorf("MISMATCH: "+format, args...)
}

// present are the proxies the journal says are monitored.
func (l *ledger) present() map[string]bool {
	out := map[string]bool{}
	for id, s := range l.states {
		if s.Added && !s.Removed {
			out[id] = true
		}
	}
	return out
}

// check runs every offline check of a round on the data directory the
// stopped daemon left, and advances the ledger to the journal's new head.
func (l *ledger) check(ctx context.Context, rr *roundRecord) {
	l.t.Helper()
	t := l.t
	r := runBin(t, "journal", "verify", "--data", l.data)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "journal OK") {
		l.mismatch("round %d: journal verify: exit %d\n%s%s", rr.round, r.code, r.stdout, r.stderr)
	}
	j, err := journal.OpenBolt(filepath.Join(l.data, proxyhealth.JournalFile), journal.WithReadOnly())
	if err != nil {
		t.Fatalf("round %d: opening the journal read-only: %v", rr.round, err)
	}
	defer j.Close()
	head := j.Head()
	if head < l.head {
		l.lose("round %d: the journal's head is %d, it was %d after the last round", rr.round, head, l.head)
	}

	// What the event streams saw may start before the last round's head
	// (a stream resumed with Last-Event-ID reads the killed daemon's tail).
	from := l.head + 1
	for _, c := range rr.sse {
		if evs, _ := c.seen(); len(evs) > 0 && evs[0].seq > 0 && evs[0].seq < from {
			from = evs[0].seq
		}
	}
	envs := map[uint64]*pb.Envelope{}
	next := from
	for env, err := range j.Read(ctx, from) {
		if err != nil {
			t.Fatalf("round %d: reading the journal from %d: %v", rr.round, from, err)
		}
		if env.GetSeq() != next {
			l.mismatch("round %d: journal seq %d where %d was due", rr.round, env.GetSeq(), next)
		}
		next = env.GetSeq() + 1
		envs[env.GetSeq()] = env
	}
	if next != head+1 {
		l.mismatch("round %d: the journal read ends at %d, its head is %d", rr.round, next-1, head)
	}

	// The state each proxy had at the restart, and what the restarted
	// daemon may have shown of it: the fold at the restart, or after any
	// of its events up to the snapshot's seq.
	var candidates map[string][]proxyTuple
	var atRestart map[string]bool
	if rr.resume != nil {
		candidates = map[string][]proxyTuple{}
		atRestart = l.present()
		for id := range atRestart {
			candidates[id] = []proxyTuple{tupleOfState(l.states[id])}
		}
	}
	// Proxies paused at the restart are not checked until resumed: a check
	// in flight at the kill died with the process.
	pausedSinceRestart := map[string]bool{}
	if rr.round > 1 {
		for id, s := range l.states {
			if s.Added && !s.Removed && s.Paused {
				pausedSinceRestart[id] = true
			}
		}
	}
	// The journaled effects of the writes, per proxy, in order.
	effects := map[string][]string{}
	passive := map[string]int{}
	churned := map[string]bool{} // added or removed before the snapshot's seq

	for seq := l.head + 1; seq <= head; seq++ {
		env := envs[seq]
		if env == nil {
			continue // reported above
		}
		l.stats.events++
		pid := env.GetProxyId()
		if pid == "" {
			continue
		}
		prev := l.states[pid]
		switch e := env.GetEvent().(type) {
		case *pb.Envelope_StateChanged:
			if prev.Added && e.StateChanged.GetFrom() != prev.Health {
				l.mismatch("round %d: seq %d: proxy %s changes from %s, its journaled state is %s", rr.round, seq, pid,
					events.StateName(e.StateChanged.GetFrom()), events.StateName(prev.Health))
			}
		case *pb.Envelope_CheckSucceeded, *pb.Envelope_CheckFailed:
			if pausedSinceRestart[pid] {
				l.mismatch("round %d: seq %d: proxy %s was checked, but it was paused when the daemon restarted and not resumed since", rr.round, seq, pid)
			}
		case *pb.Envelope_ProxyResumed, *pb.Envelope_ProxyRemoved, *pb.Envelope_ProxyAdded:
			delete(pausedSinceRestart, pid)
		}
		if seq > rr.writesFrom {
			switch env.GetEvent().(type) {
			case *pb.Envelope_ProxyPaused:
				effects[pid] = append(effects[pid], "pause")
			case *pb.Envelope_ProxyResumed:
				effects[pid] = append(effects[pid], "resume")
			case *pb.Envelope_ProxyAdded:
				effects[pid] = append(effects[pid], "add")
			case *pb.Envelope_ProxyRemoved:
				effects[pid] = append(effects[pid], "remove")
			case *pb.Envelope_PassiveFailureReported:
				passive[pid]++
			}
		}
		next := events.Evolve(prev, env)
		l.states[pid] = next
		if rr.resume != nil && seq <= rr.resume.through {
			switch env.GetEvent().(type) {
			case *pb.Envelope_ProxyAdded, *pb.Envelope_ProxyRemoved:
				churned[pid] = true
			}
			candidates[pid] = append(candidates[pid], tupleOfState(next))
		}
	}

	if rr.resume != nil {
		l.checkResume(rr, atRestart, candidates, churned)
	}
	l.checkSSE(rr, envs, head)
	l.checkWrites(rr, effects, passive)
	l.checkView(ctx, rr, j, head)
	l.head = head
}

// checkResume compares what the restarted daemon showed with the
// journal: the same proxies, each in the state of its journaled fold.
func (l *ledger) checkResume(rr *roundRecord, atRestart map[string]bool, candidates map[string][]proxyTuple, churned map[string]bool) {
	l.t.Helper()
	shown := map[string]bool{}
	for _, p := range rr.resume.proxies {
		shown[p.ID] = true
		if churned[p.ID] {
			continue
		}
		if !atRestart[p.ID] {
			l.mismatch("round %d: the restarted daemon shows proxy %s, which the journal had not (or had removed)", rr.round, p.ID)
			continue
		}
		got := tupleOfAPI(p)
		if !slices.Contains(candidates[p.ID], got) {
			l.mismatch("round %d: after the restart proxy %s shows %+v; its journaled state was %+v (and later %v)", rr.round, p.ID, got, candidates[p.ID][0], candidates[p.ID][1:])
			continue
		}
		l.stats.resumed++
	}
	for id := range atRestart {
		if !shown[id] && !churned[id] {
			l.lose("round %d: the restarted daemon does not show proxy %s, which the journal has (state %s)", rr.round, id, events.StateName(l.states[id].Health))
		}
	}
}

// checkSSE finds every event the streams received in the journal, with
// the same content, in order and without gaps, and the event of every
// notification.
func (l *ledger) checkSSE(rr *roundRecord, envs map[uint64]*pb.Envelope, head uint64) {
	l.t.Helper()
	for _, c := range rr.sse {
		evs, notes := c.seen()
		for i, ev := range evs {
			switch {
			case i == 0 && c.lastID > 0 && ev.seq != c.lastID+1:
				l.mismatch("round %d: stream %s resumed after %d and got %d first", rr.round, c.name, c.lastID, ev.seq)
			case i > 0 && ev.seq != evs[i-1].seq+1:
				l.mismatch("round %d: stream %s got %d after %d", rr.round, c.name, ev.seq, evs[i-1].seq)
			}
			env := envs[ev.seq]
			if env == nil || ev.seq > head {
				l.lose("round %d: stream %s received event %d, the journal (head %d) lacks it: %s", rr.round, c.name, ev.seq, head, ev.data)
				continue
			}
			want, err := json.Marshal(proxyhealth.RecordOf(env))
			if err != nil {
				l.t.Fatal(err)
			}
			if string(want) != ev.data {
				l.mismatch("round %d: stream %s event %d:\n  received %s\n  journaled %s", rr.round, c.name, ev.seq, ev.data, want)
				continue
			}
			l.stats.sseEvents++
		}
		for _, n := range notes {
			var nj struct {
				Seq     uint64 `json:"seq"`
				ProxyID string `json:"proxy_id"`
			}
			if err := json.Unmarshal([]byte(n.data), &nj); err != nil {
				l.mismatch("round %d: stream %s notification %s: %v: %s", rr.round, c.name, n.typ, err, n.data)
				continue
			}
			env := envs[nj.Seq]
			if env == nil || nj.Seq > head {
				l.lose("round %d: stream %s received notification %s of event %d, the journal (head %d) lacks it", rr.round, c.name, n.typ, nj.Seq, head)
				continue
			}
			if nj.ProxyID != "" && env.GetProxyId() != nj.ProxyID {
				l.mismatch("round %d: stream %s notification %s names proxy %s, event %d is proxy %s's", rr.round, c.name, n.typ, nj.ProxyID, nj.Seq, env.GetProxyId())
				continue
			}
			l.stats.sseNotes++
		}
	}
}

// checkWrites finds the effect of every write answered 2xx in the
// journal, in the order of the writes, and nothing the writes did not
// ask for; a write not answered may or may not have taken effect.
func (l *ledger) checkWrites(rr *roundRecord, effects map[string][]string, passive map[string]int) {
	l.t.Helper()
	byProxy := map[string][]apiWrite{}
	failures := map[string]int{}
	for _, w := range rr.writes {
		switch w.kind {
		case "fail", "ok":
			if w.answered2xx() {
				l.stats.outcomes++
			}
			if w.kind == "fail" {
				failures[w.proxy]++
			}
		default:
			byProxy[w.proxy] = append(byProxy[w.proxy], w)
		}
	}
	for pid, ws := range byProxy {
		got := effects[pid]
		k := 0
		for i, w := range ws {
			if !w.answered2xx() {
				l.stats.writesUnknown++
				if i != len(ws)-1 {
					l.mismatch("round %d: proxy %s was written to after an uncertain write (test bug)", rr.round, pid)
				}
				if k < len(got) && got[k] == w.kind {
					k++ // it took effect before the kill
				}
				continue
			}
			if k >= len(got) || got[k] != w.kind {
				l.lose("round %d: %s of proxy %s answered %d, not in the journal (journaled after seq %d: %v; written: %v)", rr.round, w.kind, pid, w.status, rr.writesFrom, got, ws)
				k = len(got)
				break
			}
			k++
			l.stats.writes2xx++
		}
		if k < len(got) {
			l.mismatch("round %d: proxy %s has journaled %v, the writes asked for %v", rr.round, pid, got, ws)
		}
	}
	for pid, got := range effects {
		if _, ok := byProxy[pid]; !ok {
			l.mismatch("round %d: proxy %s has journaled %v after seq %d, no write asked for it", rr.round, pid, got, rr.writesFrom)
		}
	}
	for pid, n := range passive {
		if n > failures[pid] {
			l.mismatch("round %d: proxy %s has %d passive failures journaled, %d were reported", rr.round, pid, n, failures[pid])
		}
	}
}

// throughJournal is a journal read as it was at head: a rebuild of it is
// the view at that offset.
type throughJournal struct {
	journal.Journal
	head uint64
}

func (j throughJournal) Head() uint64 { return j.head }

// checkView compares the view the daemon kept, table by table, with a
// rebuild of the journal through the view's offset.
func (l *ledger) checkView(ctx context.Context, rr *roundRecord, j journal.Journal, head uint64) {
	l.t.Helper()
	t := l.t
	scratch, err := os.MkdirTemp("", "proxyhealth-crash-view-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(scratch)
	kept := filepath.Join(scratch, "kept.db")
	for _, suffix := range []string{"", "-wal"} {
		if err := copyViewFile(filepath.Join(l.data, proxyhealth.SQLiteViewFile+suffix), kept+suffix); err != nil {
			if suffix != "" && errors.Is(err, os.ErrNotExist) {
				continue
			}
			t.Fatalf("round %d: copying the view: %v", rr.round, err)
		}
	}
	keptDump, offset := dumpView(t, kept)
	l.stats.viewOffset = offset
	if offset > head {
		l.mismatch("round %d: the view is at seq %d, ahead of its journal (head %d)", rr.round, offset, head)
		return
	}
	if rr.final && offset != head {
		l.mismatch("round %d: after a clean stop the view is at seq %d, the journal at %d", rr.round, offset, head)
	}
	rebuilt := filepath.Join(scratch, "rebuilt.db")
	if err := sqlview.RebuildFile(ctx, rebuilt, throughJournal{j, offset}, sqlview.Options{}); err != nil {
		t.Fatalf("round %d: rebuilding the view through seq %d: %v", rr.round, offset, err)
	}
	l.checkStatusData(rr, rebuilt, offset)
	rebuiltDump, _ := dumpView(t, rebuilt)
	names := sortedKeys(rebuiltDump)
	if kn := sortedKeys(keptDump); !slices.Equal(kn, names) {
		l.mismatch("round %d: the view has tables %v, a rebuild %v", rr.round, kn, names)
	}
	for _, name := range names {
		a, b := keptDump[name], rebuiltDump[name]
		if !slices.Equal(a, b) {
			l.mismatch("round %d: view table %s at seq %d differs from a rebuild: %s", rr.round, name, offset, firstDiff(a, b))
			continue
		}
		l.stats.viewTables++
		l.stats.viewRows += len(a)
	}
}

// checkStatusData runs proxyhealth status --data on the directory the
// daemon left (its view read with what its -wal holds) and compares the
// figures with a rebuild of the journal through the view's offset.
func (l *ledger) checkStatusData(rr *roundRecord, rebuilt string, offset uint64) {
	l.t.Helper()
	t := l.t
	r := runBin(t, "status", "--data", l.data, "--format", "json")
	var got httpapi.Pool
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &got) != nil {
		l.mismatch("round %d: status --data: exit %d\n%s%s", rr.round, r.code, r.stdout, r.stderr)
		return
	}
	db, err := sql.Open("sqlite3", "file:"+rebuilt+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var want httpapi.Counts
	rows, err := db.Query(`SELECT state, paused, COUNT(*) FROM proxies GROUP BY state, paused`)
	if err != nil {
		t.Fatalf("%s: %v", rebuilt, err)
	}
	defer rows.Close()
	for rows.Next() {
		var state string
		var paused bool
		var n int
		if err := rows.Scan(&state, &paused, &n); err != nil {
			t.Fatal(err)
		}
		want.Total += n
		if paused {
			want.Paused += n
		}
		switch state {
		case "healthy":
			want.Healthy += n
		case "degraded":
			want.Degraded += n
		case "unhealthy":
			want.Unhealthy += n
		case "recovering":
			want.Recovering += n
		case "failed":
			want.Failed += n
		case "unknown":
			want.Unknown += n
		default:
			t.Fatalf("%s: state %q", rebuilt, state)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	g := got.Counts
	g.Checking, g.HealthPercentage, g.Ejected = 0, 0, 0
	if got.JournalSeq != offset || g != want {
		l.mismatch("round %d: status --data says seq %d %+v; the view the daemon kept is at seq %d, and a rebuild through it has %+v", rr.round, got.JournalSeq, g, offset, want)
	}
}

// firstDiff describes the first difference between two sorted row lists.
func firstDiff(kept, rebuilt []string) string {
	for i := range min(len(kept), len(rebuilt)) {
		if kept[i] != rebuilt[i] {
			return fmt.Sprintf("row %d:\n  kept    %s\n  rebuilt %s", i, kept[i], rebuilt[i])
		}
	}
	return fmt.Sprintf("%d rows kept, %d rebuilt", len(kept), len(rebuilt))
}

// dumpView reads every row of every table and view of a view file, each
// table's rows sorted, and its offset. The check history's two tables are
// left out: which of them holds a row depends on when merges ran (a
// rebuild writes the archive only); check_history, the view of both, is
// compared.
func dumpView(t *testing.T, path string) (map[string][]string, uint64) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var names []string
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' ORDER BY name`)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, name := range names {
		if name == "check_history_archive" || name == "check_history_recent" {
			continue
		}
		rows, err := db.Query(`SELECT * FROM "` + name + `"`)
		if err != nil {
			t.Fatalf("%s: table %s: %v", path, name, err)
		}
		cols, _ := rows.Columns()
		var dump []string
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			for i, v := range vals {
				fmt.Fprintf(&b, "%s=%#v ", cols[i], v)
			}
			dump = append(dump, b.String())
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		slices.Sort(dump)
		out[name] = dump
	}
	var offset uint64
	if err := db.QueryRow(`SELECT COALESCE(MAX(seq), 0) FROM projection_offsets`).Scan(&offset); err != nil {
		t.Fatalf("%s: offset: %v", path, err)
	}
	return out, offset
}

func copyViewFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// ctxTimeout is a context for one round's offline checks.
func ctxTimeout(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, 2*time.Minute)
}
