package props_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	_ "github.com/mattn/go-sqlite3" // the view's driver
	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/internal/clock"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/probe"
	"github.com/proxyhealth/proxyhealth/projections"
	"github.com/proxyhealth/proxyhealth/projections/sqlview"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
	"google.golang.org/protobuf/proto"
)

// The engine under test runs in a child process (this test binary,
// re-executed with childEnv set, running TestEngineChild), so that the
// parent can kill it with SIGKILL at any moment: a crash, not a Close.
// Parent and child speak JSON over two extra pipes (fd 3: requests, fd 4:
// replies); stdout and stderr stay the test framework's.

const childEnv = "PROPS_ENGINE_CHILD"

// secret is the password of the proxies added with credentials: it must
// never show up in the journal, the view or the live status.
const secret = "s3cret-props-pw"

// childReq is one request to the child.
type childReq struct {
	Op      string        // open, add, remove, pause, resume, pause_source, resume_source, pause_pool, resume_pool, revive, outcome, reconcile, retention, tick, verify, close
	Start   time.Time     // open: the fake clock's start
	Health  [2]Thresholds // open, reconcile: the sources' thresholds
	URL     string        // add
	Source  string        // add, pause_source, resume_source
	ID      string        // per-proxy ops
	OK      bool          // outcome
	Class   string        // outcome
	D       time.Duration // tick
	Crash   bool          // SIGKILL self right after the op's first journal commit
	Verify  bool          // check the SQLite view against a rebuild after the op
	Timeout time.Duration // quiescence deadline
	Strict  bool          // open: compare every field of proxies whose history retention trimmed
	Retain  bool          // open: journal retention of 30 min (else none)
}

// Thresholds are a source's thresholds (the rest of its health config is
// fixed).
type Thresholds struct {
	H, U, MaxRec, PFT uint32
	FSH               bool
}

// pview is what the parent needs of a proxy's live status.
type pview struct {
	ID, Source, State, Class string
	Paused                   bool
	Checks                   uint64
	OKLast                   bool // the last check passed
}

// childReply answers a request.
type childReply struct {
	Err        string
	ErrKind    string // unknown_proxy, duplicate, not_revivable, removed, other
	ID         string
	Before     map[string]pview // the live status before the op
	After      map[string]pview // after it (quiescent)
	Head       uint64
	Now        time.Time
	Violations []string
	Edges      []string // the transitions in the journal (coverage)
}

var sources = [2]string{"a", "b"}

func healthOf(th Thresholds) events.Config {
	c := events.DefaultConfig()
	c.Interval = 5 * time.Minute
	c.SuspectInterval = 5 * time.Second
	c.RecoveryCooldown = 30 * time.Second
	c.MaxRecoveryCooldown = 5 * time.Minute
	c.HealthyThreshold, c.UnhealthyThreshold = th.H, th.U
	c.MaxRecoveryAttempts, c.PassiveFailureThreshold = th.MaxRec, th.PFT
	c.FirstSuccessHealthy = th.FSH
	return c
}

func sourceConfigs(h [2]Thresholds) []proxyhealth.SourceConfig {
	out := make([]proxyhealth.SourceConfig, len(sources))
	for i, name := range sources {
		out[i] = proxyhealth.SourceConfig{Name: name, Health: healthOf(h[i]),
			Probe: probe.Config{TargetURL: "http://probe.test/generate_204", Timeout: 2 * time.Second}}
	}
	return out
}

// viewSpec is proxyhealth.SQLiteView with no linger (the view applies what
// it has at once instead of waiting up to 500 ms real time for more), so a
// step need not wait for it.
const viewName = "sqlite view (props)"

