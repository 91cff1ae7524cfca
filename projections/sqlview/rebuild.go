package sqlview

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/journal"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// RebuildFile builds a fresh view of journal j and atomically puts it at
// path, replacing whatever file is there without reading it (this is what
// `proxyhealth rebuild` runs; no View may have path open). The new view is
// built in path + ".tmp" and renamed into place only when complete, so a
// crash mid-rebuild leaves the old file intact.
func RebuildFile(ctx context.Context, path string, j journal.Journal, opts Options) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("sqlview: view path %s: %w", path, err)
	}
	if err := CheckDriver(opts.Driver); err != nil {
		return err
	}
	o := opts.withDefaults()
	tmp := abs + ".tmp"
	if err := build(ctx, tmp, j, o); err != nil {
		removeDB(tmp)
		return err
	}
	return install(tmp, abs)
}

// Rebuild replaces the view's content with a fresh replay of the journal
// from its first retained event, built aside and swapped in atomically (see
// RebuildFile). The result is identical to what incremental application
// produces. DB handles obtained before are closed. Status reports
// StateRebuilding meanwhile; if the new file cannot be opened, the view is
// left failing and Run (or CatchUp) retries.
func (v *View) Rebuild(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return ErrClosed
	}
	v.smu.Lock()
	saved := v.status
	v.status.State = StateRebuilding
	if saved.State == StateRunning {
		v.status.Since = v.opts.Now()
	}
	v.smu.Unlock()
	tmp := v.path + ".tmp"
	if err := build(ctx, tmp, v.j, v.opts); err != nil {
		removeDB(tmp)
		v.smu.Lock()
		v.status.State, v.status.Since = saved.State, saved.Since
		v.smu.Unlock()
		return err
	}
	v.closeDB()
	v.rebuild = nil
	err := install(tmp, v.path)
	if err == nil {
		err = v.open(ctx, true)
	}
	if err != nil {
		v.broken = true
		v.noteFailure(err, false)
		return err
	}
	v.noteRunning()
	return nil
}

// build writes a complete view of j into the fresh file tmp, tuned for
// bulk loading: no rollback journal and no fsync while writing (the file is
// private until renamed), secondary indexes created at the end, and one
// fsync before returning.
func build(ctx context.Context, tmp string, j journal.Journal, o Options) error {
	removeDB(tmp)
	// Create the file private to the user whatever the umask; SQLite gives
	// the -wal and -shm files the database file's mode.
	if err := createPrivate(tmp); err != nil {
		return err
	}
	db, err := openDB(o.Driver, tmp, "", "PRAGMA busy_timeout = 5000", "PRAGMA journal_mode = OFF", "PRAGMA synchronous = OFF")
	if err != nil {
		return fmt.Errorf("sqlview: create %s: %w", tmp, err)
	}
	db.SetMaxOpenConns(1)
	defer db.Close()
	if err := execAll(ctx, db, "PRAGMA cache_size = -65536", "PRAGMA temp_store = MEMORY", "PRAGMA threads = 2"); err != nil {
		return err
	}
	if err := execAll(ctx, db, tables...); err != nil {
		return err
	}
	a := &applier{db: db, load: j.LoadSnapshot, opts: o, cache: newStateCache(), deferProxies: true, archive: true}
	defer a.closeStatements() // before db.Close
	first, head := j.First(), j.Head()
	var total, done uint64
	if head >= first {
		total = head - first + 1
	}
	progress := func() {
		if o.Progress != nil {
			o.Progress(done, total)
		}
	}
	progress()
	if err := a.applyCarried(ctx, j); err != nil {
		return err
	}
	// Read and decode the journal in one goroutine while SQLite writes in
	// this one.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan []*pb.Envelope, 2)
	var readErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(batches)
		readErr = readBatches(rctx, j, first, head, batches)
	}()
	var applyErr error
	for batch := range batches {
		if applyErr != nil {
			continue // drain until the reader sees the cancellation
		}
		if applyErr = a.applyBatch(ctx, batch, false); applyErr != nil {
			cancel()
			continue
		}
		done += uint64(len(batch))
		progress()
	}
	wg.Wait()
	if applyErr != nil {
		return applyErr
	}
	if readErr != nil {
		return fmt.Errorf("%w: rebuild %s: %w", ErrJournal, tmp, readErr)
	}
	if err := a.seedSnapshots(ctx, j); err != nil {
		return err
	}
	if err := a.flushProxies(ctx); err != nil {
		return err
	}
	// The applier holds the only connection (SetMaxOpenConns(1)) until
	// now.
	a.closeStatements()
	if err := a.prune(ctx, db, a.newest); err != nil {
		return err
	}
	if err := execAll(ctx, db, indexes...); err != nil {
		return err
	}
	if err := execAll(ctx, db, fmt.Sprintf("PRAGMA user_version = %d", SchemaVersion), "PRAGMA journal_mode = WAL"); err != nil {
		return err
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("sqlview: close %s: %w", tmp, err)
	}
	return syncFile(tmp)
}

