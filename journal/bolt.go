package journal

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

var (
	_ Journal          = (*Bolt)(nil)
	_ AsyncAppender    = (*Bolt)(nil)
	_ AsyncSnapshotter = (*Bolt)(nil)
)

// SchemaVersion is the journal file layout version this package writes and
// reads. OpenBolt refuses files with a newer version; it upgrades version
// 1 to 4 files when it opens them writable (see migrateV1 to migrateV4),
// and reads version 2 to 4 files read-only as they are.
const SchemaVersion = 5

// Bucket and meta key names of the file layout (schema version 5):
//
//	events    big-endian uint64 seq -> record (see record.go: 0x00, CRC-32C,
//	          marshalled Envelope with seq, stream_seq and prev_seq, the seq
//	          of the stream's previous event), or a block of the records of
//	          the events from seq on (see block.go)
//	heads     proxy_id -> big-endian uint64 stream_seq + uint64 seq of the
//	          proxy's last event, as of heads_through in meta or later
//	          (since version 4; see ckptRound)
//	snapshots proxy_id -> record of the marshalled ProxySnapshot (the
//	          latest only)
//	meta      "schema" -> big-endian uint64 version; "first" -> first retained
//	          seq; "heads_through" -> the seq up to which heads is current;
//	          "crc_from" -> the first seq written with a checksum
//
// Version 4 was the same without blocks: a record under every seq.
// Version 3 was version 4, except that every head in heads was as of
// heads_through or older: version 4 writes a checkpoint over several
// commits (see ckptRound), and a version 3 reader would take a file whose
// round was cut short by a crash for a damaged one. Version 2 was version
// 3 without checksums (records were the bare marshalled messages, and
// there was no crc_from).
//
// There is no per-event stream index: a proxy's stream is the chain of
// prev_seq links from its head, so an append writes only sequential keys.
// (Version 1 kept a stream index keyed by proxy, and every event dirtied
// one more randomly placed page of it: in the 10,000-proxy benchmark that
// was about a tenth of the engine's CPU and most of its allocations.) The
// heads are written in bulk every checkpointInterval events, a chunk per
// commit (see ckptRound), and at Close; at open the events after the
// checkpoint are scanned to bring them up to date.
var (
	bucketEvents    = []byte("events")
	bucketHeads     = []byte("heads")
	bucketSnapshots = []byte("snapshots")
	bucketMeta      = []byte("meta")
	allBuckets      = [][]byte{bucketEvents, bucketHeads, bucketSnapshots, bucketMeta}

	metaSchema       = []byte("schema")
	metaFirst        = []byte("first")
	metaHeadsThrough = []byte("heads_through")
)

// checkpointEvery is how many events the writer commits at least between
// two checkpoints of the stream heads, and checkpointPerStream how many per
// stream (see checkpointInterval).
const (
	checkpointEvery     = 32768
	checkpointPerStream = 4
)

// checkpointInterval is how many events the writer commits between two
// checkpoints of the stream heads of a journal with streams streams: the
// larger of checkpointEvery and checkpointPerStream per stream. It bounds
// the scan at an open after a crash (Close writes a last checkpoint).
//
// A checkpoint puts every head changed since the last one. A pool checks
// its proxies in turn, so with more streams than checkpointEvery most heads
// have changed, and their puts land on every page of the heads bucket: at
// 100,000 proxies, 28,000 puts every 32,768 events, 0.85 per event, and all
// of the bucket's pages read into nodes and written again. Scaled, that is
// 100,000 puts every 400,000 events, 0.25 per event. BenchmarkAppendPool/
// proxies=100000 went from 13.2 to 9.8 µs of CPU and from 3.4 to 1.8 KB
// allocated per event. The scan at open is then at most 400,000 events
// (and the few commits of a round, see ckptRound): 0.2–0.3 s on the
// machine of BENCHMARKS.md.
func checkpointInterval(streams int) int {
	return max(checkpointEvery, checkpointPerStream*streams)
}

// streamHead is a proxy's stream head: its last stream_seq and the global
// seq of that event (0 if unknown: a version 1 journal whose events of the
// proxy were all deleted by retention).
type streamHead struct{ seq, last uint64 }

