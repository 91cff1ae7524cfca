package proxyhealth

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// Errors of opening a data directory's journal. They are the journal's
// sentinels, so errors.Is matches either name.
var (
	// ErrJournalLocked: another process (a running daemon) holds the
	// journal. Ask it through its API instead.
	ErrJournalLocked = journal.ErrLocked
	// ErrJournalCorrupt: the journal is damaged; the error names the file,
	// what is wrong and the last good seq it found. SalvageJournal copies
	// what is intact into a new file.
	ErrJournalCorrupt = journal.ErrCorrupt
	// ErrNotAJournal: the file is not a proxyhealth journal.
	ErrNotAJournal = journal.ErrNotJournal
	// ErrJournalEmpty: the journal file exists but holds nothing (it was
	// truncated or replaced).
	ErrJournalEmpty = journal.ErrEmpty
)

// StatusReader is the live pool status, read-only: what Engine.Status and
// Archive.Status return. Queries never block the engine.
type StatusReader interface {
	// Summary is the pool: counts per state and source.
	Summary() Summary
	// List returns the proxies that f selects, a page of them (offset,
	// limit) and how many there are in all.
	List(f ListFilter, offset, limit int) (total int, page []ProxyView)
	// Proxy returns one proxy's status.
	Proxy(id string) (ProxyView, bool)
	// StateChanges returns a proxy's latest transitions, newest first.
	StateChanges(id string, n int) []StateChange
	// Seq is the seq of the last journal event the status reflects.
	Seq() uint64
}

var _ StatusReader = (*projections.Live)(nil)

// ListAppender is List appending the page to dst: the StatusReaders of
// Engine.Status and Archive.Status implement it, so that a caller serving
// pages over and over (the HTTP API) reuses one slice instead of allocating
// a page per call (about 37 KB for 100 proxies).
type ListAppender interface {
	AppendList(dst []ProxyView, f ListFilter, offset, limit int) (total int, page []ProxyView)
}

var _ ListAppender = (*projections.Live)(nil)

// SummaryAppender is Summary appending the sources' summaries to src[:0]:
// the StatusReaders of Engine.Status and Archive.Status implement it, so
// that a caller serving the pool over and over (the HTTP API's GET
// /v1/pool) reuses one slice instead of allocating one per call.
type SummaryAppender interface {
	AppendSummary(src []SourceSummary) Summary
}

var _ SummaryAppender = (*projections.Live)(nil)

// Archive is a data directory opened read-only, for audits and reports
// while no engine runs on it (bbolt lets one process hold the journal: a
// running daemon makes OpenArchive fail with ErrJournalLocked; ask its API
// instead). It reads the journal with the same code as the engine, so the
// status and histories it gives are the ones a restarted engine would show,
// except what only a running engine knows (checks in flight, next checks).
type Archive struct {
	dir     string
	path    string
	j       journal.Journal
	history *projections.History

	once sync.Once
	live *projections.Live
	err  error
	// restored is the seq of the live status checkpoint Status started
	// from (0: it folded the whole journal)
	restored uint64
	// ignoreCheckpoint: ArchiveOptions.FoldWholeJournal
	ignoreCheckpoint bool
}

// ArchiveOptions configures OpenArchive; the zero value is fine.
type ArchiveOptions struct {
	// LockTimeout is how long to wait for a journal another process holds
	// (default 500 ms).
	LockTimeout time.Duration
	// FoldWholeJournal makes Status fold every retained event instead of
	// starting from the live status checkpoint the engine saved in the
	// directory (LiveCheckpointFile, checked against the journal as Open
	// checks it): the same status, from the journal alone, at the cost of
	// reading all of it.
	FoldWholeJournal bool
}

