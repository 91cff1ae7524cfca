package sqlview

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/projections/internal/fold"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// proxyRow is the cached fold of one proxy: its events.State plus the
// latency EWMA (in ms, exactly as stored, so that a reopened view continues
// with the same float).
type proxyRow struct {
	st      events.State
	ewma    float64
	hasEWMA bool
	times   timeTexts
}

// applier folds envelopes into the view's tables. It owns the per-proxy
// state cache; a batch works on a copy-on-write overlay that is merged into
// the cache only when its transaction commits.
type applier struct {
	db     *sql.DB
	load   fold.Loader
	opts   Options
	cache  map[string]*proxyRow
	offset uint64 // last applied seq
	newest int64  // newest applied event time, unix ns

	// deferProxies (rebuilds only) leaves the proxies table alone in
	// applyBatch: flushProxies writes every cached row once at the end.
	deferProxies bool

	// testHookBeforeCommit, when set, runs before each commit; an error
	// aborts the batch (tests use it to simulate a crash).
	testHookBeforeCommit func() error

	// prepared caches the statements prepared on db, so that a small batch
	// does not pay for parsing seven statements again.
	prepared   *stmts
	preparedDB *sql.DB
}

// prepareOnce prepares the statements on the database once (again after
// Rebuild replaced the handle). Call it before BeginTx: the view's database
// has a single connection, which a transaction holds.
func (a *applier) prepareOnce(ctx context.Context) error {
	if a.prepared == nil || a.preparedDB != a.db {
		if a.prepared != nil {
			a.prepared.close()
			a.prepared = nil
		}
		var s stmts
		for _, p := range s.targets() {
			st, err := a.db.PrepareContext(ctx, p.text)
			if err != nil {
				s.close()
				return fmt.Errorf("sqlview: prepare: %w", err)
			}
			*p.dst = st
		}
		a.prepared, a.preparedDB = &s, a.db
	}
	return nil
}

// statements binds the prepared statements to tx.
func (a *applier) statements(ctx context.Context, tx *sql.Tx) (*stmts, error) {
	var bound stmts
	src, dst := a.prepared.targets(), bound.targets()
	for i := range src {
		*dst[i].dst = tx.StmtContext(ctx, *src[i].dst)
	}
	return &bound, nil
}

// closeStatements releases the cached statements (before closing db).
func (a *applier) closeStatements() {
	if a.prepared != nil {
		a.prepared.close()
		a.prepared, a.preparedDB = nil, nil
	}
}

var marshalOpts = proto.MarshalOptions{Deterministic: true}

// stmts are the statements of one batch, prepared on its transaction.
type stmts struct {
	check, change, pool, upsert, update, del, offset, source *sql.Stmt
}

const (
	sqlInsertCheck  = `INSERT INTO check_history (seq, proxy_id, at, ok, class, status_code, connect_ms, first_byte_ms, total_ms, message) VALUES (?,?,?,?,?,?,?,?,?,?)`
	sqlInsertChange = `INSERT INTO state_changes (seq, proxy_id, at, from_state, to_state, reason, recovery_attempt) VALUES (?,?,?,?,?,?,?)`
	sqlInsertPool   = `INSERT INTO pool_events (seq, at, type, healthy_pct, threshold, healthy, total) VALUES (?,?,?,?,?,?,?)`
	sqlUpsertProxy  = `INSERT INTO proxies (id, url_redacted, source, state, paused, has_credentials, consecutive_successes,
	consecutive_failures, passive_failures, recovery_attempt, total_checks, total_failures, last_check_at, last_check_unix_ms,
	last_change_at, last_error_class, last_error, last_status_code, last_latency_ms, latency_ewma_ms, added_at,
	tags, weight, exit_ip, anonymity, ejected_until, updated_seq, state_pb)
	VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
	ON CONFLICT(id) DO UPDATE SET url_redacted=excluded.url_redacted, source=excluded.source, state=excluded.state,
	paused=excluded.paused, has_credentials=excluded.has_credentials, consecutive_successes=excluded.consecutive_successes,
	consecutive_failures=excluded.consecutive_failures, passive_failures=excluded.passive_failures,
	recovery_attempt=excluded.recovery_attempt, total_checks=excluded.total_checks, total_failures=excluded.total_failures,
	last_check_at=excluded.last_check_at, last_check_unix_ms=excluded.last_check_unix_ms, last_change_at=excluded.last_change_at,
	last_error_class=excluded.last_error_class, last_error=excluded.last_error, last_status_code=excluded.last_status_code,
	last_latency_ms=excluded.last_latency_ms, latency_ewma_ms=excluded.latency_ewma_ms, added_at=excluded.added_at,
	tags=excluded.tags, weight=excluded.weight, exit_ip=excluded.exit_ip, anonymity=excluded.anonymity,
	ejected_until=excluded.ejected_until, updated_seq=excluded.updated_seq, state_pb=excluded.state_pb`
	// sqlUpdateProxy leaves the indexed columns (state, source) alone, so
	// that SQLite does not rewrite the index entries.
	sqlUpdateProxy = `UPDATE proxies SET url_redacted=?, paused=?, has_credentials=?, consecutive_successes=?,
	consecutive_failures=?, passive_failures=?, recovery_attempt=?, total_checks=?, total_failures=?, last_check_at=?,
	last_check_unix_ms=?, last_change_at=?, last_error_class=?, last_error=?, last_status_code=?, last_latency_ms=?,
	latency_ewma_ms=?, added_at=?, tags=?, weight=?, exit_ip=?, anonymity=?, ejected_until=?, updated_seq=?, state_pb=? WHERE id=?`
	sqlDeleteProxy = `DELETE FROM proxies WHERE id = ?`
	// sqlSourceEvent records a source's refresh events: a NULL argument
	// leaves its column as it was.
	sqlSourceEvent = `INSERT INTO source_refreshes (source, last_refresh, last_error, last_error_at, held) VALUES (?1, ?2, COALESCE(?3, ''), ?4, COALESCE(?5, 0))
	ON CONFLICT(source) DO UPDATE SET last_refresh=COALESCE(?2, last_refresh), last_error=COALESCE(?3, last_error),
	last_error_at=COALESCE(?4, last_error_at), held=COALESCE(?5, held)`
	sqlSetOffset = `INSERT INTO projection_offsets (name, seq, newest_at_unix_nano) VALUES (?,?,?)
	ON CONFLICT(name) DO UPDATE SET seq=excluded.seq, newest_at_unix_nano=excluded.newest_at_unix_nano`
	sqlPruneChecks  = `DELETE FROM check_history WHERE at < ?`
	sqlPruneChanges = `DELETE FROM state_changes WHERE at < ?`
)

