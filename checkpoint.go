package proxyhealth

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/clock"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections"
)

// LiveCheckpointFile is the file in Config.DataDir where the engine saves
// the live status (the pool's status and every proxy's, as of a journal
// seq), so that the next Open folds only the events after it instead of
// the whole retained journal: at 10,000 proxies checked every 10 s, an
// hour of history is 3.6 million events. Close saves it as of the
// journal's head; a running engine saves it every Config.CheckpointEvery,
// for the start after a crash. It is a cache: Open folds the
// whole journal instead when the file is missing, damaged, from another
// journal file (it names the journal's device and inode), or older than
// what retention kept; deleting it is always safe.
const LiveCheckpointFile = "live.checkpoint"

// errStaleCheckpoint says why a checkpoint does not fit the journal.
var errStaleCheckpoint = errors.New("proxyhealth: the live status checkpoint does not fit the journal")

// saveLiveCheckpoint writes live's checkpoint to dir's LiveCheckpointFile
// (writeFileAtomic), headed by the identity of the journal file it was
// folded from.
func saveLiveCheckpoint(dir string, live *projections.Live) error {
	id, ok := journalFileID(filepath.Join(dir, JournalFile))
	if !ok {
		return nil // no identity to check it against: never trusted, so not written
	}
	path := filepath.Join(dir, LiveCheckpointFile)
	err := writeFileAtomic(path, func(w io.Writer) error {
		if _, err := w.Write(binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, id.dev), id.ino)); err != nil {
			return err
		}
		_, err := live.WriteCheckpoint(w)
		return err
	})
	if err != nil {
		return fmt.Errorf("proxyhealth: save the live status checkpoint %s: %w", path, err)
	}
	return nil
}

// liveSaver saves the live status's checkpoint from the live feeder's
// goroutine while the engine runs (Config.CheckpointEvery). The feeder is
// the only goroutine that applies events, so the checkpoint it takes is
// of one seq; queries go on meanwhile (WriteCheckpoint holds the read
// lock), only the fold waits, for the encoding and the file's sync.
type liveSaver struct {
	dir   string
	every time.Duration
	clk   clock.Clock
	log   *slog.Logger
	next  time.Time // when the next save is due

	// h is the saver's condition: the feeder writes it under mu (and
	// reads it without), Engine.Health reads it under mu.
	mu sync.Mutex
	h  CheckpointHealth
}

