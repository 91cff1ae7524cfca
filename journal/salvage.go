package journal

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// SeqRange is an inclusive range of global seqs.
type SeqRange struct{ From, To uint64 }

// String formats the range as "from..to" (or "seq" alone).
func (r SeqRange) String() string {
	if r.From == r.To {
		return fmt.Sprint(r.From)
	}
	return fmt.Sprintf("%d..%d", r.From, r.To)
}

// SalvageReport says what Salvage copied and what it could not.
type SalvageReport struct {
	// Source and Dest are the damaged file and the new one.
	Source, Dest string
	// First and Last are the first and last seq copied (Last = First-1
	// when nothing was copied); Events counts them.
	First, Last uint64
	Events      int
	// Snapshots and Proxies count the snapshots copied and the proxies
	// with a stream head in the new file.
	Snapshots, Proxies int
	// RetainedFrom is the first retained seq the damaged file recorded
	// (0 when its meta bucket was not found; then the lowest intact seq
	// was taken).
	RetainedFrom uint64
	// StoppedAt is the first seq after Last that could not be copied
	// (0 when every intact event was copied), and StopReason why.
	StoppedAt  uint64
	StopReason string
	// Lost are the ranges of intact events after StoppedAt that were not
	// copied (global and stream seqs must be gap-free); LostEvents counts
	// them.
	Lost       []SeqRange
	LostEvents int
	// DamagedRecords counts the event records found on leaf pages that
	// fail their checksum or cannot be decoded, with no intact copy
	// elsewhere in the file.
	DamagedRecords int
	// Damage is what the structural check of the source found ("" when
	// its page structure is sound: the damage is in records).
	Damage string
	// SkippedSnapshots counts the proxies whose snapshot was left out
	// because it covers events that were not copied.
	SkippedSnapshots int
}

// ErrSalvageTarget is returned by Salvage when the destination exists.
var ErrSalvageTarget = errors.New("journal: salvage destination exists")

// salvaged is an intact record found by the page scan.
type salvaged struct {
	payload []byte
	framed  bool
	h       header
}

// Salvage copies every intact event of the journal file src that it can
// into a new journal file dst, which must not exist; src is only read
// (never through bbolt's mmap, so any damage is survivable), under a
// shared lock, so it fails with ErrLocked while a proxyhealth writes it.
//
// It scans every page of src that looks like a leaf page (a page whose
// header names its own page id), so events are found even where branch
// pages are damaged, and keeps the records that decode and pass their
// checksum. Because global seqs and per-proxy stream seqs and prev_seq
// chains must be gap-free, it copies the longest run of intact events
// that starts at the first retained seq and whose streams chain up, the
// latest snapshot of each proxy consistent with that run, and writes a
// fresh heads checkpoint and meta (schema version SchemaVersion, every
// record with a checksum). The report lists what could not be copied.
// dst passes Check and opens like any journal.
func Salvage(ctx context.Context, src, dst string) (*SalvageReport, error) {
	if _, err := os.Stat(dst); err == nil {
		return nil, fmt.Errorf("%w: %s already exists; salvage writes a new file and never overwrites one: choose another destination or move that file away", ErrSalvageTarget, dst)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("journal: salvage to %s: %w", dst, err)
	}
	f, err := os.Open(src)
	if err != nil {
		return nil, fmt.Errorf("journal: salvage %s: %w", src, err)
	}
	defer f.Close()
	if !sharedLock(f, DefaultLockTimeout) {
		return nil, fmt.Errorf("%w: %s: a running proxyhealth writes this journal; stop it before salvaging", ErrLocked, src)
	}
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("journal: salvage %s: %w", src, err)
	}
	if st.Size() == 0 {
		return nil, emptyError(src)
	}
	sc := &scanner{r: f, size: st.Size(), events: make(map[uint64]salvaged), damaged: make(map[uint64]bool),
		snaps: make(map[string][]*pb.ProxySnapshot)}
	sc.pageSize = salvagePageSize(f, st.Size())
	if err := sc.scan(ctx); err != nil {
		return nil, err
	}
	rep := &SalvageReport{Source: src, Dest: dst, RetainedFrom: sc.first}
	if _, err := inspect(f, st.Size(), src, walkFull); err != nil {
		rep.Damage = err.Error()
	}
	plan := sc.plan(rep)
	if err := writeSalvaged(ctx, dst, plan); err != nil {
		_ = os.Remove(dst)
		return nil, err
	}
	// The new file must be a sound journal.
	j, err := OpenBolt(dst, WithReadOnly())
	if err != nil {
		return nil, fmt.Errorf("journal: salvage wrote %s but cannot open it: %w", dst, err)
	}
	defer j.Close()
	if err := j.Check(ctx); err != nil {
		return nil, fmt.Errorf("journal: salvage wrote %s but it does not pass the check: %w", dst, err)
	}
	return rep, nil
}