type stmtTarget struct {
	dst  **sql.Stmt
	text string
}

func (s *stmts) targets() []stmtTarget {
	return []stmtTarget{{&s.check, sqlInsertCheck}, {&s.change, sqlInsertChange}, {&s.pool, sqlInsertPool}, {&s.upsert, sqlUpsertProxy}, {&s.update, sqlUpdateProxy}, {&s.del, sqlDeleteProxy}, {&s.offset, sqlSetOffset}, {&s.source, sqlSourceEvent}}
}

func (s *stmts) close() {
	for _, st := range []*sql.Stmt{s.check, s.change, s.pool, s.upsert, s.update, s.del, s.offset} {
		if st != nil {
			st.Close()
		}
	}
}

func ms(ns int64) float64 { return float64(ns) / 1e6 }

// applyBatch applies the envelopes with seq > offset in one transaction that
// also stores the new offset (exactly once: either all of it commits or
// none). prune also deletes the history rows that fell out of retention.
func (a *applier) applyBatch(ctx context.Context, envs []*pb.Envelope, prune bool) (err error) {
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
	if err := a.prepareOnce(ctx); err != nil {
		return err
	}
	tx, err := a.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlview: begin: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	st, err := a.statements(ctx, tx)
	if err != nil {
		return err
	}
	defer st.close()

	pending := make(map[string]*proxyRow)
	offset, newest := a.offset, a.newest
	for _, env := range todo {
		seq := env.GetSeq()
		if seq <= offset {
			continue
		}
		if offset != 0 && seq != offset+1 {
			return fmt.Errorf("%w: the view has applied up to seq %d but the journal continues at %d: events were deleted by retention before the view applied them; run `proxyhealth rebuild`", ErrViewBehind, offset, seq)
		}
		offset = seq
		newest = max(newest, env.GetAtUnixNano())
		if err := a.applyOne(ctx, st, pending, env); err != nil {
			return err
		}
	}
	for id, r := range pending {
		if a.deferProxies {
			break
		}
		switch old := a.cache[id]; {
		case r.st.Removed:
			_, err = st.del.ExecContext(ctx, id)
		case old != nil && old.st.Health == r.st.Health && old.st.Source == r.st.Source:
			err = a.update(ctx, st.update, r)
		default:
			err = a.upsert(ctx, st.upsert, r)
		}
		if err != nil {
			return fmt.Errorf("sqlview: write proxy %s: %w", id, err)
		}
	}
	if _, err = st.offset.ExecContext(ctx, OffsetName, int64(offset), newest); err != nil {
		return fmt.Errorf("sqlview: store offset: %w", err)
	}
	if prune {
		if err = a.prune(ctx, tx, newest); err != nil {
			return err
		}
	}
	if a.testHookBeforeCommit != nil {
		if err = a.testHookBeforeCommit(); err != nil {
			return err
		}
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("sqlview: commit: %w", err)
	}
	for id, r := range pending {
		if r.st.Removed {
			delete(a.cache, id)
		} else {
			a.cache[id] = r
		}
	}
	a.offset, a.newest = offset, newest
	return nil
}

