package sqlview

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/proxyhealth/proxyhealth/journal"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// State is what the view is doing, as reported by Status.
type State string

// The states of a view.
const (
	// StateRunning: the last attempt to open, apply or catch up succeeded.
	StateRunning State = "running"
	// StateFailing: the view cannot be updated for now (or the journal
	// cannot be read); Run retries with backoff.
	StateFailing State = "failing"
	// StateRebuilding: the file was unusable (corrupt, deleted, replaced,
	// invalid) and is being rebuilt from the journal.
	StateRebuilding State = "rebuilding"
)

// Status is a snapshot of the view's health.
type Status struct {
	// State is running, failing or rebuilding.
	State State
	// Err is the error of the current failure episode ("" while running).
	// It names the file and the cause; the view holds no credentials.
	Err string
	// Journal is set when Err is about reading the journal, not about the
	// view.
	Journal bool
	// Since is when the current failure episode began (zero while
	// running).
	Since time.Time
	// Failures counts the failed attempts since OpenView.
	Failures uint64
	// Rebuilds counts the attempts to rebuild a file found unusable or
	// missing since OpenView (not those made by OpenView itself).
	Rebuilds uint64
	// Offset is the seq of the last journal event applied to the view;
	// the view's lag is the journal's head minus Offset.
	Offset uint64
}

// Status returns the view's current status. It is cheap, never blocks on
// a batch or a rebuild, and is safe for concurrent use.
func (v *View) Status() Status {
	v.smu.Lock()
	s := v.status
	v.smu.Unlock()
	s.Offset = v.offset.Load()
	return s
}

// noteFailure records a failed attempt and logs it: the first of an
// episode at Error, the others at Warn.
func (v *View) noteFailure(err error, journalFault bool) {
	v.smu.Lock()
	first := v.status.State == StateRunning
	if first {
		v.status.Since = v.opts.Now()
	}
	v.status.State, v.status.Err, v.status.Journal = StateFailing, err.Error(), journalFault
	v.status.Failures++
	n := v.status.Failures
	v.smu.Unlock()
	if first {
		v.opts.Logger.Error("SQLite view failing; retrying with backoff", "path", v.path, "error", err, "journal", journalFault)
	} else {
		v.opts.Logger.Warn("SQLite view still failing", "path", v.path, "error", err, "journal", journalFault, "failures", n)
	}
}

// noteRebuilding records the start of a rebuild of an unusable file.
func (v *View) noteRebuilding(cause error) {
	v.smu.Lock()
	defer v.smu.Unlock()
	if v.status.State == StateRunning {
		v.status.Since = v.opts.Now()
	}
	v.status.State, v.status.Err, v.status.Journal = StateRebuilding, cause.Error(), false
	v.status.Rebuilds++
}

// noteRunning records that the view works again.
func (v *View) noteRunning() {
	v.smu.Lock()
	if v.status.State == StateRunning {
		v.smu.Unlock()
		return
	}
	since := v.status.Since
	v.status.State, v.status.Err, v.status.Journal, v.status.Since = StateRunning, "", false, time.Time{}
	v.smu.Unlock()
	v.opts.Logger.Info("SQLite view working again", "path", v.path, "offset", v.offset.Load(), "down_for", v.opts.Now().Sub(since).Round(time.Millisecond))
}

// fail records err as a failure of the view's file: the handle is reopened
// before the next batch, and rebuilt first if err calls for it.
func (v *View) fail(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return err // interrupted, not failed: the transaction rolled back
	}
	if errors.Is(err, ErrJournal) {
		v.noteFailure(err, true)
		return err
	}
	v.broken = true
	if unusable(err) && !errors.Is(err, ErrViewReplaced) {
		v.rebuild = err // a replaced file is reopened: it may be a valid view
	}
	v.noteFailure(err, false)
	return err
}

// checkFile verifies that v.path still names the file the view has open.
func (v *View) checkFile() error {
	fi, err := os.Stat(v.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%w: %s no longer exists", ErrViewReplaced, v.path)
	case err != nil:
		return fmt.Errorf("sqlview: %s: %w", v.path, err)
	case !os.SameFile(fi, v.file):
		return fmt.Errorf("%w: %s is no longer the file the view opened", ErrViewReplaced, v.path)
	}
	return nil
}

// ensureOpen reopens the view if its handle failed.
func (v *View) ensureOpen(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return ErrClosed
	}
	if !v.broken && v.db != nil {
		return nil
	}
	if err := v.reopen(ctx); err != nil {
		if unusable(err) && !errors.Is(err, ErrViewReplaced) {
			v.rebuild = err
		}
		if ctx.Err() == nil {
			v.broken = true
			v.noteFailure(err, errors.Is(err, ErrJournal))
		}
		return err
	}
	return nil
}