func appendHead(dst []byte, h streamHead) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(dst, h.seq), h.last)
}

func parseHead(v []byte) (streamHead, bool) {
	if len(v) != 16 {
		return streamHead{}, false
	}
	return streamHead{binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:])}, true
}

// DefaultLockTimeout is how long OpenBolt waits for another process to
// release the journal file.
const DefaultLockTimeout = time.Second

// DefaultMaxBatchEvents caps how many events one group commit writes.
const DefaultMaxBatchEvents = 8192

// BoltOption configures OpenBolt.
type BoltOption func(*boltOptions)

type boltOptions struct {
	lockTimeout time.Duration
	readOnly    bool
	maxBatch    int
	noSync      bool
	delay       time.Duration
	observer    func(CommitStats)
	fault       func() error
}

// DefaultCommitDelay is the writer's default linger: none. The engine,
// whose appends come from many independent actors and can wait, sets 50 ms
// (proxyhealth.Config.JournalCommitDelay).
const DefaultCommitDelay = 0

// commitDelayBelow: batches at least this large commit at once.
const commitDelayBelow = 256

// CommitStats describes one group commit, for metrics.
type CommitStats struct {
	// Events is the number of events committed (snapshots not counted).
	Events int
	// Requests is the number of Append/SaveSnapshot calls served.
	Requests int
	// Duration is the time spent in the bbolt transaction, fsync included.
	Duration time.Duration
	// Err is non-nil when the commit failed (nothing of it was written).
	Err error
}

// WithCommitDelay sets how long the writer lingers for more appends when a
// batch is small and appends come from several callers (default
// DefaultCommitDelay, none). With many independent appenders (hundreds of
// actors each appending now and then) a few milliseconds turn many
// one-event fsyncs into one, at the cost of that much latency per append;
// with a few closed-loop appenders it only adds latency.
func WithCommitDelay(d time.Duration) BoltOption {
	return func(o *boltOptions) {
		if d >= 0 {
			o.delay = d
		}
	}
}

// WithCommitObserver calls f after every commit (or failed commit), on the
// writer goroutine, before the appenders of the commit are answered: it
// must return quickly (update a metric).
func WithCommitObserver(f func(CommitStats)) BoltOption {
	return func(o *boltOptions) { o.observer = f }
}

// WithCommitFault is for fault-injection tests: the writer calls f in each
// group commit's transaction, after the batch's puts and just before bbolt
// commits, and a non-nil error fails that commit exactly as a failed bbolt
// commit does: the transaction is rolled back (nothing is written), every
// request of the batch gets the error (wrapped, so errors.Is finds it),
// the CommitStats observer sees it in Err, Head and the stream heads do not
// move, and the next commit proceeds normally. f runs on the writer
// goroutine. Retain's deletions are not affected. Never use it outside
// tests.
func WithCommitFault(f func() error) BoltOption {
	return func(o *boltOptions) { o.fault = f }
}

// WithLockTimeout sets how long OpenBolt waits for the file lock held by
// another process before failing with ErrLocked (default 1 s; must be > 0).
func WithLockTimeout(d time.Duration) BoltOption {
	return func(o *boltOptions) {
		if d > 0 {
			o.lockTimeout = d
		}
	}
}

// WithReadOnly opens the journal read-only: writes return ErrReadOnly. The
// file must exist. bbolt takes a shared lock, so a read-only open still
// fails with ErrLocked while a writer (a running proxyhealth) holds the
// file.
func WithReadOnly() BoltOption {
	return func(o *boltOptions) { o.readOnly = true }
}

// WithMaxBatchEvents caps how many events one group commit (one
// transaction, one fsync) writes (default 8192). A single Append larger than
// the cap is still committed whole, alone.
func WithMaxBatchEvents(n int) BoltOption {
	return func(o *boltOptions) {
		if n > 0 {
			o.maxBatch = n
		}
	}
}

// WithUnsafeNoSync disables fsync. UNSAFE: a crash or power loss can lose
// acknowledged events or corrupt the file. For tests that need speed only;
// never use it for a real journal.
func WithUnsafeNoSync() BoltOption {
	return func(o *boltOptions) { o.noSync = true }
}

