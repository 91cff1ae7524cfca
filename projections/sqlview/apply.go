package sqlview

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/projections/internal/fold"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// proxyRow is one proxy's fold while a batch works on it: its whole
// events.State (which carries the latency EWMA, stored in ms), the
// renderings of its times, and, when its committed row exists (cached),
// the columns the batch's events may have changed in it (changed: the
// batch writes only those). Between batches the cache keeps only the
// state, encoded: about 110 bytes a proxy instead of 560 and its time
// texts.
type proxyRow struct {
	st      events.State
	times   timeTexts
	cached  bool
	changed colMask
}

// applier folds envelopes into the view's tables. It owns the per-proxy
// state cache; a batch works on an overlay of whole states (pending) that
// is encoded into the cache only when its transaction commits.
//
// Batches are written through a connection of its own (w), held from the
// first batch until closeStatements, with its statements prepared once
// and executed on the driver's connection directly, skipping
// database/sql's per-statement work (argument conversion by reflection,
// locking, and a goroutine per statement from mattn/go-sqlite3 when the
// context can end, as the daemon's does).
type applier struct {
	db     *sql.DB
	load   fold.Loader
	opts   Options
	cache  *stateCache // the committed state of every proxy
	offset uint64      // last applied seq
	// carrying: applyRaw applies the events retention carried (a rebuild,
	// before the journal's first event; see journal.Carrier), whose seqs
	// have gaps and lie before the offset's: no gap check, no offset.
	carrying bool
	newest   int64 // newest applied event time, unix ns

	// deferProxies (rebuilds only) leaves the proxies table alone in
	// applyBatch: flushProxies writes every cached row once at the end.
	deferProxies bool
	// archive (rebuilds only) writes check rows straight into
	// historyArchive, whose indexes a rebuild creates at the end; an
	// incremental view appends them to historyRecent and merges.
	archive bool
	// recent is the number of rows in historyRecent as of the last commit,
	// recentOldest the oldest at among them (unix ns; 0: none, or not
	// known to be older than the first prune cutoff); added is the number
	// the current batch wrote.
	recent, recentOldest int64
	added                int64

	// testHookBeforeCommit, when set, runs before each commit; an error
	// aborts the batch (tests use it to simulate a crash).
	testHookBeforeCommit func() error

	w *writer

	// pruned are the cutoffs (unix ns) of the last committed deletes from
	// check_history and state_changes (0: none since the view was opened);
	// oldest are the times of the oldest rows the batch wrote to them.
	pruned, oldest [2]int64

	// Buffers reused from batch to batch.
	args    []driver.NamedValue // the arguments of one statement
	row     [proxyCols]driver.Value
	blob    []byte               // state_pb, marshalled
	ids     []string             // pending proxies, sorted
	pending map[string]*proxyRow // the proxies the batch touched
	scratch proxyRow             // flushProxies' row
	snap    *pb.ProxySnapshot    // marshalState's message, reused
}

// writer is the applier's connection and its prepared statements.
type writer struct {
	conn    *sql.Conn
	history string // the table st's check inserts write to
	st      stmts
	// upd are the UPDATEs of proxies rows by the columns they set
	// (updateStmt).
	upd map[colMask]driver.Stmt
}

// connect takes the applier's connection from the pool and prepares its
// statements, unless done already.
func (a *applier) connect(ctx context.Context) error {
	if a.w != nil {
		return nil
	}
	conn, err := a.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("sqlview: connect: %w", err)
	}
	w := &writer{conn: conn, history: a.history()}
	err = conn.Raw(func(dc any) error {
		c := dc.(driver.Conn)
		for _, t := range w.st.targets(w.history) {
			st, err := prepare(ctx, c, t.text)
			if err != nil {
				return err
			}
			*t.dst = st
		}
		return nil
	})
	if err != nil {
		w.close()
		return fmt.Errorf("sqlview: prepare: %w", err)
	}
	a.w = w
	return nil
}

// close finalizes the statements and returns the connection to the pool.
func (w *writer) close() {
	w.conn.Raw(func(any) error {
		for _, t := range w.st.targets(w.history) {
			if *t.dst != nil {
				(*t.dst).Close()
				*t.dst = nil
			}
		}
		for _, st := range w.upd {
			st.Close()
		}
		w.upd = nil
		return nil
	})
	w.conn.Close()
}