// flushProxies writes the proxies row of every cached proxy (rebuilds,
// into an empty table).
func (a *applier) flushProxies(ctx context.Context) error {
	tx, err := a.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlview: begin: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, sqlUpsertProxy)
	if err != nil {
		return fmt.Errorf("sqlview: prepare: %w", err)
	}
	defer stmt.Close()
	for id, r := range a.cache {
		if err := a.upsert(ctx, stmt, r); err != nil {
			return fmt.Errorf("sqlview: write proxy %s: %w", id, err)
		}
	}
	return tx.Commit()
}

// prune deletes history rows older than the retention before newest.
func (a *applier) prune(ctx context.Context, tx execer, newest int64) error {
	if _, err := tx.ExecContext(ctx, sqlPruneChecks, formatTime(newest-int64(a.opts.HistoryRetention))); err != nil {
		return fmt.Errorf("sqlview: prune check_history: %w", err)
	}
	if _, err := tx.ExecContext(ctx, sqlPruneChanges, formatTime(newest-int64(a.opts.StateChangeRetention))); err != nil {
		return fmt.Errorf("sqlview: prune state_changes: %w", err)
	}
	return nil
}

// applyOne writes env's history rows and folds it into its proxy's pending
// state.
func (a *applier) applyOne(ctx context.Context, st *stmts, pending map[string]*proxyRow, env *pb.Envelope) error {
	seq := int64(env.GetSeq())
	at := formatTime(env.GetAtUnixNano())
	id := env.GetProxyId()
	var err error
	switch e := env.GetEvent().(type) {
	case *pb.Envelope_CheckSucceeded:
		l := e.CheckSucceeded.GetLatency()
		_, err = st.check.ExecContext(ctx, seq, id, at, int64(1), "", int64(e.CheckSucceeded.GetStatusCode()), ms(l.GetConnectNs()), ms(l.GetFirstByteNs()), ms(l.GetTotalNs()), "")
	case *pb.Envelope_CheckFailed:
		f := e.CheckFailed
		l := f.GetLatency()
		_, err = st.check.ExecContext(ctx, seq, id, at, int64(0), events.ClassName(f.GetClass()), int64(f.GetStatusCode()), ms(l.GetConnectNs()), ms(l.GetFirstByteNs()), ms(l.GetTotalNs()), f.GetMessage())
	case *pb.Envelope_StateChanged:
		c := e.StateChanged
		_, err = st.change.ExecContext(ctx, seq, id, at, events.StateName(c.GetFrom()), events.StateName(c.GetTo()), c.GetReason(), int64(c.GetRecoveryAttempt()))
	case *pb.Envelope_PoolDegraded:
		p := e.PoolDegraded
		_, err = st.pool.ExecContext(ctx, seq, at, "pool_degraded", p.GetHealthyPercentage(), p.GetThresholdPercentage(), int64(p.GetHealthy()), int64(p.GetTotal()))
	case *pb.Envelope_PoolRecovered:
		p := e.PoolRecovered
		_, err = st.pool.ExecContext(ctx, seq, at, "pool_recovered", p.GetHealthyPercentage(), p.GetThresholdPercentage(), int64(p.GetHealthy()), int64(p.GetTotal()))
	case *pb.Envelope_PoolPanicEntered:
		p := e.PoolPanicEntered
		_, err = st.pool.ExecContext(ctx, seq, at, "pool_panic_entered", share(p.GetUsable(), p.GetCandidates()), p.GetThresholdPercentage(), int64(p.GetUsable()), int64(p.GetCandidates()))
	case *pb.Envelope_PoolPanicLeft:
		p := e.PoolPanicLeft
		_, err = st.pool.ExecContext(ctx, seq, at, "pool_panic_left", share(p.GetUsable(), p.GetCandidates()), p.GetThresholdPercentage(), int64(p.GetUsable()), int64(p.GetCandidates()))
	case *pb.Envelope_SourceRefreshed:
		_, err = st.source.ExecContext(ctx, env.GetSource(), at, "", nil, int64(0))
	case *pb.Envelope_SourceRefreshFailed:
		_, err = st.source.ExecContext(ctx, env.GetSource(), nil, e.SourceRefreshFailed.GetError(), at, nil)
	case *pb.Envelope_SourceShrinkHeld:
		h := e.SourceShrinkHeld
		_, err = st.source.ExecContext(ctx, env.GetSource(), nil, fmt.Sprintf("the list shrank from %d to %d proxies (more than the shrink guard): held until confirmed", h.GetPrevious(), h.GetOffered()), at, int64(1))
	}
	if err != nil {
		return fmt.Errorf("sqlview: write %s seq %d: %w", events.TypeName(env), seq, err)
	}
	if id == "" {
		return nil
	}
	cur := pending[id]
	if cur == nil {
		cur = a.cache[id]
	}
	var next proxyRow
	if cur == nil {
		base, skip, err := fold.Base(ctx, a.load, env)
		if err != nil {
			return fmt.Errorf("%w: load the snapshot of proxy %s: %w", ErrJournal, id, err)
		}
		next.st = base
		if skip {
			pending[id] = &next
			return nil
		}
	} else {
		if fold.Covered(cur.st, env) {
			return nil
		}
		next = *cur
	}
	switch e := env.GetEvent().(type) {
	case *pb.Envelope_ProxyAdded:
		next.ewma, next.hasEWMA = 0, false // a re-added proxy starts afresh
	case *pb.Envelope_CheckSucceeded:
		lat := ms(e.CheckSucceeded.GetLatency().GetTotalNs())
		if next.hasEWMA {
			next.ewma = ewmaAlpha*lat + (1-ewmaAlpha)*next.ewma
		} else {
			next.ewma, next.hasEWMA = lat, true
		}
	}
	next.st = events.Evolve(next.st, env)
	pending[id] = &next
	return nil
}