// Bolt is the durable Journal, backed by one bbolt file. Appends from all
// goroutines are group-committed by a single writer goroutine: every
// pending Append is written in one transaction with one fsync.
type Bolt struct {
	db       *bolt.DB
	path     string
	readOnly bool
	// the file's schema version and first checksummed seq (noCRC for a
	// version 2 file opened read-only), set by load
	schemaVer uint64
	crcFrom   uint64

	head    atomic.Uint64
	first   atomic.Uint64
	headsMu sync.RWMutex
	heads   map[string]streamHead // written only by the writer
	// heads moved by events after the checkpoint, found at open: the
	// writer's next checkpoint includes them
	ckptThrough  uint64 // heads_through at open: the heads checkpoint is current through it
	unckptEvents int

	// commitMu is held around every write transaction together with the
	// publication of its in-memory effects (head, first, heads), so that
	// Check sees the file and the memory agree.
	commitMu sync.Mutex
	retainMu sync.Mutex // one Retain at a time

	reqs       chan *request
	stop       chan struct{} // closed by Close: the writer drains and exits
	writerDone chan struct{}
	closeCh    chan struct{} // closed when the journal is closed
	closed     atomic.Bool
	sendMu     sync.RWMutex // AppendAsync sends under R; Close takes W before stop
	closeOnce  sync.Once
	closeErr   error
	note       *notifier
	recent     recent // the latest committed envelopes, for subscriptions
	// mappedRead counts the bytes of records readRange read from the mmap
	// since it last released them (releaseMapped, every releaseReadBytes).
	mappedRead atomic.Int64
	// scatteredAt is when reads at random places or a commit last
	// released the mapped pages (unix ns; noteScattered), at most every
	// scatteredEvery ns (scatteredRelease; tests change it while the
	// writer reads it).
	scatteredAt, scatteredEvery atomic.Int64
}

// OpenBolt opens or creates the journal file at path (a missing file is
// created by a writable open; an existing one is never started over).
//
// Before bbolt maps an existing file, OpenBolt validates its structure with
// plain reads: the meta pages (magic, version, checksum, page size, page
// count within the file size, root and freelist page ids) and the B+tree
// (page ids, types, element offsets, no page reached twice). A read-only
// open reads every page; a writable one reads the branch pages and only the
// headers of the events' leaf pages (about 25 ms for 1,000,000 events).
//
// It fails with an error wrapping ErrLocked when another process holds the
// file, ErrEmpty for an existing file of 0 bytes, ErrNotJournal for a file
// that is not a proxyhealth journal, ErrSchemaVersion for a journal written
// by a newer proxyhealth and ErrCorrupt when the journal's structure is
// damaged (see Salvage).
func OpenBolt(path string, opts ...BoltOption) (*Bolt, error) {
	o := boltOptions{lockTimeout: DefaultLockTimeout, maxBatch: DefaultMaxBatchEvents, delay: DefaultCommitDelay}
	for _, opt := range opts {
		opt(&o)
	}
	if o.readOnly {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("journal: open %s read-only: %w", path, err)
		}
	}
	// A read-only open reads the whole tree before bbolt maps the file, so
	// that nothing bbolt reads later can fault; a writable one reads the
	// branch pages and the headers of the events' leaves (see walkDepth).
	depth := walkBranches
	if o.readOnly {
		depth = walkFull
	}
	if err := precheck(path, depth, o); err != nil {
		return nil, withIntact(path, err)
	}
	if !o.readOnly {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			if err := createJournal(path, o); err != nil {
				return nil, err
			}
		}
	}
	db, err := openDB(path, &bolt.Options{
		Timeout:  o.lockTimeout,
		ReadOnly: o.readOnly,
		NoSync:   o.noSync,
		// The map freelist stays fast on large files. The freelist is
		// synced: with NoFreelistSync bbolt rebuilds it at open by walking
		// every page, which is slow on a large journal and panics on a
		// damaged one.
		FreelistType: bolt.FreelistMapType,
		NoStatistics: true,
	})
	if err != nil {
		return nil, withIntact(path, openError(path, o, err))
	}
	b := &Bolt{
		db:         db,
		path:       path,
		readOnly:   o.readOnly,
		heads:      make(map[string]streamHead),
		closeCh:    make(chan struct{}),
		stop:       make(chan struct{}),
		writerDone: make(chan struct{}),
		note:       newNotifier(),
		recent:     recent{first: 1},
	}
	b.scatteredEvery.Store(int64(scatteredRelease))
	if err := b.load(); err != nil {
		_ = db.Close()
		return nil, withIntact(path, err)
	}
	if o.readOnly {
		close(b.writerDone)
		return b, nil
	}
	b.reqs = make(chan *request, 1024)
	w := newWriter(b, o.maxBatch)
	w.delay, w.observer, w.fault = o.delay, o.observer, o.fault
	go w.run()
	return b, nil
}

