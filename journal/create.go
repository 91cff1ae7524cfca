package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// createHook, if set (tests), runs after a new journal is initialised
// under its temporary name and before it is linked into place.
var createHook func(tmp string)

// createJournal creates the journal file at path atomically: a new bbolt
// file is initialised (the journal's buckets and schema, committed and
// synced) under a temporary name in the same directory and then linked
// into place, and the directory is synced. A crash at any moment leaves
// either no journal or a complete empty one, never a 0-byte or
// uninitialised file, which Open refuses as lost history (a kill -9 during
// a daemon's very first start did leave one). If another process created
// the journal meanwhile, its file is kept.
func createJournal(path string, o boltOptions) error {
	tmp := fmt.Sprintf("%s.new-%d", path, os.Getpid())
	_ = os.Remove(tmp) // a leftover of an earlier process with our pid
	db, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: o.lockTimeout, NoSync: o.noSync, FreelistType: bolt.FreelistMapType, NoStatistics: true})
	if err != nil {
		return fmt.Errorf("journal: create %s: %w", path, err)
	}
	err = db.Update(initJournal)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("journal: initialise new journal %s: %w", path, err)
	}
	if createHook != nil {
		createHook(tmp)
	}
	err = os.Link(tmp, path) // fails if path exists: never replaces a journal
	_ = os.Remove(tmp)
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("journal: create %s: %w", path, err)
	}
	if o.noSync {
		return nil
	}
	return syncDir(filepath.Dir(path))
}

// initJournal creates the journal's buckets and schema in a new file.
func initJournal(tx *bolt.Tx) error {
	for _, name := range allBuckets {
		if _, err := tx.CreateBucket(name); err != nil {
			return err
		}
	}
	meta := tx.Bucket(bucketMeta)
	if err := meta.Put(metaCRCFrom, appendSeqKey(nil, 1)); err != nil {
		return err
	}
	return meta.Put(metaSchema, binary.BigEndian.AppendUint64(nil, SchemaVersion))
}

// syncDir makes a directory entry durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("journal: sync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("journal: sync directory %s: %w", dir, err)
	}
	return nil
}