// readBatches sends the journal's events from first to head in batches.
func readBatches(ctx context.Context, j journal.Journal, first, head uint64, out chan<- []*pb.Envelope) error {
	batch := make([]*pb.Envelope, 0, rebuildBatchSize)
	send := func() error {
		select {
		case out <- batch:
			batch = make([]*pb.Envelope, 0, rebuildBatchSize)
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for e, err := range j.Read(ctx, first) {
		if err != nil {
			return err
		}
		if e.GetSeq() > head {
			break
		}
		if batch = append(batch, e); len(batch) == rebuildBatchSize {
			if err := send(); err != nil {
				return err
			}
		}
	}
	if len(batch) > 0 {
		return send()
	}
	return nil
}

// install renames the finished tmp over path. The old file's WAL and
// shared-memory files are removed first: they must never be paired with
// the new file (a crash in between leaves the old file consistent, only
// older, and the view catches up from its own offset).
func install(tmp, path string) error {
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Remove(path + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("sqlview: remove the old %s%s: %w", path, suffix, err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("sqlview: install the rebuilt view %s: %w", path, err)
	}
	return syncFile(filepath.Dir(path))
}

// removeDB removes a database file and its companions, ignoring errors.
func removeDB(path string) {
	for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
		os.Remove(path + suffix)
	}
}

// syncFile fsyncs a file or directory.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("sqlview: sync %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sqlview: sync %s: %w", path, err)
	}
	return nil
}

// createPrivate creates the empty file path with mode 0600, whatever the
// umask.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("sqlview: create %s: %w", path, err)
	}
	err = f.Chmod(0o600)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sqlview: create %s: %w", path, err)
	}
	return nil
}

// applyCarried applies the pool-wide events retention carried (the pool's
// and the sources' state, see journal.Carrier) before the journal's first
// event: the incrementally built view applied them when they were new.
func (a *applier) applyCarried(ctx context.Context, j journal.Journal) error {
	carried, err := journal.Carried(ctx, j)
	if err != nil {
		return fmt.Errorf("%w: read the carried pool events: %w", ErrJournal, err)
	}
	if len(carried) == 0 {
		return nil
	}
	if err := a.connect(ctx); err != nil {
		return err
	}
	a.carrying = true
	defer func() { a.carrying = false }()
	return a.w.conn.Raw(func(dc any) error { return a.applyRaw(ctx, dc.(driver.Conn), carried, false) })
}

// seedSnapshots adds the proxies retention left with a snapshot and no
// event (the incrementally built view has their rows): a rebuild must
// equal it. A proxy with events after its snapshot was folded already.
func (a *applier) seedSnapshots(ctx context.Context, j journal.Journal) error {
	err := journal.QuietSnapshots(ctx, j, nil, func(snap *pb.ProxySnapshot) {
		if !a.cache.has(snap.GetProxyId()) && !snap.GetRemoved() {
			s := events.FromSnapshot(snap)
			a.cache.put(snap.GetProxyId(), &s)
		}
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrJournal, err)
	}
	return nil
}
