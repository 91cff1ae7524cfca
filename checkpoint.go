package proxyhealth

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections"
)

// LiveCheckpointFile is the file in Config.DataDir where Close saves the
// live status (the pool's status and every proxy's, as of the journal's
// head), so that the next Open folds only the events after it instead of
// the whole retained journal: at 10,000 proxies checked every 10 s, an
// hour of history is 3.6 million events. It is a cache: Open folds the
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