// precheck refuses an existing file that bbolt must not map: empty
// (ErrEmpty), not bbolt (ErrNotJournal) or structurally damaged
// (ErrCorrupt). A missing file passes (a writable open creates it).
func precheck(path string, depth walkDepth, o boltOptions) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) && !o.readOnly {
		return nil
	}
	if err != nil {
		return fmt.Errorf("journal: open %s: %w", path, err)
	}
	defer f.Close()
	// While another process writes the file it is in flux: wait for its
	// lock like bbolt would, and report ErrLocked the same way.
	if !sharedLock(f, o.lockTimeout) {
		return openError(path, o, berrors.ErrTimeout)
	}
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("journal: open %s: %w", path, err)
	}
	_, err = inspect(f, st.Size(), path, depth)
	return err
}

// openDB opens the bbolt file, turning a panic or a memory fault on a
// damaged file into an error.
func openDB(path string, opts *bolt.Options) (db *bolt.DB, err error) {
	defer guard(&err, func(r any) error {
		db = nil
		return fmt.Errorf("%w: %s is damaged: bbolt failed while opening it: %v; run 'proxyhealth journal verify'", ErrCorrupt, path, r)
	})()
	return bolt.Open(path, 0o600, opts)
}

// guard makes memory faults of the calling goroutine panics
// (debug.SetPanicOnFault: bbolt reads the file through mmap, and a page
// beyond the end of a truncated file faults) and returns the deferred
// function that turns a panic into *err = conv(r). Use as
// defer guard(&err, conv)().
func guard(err *error, conv func(r any) error) func() {
	prev := debug.SetPanicOnFault(true)
	return func() {
		debug.SetPanicOnFault(prev)
		if r := recover(); r != nil {
			*err = conv(r)
		}
	}
}

// view runs a read transaction, turning a bbolt panic or a memory fault on
// a damaged page into an error wrapping ErrCorrupt and "not open" into
// ErrClosed.
func (b *Bolt) view(fn func(*bolt.Tx) error) (err error) {
	defer guard(&err, b.damaged)()
	return b.dbErr(b.db.View(fn))
}

// update is view for a write transaction.
func (b *Bolt) update(fn func(*bolt.Tx) error) (err error) {
	defer guard(&err, b.damaged)()
	return b.dbErr(b.db.Update(fn))
}

// damaged is the error of a bbolt panic or fault.
func (b *Bolt) damaged(r any) error {
	return fmt.Errorf("%w: %s: damaged page: %v; run 'proxyhealth journal verify'", ErrCorrupt, b.path, r)
}

// openError turns a bbolt open error into one of the journal's.
func openError(path string, o boltOptions, err error) error {
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("%w: %s: could not lock the file within %v; another proxyhealth probably uses this journal (stop it, or use another data directory): %v",
			ErrLocked, path, o.lockTimeout, err)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch),
		errors.Is(err, berrors.ErrChecksum):
		return fmt.Errorf("%w: %s is not a bbolt database or its header is damaged (%v); check the path, or move the file away to start a new journal",
			ErrNotJournal, path, err)
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("journal: open %s: %w", path, err)
	default:
		return fmt.Errorf("%w: open %s: %v", ErrNotJournal, path, err)
	}
}