func viewSpec() proxyhealth.ProjectionSpec {
	return proxyhealth.ProjectionSpec{Name: viewName, Open: func(ctx context.Context, env proxyhealth.ProjectionEnv) (proxyhealth.Projection, error) {
		path := filepath.Join(env.DataDir, proxyhealth.SQLiteViewFile)
		if seq, exists, err := sqlview.PeekOffset(ctx, path); err == nil && exists && seq > env.Journal.Head() {
			return nil, fmt.Errorf("view at %d ahead of the journal at %d", seq, env.Journal.Head())
		}
		v, err := sqlview.OpenView(ctx, path, env.Journal, sqlview.Options{RebuildIfInvalid: true, Linger: -1})
		if err != nil {
			return nil, err
		}
		return v, nil
	}}
}

// child is the child's side.
type child struct {
	dir    string
	clk    *clock.Fake
	e      *proxyhealth.Engine
	crash  atomic.Bool
	strict bool
}

// runEngineChild is the child process of TestEngineProps (TestMain runs it
// instead of the tests when childEnv names its data directory): it serves
// the parent's requests until the pipe closes or a "close", and returns
// the process's exit code.
func runEngineChild(dir string) int {
	in, out := os.NewFile(3, "requests"), os.NewFile(4, "replies")
	dec, enc := json.NewDecoder(in), json.NewEncoder(out)
	c := &child{dir: dir}
	for {
		var req childReq
		if err := dec.Decode(&req); err != nil {
			if c.e != nil {
				_ = c.e.Close(context.Background())
			}
			return 0
		}
		rep := c.do(req)
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintln(os.Stderr, "engine child: reply:", err)
			return 1
		}
		if req.Op == "close" {
			return 0
		}
	}
}

func errKind(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, proxyhealth.ErrUnknownProxy):
		return "unknown_proxy"
	case errors.Is(err, proxyhealth.ErrDuplicate):
		return "duplicate"
	case errors.Is(err, proxyhealth.ErrNotRevivable):
		return "not_revivable"
	case errors.Is(err, proxyhealth.ErrRemoved):
		return "removed"
	}
	return "other"
}

func (c *child) do(req childReq) (rep childReply) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if req.Timeout == 0 {
		req.Timeout = 20 * time.Second
	}
	if req.Op == "open" {
		c.clk = clock.NewFake(req.Start)
		c.strict = req.Strict
		retention := time.Duration(-1)
		if req.Retain {
			retention = 30 * time.Minute
		}
		cfg := proxyhealth.Config{
			DataDir: c.dir, Sources: sourceConfigs(req.Health), Clock: c.clk,
			ResumeAddedProxies: true, Projections: []proxyhealth.ProjectionSpec{viewSpec()},
			JournalCommitDelay: -1, Retention: retention, SnapshotEvery: 7,
			OnJournalCommit: func(s proxyhealth.CommitStats) {
				if s.Err == nil && s.Events > 0 && c.crash.Load() {
					_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				}
			},
		}
		e, err := proxyhealth.Open(ctx, cfg)
		if err != nil {
			rep.Err, rep.ErrKind = err.Error(), "other"
			return rep
		}
		c.e = e
	} else if c.e == nil {
		rep.Err, rep.ErrKind = "not open", "other"
		return rep
	}
	e := c.e
	if req.Op == "close" {
		if err := e.Close(ctx); err != nil {
			rep.Err, rep.ErrKind = err.Error(), "other"
		}
		return rep
	}
	rep.Before = views(e)
	c.crash.Store(req.Crash)
	var err error
	switch req.Op {
	case "open", "verify":
	case "add":
		rep.ID, err = e.AddProxy(ctx, req.Source, req.URL)
	case "remove":
		err = e.RemoveProxy(ctx, req.ID)
	case "pause":
		err = e.PauseProxy(ctx, req.ID)
	case "resume":
		err = e.ResumeProxy(ctx, req.ID)
	case "pause_source":
		err = e.Pause(ctx, req.Source)
	case "resume_source":
		err = e.Resume(ctx, req.Source)
	case "pause_pool":
		err = e.Pause(ctx, "")
	case "resume_pool":
		err = e.Resume(ctx, "")
	case "revive":
		err = e.Revive(ctx, req.ID)
	case "outcome":
		err = e.ReportOutcome(proxyhealth.Outcome{ProxyID: req.ID, OK: req.OK, Class: req.Class})
	case "reconcile":
		_, err = e.Reconcile(ctx, sourceConfigs(req.Health))
	case "retention":
		_, err = e.ApplyRetention(ctx)
	case "tick":
		end := c.clk.Now().Add(req.D)
		for i := 0; ; i++ {
			if i > 5000 {
				rep.Violations = append(rep.Violations, "timers keep falling due: 5000 rounds within one tick")
				break
			}
			next, ok := c.clk.NextDue()
			if !ok || next.After(end) {
				c.clk.Set(end)
				break
			}
			c.clk.Set(next)
			if v := quiesce(ctx, e, req.Timeout); v != "" {
				rep.Violations = append(rep.Violations, v)
				break
			}
		}
	default:
		err = fmt.Errorf("unknown op %q", req.Op)
	}
	c.crash.Store(false)
	rep.Err, rep.ErrKind = fmt.Sprint(err), errKind(err)
	if err == nil {
		rep.Err = ""
	}
	// Verify a quiescent engine; should the journal move meanwhile (the
	// engine was not quiescent after all: an append can be in flight with
	// no sign of it outside the actor), look again.
	for try := 0; ; try++ {
		if v := quiesce(ctx, e, req.Timeout); v != "" {
			rep.Violations = append(rep.Violations, v)
			break
		}
		head := e.JournalHead()
		after := views(e)
		v, edges := verify(ctx, e, c.dir, req.Verify || req.Op == "open", c.strict)
		rep.Edges = edges
		if e.JournalHead() != head && try < 5 {
			continue
		}
		rep.After, rep.Head = after, head
		rep.Violations = append(rep.Violations, v...)
		break
	}
	rep.Now = c.clk.Now()
	return rep
}