// closeStatements releases the applier's connection and statements
// (before closing db). Idempotent.
func (a *applier) closeStatements() {
	if a.w != nil {
		a.w.close()
		a.w = nil
	}
}

// prepare prepares query on the driver connection c.
func prepare(ctx context.Context, c driver.Conn, query string) (driver.Stmt, error) {
	if p, ok := c.(driver.ConnPrepareContext); ok {
		return p.PrepareContext(ctx, query)
	}
	return c.Prepare(query)
}

// exec runs st with args (ordinals 1…n). Under a context that can end,
// mattn/go-sqlite3 runs the statement in a goroutine of its own, to
// interrupt it (see applyRaw).
func exec(ctx context.Context, st driver.Stmt, args []driver.NamedValue) error {
	_, err := execResult(ctx, st, args)
	return err
}

// execResult is exec that returns the statement's result.
func execResult(ctx context.Context, st driver.Stmt, args []driver.NamedValue) (driver.Result, error) {
	if x, ok := st.(driver.StmtExecContext); ok {
		return x.ExecContext(ctx, args)
	}
	vals := make([]driver.Value, len(args))
	for i := range args {
		vals[i] = args[i].Value
	}
	//nolint:staticcheck // the fallback for drivers without StmtExecContext
	return st.Exec(vals)
}

// begin starts a transaction on the driver connection c.
func begin(ctx context.Context, c driver.Conn) (driver.Tx, error) {
	if b, ok := c.(driver.ConnBeginTx); ok {
		return b.BeginTx(ctx, driver.TxOptions{})
	}
	//nolint:staticcheck // the fallback for drivers without ConnBeginTx
	return c.Begin()
}

// bind sets the statement arguments a.args to vals, ordinals 1…n.
func (a *applier) bind(vals ...driver.Value) []driver.NamedValue {
	a.args = a.args[:0]
	for i, v := range vals {
		a.args = append(a.args, driver.NamedValue{Ordinal: i + 1, Value: v})
	}
	return a.args
}

var marshalOpts = proto.MarshalOptions{Deterministic: true}

// stmts are the applier's prepared statements.
type stmts struct {
	check, success, change, pool, insert, del, offset, source, pruneChecks, pruneChanges driver.Stmt
	merge, clearRecent, pruneRecent                                                      driver.Stmt
}

const (
	// sqlInsertCheck writes one row: multi-row INSERTs of 64 rows cost
	// about a quarter more CPU per event (measured with BenchmarkIncremental
	// and BenchmarkSteadyState).
	// (Into the table named by %s: historyRecent, or historyArchive in a
	// rebuild.)
	sqlInsertCheck = `INSERT INTO %s (` + historyColumns + `) VALUES (?,?,?,?,?,?,?,?,?,?)`
	// sqlInsertSuccess is sqlInsertCheck for a success (ok 1, class and
	// message empty): three values fewer to bind, each a call into C.
	sqlInsertSuccess = `INSERT INTO %s (` + historyColumns + `) VALUES (?,?,?,1,'',?,?,?,?,'')`
	// sqlMerge moves the recent checks of the proxies from ?1 up to ?2
	// (NULL: all the rest) into the archive in the order of its (proxy_id,
	// at) index, so that each proxy's rows go into one place of it and the
	// archive's table is appended to; sqlClearRecent then empties the
	// recent table.
	sqlMerge = `INSERT INTO ` + historyArchive + ` (` + historyColumns + `) SELECT ` + historyColumns + ` FROM ` + historyRecent +
		` WHERE proxy_id >= ?1 AND (?2 IS NULL OR proxy_id < ?2) ORDER BY proxy_id, at`
	sqlClearRecent  = `DELETE FROM ` + historyRecent
	sqlPruneRecent  = `DELETE FROM ` + historyRecent + ` WHERE at < ?`
	sqlInsertChange = `INSERT INTO state_changes (seq, proxy_id, at, from_state, to_state, reason, recovery_attempt) VALUES (?,?,?,?,?,?,?)`
	sqlInsertPool   = `INSERT INTO pool_events (seq, at, type, healthy_pct, threshold, healthy, total) VALUES (?,?,?,?,?,?,?)`
	sqlDeleteProxy  = `DELETE FROM proxies WHERE id = ?`
	// sqlSourceEvent records a source's refresh events: a NULL argument
	// leaves its column as it was.
	sqlSourceEvent = `INSERT INTO source_refreshes (source, last_refresh, last_error, last_error_at, held) VALUES (?1, ?2, COALESCE(?3, ''), ?4, COALESCE(?5, 0))
	ON CONFLICT(source) DO UPDATE SET last_refresh=COALESCE(?2, last_refresh), last_error=COALESCE(?3, last_error),
	last_error_at=COALESCE(?4, last_error_at), held=COALESCE(?5, held)`
	sqlSetOffset = `INSERT INTO projection_offsets (name, seq, newest_at_unix_nano) VALUES (?,?,?)
	ON CONFLICT(name) DO UPDATE SET seq=excluded.seq, newest_at_unix_nano=excluded.newest_at_unix_nano`
	sqlPruneChecks  = `DELETE FROM ` + historyArchive + ` WHERE at < ?`
	sqlPruneChanges = `DELETE FROM state_changes WHERE at < ?`
)