// OpenArchive opens dir's journal read-only. A missing journal is an error
// wrapping os.ErrNotExist; a damaged one wraps ErrJournalCorrupt, an empty
// one ErrJournalEmpty, one held by a running daemon ErrJournalLocked.
func OpenArchive(ctx context.Context, dir string, opts ArchiveOptions) (*Archive, error) {
	path := filepath.Join(dir, JournalFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("proxyhealth: no journal at %s: %w", path, err)
	} else if err != nil {
		return nil, fmt.Errorf("proxyhealth: cannot read %s: %w", path, err)
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = 500 * time.Millisecond
	}
	b, err := journal.OpenBolt(path, journal.WithReadOnly(), journal.WithLockTimeout(opts.LockTimeout))
	if err != nil {
		return nil, err
	}
	return &Archive{dir: dir, path: path, j: b, history: projections.NewHistory(b, projections.HistoryOptions{}), ignoreCheckpoint: opts.FoldWholeJournal}, nil
}

// Path is the journal file's path.
func (a *Archive) Path() string { return a.path }

// Head is the seq of the journal's last event (0 when it has none).
func (a *Archive) Head() uint64 { return a.j.Head() }

// Journal is a read-only view of the archive's journal (to rebuild a
// projection from it, as RebuildView does). Close the Archive, not
// the view.
func (a *Archive) Journal() journal.Journal { return journal.ReadOnly(a.j) }

// First is the seq of the oldest event retention kept (Head()+1 when the
// journal has none).
func (a *Archive) First() uint64 { return a.j.First() }

// Status folds the journal into the pool's status, on first use: from the
// live status checkpoint the engine saved in the directory when it fits
// the journal (as Open does; see ArchiveOptions.FoldWholeJournal), else
// the whole journal. Nothing is checking or scheduled in an archive:
// Checking and NextCheckAt stay zero.
func (a *Archive) Status(ctx context.Context) (StatusReader, error) {
	a.once.Do(func() {
		opts := projections.LiveOptions{Snapshots: a.j.LoadSnapshot}
		live := projections.NewLive(opts)
		if !a.ignoreCheckpoint {
			seq, err := loadLiveCheckpoint(ctx, a.dir, live, a.j)
			if err != nil { // missing or not fitting: the whole journal
				live, seq = projections.NewLive(opts), 0
			}
			a.restored = seq
		}
		if err := foldLive(ctx, live, a.j, a.j.Head(), nil); err != nil {
			a.err = fmt.Errorf("proxyhealth: fold %s: %w", a.path, err)
			return
		}
		a.live = live
	})
	if a.err != nil {
		return nil, a.err
	}
	return a.live, nil
}

// ReadJournal yields the journal events that f selects, in seq order
// (bounded memory).
func (a *Archive) ReadJournal(ctx context.Context, f JournalFilter) iter.Seq2[*pb.Envelope, error] {
	return filterJournal(ctx, a.j, f)
}

// History returns a proxy's check results since the given time (at most
// the last 64, within the last 24 h), newest first.
func (a *Archive) History(ctx context.Context, id string, since time.Time) ([]CheckRecord, error) {
	return a.history.Checks(ctx, id, since)
}

// Verify checks the journal: its file structure, every record's checksum,
// gap-free seqs, every stream's chain. Damage wraps ErrJournalCorrupt and
// names what was found.
func (a *Archive) Verify(ctx context.Context) error { return a.j.Check(ctx) }

// Close releases the journal.
func (a *Archive) Close() error { return a.j.Close() }

// SalvageReport says what SalvageJournal copied and what it could not.
type SalvageReport = journal.SalvageReport

// SalvageJournal copies every intact event of dir's journal (the longest
// unbroken run from the first retained seq, with the snapshots consistent
// with it) into a new journal file out, which must not exist. The damaged
// file is only read. The report says what could not be copied.
func SalvageJournal(ctx context.Context, dir, out string) (*SalvageReport, error) {
	if out == "" {
		return nil, errors.New("proxyhealth: salvage: name the new journal file")
	}
	return journal.Salvage(ctx, filepath.Join(dir, JournalFile), out)
}

// Status returns the live pool status, read-only (what Live returns,
// without the methods that feed it).
func (e *Engine) Status() StatusReader { return e.proj.live }

// CheckHistory returns a proxy's check results since the given time (at
// most the last 64, within the last 24 h on the engine's clock), newest
// first, read from the journal.
func (e *Engine) CheckHistory(ctx context.Context, id string, since time.Time) ([]CheckRecord, error) {
	return e.proj.history.Checks(ctx, id, since)
}