// salvagePageSize is the page size of a possibly damaged file: from a
// meta page with the bbolt magic, else the OS page size.
func salvagePageSize(r io.ReaderAt, size int64) int {
	if m, err := chooseMeta(r, size, ""); err == nil {
		return int(m.pageSize)
	}
	buf := make([]byte, pageHeaderSize+metaSize)
	if n, _ := r.ReadAt(buf, 0); n == len(buf) {
		if m, _ := parseMeta(buf); m.magic == boltMagic && m.problem(1<<62) == "" {
			return int(m.pageSize)
		}
	}
	return os.Getpagesize()
}

// scanner finds intact records on every page of a file.
type scanner struct {
	r        io.ReaderAt
	size     int64
	pageSize int
	events   map[uint64]salvaged
	damaged  map[uint64]bool // seqs with a damaged record
	snaps    map[string][]*pb.ProxySnapshot
	first    uint64                  // the highest "first" found in a meta bucket
	sawMeta  bool                    // a meta bucket's schema key was found
	crcFrom  uint64                  // the lowest "crc_from" found in a meta bucket (0: none)
	carried  map[string]*pb.Envelope // the newest intact carried event per key
}

func (sc *scanner) scan(ctx context.Context) error {
	ps := int64(sc.pageSize)
	hdr := make([]byte, pageHeaderSize)
	for id := int64(0); id*ps < sc.size; id++ {
		if id%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if n, _ := sc.r.ReadAt(hdr, id*ps); n < pageHeaderSize {
			break
		}
		if ne.Uint64(hdr) != uint64(id) || ne.Uint16(hdr[8:]) != flagLeaf {
			continue
		}
		n := min((int64(ne.Uint32(hdr[12:]))+1)*ps, sc.size-id*ps)
		page := make([]byte, n)
		if m, _ := sc.r.ReadAt(page, id*ps); int64(m) < n {
			page = page[:m]
		}
		sc.leaf(page, 0)
	}
	for seq := range sc.damaged {
		if _, ok := sc.events[seq]; ok {
			delete(sc.damaged, seq) // an intact copy was found elsewhere
		}
	}
	return nil
}

// leaf takes what looks like journal records from a leaf page (or an
// inline bucket's page), bounds-checking everything.
func (sc *scanner) leaf(page []byte, depth int) {
	if len(page) < pageHeaderSize || depth > 4 {
		return
	}
	count := int(ne.Uint16(page[10:]))
	for i := range count {
		off := pageHeaderSize + i*elemSize
		if off+elemSize > len(page) {
			return
		}
		flags := ne.Uint32(page[off:])
		pos, ksize, vsize := uint64(ne.Uint32(page[off+4:])), uint64(ne.Uint32(page[off+8:])), uint64(ne.Uint32(page[off+12:]))
		end := uint64(off) + pos + ksize + vsize
		if end > uint64(len(page)) {
			continue
		}
		k := page[uint64(off)+pos : uint64(off)+pos+ksize]
		v := page[uint64(off)+pos+ksize : end]
		if flags&leafBucketFlag != 0 {
			if len(v) > bucketHeader && ne.Uint64(v) == 0 {
				sc.leaf(v[bucketHeader:], depth+1) // inline bucket
			}
			continue
		}
		sc.element(k, v)
	}
}