// load verifies the layout (initialising a new file) and loads the head,
// the first retained seq and the stream heads.
func (b *Bolt) load() error {
	fresh := false
	err := b.view(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta) != nil {
			return nil
		}
		var other []string
		_ = tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			other = append(other, fmt.Sprintf("%q", name))
			return nil
		})
		switch {
		case len(other) > 0:
			return fmt.Errorf("%w: %s is a bbolt database with buckets %v but not the journal's; check the path", ErrNotJournal, b.path, other)
		case b.readOnly:
			return fmt.Errorf("%w: %s is an empty bbolt database, no journal was ever written to it", ErrNotJournal, b.path)
		}
		fresh = true
		return nil
	})
	if err != nil {
		return err
	}
	if fresh {
		err := b.update(initJournal)
		if err != nil {
			return fmt.Errorf("journal: initialise new journal %s: %w", b.path, err)
		}
	}
	ver, err := b.schema()
	if err != nil {
		return err
	}
	if ver == 1 {
		if b.readOnly {
			return fmt.Errorf("%w: %s has schema version 1, which this proxyhealth upgrades to version %d when it opens the journal for writing; start proxyhealth on it once (proxyhealth run), then retry",
				ErrSchemaVersion, b.path, SchemaVersion)
		}
		if err := b.migrateV1(); err != nil {
			return err
		}
		ver = 2
	}
	if ver == 2 && !b.readOnly {
		if err := b.migrateV2(); err != nil {
			return err
		}
		ver = 3
	}
	if ver == 3 && !b.readOnly {
		if err := b.migrateV3(); err != nil {
			return err
		}
		ver = 4
	}
	if ver == 4 && !b.readOnly {
		if err := b.migrateV4(); err != nil {
			return err
		}
		ver = 5
	}
	b.schemaVer, b.crcFrom = ver, noCRC
	return b.view(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("%w: %s lacks the %q bucket; restore a backup or run a check", ErrCorrupt, b.path, name)
			}
		}
		first, err := readFirst(tx)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrCorrupt, b.path, err)
		}
		if ver >= 3 {
			v := tx.Bucket(bucketMeta).Get(metaCRCFrom)
			if len(v) != 8 || binary.BigEndian.Uint64(v) == 0 {
				return fmt.Errorf("%w: %s: the first checksummed seq (meta crc_from) is missing or invalid (%x); run 'proxyhealth journal salvage'", ErrCorrupt, b.path, v)
			}
			b.crcFrom = binary.BigEndian.Uint64(v)
		}
		b.first.Store(first)
		b.head.Store(first - 1)
		last, err := lastEvent(tx.Bucket(bucketEvents))
		if err != nil {
			return fmt.Errorf("%w: %s: %v; run 'proxyhealth journal salvage'", ErrCorrupt, b.path, err)
		}
		if last != 0 {
			b.head.Store(last)
		}
		heads, through, scanned, err := loadHeads(tx, b.crcFrom)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrCorrupt, b.path, err)
		}
		b.heads, b.ckptThrough, b.unckptEvents = heads, through, scanned
		return nil
	})
}

// schema reads and vets the file's schema version.
func (b *Bolt) schema() (ver uint64, err error) {
	err = b.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(metaSchema)
		if len(v) != 8 {
			return fmt.Errorf("%w: %s has no valid schema version (%x); it was not written by proxyhealth or is damaged", ErrNotJournal, b.path, v)
		}
		switch ver = binary.BigEndian.Uint64(v); {
		case ver > SchemaVersion:
			return fmt.Errorf("%w: %s has schema version %d, this proxyhealth reads only up to version %d; upgrade proxyhealth",
				ErrSchemaVersion, b.path, ver, SchemaVersion)
		case ver == 0:
			return fmt.Errorf("%w: %s has schema version 0", ErrCorrupt, b.path)
		}
		return nil
	})
	return ver, err
}