// apply applies one batch under the lock.
func (v *View) apply(ctx context.Context, envs []*pb.Envelope) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return ErrClosed
	}
	if v.broken || v.db == nil {
		return fmt.Errorf("sqlview: %s: not reopened after a failure", v.path) // ensureOpen first
	}
	if err := v.checkFile(); err != nil {
		return v.fail(ctx, err)
	}
	if err := v.a.applyBatch(ctx, envs, true); err != nil {
		if !errors.Is(err, ErrJournal) && !errors.Is(err, ErrViewBehind) {
			err = v.classify(fmt.Sprintf("apply events %d to %d", envs[0].GetSeq(), envs[len(envs)-1].GetSeq()), err)
		}
		return v.fail(ctx, err)
	}
	v.offset.Store(v.a.offset)
	v.proxies.Store(int64(v.a.cache.len()))
	return nil
}

// shapeScale is the number of proxies up to which Run and CatchUp apply
// batches of Options.BatchSize and Run lingers Options.Linger; see shape.
const shapeScale = 5_000

// Bounds of the scaled batches (shape): a batch's events are held decoded
// in memory, and the view trails the journal by up to the linger.
const (
	maxScaledBatch  = 20_000
	maxScaledLinger = 10 * time.Second
)

// shape returns the batch size and the linger for the view as it is: those
// of the Options up to shapeScale proxies; beyond, both in proportion to the
// proxies (a linger of 2 s at 10,000 proxies and 10 s from 50,000 with the
// default 1 s), up to maxScaledBatch events and maxScaledLinger (or the
// Options' own, if larger).
//
// A batch's cost is mostly the pages it writes and reads: one of the
// proxies table per check (and, until schema version 3, one of the
// (proxy_id, at) index), fewer when the checks of one batch share pages.
// At 100,000 proxies a batch of 2,000 checks touches nearly a page per
// check. There, batches of 20,000 cost 25 µs of CPU per event instead of
// 36, and write 5.7 KB per event instead of 11.7
// (BenchmarkSteadyState/proxies=100000/batch=2000/fresh before this
// scaling, at 253c196, and with it). At 10,000 proxies checked every 10 s,
// batches of 2 s (2,000 checks) instead of 1 s write 26 % fewer bytes per
// event with 12 s of history (2,610 against 3,530) and 11 % fewer with 5
// minutes (6,175 against 6,970), and cost less CPU: 25–29 µs per event
// against 27–34 fresh, 36–38 against 34–46 with history
// (BenchmarkSteadyState/proxies=10000/batch=1000/fresh and history=5m,
// three to six runs each with shapeScale 10,000 and 5,000, 2026-12-07); the
// daemon made 2.03–2.04 write-like system calls per check instead of
// 2.42–2.47 (BenchmarkDaemon/proxies=10000, three runs against seven),
// with the same peak RSS (83.8–84.0 MiB against 83.5–84.9): the batch's
// envelopes are about the journal's window of recent ones, which it
// shares. Batches of 5 s wrote a third of the bytes, but they held 5,000
// envelopes of their own, and the daemon's peak RSS was 88.3 and 88.5 MiB.
// The view trails the journal by up to 2 s at 10,000 proxies and 10 s at
// 100,000: a fifth and a sixth of the 10 s and 60 s they are checked
// every in BenchmarkDaemon.
func (v *View) shape() (batch int, linger time.Duration) {
	batch, linger = v.opts.BatchSize, v.opts.Linger
	n := v.proxies.Load()
	if n <= shapeScale {
		return batch, linger
	}
	f := float64(n) / shapeScale
	batch = min(int(float64(batch)*f), max(batch, maxScaledBatch))
	if linger > 0 {
		linger = min(time.Duration(float64(linger)*f), max(linger, maxScaledLinger))
	}
	return batch, linger
}

// CatchUp applies every event from the view's offset to the journal's
// current head. A view that failed before is reopened (and rebuilt, if
// its file is unusable and Options.RebuildIfInvalid is set) first. Errors
// reading the journal wrap ErrJournal.
func (v *View) CatchUp(ctx context.Context) error {
	if err := v.catchUp(ctx); err != nil {
		return err
	}
	v.noteRunning()
	return nil
}

func (v *View) catchUp(ctx context.Context) error {
	for {
		if err := v.ensureOpen(ctx); err != nil {
			return err
		}
		from := v.Offset() + 1
		if from > v.j.Head() {
			return nil
		}
		// One read of the journal for all the batches up to its head: a
		// new Read per batch would decode a whole read chunk (4,096
		// envelopes) each time and drop what is beyond the batch.
		size, _ := v.shape()
		batch := make([]*pb.Envelope, 0, size)
		read := 0
		for e, err := range v.j.Read(ctx, from) {
			if err != nil {
				err = fmt.Errorf("%w: read from seq %d for %s: %w", ErrJournal, from, v.path, err)
				if ctx.Err() == nil && !errors.Is(err, journal.ErrClosed) {
					v.noteFailure(err, true)
				}
				return err
			}
			batch = append(batch, e)
			read++
			if len(batch) >= size {
				if err := v.apply(ctx, batch); err != nil {
					return err
				}
				size, _ = v.shape()
				batch = make([]*pb.Envelope, 0, size)
			}
		}
		if read == 0 {
			return nil
		}
		if len(batch) > 0 {
			if err := v.apply(ctx, batch); err != nil {
				return err
			}
		}
	}
}