// element classifies one key/value: an event (8-byte key, a record that
// holds that seq), a snapshot (a proxy ID key, a snapshot of that proxy),
// or the meta bucket's first retained seq.
func (sc *scanner) element(k, v []byte) {
	if sc.carriedElement(k, v) {
		return
	}
	switch {
	case len(k) == 8:
		blk, err := openBlock(k, v)
		if err != nil {
			return
		}
		for blk.n > 0 {
			left := uint64(blk.n) // openBlock bounds it by blockEvents
			seq, rec, err := blk.next()
			if err != nil {
				// The block's framing is damaged: its records from here
				// on cannot be told apart.
				for s := seq; s < seq+left; s++ {
					sc.damaged[s] = true
				}
				return
			}
			sc.event(seq, rec)
		}
	case string(k) == string(metaFirst) && len(v) == 8:
		sc.first = max(sc.first, binary.BigEndian.Uint64(v))
	case string(k) == string(metaCRCFrom) && len(v) == 8:
		if c := binary.BigEndian.Uint64(v); sc.crcFrom == 0 || c < sc.crcFrom {
			sc.crcFrom = c
		}
	case string(k) == string(metaSchema) && len(v) == 8:
		sc.sawMeta = true
	case len(k) > 0 && len(k) <= MaxProxyIDLen && len(v) > 0:
		s := new(pb.ProxySnapshot)
		if unmarshalSnapshot(v, k, s) != nil || s.GetProxyId() != string(k) || s.GetStreamSeq() == 0 {
			return
		}
		sc.snaps[string(k)] = append(sc.snaps[string(k)], s)
	}
}

// event takes the record v of event seq when it is intact.
func (sc *scanner) event(seq uint64, v []byte) {
	payload, framed := v, false
	if len(v) > 0 && v[0] == recordFramed {
		p, err := checkRecord(v, "event", seq)
		if err != nil {
			sc.damaged[seq] = true
			return
		}
		payload, framed = p, true
	}
	if old, ok := sc.events[seq]; ok && (old.framed || !framed) {
		return
	}
	payload = slices.Clone(payload) // h.proxyID aliases it
	h, err := decodeHeader(payload)
	var e pb.Envelope
	// An unframed record with fields this version does not know is a
	// framed one whose first byte was damaged: its header then decodes
	// as an unknown field.
	if err != nil || h.seq != seq || proto.Unmarshal(payload, &e) != nil || e.GetEvent() == nil ||
		(!framed && len(e.ProtoReflect().GetUnknown()) > 0) {
		sc.damaged[seq] = true
		return
	}
	sc.events[seq] = salvaged{payload: payload, framed: framed, h: h}
}

// carriedElement keeps k/v when it is an intact carried event (see
// Carrier) and not an event under its seq.
func (sc *scanner) carriedElement(k, v []byte) bool {
	if !isCarriedKey(k) || len(v) == 0 || v[0] != recordFramed {
		return false
	}
	env, err := decodeCarried(k, v)
	if err != nil || (len(k) == 8 && env.GetSeq() == binary.BigEndian.Uint64(k)) {
		return false
	}
	if old := sc.carried[string(k)]; old == nil || old.GetSeq() < env.GetSeq() {
		if sc.carried == nil {
			sc.carried = make(map[string]*pb.Envelope)
		}
		sc.carried[string(k)] = env
	}
	return true
}

// salvagePlan is what goes into the new file.
type salvagePlan struct {
	first, last uint64
	events      []salvaged
	heads       map[string]streamHead
	snaps       []*pb.ProxySnapshot
	carried     map[string]*pb.Envelope
}

