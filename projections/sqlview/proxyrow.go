package sqlview

import (
	"context"
	"database/sql/driver"
	"fmt"
	"math/bits"
	"strings"

	"github.com/proxyhealth/proxyhealth/events"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// The columns of a proxies row, in table order (see tables).
const (
	colID = iota
	colURL
	colSource
	colState
	colPaused
	colHasCredentials
	colConsecutiveSuccesses
	colConsecutiveFailures
	colPassiveFailures
	colRecoveryAttempt
	colTotalChecks
	colTotalFailures
	colLastCheckAt
	colLastCheckUnixMS
	colLastChangeAt
	colLastErrorClass
	colLastError
	colLastStatusCode
	colLastLatencyMS
	colLatencyEWMAMS
	colAddedAt
	colTags
	colWeight
	colExitIP
	colAnonymity
	colEjectedUntil
	colUpdatedSeq
	colStatePB
	proxyCols // the number of columns of a proxies row
)

// proxyColNames are the names of the proxies columns, by index.
var proxyColNames = [proxyCols]string{
	"id", "url_redacted", "source", "state", "paused", "has_credentials", "consecutive_successes",
	"consecutive_failures", "passive_failures", "recovery_attempt", "total_checks", "total_failures", "last_check_at",
	"last_check_unix_ms", "last_change_at", "last_error_class", "last_error", "last_status_code", "last_latency_ms",
	"latency_ewma_ms", "added_at", "tags", "weight", "exit_ip", "anonymity", "ejected_until", "updated_seq", "state_pb",
}

// colMask is a set of proxies columns (bit i: column i).
type colMask uint32

// allCols are every column but id.
const allCols = colMask(1<<proxyCols-1) &^ (1 << colID)

// alwaysCols are written by every update: updated_seq and state_pb change
// with every event folded into the row.
const alwaysCols = colMask(1<<colUpdatedSeq | 1<<colStatePB)

// changedCols returns the columns of a proxies row whose values may differ
// between the states o and n: a superset of those that do (writing a column
// with its own value changes nothing). Every column the row takes from a
// field of the state must be named here; TestChangedColsCoverEveryChange
// checks it.
func changedCols(o, n *events.State) colMask {
	m := alwaysCols
	set := func(c int, differ bool) {
		if differ {
			m |= 1 << c
		}
	}
	set(colURL, o.URLRedacted != n.URLRedacted)
	set(colSource, o.Source != n.Source)
	set(colState, o.Health != n.Health)
	set(colPaused, o.Paused != n.Paused)
	set(colHasCredentials, o.HasCredentials != n.HasCredentials)
	set(colConsecutiveSuccesses, o.ConsecutiveSuccesses != n.ConsecutiveSuccesses)
	set(colConsecutiveFailures, o.ConsecutiveFailures != n.ConsecutiveFailures)
	set(colPassiveFailures, o.PassiveFailures != n.PassiveFailures)
	set(colRecoveryAttempt, o.RecoveryAttempt != n.RecoveryAttempt)
	set(colTotalChecks, o.TotalChecks != n.TotalChecks)
	set(colTotalFailures, o.TotalFailures != n.TotalFailures)
	lastCheck := unixNano(o.LastCheckAt) != unixNano(n.LastCheckAt)
	set(colLastCheckAt, lastCheck)
	set(colLastCheckUnixMS, lastCheck)
	set(colLastChangeAt, unixNano(o.LastChangeAt) != unixNano(n.LastChangeAt))
	set(colLastErrorClass, o.LastErrorClass != n.LastErrorClass)
	set(colLastError, o.LastError != n.LastError)
	set(colLastStatusCode, o.LastStatusCode != n.LastStatusCode)
	set(colLastLatencyMS, lastCheck || o.LastLatency.Total != n.LastLatency.Total)
	set(colLatencyEWMAMS, o.HasLatencyEWMA != n.HasLatencyEWMA || o.LatencyEWMA != n.LatencyEWMA)
	set(colAddedAt, unixNano(o.AddedAt) != unixNano(n.AddedAt))
	set(colTags, o.Tags != n.Tags)
	set(colWeight, o.Weight != n.Weight || o.Weight != o.Weight) // NaN: always
	set(colExitIP, o.ExitIP != n.ExitIP)
	set(colAnonymity, o.Anonymity != n.Anonymity)
	set(colEjectedUntil, unixNano(o.EjectedUntil) != unixNano(n.EjectedUntil))
	return m
}

// value returns the value of column c of r's proxies row: int64, float64,
// string, []byte or nil (NULL), as the driver takes them. state_pb is
// a.blob, which marshalState must have set.
func (a *applier) value(r *proxyRow, c int) driver.Value {
	s := &r.st
	switch c {
	case colID:
		return s.ProxyID
	case colURL:
		return s.URLRedacted
	case colSource:
		return s.Source
	case colState:
		return events.StateName(s.Health)
	case colPaused:
		return boolInt(s.Paused)
	case colHasCredentials:
		return boolInt(s.HasCredentials)
	case colConsecutiveSuccesses:
		return int64(s.ConsecutiveSuccesses)
	case colConsecutiveFailures:
		return int64(s.ConsecutiveFailures)
	case colPassiveFailures:
		return int64(s.PassiveFailures)
	case colRecoveryAttempt:
		return int64(s.RecoveryAttempt)
	case colTotalChecks:
		return int64(s.TotalChecks)
	case colTotalFailures:
		return int64(s.TotalFailures)
	case colLastCheckAt:
		return r.times.get(timeLastCheck, unixNano(s.LastCheckAt))
	case colLastCheckUnixMS:
		if s.LastCheckAt.IsZero() {
			return nil
		}
		return s.LastCheckAt.UnixMilli()
	case colLastChangeAt:
		return r.times.get(timeLastChange, unixNano(s.LastChangeAt))
	case colLastErrorClass:
		return events.ClassName(s.LastErrorClass)
	case colLastError:
		return s.LastError
	case colLastStatusCode:
		return int64(s.LastStatusCode)
	case colLastLatencyMS:
		if s.LastCheckAt.IsZero() {
			return nil
		}
		return ms(int64(s.LastLatency.Total))
	case colLatencyEWMAMS:
		if !s.HasLatencyEWMA {
			return nil
		}
		return ms(int64(s.LatencyEWMA))
	case colAddedAt:
		return r.times.get(timeAdded, unixNano(s.AddedAt))
	case colTags:
		return s.Tags
	case colWeight:
		if s.Weight > 0 {
			return s.Weight
		}
		return nil
	case colExitIP:
		return s.ExitIP
	case colAnonymity:
		return events.AnonymityName(s.Anonymity)
	case colEjectedUntil:
		return nullTime(unixNano(s.EjectedUntil))
	case colUpdatedSeq:
		return int64(s.Seq)
	case colStatePB:
		return a.blob
	}
	panic(fmt.Sprintf("sqlview: no proxies column %d", c))
}

// marshalState sets a.blob to r's state_pb: the state as a deterministic
// protobuf snapshot. The row's values hold it until the next call.
func (a *applier) marshalState(r *proxyRow) error {
	var err error
	if a.snap == nil {
		a.snap = new(pb.ProxySnapshot)
	}
	a.blob, err = marshalOpts.MarshalAppend(a.blob[:0], events.SnapshotInto(a.snap, r.st))
	return err
}

// fillRow sets a.row to the values of r's whole proxies row, in column
// order.
func (a *applier) fillRow(r *proxyRow) error {
	if err := a.marshalState(r); err != nil {
		return err
	}
	for c := range proxyCols {
		a.row[c] = a.value(r, c)
	}
	return nil
}

// insert writes r's whole proxies row: the proxy has none yet (its state is
// not cached). INSERT OR REPLACE, so that a row the cache somehow missed is
// overwritten rather than failing the batch forever.
func (a *applier) insert(ctx context.Context, r *proxyRow) error {
	if err := a.fillRow(r); err != nil {
		return err
	}
	return exec(ctx, a.w.st.insert, a.bind(a.row[:]...))
}

// update rewrites the columns of r's row that the batch's events may have
// changed (r.changed, the union of changedCols over its events), binding
// only those: a check that leaves the proxy's state, source and error
// alone binds 9 values instead of 28, and SQLite rewrites the index
// entries of state and source only when they change.
func (a *applier) update(ctx context.Context, c driver.Conn, r *proxyRow) error {
	stmt, mask, err := a.w.updateStmt(ctx, c, r.changed|alwaysCols)
	if err != nil {
		return err
	}
	if err := a.marshalState(r); err != nil {
		return err
	}
	a.args = a.args[:0]
	for m := mask; m != 0; m &= m - 1 {
		a.args = append(a.args, driver.NamedValue{Ordinal: len(a.args) + 1, Value: a.value(r, bits.TrailingZeros32(uint32(m)))})
	}
	a.args = append(a.args, driver.NamedValue{Ordinal: len(a.args) + 1, Value: r.st.ProxyID})
	return exec(ctx, stmt, a.args)
}

// maxUpdateStmts caps the UPDATE statements prepared for sets of changed
// columns: a steady pool uses a handful (a success, a failure, a state
// change, …); a set beyond the cap is written with the statement for every
// column.
const maxUpdateStmts = 64

// updateStmt returns the UPDATE statement that sets the columns of mask
// (prepared on c, the writer's connection, on first use), and the columns
// it sets: mask, or allCols once maxUpdateStmts are prepared.
func (w *writer) updateStmt(ctx context.Context, c driver.Conn, mask colMask) (driver.Stmt, colMask, error) {
	if st, ok := w.upd[mask]; ok {
		return st, mask, nil
	}
	if len(w.upd) >= maxUpdateStmts && mask != allCols {
		return w.updateStmt(ctx, c, allCols)
	}
	st, err := prepare(ctx, c, updateSQL(mask))
	if err != nil {
		return nil, 0, fmt.Errorf("sqlview: prepare the update of proxies: %w", err)
	}
	if w.upd == nil {
		w.upd = make(map[colMask]driver.Stmt)
	}
	w.upd[mask] = st
	return st, mask, nil
}

// updateSQL is the UPDATE of the proxies row WHERE id = the last argument
// that sets the columns of mask, in column order, one argument each.
func updateSQL(mask colMask) string {
	var b strings.Builder
	b.WriteString("UPDATE proxies SET ")
	for m, first := mask, true; m != 0; m &= m - 1 {
		if !first {
			b.WriteString(", ")
		}
		first = false
		b.WriteString(proxyColNames[bits.TrailingZeros32(uint32(m))])
		b.WriteString("=?")
	}
	b.WriteString(" WHERE id=?")
	return b.String()
}

// insertSQL writes a whole proxies row.
var insertSQL = "INSERT OR REPLACE INTO proxies (" + strings.Join(proxyColNames[:], ", ") + ") VALUES (?" + strings.Repeat(",?", proxyCols-1) + ")"