type stmtTarget struct {
	dst  *driver.Stmt
	text string
}

// targets lists the statements and their texts; history is the table
// check rows are written to.
func (s *stmts) targets(history string) []stmtTarget {
	return []stmtTarget{{&s.check, fmt.Sprintf(sqlInsertCheck, history)}, {&s.success, fmt.Sprintf(sqlInsertSuccess, history)}, {&s.change, sqlInsertChange}, {&s.pool, sqlInsertPool}, {&s.insert, insertSQL},
		{&s.del, sqlDeleteProxy}, {&s.offset, sqlSetOffset}, {&s.source, sqlSourceEvent}, {&s.pruneChecks, sqlPruneChecks}, {&s.pruneChanges, sqlPruneChanges},
		{&s.merge, sqlMerge}, {&s.clearRecent, sqlClearRecent}, {&s.pruneRecent, sqlPruneRecent}}
}

// history is the table the applier writes check rows to.
func (a *applier) history() string {
	if a.archive {
		return historyArchive
	}
	return historyRecent
}

// mergeRows is how many rows historyRecent holds before a batch merges
// them into historyArchive: mergeFactor a proxy (a merge then writes
// about one page of the (proxy_id, at) index for every mergeFactor checks
// it moves, where an insert at each check wrote one per check), within
// [mergeMin, mergeMax]. A query of one proxy's recent checks reads the
// whole recent table (it has no index): at most mergeMax rows, about 50
// MB; at 10,000 proxies checked every 10 s, 160,000 rows, under three
// minutes of checks.
func (a *applier) mergeRows() int64 {
	return min(max(mergeMin, mergeFactor*int64(a.cache.len())), mergeMax)
}

// mergeChunk is about how many rows a merge sorts at once. SQLite's
// sorter keeps up to the page cache's size (4 MiB) in memory before it
// spills to a temporary file, and that memory adds to the process's: over
// a 6-minute daemon run at 10,000 proxies (two merges)
// the peak RSS was 100.2 MiB (two runs) with chunks of 16,384 rows, about
// 1.5 MB sorted at a time, 96.8 with chunks of 4,096 and 97.5 with schema
// 2. Each chunk reads the whole recent table, most of it from the file
// (it is larger than the cache): with history, chunks of 4,096 cost about
// 3–8 µs of CPU a check more than chunks of 16,384 (BenchmarkSteadyState
// history=30m, two runs each beside other work: 45.1 and 39.0 against
// 37.0 and 36.4 µs). (A variable for tests.)
var mergeChunk int64 = 4096

// merge moves the rows of historyRecent (about rows) into historyArchive,
// sorted by proxy and time, in chunks of about mergeChunk rows: ranges of
// proxy IDs holding about as many of the view's proxies each.
func (a *applier) merge(ctx context.Context, st *stmts, rows int64) error {
	chunks := int((rows + mergeChunk - 1) / mergeChunk)
	a.ids = a.cache.ids(a.ids[:0])
	slices.Sort(a.ids)
	from := driver.Value("")
	for i := 1; i <= chunks; i++ {
		var to driver.Value // nil: the rest
		if k := i * len(a.ids) / chunks; i < chunks && k < len(a.ids) {
			to = a.ids[k]
		}
		if to != nil && to.(string) <= from.(string) {
			continue // an empty range
		}
		if err := exec(ctx, st.merge, a.bind(from, to)); err != nil {
			return err
		}
		if to == nil {
			break
		}
		from = to
	}
	return nil
}