// plan picks the longest gap-free, chain-consistent run of intact events
// from the first retained seq, and the snapshots consistent with it.
func (sc *scanner) plan(rep *SalvageReport) *salvagePlan {
	// From crc_from on every event is framed: an unframed one there is
	// damaged (its framing byte), whatever it decodes to.
	if sc.crcFrom > 0 {
		for s, ev := range sc.events {
			if !ev.framed && s >= sc.crcFrom {
				delete(sc.events, s)
				sc.damaged[s] = true
			}
		}
	}
	seqs := make([]uint64, 0, len(sc.events))
	for s := range sc.events {
		seqs = append(seqs, s)
	}
	slices.Sort(seqs)
	start := sc.first
	if start == 0 && sc.sawMeta {
		start = 1 // nothing was ever deleted by retention
	}
	if start == 0 { // no meta bucket found
		start = 1
		if len(seqs) > 0 {
			start = seqs[0]
		}
	}
	if _, ok := sc.events[start]; !ok {
		if i, _ := slices.BinarySearch(seqs, start); i < len(seqs) {
			// The first retained events are damaged: start at the first
			// intact one (their loss is reported).
			rep.StopReason = fmt.Sprintf("events %s (from the first retained seq on) are missing or damaged, so the copy starts at %d", SeqRange{start, seqs[i] - 1}, seqs[i])
			start = seqs[i]
		}
	}
	p := &salvagePlan{first: start, last: start - 1, heads: make(map[string]streamHead), carried: sc.carried}
	seq := start
	for ; ; seq++ {
		r, ok := sc.events[seq]
		if !ok {
			if i, _ := slices.BinarySearch(seqs, seq); i < len(seqs) {
				reason := "missing"
				if sc.damaged[seq] {
					reason = "damaged"
				}
				rep.StoppedAt, rep.StopReason = seq, joinReason(rep.StopReason, fmt.Sprintf("event %d is %s", seq, reason))
			}
			break
		}
		if id := string(r.h.proxyID); id != "" {
			h, seen := p.heads[id]
			var okChain bool
			switch {
			case seen:
				okChain = r.h.streamSeq == h.seq+1 && r.h.prevSeq == h.last
			case r.h.streamSeq == 1:
				okChain = r.h.prevSeq == 0
			default: // its earlier events precede the copy
				okChain = r.h.streamSeq > 1 && r.h.prevSeq < start
			}
			if !okChain {
				rep.StoppedAt, rep.StopReason = seq, joinReason(rep.StopReason, fmt.Sprintf("event %d of proxy %s does not continue its stream (stream_seq %d, prev_seq %d after stream_seq %d at event %d)", seq, id, r.h.streamSeq, r.h.prevSeq, h.seq, h.last))
				break
			}
			p.heads[id] = streamHead{r.h.streamSeq, seq}
		} else if r.h.streamSeq != 0 {
			rep.StoppedAt, rep.StopReason = seq, joinReason(rep.StopReason, fmt.Sprintf("pool-level event %d has stream_seq %d", seq, r.h.streamSeq))
			break
		}
		p.events = append(p.events, r)
		p.last = seq
	}
	// What could not be copied.
	for _, s := range seqs {
		if s <= p.last || s < start {
			continue
		}
		rep.LostEvents++
		if n := len(rep.Lost); n > 0 && rep.Lost[n-1].To+1 == s {
			rep.Lost[n-1].To = s
		} else {
			rep.Lost = append(rep.Lost, SeqRange{s, s})
		}
	}
	// A damaged record's key is only trusted near the intact ones: free
	// pages hold leftovers whose 8-byte keys are no seqs at all.
	top := start
	if len(seqs) > 0 {
		top = max(top, seqs[len(seqs)-1])
	}
	for s := range sc.damaged {
		if s >= start && s <= top+checkpointEvery {
			rep.DamagedRecords++
		}
	}
	// Snapshots: per proxy the latest that covers only copied events (or
	// events deleted by retention before start).
	ids := make([]string, 0, len(sc.snaps))
	for id := range sc.snaps {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		var best *pb.ProxySnapshot
		h, has := p.heads[id]
		for _, s := range sc.snaps[id] {
			fits := s.GetSeq() <= p.last && (!has || s.GetStreamSeq() <= h.seq)
			if fits && (best == nil || s.GetStreamSeq() > best.GetStreamSeq()) {
				best = s
			}
		}
		if best == nil {
			rep.SkippedSnapshots++
			continue
		}
		if !has {
			// Its events before start were deleted by retention.
			p.heads[id] = streamHead{best.GetStreamSeq(), 0}
		}
		p.snaps = append(p.snaps, best)
	}
	rep.First, rep.Last, rep.Events = p.first, p.last, len(p.events)
	rep.Snapshots, rep.Proxies = len(p.snaps), len(p.heads)
	return p
}