// loadHeads reads the heads checkpoint and brings it up to date with the
// events committed after it; it also returns the seq the checkpoint was
// current through (the heads it moved have their last event after it) and
// how many events it scanned. A head in the file covers at least the
// events through heads_through; one put by a checkpoint round (see
// ckptRound) may cover later ones too, and those events are skipped.
func loadHeads(tx *bolt.Tx, crcFrom uint64) (heads map[string]streamHead, through uint64, scanned int, err error) {
	heads = make(map[string]streamHead)
	err = tx.Bucket(bucketHeads).ForEach(func(k, v []byte) error {
		h, ok := parseHead(v)
		if !ok {
			return fmt.Errorf("stream head of proxy %q is malformed (%x)", k, v)
		}
		heads[string(k)] = h
		return nil
	})
	if err != nil {
		return nil, 0, 0, err
	}
	through, err = readSeq(tx, metaHeadsThrough, 0)
	if err != nil {
		return nil, 0, 0, err
	}
	ec := newEventCursor(tx.Bucket(bucketEvents))
	for seq, v, err := ec.seek(through + 1); seq != 0 || err != nil; seq, v, err = ec.next() {
		if err != nil {
			return nil, 0, 0, err
		}
		scanned++
		h, err := eventHeader(v, seq, crcFrom)
		if err != nil {
			return nil, 0, 0, fmt.Errorf("event %d cannot be decoded (%v)", seq, err)
		}
		if len(h.proxyID) == 0 {
			continue
		}
		old := heads[string(h.proxyID)]
		if h.seq <= old.last {
			// Covered by the head in the file: an earlier event of its stream.
			if h.streamSeq > old.seq || h.seq == old.last && h.streamSeq != old.seq {
				return nil, 0, 0, fmt.Errorf("event %d of proxy %s has stream_seq %d, but the checkpointed stream head is stream_seq %d at event %d",
					h.seq, h.proxyID, h.streamSeq, old.seq, old.last)
			}
			continue
		}
		if h.streamSeq != old.seq+1 || h.prevSeq != old.last {
			return nil, 0, 0, fmt.Errorf("event %d of proxy %s has stream_seq %d and prev_seq %d, but the stream head was stream_seq %d at event %d",
				h.seq, h.proxyID, h.streamSeq, h.prevSeq, old.seq, old.last)
		}
		heads[string(h.proxyID)] = streamHead{h.streamSeq, h.seq}
	}
	return heads, through, scanned, nil
}

// readSeq reads a seq from meta (def when absent).
func readSeq(tx *bolt.Tx, key []byte, def uint64) (uint64, error) {
	v := tx.Bucket(bucketMeta).Get(key)
	switch {
	case v == nil:
		return def, nil
	case len(v) != 8:
		return 0, fmt.Errorf("meta %s is %x, not a seq", key, v)
	}
	return binary.BigEndian.Uint64(v), nil
}

// readFirst returns the first retained seq recorded in meta (1 if none).
func readFirst(tx *bolt.Tx) (uint64, error) {
	v := tx.Bucket(bucketMeta).Get(metaFirst)
	switch {
	case v == nil:
		return 1, nil
	case len(v) != 8 || binary.BigEndian.Uint64(v) == 0:
		return 0, fmt.Errorf("first retained seq %x is invalid", v)
	}
	return binary.BigEndian.Uint64(v), nil
}

// Path returns the journal file's path.
func (b *Bolt) Path() string { return b.path }

// Head implements Journal.
func (b *Bolt) Head() uint64 { return b.head.Load() }

// First implements Journal.
func (b *Bolt) First() uint64 { return b.first.Load() }

// StreamHead implements Journal.
func (b *Bolt) StreamHead(proxyID string) uint64 {
	return b.streamHead(proxyID).seq
}

func (b *Bolt) streamHead(proxyID string) streamHead {
	b.headsMu.RLock()
	defer b.headsMu.RUnlock()
	return b.heads[proxyID]
}

// Subscribe implements Journal.
func (b *Bolt) Subscribe(from uint64) *Subscription { return newSubscription(b, from) }

func (b *Bolt) commits() <-chan struct{} { return b.note.wait() }
func (b *Bolt) done() <-chan struct{}    { return b.closeCh }

// Append implements Journal. Concurrent Appends are group-committed.
func (b *Bolt) Append(ctx context.Context, envs []*pb.Envelope) ([]uint64, error) {
	if err := b.writable(ctx); err != nil {
		return nil, err
	}
	if err := validateEnvelopes(envs); err != nil {
		return nil, err
	}
	if len(envs) == 0 {
		return []uint64{}, nil
	}
	r := newAppendRequest(envs)
	r.done = make(chan struct{})
	if err := b.submit(ctx, r); err != nil {
		return nil, err
	}
	return r.seqs, nil
}