func views(e *proxyhealth.Engine) map[string]pview {
	_, list := e.Status().List(proxyhealth.ListFilter{}, 0, 1<<20)
	out := make(map[string]pview, len(list))
	for _, v := range list {
		out[v.ID] = pview{ID: v.ID, Source: v.Source, State: v.State, Class: v.LastErrorClass, Paused: v.Paused, Checks: v.TotalChecks,
			OKLast: !v.LastCheckAt.IsZero() && v.LastSuccessAt.Equal(v.LastCheckAt)}
	}
	return out
}

// quiesce waits until nothing moves: no check in flight, every actor's
// mailbox drained (a GetState round trip through each), every projection at
// the journal's head, twice in a row with the same head. It returns a
// violation when that does not happen within timeout.
func quiesce(ctx context.Context, e *proxyhealth.Engine, timeout time.Duration) string {
	var last uint64
	stable := 0
	why := ""
	if testutil.Within(timeout, time.Millisecond, func() bool {
		why = ""
		for _, id := range e.ProxyIDs() {
			st, err := e.Proxy(ctx, id)
			if err == nil && st.Checking {
				why = "proxy " + id + " checking"
			}
		}
		head := e.JournalHead()
		if s := e.Status(); s.Seq() != head {
			why = fmt.Sprintf("live status at %d, journal at %d", s.Seq(), head)
		} else if n := s.Summary().Checking; n > 0 {
			why = fmt.Sprintf("%d checking in the live status", n)
		}
		for _, p := range e.Health().Projections {
			if p.Lag > 0 {
				why = fmt.Sprintf("%s at %d, journal at %d", p.Name, p.Seq, head)
			}
		}
		if why == "" && head == last {
			stable++
		} else {
			stable = 0
		}
		last = head
		return stable >= 3
	}) {
		return ""
	}
	return "the engine did not settle within " + timeout.String() + ": " + why
}

// allowed is the state machine's table of transitions (see
// ARCHITECTURE.md and TestGeneratorCoverage), plus recovering > degraded
// (a too_slow answer while recovering).
var allowed = map[string]bool{
	"unknown>healthy": true, "unknown>degraded": true, "unknown>unhealthy": true,
	"healthy>degraded": true, "healthy>unhealthy": true,
	"degraded>healthy": true, "degraded>unhealthy": true,
	"unhealthy>recovering": true, "unhealthy>unknown": true,
	"recovering>healthy": true, "recovering>unhealthy": true, "recovering>failed": true, "recovering>unknown": true,
	"recovering>degraded": true, "failed>unknown": true,
}