// health returns the saver's condition (the zero one for a nil saver).
func (s *liveSaver) health() CheckpointHealth {
	if s == nil {
		return CheckpointHealth{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.h
}

// saveAtOnceAfter is how many events Open's fold must have applied for the
// running engine to save a checkpoint at once rather than after
// CheckpointEvery: a start that had to fold that much (after a crash,
// without a checkpoint or from an old one) spares the next start the same.
var saveAtOnceAfter uint64 = 100_000

// newLiveSaver returns the saver of the engine's config (nil: none), for a
// live status that Open restored at seq restored and folded on to its
// current seq.
func newLiveSaver(cfg Config, log *slog.Logger, live *projections.Live, restored uint64) *liveSaver {
	if cfg.DataDir == "" || cfg.CheckpointEvery <= 0 {
		return nil
	}
	s := &liveSaver{dir: cfg.DataDir, every: cfg.CheckpointEvery, clk: cfg.Clock, log: log, h: CheckpointHealth{Seq: restored}}
	s.next = s.clk.Now().Add(s.every)
	if live.Seq()-restored >= saveAtOnceAfter {
		s.next = time.Time{}
	}
	return s
}

// maybeSave saves live's checkpoint if one is due and live applied events
// since the last; call it from the feeder, between batches.
func (s *liveSaver) maybeSave(live *projections.Live) {
	if s == nil || live.Seq() == s.h.Seq {
		return
	}
	now := s.clk.Now()
	if now.Before(s.next) {
		return
	}
	s.next = now.Add(s.every)
	seq := live.Seq()
	start := time.Now() // what the save cost, for the log: not a schedule
	if err := saveLiveCheckpoint(s.dir, live); err != nil {
		if !s.h.Failing {
			s.log.Warn("the live status checkpoint was not saved; a start after a crash folds the journal from the last one saved (retrying every checkpoint interval)",
				slog.Duration("every", s.every), slog.Any("error", err))
		} else {
			s.log.Debug("the live status checkpoint is still not saved", slog.Any("error", err))
		}
		s.mu.Lock()
		s.h.Failing, s.h.Error = true, err.Error()
		s.h.Failures++
		s.mu.Unlock()
		return
	}
	// The health first, then the log: whoever reads the log line finds
	// the health that says so (TestRunningCheckpointFailureIsWarnedOnce
	// read the failure after the line in one run of CI).
	s.mu.Lock()
	recovered := s.h.Failing
	s.h.Seq, s.h.SavedAt, s.h.Failing, s.h.Error = seq, now, false, ""
	s.mu.Unlock()
	if recovered {
		s.log.Info("the live status checkpoint is saved again", slog.Uint64("seq", seq))
	}
	s.log.Debug("live status checkpoint saved", slog.Uint64("seq", seq), slog.Duration("took", time.Since(start)))
}

// loadLiveCheckpoint restores live (new) from dir's LiveCheckpointFile and
// returns the seq it stands for, if the checkpoint was made from this
// journal file and every event after it is still in the journal: the
// journal file has the device and inode the checkpoint names, its event
// at that seq has the time the checkpoint applied last, and retention kept
// the events that follow. Otherwise live is left half restored (drop it)
// and the error says why: fs.ErrNotExist when there is no checkpoint.
func loadLiveCheckpoint(ctx context.Context, dir string, live *projections.Live, j journal.Journal) (uint64, error) {
	f, err := os.Open(filepath.Join(dir, LiveCheckpointFile))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var head [16]byte
	if _, err := io.ReadFull(f, head[:]); err != nil {
		return 0, fmt.Errorf("%w: %w", projections.ErrBadCheckpoint, err)
	}
	want := fileID{dev: binary.LittleEndian.Uint64(head[:8]), ino: binary.LittleEndian.Uint64(head[8:])}
	if id, ok := journalFileID(filepath.Join(dir, JournalFile)); !ok || id != want {
		return 0, fmt.Errorf("%w: it was saved from another journal file", errStaleCheckpoint)
	}
	seq, err := live.ReadCheckpoint(f)
	if err != nil {
		return 0, err
	}
	if h := j.Head(); seq > h {
		return 0, fmt.Errorf("%w: it stands for seq %d, past the journal's head %d", errStaleCheckpoint, seq, h)
	}
	if first := j.First(); seq+1 < first {
		return 0, fmt.Errorf("%w: retention deleted the events after it (seq %d, first retained %d)", errStaleCheckpoint, seq, first)
	}
	if seq == 0 {
		return 0, nil
	}
	at := live.Summary().UpdatedAt
	for env, err := range j.Read(ctx, seq) {
		if err != nil {
			return 0, fmt.Errorf("%w: read event %d: %w", errStaleCheckpoint, seq, err)
		}
		if env.GetSeq() != seq || env.GetAtUnixNano() != at.UnixNano() {
			return 0, fmt.Errorf("%w: the journal's event %d is not the one it applied last", errStaleCheckpoint, seq)
		}
		return seq, nil
	}
	// seq is First-1: the event it applied last was deleted by retention,
	// so nothing tells that this is its journal.
	return 0, fmt.Errorf("%w: retention deleted the event it applied last (seq %d)", errStaleCheckpoint, seq)
}

// fileID identifies a file across renames and rewrites in place: a
// journal salvaged or restored from a backup and moved into place is
// another file.
type fileID struct{ dev, ino uint64 }