func newAppendRequest(envs []*pb.Envelope) *request {
	r := &request{envs: envs}
	if len(envs) == 1 {
		r.seqs = r.seq1[:0]
	} else {
		r.seqs = make([]uint64, 0, len(envs))
	}
	return r
}

// AppendAsync implements AsyncAppender. done runs on the writer goroutine
// after the commit.
func (b *Bolt) AppendAsync(envs []*pb.Envelope, done func([]uint64, error)) {
	if err := b.writable(context.Background()); err != nil {
		done(nil, err)
		return
	}
	if err := validateEnvelopes(envs); err != nil {
		done(nil, err)
		return
	}
	if len(envs) == 0 {
		done([]uint64{}, nil)
		return
	}
	r := newAppendRequest(envs)
	r.cb = done
	b.sendAsync(r)
}

// SaveSnapshotAsync implements AsyncSnapshotter. done runs on the writer
// goroutine after the commit.
func (b *Bolt) SaveSnapshotAsync(s *pb.ProxySnapshot, done func(error)) {
	if err := b.snapshotWritable(context.Background(), s); err != nil {
		done(err)
		return
	}
	b.sendAsync(&request{snap: s, cb: func(_ []uint64, err error) { done(err) }})
}

// sendAsync hands the writer a request with a callback, or calls it with
// ErrClosed once Close has begun.
func (b *Bolt) sendAsync(r *request) {
	b.sendMu.RLock()
	if b.closed.Load() {
		b.sendMu.RUnlock()
		r.cb(nil, ErrClosed)
		return
	}
	b.reqs <- r // the writer drains it even while Close waits for sendMu
	b.sendMu.RUnlock()
}

// SaveSnapshot implements Journal. Snapshots are group-committed with
// appends.
func (b *Bolt) SaveSnapshot(ctx context.Context, s *pb.ProxySnapshot) error {
	if err := b.snapshotWritable(ctx, s); err != nil {
		return err
	}
	return b.submit(ctx, &request{snap: s, done: make(chan struct{})})
}

// snapshotWritable reports why s cannot be saved now: the journal cannot
// be written, or s is not a valid snapshot (the writer checks it against
// the proxy's stream head).
func (b *Bolt) snapshotWritable(ctx context.Context, s *pb.ProxySnapshot) error {
	if err := b.writable(ctx); err != nil {
		return err
	}
	return validateSnapshot(s, ^uint64(0))
}

// writable reports why a write cannot start.
func (b *Bolt) writable(ctx context.Context) error {
	switch {
	case b.closed.Load():
		return ErrClosed
	case b.readOnly:
		return fmt.Errorf("%w: %s", ErrReadOnly, b.path)
	}
	return ctx.Err()
}

// submit hands r to the writer and waits for its commit.
func (b *Bolt) submit(ctx context.Context, r *request) error {
	select {
	case b.reqs <- r:
	case <-b.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-r.done:
		return r.err
	case <-b.writerDone:
		select {
		case <-r.done:
			return r.err
		default:
			return ErrClosed // queued after the writer's final drain
		}
	case <-ctx.Done():
		if r.state.CompareAndSwap(reqPending, reqAbandoned) {
			return ctx.Err() // the writer will skip it
		}
		// The writer is committing it: the outcome is one fsync away.
		<-r.done
		return r.err
	}
}

// Close implements Journal: it stops accepting writes, commits those
// already accepted, stops the writer and closes the file. Subscriptions
// return ErrClosed. It is idempotent.
func (b *Bolt) Close() error {
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		if !b.readOnly {
			// No AppendAsync is between its closed check and its send
			// any more: the writer's final drain sees every request.
			b.sendMu.Lock()
			b.sendMu.Unlock() //nolint:staticcheck // an empty critical section is the point
			close(b.stop)
		}
		<-b.writerDone
		close(b.closeCh)
		if err := b.db.Close(); err != nil {
			b.closeErr = fmt.Errorf("journal: close %s: %w", b.path, err)
		}
	})
	return b.closeErr
}

// dbErr maps bbolt's "not open" to ErrClosed.
func (b *Bolt) dbErr(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}