// verify checks the invariants on a quiescent engine; with view, also the
// SQLite view against a rebuild.
func verify(ctx context.Context, e *proxyhealth.Engine, dir string, view, strict bool) (bad, edges []string) {
	edgeSet := map[string]bool{}
	defer func() {
		for edge := range edgeSet {
			edges = append(edges, edge)
		}
	}()
	add := func(f string, a ...any) { bad = append(bad, fmt.Sprintf(f, a...)) }
	j := e.Journal()
	first, head := j.First(), j.Head()

	// Seqs gap-free globally and per proxy; prev_seq chains; transitions
	// from the table, each from the state the stream was in; no secret.
	type streamPos struct{ stream, global uint64 }
	pos := map[string]streamPos{}
	trimmed := map[string]bool{} // proxies whose ProxyAdded retention deleted
	state := map[string]pb.HealthState{}
	want := first
	var all []*pb.Envelope
	for env, err := range j.Read(ctx, first) {
		if err != nil {
			add("journal read at seq %d: %v", want, err)
			break
		}
		if env.GetSeq() > head {
			break
		}
		all = append(all, env)
		if env.GetSeq() != want {
			add("global seq gap: want %d, got %d", want, env.GetSeq())
		}
		want = env.GetSeq() + 1
		if b, _ := proto.Marshal(env); strings.Contains(string(b), secret) {
			add("seq %d holds the proxy password", env.GetSeq())
		}
		id := env.GetProxyId()
		if id == "" {
			if env.GetStreamSeq() != 0 {
				add("pool event %d has stream seq %d", env.GetSeq(), env.GetStreamSeq())
			}
			continue
		}
		p, seen := pos[id]
		if !seen && env.GetStreamSeq() != 1 {
			trimmed[id] = true
		}
		switch {
		case seen && (env.GetStreamSeq() != p.stream+1 || env.GetPrevSeq() != p.global):
			add("proxy %s: seq %d has stream seq %d prev %d, after stream seq %d at seq %d", id, env.GetSeq(), env.GetStreamSeq(), env.GetPrevSeq(), p.stream, p.global)
		case !seen && env.GetStreamSeq() != 1 && env.GetPrevSeq() >= first:
			add("proxy %s: its first retained event %d (stream seq %d) points back to seq %d, which is retained but not of its stream", id, env.GetSeq(), env.GetStreamSeq(), env.GetPrevSeq())
		case !seen && env.GetStreamSeq() == 1 && env.GetPrevSeq() != 0:
			add("proxy %s: stream seq 1 at seq %d has prev seq %d", id, env.GetSeq(), env.GetPrevSeq())
		}
		pos[id] = streamPos{env.GetStreamSeq(), env.GetSeq()}
		if env.GetProxyAdded() != nil {
			state[id] = pb.HealthState_HEALTH_STATE_UNKNOWN
		}
		if sc := env.GetStateChanged(); sc != nil {
			edge := events.StateName(sc.GetFrom()) + ">" + events.StateName(sc.GetTo())
			edgeSet[edge] = true
			if !allowed[edge] {
				add("proxy %s: transition %s at seq %d is not in the state machine's table", id, edge, env.GetSeq())
			}
			if cur, ok := state[id]; ok && cur != sc.GetFrom() {
				add("proxy %s: transition %s at seq %d, but the stream was %s", id, edge, env.GetSeq(), events.StateName(cur))
			}
			state[id] = sc.GetTo()
		}
	}
	if want != head+1 && head >= first {
		add("journal read ended at %d, head %d", want-1, head)
	}

	// No byte of the journal or the view holds the password
	// (credentials.json alone may).
	for _, name := range []string{proxyhealth.JournalFile, proxyhealth.SQLiteViewFile, proxyhealth.SQLiteViewFile + "-wal"} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil && strings.Contains(string(b), secret) {
			add("%s holds the proxy password", name)
		}
	}

	// The live status equals the fold of the journal.
	fresh := projections.NewLive(projections.LiveOptions{Snapshots: j.LoadSnapshot})
	carried, err := journal.Carried(ctx, j)
	if err != nil {
		add("the journal's carried pool events: %v", err)
	}
	for _, env := range carried {
		if env.GetSeq() >= first || env.GetProxyId() != "" {
			add("carried event %d (proxy %q) is not a pool event before the first retained one, %d", env.GetSeq(), env.GetProxyId(), first)
		}
	}
	fresh.Apply(carried...)
	fresh.Apply(all...)
	live := e.Status()
	_, got := live.List(proxyhealth.ListFilter{}, 0, 1<<20)
	for _, v := range got {
		if _, ok := fresh.Proxy(v.ID); !ok {
			if snap, err := j.LoadSnapshot(ctx, v.ID); err == nil {
				fresh.Seed(snap)
			}
		}
	}
	_, rebuilt := fresh.List(proxyhealth.ListFilter{}, 0, 1<<20)
	// What neither the journal nor a snapshot keeps: the success-rate
	// windows (1 h, 24 h) of a proxy whose older events retention deleted
	// are rebuilt from the retained events only (this test's retention is
	// 30 min). Compared only with -props.engine.strict. (The latency EWMA
	// is in the state and its snapshots: always compared.)
	norm := func(vs []proxyhealth.ProxyView) []proxyhealth.ProxyView {
		out := slices.Clone(vs)
		for i := range out {
			v := &out[i]
			v.Checking, v.NextCheckAt = false, time.Time{}
			if !strict && (trimmed[v.ID] || pos[v.ID] == streamPos{}) {
				v.Checks1h, v.Checks24h, v.SuccessRate1h, v.SuccessRate24h = 0, 0, 0, 0
				v.LastSuccessAt = time.Time{}
			}
		}
		return out
	}
	if a, b := norm(got), norm(rebuilt); !reflect.DeepEqual(a, b) {
		add("live status differs from the fold of the journal:\n live    %+v\n rebuilt %+v", a, b)
	}
	sa, sb := live.Summary(), fresh.Summary()
	sa.Checking, sb.Checking, sa.UpdatedAt, sb.UpdatedAt = 0, 0, time.Time{}, time.Time{}
	for i := range sa.Sources {
		sa.Sources[i].Checking = 0
	}
	for i := range sb.Sources {
		sb.Sources[i].Checking = 0
	}
	// The pool's degraded and panic flags: from the pool events retention
	// carried and the retained ones.
	if sa.Counts != sb.Counts || sa.PoolDegraded != sb.PoolDegraded || sa.PanicMode != sb.PanicMode {
		add("live summary differs from the fold's:\n live    %+v\n rebuilt %+v", sa, sb)
	}

	// Counts add up to the total.
	sum := func(c proxyhealth.Counts) int {
		return c.Unknown + c.Healthy + c.Degraded + c.Unhealthy + c.Recovering + c.Failed
	}
	if sum(sa.Counts) != sa.Total || sa.Total != len(got) {
		add("summary counts %+v do not add up to the total %d (%d proxies listed)", sa.Counts, sa.Total, len(got))
	}
	paused, bySource := 0, map[string]int{}
	for _, v := range got {
		if v.Paused {
			paused++
		}
		bySource[v.Source]++
		if strings.Contains(v.URLRedacted, secret) {
			add("proxy %s: the live status shows its password", v.ID)
		}
	}
	if paused != sa.Paused {
		add("summary says %d paused, %d proxies are", sa.Paused, paused)
	}
	srcTotal := 0
	for _, s := range sa.Sources {
		srcTotal += s.Total
		if sum(s.Counts) != s.Total || s.Total != bySource[s.Name] {
			add("source %s: counts %+v, total %d, %d proxies listed", s.Name, s.Counts, s.Total, bySource[s.Name])
		}
	}
	if srcTotal != sa.Total {
		add("source totals add up to %d, the pool's total is %d", srcTotal, sa.Total)
	}

	// Each actor's state agrees with the live status.
	for _, v := range got {
		st, err := e.Proxy(ctx, v.ID)
		if err != nil {
			add("proxy %s is in the live status but the engine does not know it: %v", v.ID, err)
			continue
		}
		if events.StateName(st.State.Health) != v.State || st.State.Paused != v.Paused {
			add("proxy %s: actor %s paused=%v, live status %s paused=%v", v.ID, events.StateName(st.State.Health), st.State.Paused, v.State, v.Paused)
		}
	}
	if ids := e.ProxyIDs(); len(ids) != len(got) {
		add("the engine runs %d proxies, the live status shows %d", len(ids), len(got))
	}

	if view {
		retained := map[string]bool{}
		for id := range pos {
			retained[id] = true
		}
		bad = append(bad, verifyView(ctx, j, dir, head, strict, trimmed, retained)...)
	}
	return bad, edges
}