func joinReason(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// salvageChunk is how many events one transaction of writeSalvaged puts.
const salvageChunk = 16384

// writeSalvaged writes the plan into a new journal file.
func writeSalvaged(ctx context.Context, dst string, p *salvagePlan) error {
	db, err := bolt.Open(dst, 0o600, &bolt.Options{Timeout: time.Second, FreelistType: bolt.FreelistMapType, NoSync: true})
	if err != nil {
		return fmt.Errorf("journal: salvage: create %s: %w", dst, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		return nil
	})
	for i := 0; err == nil && i < len(p.events); i += salvageChunk {
		if err = ctx.Err(); err != nil {
			break
		}
		chunk := p.events[i:min(i+salvageChunk, len(p.events))]
		err = db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketEvents)
			b.FillPercent = 1.0
			for _, r := range chunk {
				if err := b.Put(appendSeqKey(nil, r.h.seq), frameRecord(r.payload)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err == nil {
		err = db.Update(func(tx *bolt.Tx) error {
			for _, s := range p.snaps {
				v, err := proto.Marshal(s)
				if err != nil {
					return err
				}
				if err := tx.Bucket(bucketSnapshots).Put([]byte(s.GetProxyId()), frameRecord(v)); err != nil {
					return err
				}
			}
			for id, h := range p.heads {
				if err := tx.Bucket(bucketHeads).Put([]byte(id), appendHead(nil, h)); err != nil {
					return err
				}
			}
			carried := make(map[string][]byte)
			for k, env := range p.carried {
				if env.GetSeq() < p.first {
					v, err := proto.Marshal(env)
					if err != nil {
						return err
					}
					carried[k] = frameRecord(v)
				}
			}
			if err := putCarried(tx, carried); err != nil {
				return err
			}
			meta := tx.Bucket(bucketMeta)
			for _, kv := range []struct {
				k []byte
				v uint64
			}{{metaFirst, p.first}, {metaCRCFrom, p.first}, {metaHeadsThrough, p.last}, {metaSchema, SchemaVersion}} {
				if err := meta.Put(kv.k, appendSeqKey(nil, kv.v)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err == nil {
		err = db.Sync()
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("journal: salvage: write %s: %w", dst, err)
	}
	return nil
}

// Intact scans a journal file like Salvage, without writing anything, and
// returns the run of intact events Salvage would copy: first to last
// (last = first-1 when there is none). A damaged journal's error names
// it, so that an operator knows what `proxyhealth journal salvage` keeps.
func Intact(ctx context.Context, src string) (first, last uint64, err error) {
	f, err := os.Open(src)
	if err != nil {
		return 0, 0, fmt.Errorf("journal: scan %s: %w", src, err)
	}
	defer f.Close()
	if !sharedLock(f, DefaultLockTimeout) {
		return 0, 0, fmt.Errorf("%w: %s", ErrLocked, src)
	}
	st, err := f.Stat()
	if err != nil {
		return 0, 0, fmt.Errorf("journal: scan %s: %w", src, err)
	}
	if st.Size() == 0 {
		return 0, 0, emptyError(src)
	}
	sc := &scanner{r: f, size: st.Size(), events: make(map[uint64]salvaged), damaged: make(map[uint64]bool),
		snaps: make(map[string][]*pb.ProxySnapshot)}
	sc.pageSize = salvagePageSize(f, st.Size())
	if err := sc.scan(ctx); err != nil {
		return 0, 0, err
	}
	rep := &SalvageReport{Source: src, RetainedFrom: sc.first}
	sc.plan(rep)
	return rep.First, rep.Last, nil
}

// withIntact adds to a damaged journal's error the intact run of events
// and how to keep it.
func withIntact(path string, err error) error {
	if !errors.Is(err, ErrCorrupt) {
		return err
	}
	first, last, ierr := Intact(context.Background(), path)
	switch {
	case ierr != nil:
		return err
	case last < first || last == 0:
		return fmt.Errorf("%w (no intact event was found in it)", err)
	}
	return fmt.Errorf("%w; the last good event is seq %d (seq %d to %d are intact: 'proxyhealth journal salvage' copies them into a new journal)", err, last, first, last)
}