// Run keeps the view in step with the journal until ctx ends: it catches
// up, then tails the journal, applying whatever has arrived (up to
// BatchSize events) in one transaction at a time.
//
// A failure does not end Run: it is recorded (Status), and Run waits
// (Options.RetryMin, doubling up to RetryMax) and starts again from the
// view's durable offset, reopening the file; an unusable file is moved
// aside and rebuilt (with RebuildIfInvalid). Run returns nil when ctx ends,
// an error wrapping ErrJournal and journal.ErrClosed when the journal
// closes, and ErrClosed when the view is closed.
func (v *View) Run(ctx context.Context) error {
	delay := v.opts.RetryMin
	streak := 0 // consecutive failed attempts
	for {
		before, start := v.Offset(), time.Now()
		err := v.runOnce(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrClosed), errors.Is(err, journal.ErrClosed):
			return err
		}
		if v.Offset() > before || time.Since(start) >= v.opts.RetryMax {
			// The attempt applied events or ran for a while: a new episode.
			streak, delay = 0, v.opts.RetryMin
		}
		streak++
		wait := delay
		if streak == 1 && unusable(err) && v.opts.RebuildIfInvalid {
			wait = 0 // rebuild now; back off if that fails too
		} else {
			delay = min(2*delay, v.opts.RetryMax)
		}
		if !sleep(ctx, wait) {
			return nil
		}
	}
}

// sleep waits for d or the end of ctx (false).
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// runOnce catches up and tails the journal until something fails.
func (v *View) runOnce(ctx context.Context) error {
	if err := v.CatchUp(ctx); err != nil {
		return err
	}
	sub := v.j.Subscribe(v.Offset() + 1)
	defer sub.Close()
	for {
		size, wait := v.shape()
		batch, err := v.next(ctx, sub, size)
		if err != nil {
			return err
		}
		batch = v.linger(ctx, sub, batch, size, wait)
		v.hold(ctx)
		if err := v.apply(ctx, batch); err != nil {
			return err
		}
	}
}

// holdPoll is how often a held view asks Options.Hold again.
const holdPoll = 100 * time.Millisecond

// hold waits while Options.Hold asks the view to hold back, for at most
// Options.MaxHold in a row (see Options.Hold), or until ctx ends.
func (v *View) hold(ctx context.Context) {
	if v.opts.Hold == nil {
		return
	}
	if !v.opts.Hold() {
		v.heldOut = false
		return
	}
	if v.heldOut {
		return
	}
	start := v.opts.Now()
	v.opts.Logger.Info("SQLite view holds back while a sweep of new proxies runs", "path", v.path, "offset", v.Offset(), "max_hold", v.opts.MaxHold)
	for sleep(ctx, holdPoll) {
		held := v.opts.Now().Sub(start)
		msg := "SQLite view catches up after the sweep"
		if v.opts.Hold() {
			if held < v.opts.MaxHold {
				continue
			}
			v.heldOut = true
			msg = "SQLite view held back as long as it may; applying again while the sweep runs"
		}
		v.opts.Logger.Info(msg, "path", v.path, "held_for", held.Round(time.Millisecond), "behind", v.j.Head()-v.Offset())
		return
	}
}

// next waits for the next batch (of up to size events), checking every
// CheckInterval meanwhile that the file is still in place.
func (v *View) next(ctx context.Context, sub *journal.Subscription, size int) ([]*pb.Envelope, error) {
	for {
		ictx, cancel := context.WithTimeout(ctx, v.opts.CheckInterval)
		batch, err := sub.NextBatch(ictx, size)
		cancel()
		switch {
		case err == nil:
			return batch, nil
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			if err := v.checkIdle(ctx); err != nil {
				return nil, err
			}
			continue
		}
		err = fmt.Errorf("%w: tail the journal for %s: %w", ErrJournal, v.path, err)
		if !errors.Is(err, journal.ErrClosed) {
			v.noteFailure(err, true)
		}
		return nil, err
	}
}

// checkIdle checks, between batches, that the file is still in place.
func (v *View) checkIdle(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return ErrClosed
	}
	if err := v.checkFile(); err != nil {
		return v.fail(ctx, err)
	}
	return nil
}

// linger tops a batch smaller than size up with what arrives within wait
// (Options.Linger, scaled by shape), so that a trickle of events costs one
// transaction per linger period instead of one per event.
func (v *View) linger(ctx context.Context, sub *journal.Subscription, batch []*pb.Envelope, size int, wait time.Duration) []*pb.Envelope {
	if wait <= 0 || len(batch) >= size {
		return batch
	}
	lctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for len(batch) < size {
		more, err := sub.NextBatch(lctx, size-len(batch))
		if err != nil {
			break // the linger ended (or the journal closed: the next read says so)
		}
		batch = append(batch, more...)
	}
	return batch
}

// Close closes the view. Stop Run first. Idempotent.
func (v *View) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return nil
	}
	v.closed = true
	if v.a != nil {
		v.a.closeStatements()
	}
	var err error
	if v.db != nil {
		err = v.db.Close()
	}
	v.db, v.a = nil, nil
	return err
}