// The bounds of mergeRows (variables for tests).
var (
	mergeFactor int64 = 16
	mergeMin    int64 = 4096
	mergeMax    int64 = 1 << 19
)

func ms(ns int64) float64 { return float64(ns) / 1e6 }

// applyBatch applies the envelopes with seq > offset in one transaction that
// also stores the new offset (exactly once: either all of it commits or
// none). prune also deletes the history rows that fell out of retention.
func (a *applier) applyBatch(ctx context.Context, envs []*pb.Envelope, prune bool) error {
	var todo []*pb.Envelope
	for i, e := range envs {
		if e.GetSeq() > a.offset {
			todo = envs[i:]
			break
		}
	}
	if len(todo) == 0 {
		return nil
	}
	if err := a.connect(ctx); err != nil {
		return err
	}
	return a.w.conn.Raw(func(dc any) error { return a.applyRaw(ctx, dc.(driver.Conn), todo, prune) })
}

// applyRaw is applyBatch on the driver connection c.
func (a *applier) applyRaw(ctx context.Context, c driver.Conn, todo []*pb.Envelope, prune bool) (err error) {
	// The statements run under a context that cannot end: under one that
	// can, the driver runs each statement in a goroutine of its own to
	// watch it. The batch checks ctx itself, between events and before
	// its commit, and rolls back when it ended.
	xctx := context.WithoutCancel(ctx)
	tx, err := begin(xctx, c)
	if err != nil {
		return fmt.Errorf("sqlview: begin: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	st := &a.w.st
	if a.pending == nil {
		a.pending = make(map[string]*proxyRow)
	}
	pending := a.pending
	clear(pending)
	defer clear(pending)
	a.oldest = [2]int64{math.MaxInt64, math.MaxInt64}
	a.added = 0
	offset, newest := a.offset, a.newest
	for i, env := range todo {
		if i%64 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		seq := env.GetSeq()
		if !a.carrying {
			if seq <= offset {
				continue
			}
			if offset != 0 && seq != offset+1 {
				return fmt.Errorf("%w: the view has applied up to seq %d but the journal continues at %d: events were deleted by retention before the view applied them; run `proxyhealth rebuild`", ErrViewBehind, offset, seq)
			}
			offset = seq
			newest = max(newest, env.GetAtUnixNano())
		}
		if err := a.applyOne(xctx, st, pending, env); err != nil {
			return err
		}
	}
	if !a.deferProxies {
		// In id order: the rows lie in id order in the table.
		a.ids = a.ids[:0]
		for id := range pending {
			a.ids = append(a.ids, id)
		}
		slices.Sort(a.ids)
		for _, id := range a.ids {
			r := pending[id]
			switch {
			case r.st.Removed:
				err = exec(xctx, st.del, a.bind(id))
			case r.cached:
				err = a.update(xctx, c, r)
			default:
				err = a.insert(xctx, r)
			}
			if err != nil {
				return fmt.Errorf("sqlview: write proxy %s: %w", id, err)
			}
		}
	}
	if a.carrying {
		// Not applied events but what retention carried from before the
		// first one: the offset stays.
	} else if err = exec(xctx, st.offset, a.bind(OffsetName, int64(offset), newest)); err != nil {
		return fmt.Errorf("sqlview: store offset: %w", err)
	}
	recent, recentOldest := a.recent+a.added, a.recentOldest
	if a.added > 0 && (recentOldest == 0 || a.oldest[0] < recentOldest) {
		recentOldest = a.oldest[0]
	}
	if !a.archive && recent >= a.mergeRows() {
		if err = a.merge(xctx, st, recent); err == nil {
			err = exec(xctx, st.clearRecent, nil)
		}
		if err != nil {
			return fmt.Errorf("sqlview: merge the recent checks into %s: %w", historyArchive, err)
		}
		recent, recentOldest = 0, 0
	}
	pruned := a.pruned
	if prune {
		// A DELETE runs only when its cutoff moved on (once per
		// PruneStep) or the batch wrote a row older than it.
		for i, p := range []struct {
			stmt      driver.Stmt
			retention time.Duration
			what      string
		}{{st.pruneChecks, a.opts.HistoryRetention, "check_history"}, {st.pruneChanges, a.opts.StateChangeRetention, "state_changes"}} {
			cutoff := pruneCutoff(newest, p.retention)
			if cutoff == a.pruned[i] && a.oldest[i] >= cutoff {
				continue
			}
			// Under ctx: a DELETE may take long (the first after a
			// long stop deletes hours of rows), and the driver
			// interrupts it when ctx ends. It runs once a minute.
			if err = exec(ctx, p.stmt, a.bind(formatTime(cutoff))); err != nil {
				return fmt.Errorf("sqlview: prune %s: %w", p.what, err)
			}
			pruned[i] = cutoff
		}
		// The recent checks are minutes old unless the view lay idle
		// while their retention passed.
		if cutoff := pruneCutoff(newest, a.opts.HistoryRetention); recentOldest != 0 && recentOldest < cutoff {
			res, err := execResult(ctx, st.pruneRecent, a.bind(formatTime(cutoff)))
			var n int64
			if err == nil {
				n, err = res.RowsAffected()
			}
			if err != nil {
				return fmt.Errorf("sqlview: prune %s: %w", historyRecent, err)
			}
			recent -= n
			recentOldest = cutoff // a bound: the oldest left is not older
		}
	}
	if a.testHookBeforeCommit != nil {
		if err = a.testHookBeforeCommit(); err != nil {
			return err
		}
	}
	if err = ctx.Err(); err != nil {
		return err
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("sqlview: commit: %w", err)
	}
	for id, r := range pending {
		if r.st.Removed {
			a.cache.del(id)
		} else {
			a.cache.put(id, &r.st)
		}
		a.release(r)
	}
	a.offset, a.newest, a.pruned = offset, newest, pruned
	a.recent, a.recentOldest = recent, recentOldest
	return nil
}

// PruneStep is how far apart the cutoffs of pruning lie: check_history
// and state_changes rows are deleted a minute at a time (or a retention at
// a time, if shorter), so a row stays up to that much longer than its
// retention. Deleting a minute of rows at once costs far fewer page writes
// than deleting a batch's worth at every batch: a batch has about one
// check per proxy, each in another page of check_history_proxy_at, while
// a proxy's checks of a minute lie side by side in one. (The recent checks
// are not in that index: they are deleted from check_history_recent only
// when the view lay idle past their retention.)
const PruneStep = time.Minute

// pruneCutoff is the time (unix ns) before which rows kept for retention
// are deleted when newest (unix ns) is the newest applied event: newest -
// retention, rounded down to a multiple of the step.
func pruneCutoff(newest int64, retention time.Duration) int64 {
	step := int64(min(PruneStep, retention))
	c := newest - int64(retention)
	q := c / step
	if c%step < 0 {
		q--
	}
	return q * step
}

// flushProxies writes the proxies row of every cached proxy (rebuilds,
// into an empty table), in id order.
func (a *applier) flushProxies(ctx context.Context) error {
	if err := a.connect(ctx); err != nil {
		return err
	}
	return a.w.conn.Raw(func(dc any) (err error) {
		xctx := context.WithoutCancel(ctx) // as in applyRaw
		tx, err := begin(xctx, dc.(driver.Conn))
		if err != nil {
			return fmt.Errorf("sqlview: begin: %w", err)
		}
		defer func() {
			if err != nil {
				tx.Rollback()
			}
		}()
		a.ids = a.cache.ids(a.ids[:0])
		slices.Sort(a.ids)
		for i, id := range a.ids {
			if i%256 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			s, _, err := a.cache.get(id)
			if err != nil {
				return err
			}
			a.scratch = proxyRow{st: s}
			if err := a.insert(xctx, &a.scratch); err != nil {
				return fmt.Errorf("sqlview: write proxy %s: %w", id, err)
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		return tx.Commit()
	})
}

// prune deletes history rows older than the retention before newest (as
// pruneCutoff rounds it).
func (a *applier) prune(ctx context.Context, tx execer, newest int64) error {
	if _, err := tx.ExecContext(ctx, sqlPruneChecks, formatTime(pruneCutoff(newest, a.opts.HistoryRetention))); err != nil {
		return fmt.Errorf("sqlview: prune check_history: %w", err)
	}
	if _, err := tx.ExecContext(ctx, sqlPruneChanges, formatTime(pruneCutoff(newest, a.opts.StateChangeRetention))); err != nil {
		return fmt.Errorf("sqlview: prune state_changes: %w", err)
	}
	return nil
}

// applyOne writes env's history rows and folds it into its
// proxy's pending state.
func (a *applier) applyOne(ctx context.Context, st *stmts, pending map[string]*proxyRow, env *pb.Envelope) error {
	seq := int64(env.GetSeq())
	atNano := env.GetAtUnixNano()
	at := formatTime(atNano)
	id := env.GetProxyId()
	var err error
	switch e := env.GetEvent().(type) {
	case *pb.Envelope_CheckSucceeded:
		a.oldest[0] = min(a.oldest[0], atNano)
		l := e.CheckSucceeded.GetLatency()
		err = exec(ctx, st.success, a.bind(seq, id, at, int64(e.CheckSucceeded.GetStatusCode()), ms(l.GetConnectNs()), ms(l.GetFirstByteNs()), ms(l.GetTotalNs())))
		a.added++
	case *pb.Envelope_CheckFailed:
		f := e.CheckFailed
		a.oldest[0] = min(a.oldest[0], atNano)
		l := f.GetLatency()
		err = exec(ctx, st.check, a.bind(seq, id, at, int64(0), events.ClassName(f.GetClass()), int64(f.GetStatusCode()), ms(l.GetConnectNs()), ms(l.GetFirstByteNs()), ms(l.GetTotalNs()), f.GetMessage()))
		a.added++
	case *pb.Envelope_StateChanged:
		c := e.StateChanged
		a.oldest[1] = min(a.oldest[1], atNano)
		err = exec(ctx, st.change, a.bind(seq, id, at, events.StateName(c.GetFrom()), events.StateName(c.GetTo()), c.GetReason(), int64(c.GetRecoveryAttempt())))
	case *pb.Envelope_PoolDegraded:
		p := e.PoolDegraded
		err = exec(ctx, st.pool, a.bind(seq, at, "pool_degraded", p.GetHealthyPercentage(), p.GetThresholdPercentage(), int64(p.GetHealthy()), int64(p.GetTotal())))
	case *pb.Envelope_PoolRecovered:
		p := e.PoolRecovered
		err = exec(ctx, st.pool, a.bind(seq, at, "pool_recovered", p.GetHealthyPercentage(), p.GetThresholdPercentage(), int64(p.GetHealthy()), int64(p.GetTotal())))
	case *pb.Envelope_PoolPanicEntered:
		p := e.PoolPanicEntered
		err = exec(ctx, st.pool, a.bind(seq, at, "pool_panic_entered", share(p.GetUsable(), p.GetCandidates()), p.GetThresholdPercentage(), int64(p.GetUsable()), int64(p.GetCandidates())))
	case *pb.Envelope_PoolPanicLeft:
		p := e.PoolPanicLeft
		err = exec(ctx, st.pool, a.bind(seq, at, "pool_panic_left", share(p.GetUsable(), p.GetCandidates()), p.GetThresholdPercentage(), int64(p.GetUsable()), int64(p.GetCandidates())))
	case *pb.Envelope_SourceRefreshed:
		err = exec(ctx, st.source, a.bind(env.GetSource(), at, "", nil, int64(0)))
	case *pb.Envelope_SourceRefreshFailed:
		err = exec(ctx, st.source, a.bind(env.GetSource(), nil, e.SourceRefreshFailed.GetError(), at, nil))
	case *pb.Envelope_SourceShrinkHeld:
		h := e.SourceShrinkHeld
		err = exec(ctx, st.source, a.bind(env.GetSource(), nil, fmt.Sprintf("the list shrank from %d to %d proxies (more than the shrink guard): held until confirmed", h.GetPrevious(), h.GetOffered()), at, int64(1)))
	}
	if err != nil {
		return fmt.Errorf("sqlview: write %s seq %d: %w", events.TypeName(env), seq, err)
	}
	if id == "" {
		return nil
	}
	next := pending[id]
	var committed events.State
	var cached bool
	if next == nil {
		var err error
		if committed, cached, err = a.cache.get(id); err != nil {
			return err
		}
	}
	switch {
	case next != nil:
		if fold.Covered(next.st, env) {
			return nil
		}
	case cached:
		if fold.Covered(committed, env) {
			return nil
		}
		next = a.newRow() // the cache holds what is committed
		*next = proxyRow{st: committed, cached: true}
	default:
		base, skip, err := fold.Base(ctx, a.load, env)
		if err != nil {
			return fmt.Errorf("%w: load the snapshot of proxy %s: %w", ErrJournal, id, err)
		}
		next = a.newRow()
		*next = proxyRow{st: base}
		if skip {
			pending[id] = next
			return nil
		}
	}
	before := next.st
	next.st = events.Evolve(next.st, env)
	if next.cached {
		next.changed |= changedCols(&before, &next.st)
	}
	next.times.set(timeLastCheck, atNano, at) // the check's time is usually the row's last_check_at
	pending[id] = next
	return nil
}

// rows holds the proxyRows of committed batches for the next ones (512
// bytes each, a row per proxy a batch touches). A sync.Pool, so that the
// rows of large batches are reused as long as batches keep coming, and the
// GC frees them once they stop. A free list capped at 512 rows, as before,
// allocated about 500 bytes per event at 100,000 proxies, whose batches of
// 20,000 events touch about as many proxies.
var rows = sync.Pool{New: func() any { return new(proxyRow) }}

// newRow returns a proxyRow to overwrite: one an earlier batch let go of,
// or a new one. A row per event was the largest allocation of a batch.
func (a *applier) newRow() *proxyRow { return rows.Get().(*proxyRow) }

// release keeps r, which nothing refers to any more, for newRow, emptied
// so that it holds no strings alive.
func (a *applier) release(r *proxyRow) {
	*r = proxyRow{}
	rows.Put(r)
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// The times of a proxies row whose rendering timeTexts keeps.
const (
	timeAdded = iota
	timeLastChange
	timeLastCheck
	numTimes
)

// timeTexts caches the rendering of a proxy's times (added_at and
// last_change_at change rarely; last_check_at is the time of the check
// event, rendered for check_history already).
type timeTexts struct {
	n    [numTimes]int64
	text [numTimes]string
}

// get returns the rendering of the time n (unix ns; nil, NULL, for 0).
func (t *timeTexts) get(i int, n int64) driver.Value {
	if n == 0 {
		return nil
	}
	if t.n[i] != n || t.text[i] == "" {
		t.set(i, n, formatTime(n))
	}
	return t.text[i]
}

// set records text as the rendering of the time n.
func (t *timeTexts) set(i int, n int64, text string) { t.n[i], t.text[i] = n, text }

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// loadCache reads the proxies rows back into the state cache, and the
// offset.
func (a *applier) loadCache(ctx context.Context) error {
	a.cache = newStateCache()
	row := a.db.QueryRowContext(ctx, `SELECT seq, newest_at_unix_nano FROM projection_offsets WHERE name = ?`, OffsetName)
	var seq, newest int64
	switch err := row.Scan(&seq, &newest); {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return err
	default:
		if seq < 0 {
			return fmt.Errorf("negative offset %d", seq)
		}
		a.offset, a.newest = uint64(seq), newest
	}
	// A scan of the recent table: it holds at most mergeMax rows.
	var oldest sql.NullString
	if err := a.db.QueryRowContext(ctx, `SELECT COUNT(*), MIN(at) FROM `+historyRecent).Scan(&a.recent, &oldest); err != nil {
		return err
	}
	a.recentOldest = 0
	if oldest.Valid {
		t, err := time.Parse(TimeLayout, oldest.String)
		if err != nil {
			return fmt.Errorf("%s: at %q: %w", historyRecent, oldest.String, err)
		}
		a.recentOldest = t.UnixNano()
	}
	rows, err := a.db.QueryContext(ctx, `SELECT id, state_pb, latency_ewma_ms FROM proxies`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var blob []byte
		var ewma sql.NullFloat64
		if err := rows.Scan(&id, &blob, &ewma); err != nil {
			return err
		}
		var snap pb.ProxySnapshot
		if err := proto.Unmarshal(blob, &snap); err != nil {
			return fmt.Errorf("proxy %s: state_pb does not decode: %w", id, err)
		}
		if snap.GetProxyId() != id {
			return fmt.Errorf("proxy %s: state_pb is for proxy %q", id, snap.GetProxyId())
		}
		st := events.FromSnapshot(&snap)
		if !st.HasLatencyEWMA && ewma.Valid {
			// A row written before the state carried the EWMA goes on
			// from the stored value.
			st.LatencyEWMA, st.HasLatencyEWMA = time.Duration(ewma.Float64*1e6), true
		}
		a.cache.put(id, &st)
	}
	return rows.Err()
}

// share is n of total in percent (0 when total is 0).
func share(n, total uint32) float64 {
	if total == 0 {
		return 0
	}
	return float64(n) * 100 / float64(total)
}