// verifyView compares view.db with a rebuild from the journal, table by
// table, and searches it for the password.
func verifyView(ctx context.Context, j journal.Journal, dir string, head uint64, strict bool, trimmed, retained map[string]bool) []string {
	// What a rebuild cannot know (see verify): the rows of deleted events
	// (the view keeps check results 24 h and transitions 7 days, the
	// journal here 30 min). Compared only with -props.engine.strict.
	first := j.First()
	norm := func(table string, cols []string, vals []any) bool {
		if strict {
			return true
		}
		for i, c := range cols {
			switch {
			case table == "projection_offsets" && first > head:
				return false // an empty journal: the rebuild has applied nothing
			case c == "seq" && table != "projection_offsets":
				if n, ok := vals[i].(int64); ok && uint64(n) < first {
					return false
				}
			}
		}
		return true
	}
	path := filepath.Join(dir, proxyhealth.SQLiteViewFile)
	tmp := filepath.Join(dir, "rebuilt.db")
	_ = os.Remove(tmp)
	defer func() {
		for _, s := range []string{"", "-wal", "-shm"} {
			_ = os.Remove(tmp + s)
		}
	}()
	if err := sqlview.RebuildFile(ctx, tmp, j, sqlview.Options{}); err != nil {
		return []string{"rebuild the view: " + err.Error()}
	}
	a, err := dumpView(path, norm)
	if err != nil {
		return []string{"read view.db: " + err.Error()}
	}
	b, err := dumpView(tmp, norm)
	if err != nil {
		return []string{"read the rebuilt view: " + err.Error()}
	}
	var bad []string
	for _, tb := range viewTables {
		if !reflect.DeepEqual(a[tb], b[tb]) {
			bad = append(bad, fmt.Sprintf("view.db table %s differs from a rebuild at head %d:\n view    %q\n rebuilt %q", tb, head, a[tb], b[tb]))
		}
		for _, row := range a[tb] {
			if strings.Contains(row, secret) {
				bad = append(bad, "view.db table "+tb+" holds the proxy password")
			}
		}
	}
	return bad
}

var viewTables = []string{"proxies", "check_history", "state_changes", "pool_events", "projection_offsets"}

// dumpView reads the view's tables, the rows keep selects (it may change
// them), as text.
func dumpView(path string, keep func(table string, cols []string, vals []any) bool) (map[string][]string, error) {
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	out := map[string][]string{}
	for _, tb := range viewTables {
		rows, err := db.Query("SELECT * FROM " + tb + " ORDER BY 1")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", tb, err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				rows.Close()
				return nil, err
			}
			if !keep(tb, cols, vals) {
				continue
			}
			var b strings.Builder
			for i, v := range vals {
				fmt.Fprintf(&b, "%s=%v ", cols[i], v)
			}
			out[tb] = append(out[tb], b.String())
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}