// ewmaAlpha is the weight of the newest latency in latency_ewma_ms.
const ewmaAlpha = 0.2

// rowValues returns the values of r's proxies row, in column order. Every
// integer is passed as int64 (database/sql converts other types by
// reflection).
func rowValues(r *proxyRow) ([]any, error) {
	s := &r.st
	blob, err := marshalOpts.Marshal(events.ToSnapshot(*s))
	if err != nil {
		return nil, err
	}
	var lastCheckMS sql.NullInt64
	var lastLatency, ewma sql.NullFloat64
	if !s.LastCheckAt.IsZero() {
		lastCheckMS = sql.NullInt64{Int64: s.LastCheckAt.UnixMilli(), Valid: true}
		lastLatency = sql.NullFloat64{Float64: ms(int64(s.LastLatency.Total)), Valid: true}
	}
	if r.hasEWMA {
		ewma = sql.NullFloat64{Float64: r.ewma, Valid: true}
	}
	var weight sql.NullFloat64
	if s.Weight > 0 {
		weight = sql.NullFloat64{Float64: s.Weight, Valid: true}
	}
	return []any{s.ProxyID, s.URLRedacted, s.Source, events.StateName(s.Health), boolInt(s.Paused), boolInt(s.HasCredentials),
		int64(s.ConsecutiveSuccesses), int64(s.ConsecutiveFailures), int64(s.PassiveFailures), int64(s.RecoveryAttempt),
		int64(s.TotalChecks), int64(s.TotalFailures), nullTime(unixNano(s.LastCheckAt)), lastCheckMS,
		r.times.get(1, unixNano(s.LastChangeAt)), events.ClassName(s.LastErrorClass), s.LastError,
		int64(s.LastStatusCode), lastLatency, ewma, r.times.get(0, unixNano(s.AddedAt)),
		s.Tags, weight, s.ExitIP, events.AnonymityName(s.Anonymity), nullTime(unixNano(s.EjectedUntil)), int64(s.Seq), blob}, nil
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// timeTexts caches the rendering of a proxy's rarely changing times
// (added_at, last_change_at).
type timeTexts struct {
	n    [2]int64
	text [2]sql.NullString
}

func (t *timeTexts) get(i int, n int64) sql.NullString {
	if t.n[i] != n || (n != 0 && !t.text[i].Valid) {
		t.n[i], t.text[i] = n, nullTime(n)
	}
	return t.text[i]
}

// upsert writes r's whole proxies row.
func (a *applier) upsert(ctx context.Context, stmt *sql.Stmt, r *proxyRow) error {
	v, err := rowValues(r)
	if err != nil {
		return err
	}
	_, err = stmt.ExecContext(ctx, v...)
	return err
}

// update rewrites the columns of r's row other than id, source and state.
func (a *applier) update(ctx context.Context, stmt *sql.Stmt, r *proxyRow) error {
	v, err := rowValues(r)
	if err != nil {
		return err
	}
	// Drop id (0), source (2) and state (3); id goes last, for WHERE.
	args := append(append([]any{v[1]}, v[4:]...), v[0])
	_, err = stmt.ExecContext(ctx, args...)
	return err
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// loadCache reads the proxies rows back into the state cache, and the
// offset.
func (a *applier) loadCache(ctx context.Context) error {
	a.cache = make(map[string]*proxyRow)
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
		a.cache[id] = &proxyRow{st: events.FromSnapshot(&snap), ewma: ewma.Float64, hasEWMA: ewma.Valid}
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
