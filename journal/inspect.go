package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/bits"
	"os"
)

// This file validates a journal file's bbolt structure with plain reads
// (no mmap), before bbolt maps it. bbolt trusts its file: a page id beyond
// the end of the file makes it fault inside the mapping (SIGSEGV/SIGBUS,
// which kill the process), and a cycle among branch pages makes its
// recursive descent overflow the stack (fatal too). So OpenBolt first
// checks the meta pages and walks the tree here, and only then lets bbolt
// open the file; as a second line of defence every bbolt call runs with
// runtime/debug.SetPanicOnFault and recover (see guard).

// The on-disk layout of bbolt v1 (go.etcd.io/bbolt/internal/common),
// native-endian:
//
//	page header   id u64, flags u16, count u16, overflow u32   (16 bytes)
//	meta          magic u32, version u32, page_size u32, flags u32,
//	              root {pgid u64, sequence u64}, freelist u64, pgid u64,
//	              txid u64, checksum u64 (FNV-64a of the 56 bytes before)
//	branch elem   pos u32, ksize u32, pgid u64   (pos from the element)
//	leaf elem     flags u32, pos u32, ksize u32, vsize u32
//	bucket value  root pgid u64, sequence u64, then, when root is 0, an
//	              inline leaf page
const (
	boltMagic       = 0xED0CDAED
	boltVersion     = 2
	pageHeaderSize  = 16
	elemSize        = 16
	metaSize        = 64
	bucketHeader    = 16
	flagBranch      = 0x01
	flagLeaf        = 0x02
	flagMeta        = 0x04
	flagFreelist    = 0x10
	leafBucketFlag  = 0x01
	noFreelist      = ^uint64(0)
	minPageSize     = 1024
	maxPageSize     = 1 << 24
	maxTreeDepth    = 64
	metaChecksumLen = 56
)

var ne = binary.NativeEndian

// boltMeta is a decoded bbolt meta page.
type boltMeta struct {
	magic, version, pageSize, flags uint32
	root, rootSeq                   uint64
	freelist, pgid, txid, checksum  uint64
	sum                             uint64 // computed
}

func parseMeta(page []byte) (boltMeta, bool) {
	if len(page) < pageHeaderSize+metaSize {
		return boltMeta{}, false
	}
	m := page[pageHeaderSize:]
	h := fnv.New64a()
	_, _ = h.Write(m[:metaChecksumLen])
	return boltMeta{
		magic: ne.Uint32(m[0:]), version: ne.Uint32(m[4:]), pageSize: ne.Uint32(m[8:]), flags: ne.Uint32(m[12:]),
		root: ne.Uint64(m[16:]), rootSeq: ne.Uint64(m[24:]), freelist: ne.Uint64(m[32:]), pgid: ne.Uint64(m[40:]),
		txid: ne.Uint64(m[48:]), checksum: ne.Uint64(m[56:]), sum: h.Sum64(),
	}, true
}

// valid is bbolt's own meta validation (Meta.Validate).
func (m boltMeta) valid() bool {
	return m.magic == boltMagic && m.version == boltVersion && m.checksum == m.sum
}

// problem describes what is wrong with a meta page bbolt would accept.
func (m boltMeta) problem(size int64) string {
	ps := uint64(m.pageSize)
	switch {
	case m.pageSize < minPageSize || m.pageSize > maxPageSize || bits.OnesCount32(m.pageSize) != 1:
		return fmt.Sprintf("page size %d is not a power of two between %d and %d", m.pageSize, minPageSize, maxPageSize)
	case m.pgid < 3 || m.pgid > uint64(size)/ps:
		return fmt.Sprintf("it counts %d pages of %d bytes (%d bytes), but the file has %d bytes", m.pgid, ps, m.pgid*ps, size)
	case m.root < 2 || m.root >= m.pgid:
		return fmt.Sprintf("its root page %d is outside pages 2..%d", m.root, m.pgid-1)
	case m.freelist != noFreelist && (m.freelist < 2 || m.freelist >= m.pgid):
		return fmt.Sprintf("its freelist page %d is outside pages 2..%d", m.freelist, m.pgid-1)
	}
	return ""
}

// walkDepth chooses how much of the tree inspect reads.
type walkDepth int

const (
	// walkMeta validates the meta pages and the file size only.
	walkMeta walkDepth = iota
	// walkBranches also reads every branch page and the header of every
	// leaf page: page ids in range, page types, element offsets of branch
	// pages, no page reached twice (no cycle), the freelist's ids in
	// range. Leaves of the events bucket are not read beyond their header.
	walkBranches
	// walkFull also checks every leaf element's offsets, every bucket
	// (inline ones too) and that freed pages are not in use: bbolt cannot
	// fault on anything the tree reaches.
	walkFull
)

// fileLayout is what inspect learned about a journal file.
type fileLayout struct {
	size     int64
	pageSize int
	meta     boltMeta // the meta page bbolt uses (the valid one with the highest txid)
	// metaDamage says which meta page is damaged when bbolt can still
	// use the other one ("" when both are sound).
	metaDamage string
	// lastGood is the highest event seq of the events bucket's leaves
	// read before the first damage found (0: none or not known).
	lastGood uint64
}

// errNotBolt marks an inspect error for a file that is not bbolt at all.
var errNotBolt = errors.New("not a bbolt file")

// inspectFile validates path's structure (see walkDepth). A missing file
// is returned as the os error; a file of 0 bytes as ErrEmpty.
func inspectFile(path string, depth walkDepth) (*fileLayout, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return inspect(f, st.Size(), path, depth)
}

// emptyError is the ErrEmpty of path.
func emptyError(path string) error {
	return fmt.Errorf("%w: %s holds no data (0 bytes): the journal was lost, e.g. truncated by a full disk or a failed copy; restore it from a backup, or, to start a new journal deliberately and lose the history, delete the file",
		ErrEmpty, path)
}

// inspect is inspectFile on an open file of the given size.
func inspect(r io.ReaderAt, size int64, path string, depth walkDepth) (*fileLayout, error) {
	if size == 0 {
		return nil, emptyError(path)
	}
	m, err := chooseMeta(r, size, path)
	if err != nil {
		return nil, err
	}
	l := &fileLayout{size: size, pageSize: int(m.pageSize), meta: m}
	for i := range int64(2) {
		buf := make([]byte, pageHeaderSize+metaSize)
		n, _ := r.ReadAt(buf, i*int64(m.pageSize))
		mi, ok := parseMeta(buf[:n])
		if !ok || !mi.valid() || ne.Uint64(buf) != uint64(i) || ne.Uint16(buf[8:]) != flagMeta || mi.pageSize != m.pageSize {
			l.metaDamage = fmt.Sprintf("meta page %d is damaged (bbolt uses the other one, txid %d, and rewrites it at the next commit)", i, m.txid)
		}
	}
	if depth == walkMeta {
		return l, nil
	}
	w := &walker{r: r, l: l, full: depth == walkFull, seen: make([]uint64, (m.pgid+63)/64)}
	err = w.run()
	if err != nil {
		l.lastGood = w.lastGood
		msg := fmt.Sprintf("%v: %s is damaged: %v", ErrCorrupt, path, err)
		if w.lastGood > 0 {
			msg += fmt.Sprintf("; the events are intact at least up to seq %d", w.lastGood)
		}
		return l, &inspectError{msg: msg + "; run 'proxyhealth journal salvage' to copy every intact event into a new journal file, or restore a backup"}
	}
	return l, nil
}

// inspectError wraps ErrCorrupt with a prepared message.
type inspectError struct{ msg string }

func (e *inspectError) Error() string { return e.msg }
func (e *inspectError) Unwrap() error { return ErrCorrupt }

// chooseMeta reads both meta pages and returns the one bbolt would use,
// refusing what would make bbolt fault.
func chooseMeta(r io.ReaderAt, size int64, path string) (boltMeta, error) {
	buf := make([]byte, 4096)
	read := func(off int64) []byte {
		n, _ := r.ReadAt(buf, off)
		return buf[:n]
	}
	m0, ok0 := parseMeta(read(0))
	ps := int64(0)
	if ok0 && m0.valid() {
		ps = int64(m0.pageSize)
	}
	var m1 boltMeta
	ok1 := false
	if ps > 0 {
		m1, ok1 = parseMeta(read(ps))
	} else {
		// Like bbolt: look for the second meta page at every page size.
		for i := 0; i <= 14; i++ {
			off := int64(1024) << i
			if off >= size-1024 {
				break
			}
			if m, ok := parseMeta(read(off)); ok && m.valid() && int64(m.pageSize) == off {
				m1, ok1 = m, true
				break
			}
		}
	}
	valid0, valid1 := ok0 && m0.valid(), ok1 && m1.valid()
	if !valid0 && !valid1 {
		if (ok0 && m0.magic == boltMagic) || (ok1 && m1.magic == boltMagic) {
			return boltMeta{}, fmt.Errorf("%w: %s is damaged: both bbolt meta pages fail their checksum or version check; run 'proxyhealth journal salvage' to copy every intact event into a new journal file, or restore a backup",
				ErrCorrupt, path)
		}
		return boltMeta{}, fmt.Errorf("%w: %s is not a bbolt database (no valid meta page, %d bytes); check the path, or move the file away to start a new journal: %w",
			ErrNotJournal, path, size, errNotBolt)
	}
	// bbolt takes the valid meta with the higher txid; both must agree
	// on the page size it maps the file with.
	m := m0
	if !valid0 || (valid1 && m1.txid > m0.txid) {
		m = m1
	}
	if p := m.problem(size); p != "" {
		return boltMeta{}, fmt.Errorf("%w: %s is damaged: its bbolt meta page (txid %d) is invalid: %s; the file was probably truncated or overwritten; run 'proxyhealth journal salvage' to copy every intact event into a new journal file, or restore a backup",
			ErrCorrupt, path, m.txid, p)
	}
	if valid0 && valid1 && m0.pageSize != m1.pageSize {
		return boltMeta{}, fmt.Errorf("%w: %s is damaged: its meta pages disagree on the page size (%d and %d); run 'proxyhealth journal salvage' or restore a backup",
			ErrCorrupt, path, m0.pageSize, m1.pageSize)
	}
	return m, nil
}

// walker walks the B+tree of a file with ReadAt.
type walker struct {
	r    io.ReaderAt
	l    *fileLayout
	full bool
	seen []uint64 // bitset of pages reached
	// events bucket: the last key of the leaves read so far, and whether
	// a damage was found yet
	inEvents bool
	lastKey  uint64
	lastGood uint64
	damaged  bool
	hdr      [pageHeaderSize]byte
}

func (w *walker) fail(format string, args ...any) error {
	if !w.damaged {
		w.damaged, w.lastGood = true, w.lastKey
	}
	return fmt.Errorf(format, args...)
}

func (w *walker) run() error {
	m := w.l.meta
	w.mark(0, 0)
	w.mark(1, 0)
	var freed []uint64
	if m.freelist != noFreelist {
		var err error
		if freed, err = w.freelist(m.freelist); err != nil {
			return err
		}
	}
	if err := w.bucket(m.root, nil, "the root bucket", 0); err != nil {
		return err
	}
	if w.full {
		for _, id := range freed {
			if w.isSeen(id) {
				return w.fail("page %d is both free and in use", id)
			}
		}
	}
	return nil
}

func (w *walker) isSeen(id uint64) bool { return w.seen[id/64]&(1<<(id%64)) != 0 }

// mark records pages id..id+overflow as reached; false if one was already.
func (w *walker) mark(id uint64, overflow uint32) bool {
	for p := id; p <= id+uint64(overflow); p++ {
		if w.isSeen(p) {
			return false
		}
		w.seen[p/64] |= 1 << (p % 64)
	}
	return true
}

// page reads page id's header and checks it; with whole it reads and
// returns the whole page (overflow included).
func (w *walker) page(id uint64, whole bool, what string) (flags, count uint16, data []byte, err error) {
	ps, hwm := uint64(w.l.pageSize), w.l.meta.pgid
	if id < 2 || id >= hwm {
		return 0, 0, nil, w.fail("%s: page id %d is outside pages 2..%d", what, id, hwm-1)
	}
	if _, err := w.r.ReadAt(w.hdr[:], int64(id*ps)); err != nil {
		return 0, 0, nil, w.fail("%s: read page %d: %v", what, id, err)
	}
	pid, flags, count, overflow := ne.Uint64(w.hdr[0:]), ne.Uint16(w.hdr[8:]), ne.Uint16(w.hdr[10:]), ne.Uint32(w.hdr[12:])
	switch {
	case pid != id:
		return 0, 0, nil, w.fail("%s: page %d identifies itself as page %d", what, id, pid)
	case id+uint64(overflow) >= hwm:
		return 0, 0, nil, w.fail("%s: page %d has %d overflow pages, beyond the last page %d", what, id, overflow, hwm-1)
	case !w.mark(id, overflow):
		return 0, 0, nil, w.fail("%s: page %d is reached twice (a cycle or a shared page)", what, id)
	}
	if !whole {
		return flags, count, nil, nil
	}
	data = make([]byte, (uint64(overflow)+1)*ps)
	if _, err := w.r.ReadAt(data, int64(id*ps)); err != nil {
		return 0, 0, nil, w.fail("%s: read page %d: %v", what, id, err)
	}
	return flags, count, data, nil
}

// freelist checks the freelist page and returns the free page ids.
func (w *walker) freelist(id uint64) ([]uint64, error) {
	flags, count, data, err := w.page(id, true, "freelist")
	if err != nil {
		return nil, err
	}
	if flags != flagFreelist {
		return nil, w.fail("freelist: page %d has type %#x, not a freelist", id, flags)
	}
	n, start := uint64(count), pageHeaderSize
	if count == 0xFFFF {
		if len(data) < pageHeaderSize+8 {
			return nil, w.fail("freelist: page %d is too short", id)
		}
		n, start = ne.Uint64(data[pageHeaderSize:]), pageHeaderSize+8
	}
	if n > uint64(len(data)-start)/8 {
		return nil, w.fail("freelist: page %d claims %d free pages, more than it can hold", id, n)
	}
	ids := make([]uint64, n)
	for i := range ids {
		ids[i] = ne.Uint64(data[start+8*i:])
		if ids[i] < 2 || ids[i] >= w.l.meta.pgid {
			return nil, w.fail("freelist: free page id %d is outside pages 2..%d", ids[i], w.l.meta.pgid-1)
		}
	}
	return ids, nil
}

// bucket walks a bucket: root page id, or, when root is 0, the inline
// page.
func (w *walker) bucket(root uint64, inline []byte, name string, depth int) error {
	if depth > maxTreeDepth {
		return w.fail("%s: buckets nested deeper than %d", name, maxTreeDepth)
	}
	events := depth == 1 && name == "bucket \"events\""
	prev := w.inEvents
	w.inEvents = events
	defer func() { w.inEvents = prev }()
	if root == 0 {
		if len(inline) < pageHeaderSize {
			return w.fail("%s: inline bucket of %d bytes", name, len(inline))
		}
		if flags := ne.Uint16(inline[8:]); flags != flagLeaf {
			return w.fail("%s: inline page has type %#x, not a leaf", name, flags)
		}
		return w.leaf(inline, ne.Uint16(inline[10:]), name, depth)
	}
	return w.node(root, name, depth, 0)
}

// node walks the subtree at page id.
func (w *walker) node(id uint64, name string, bucketDepth, level int) error {
	if level > maxTreeDepth {
		return w.fail("%s: tree deeper than %d levels at page %d", name, maxTreeDepth, id)
	}
	// Only leaves outside the events bucket, or all with full, are read
	// whole; a branch page is read whole below.
	_, _, _, err := w.page(id, false, name)
	if err != nil {
		return err
	}
	flags := ne.Uint16(w.hdr[8:])
	count := ne.Uint16(w.hdr[10:])
	overflow := ne.Uint32(w.hdr[12:])
	ps := uint64(w.l.pageSize)
	readWhole := func() ([]byte, error) {
		data := make([]byte, (uint64(overflow)+1)*ps)
		if _, err := w.r.ReadAt(data, int64(id*ps)); err != nil {
			return nil, w.fail("%s: read page %d: %v", name, id, err)
		}
		return data, nil
	}
	switch flags {
	case flagBranch:
		data, err := readWhole()
		if err != nil {
			return err
		}
		if count == 0 || pageHeaderSize+int(count)*elemSize > len(data) {
			return w.fail("%s: branch page %d has %d elements, which do not fit", name, id, count)
		}
		children := make([]uint64, count)
		for i := range children {
			off := pageHeaderSize + i*elemSize
			pos, ksize := uint64(ne.Uint32(data[off:])), uint64(ne.Uint32(data[off+4:]))
			if uint64(off)+pos+ksize > uint64(len(data)) {
				return w.fail("%s: branch page %d: key %d lies outside the page", name, id, i)
			}
			children[i] = ne.Uint64(data[off+8:])
		}
		for _, c := range children {
			if err := w.node(c, name, bucketDepth, level+1); err != nil {
				return err
			}
		}
		return nil
	case flagLeaf:
		if pageHeaderSize+int(count)*elemSize > int((uint64(overflow)+1)*ps) {
			return w.fail("%s: leaf page %d has %d elements, which do not fit", name, id, count)
		}
		if w.inEvents && !w.full {
			return nil
		}
		data, err := readWhole()
		if err != nil {
			return err
		}
		return w.leaf(data, count, name, bucketDepth)
	}
	return w.fail("%s: page %d has type %#x, not a branch or leaf page", name, id, flags)
}

// leaf checks a leaf page's elements and walks the buckets it holds.
func (w *walker) leaf(data []byte, count uint16, name string, depth int) error {
	if pageHeaderSize+int(count)*elemSize > len(data) {
		return w.fail("%s: leaf with %d elements that do not fit", name, count)
	}
	for i := range int(count) {
		off := pageHeaderSize + i*elemSize
		flags := ne.Uint32(data[off:])
		pos, ksize, vsize := uint64(ne.Uint32(data[off+4:])), uint64(ne.Uint32(data[off+8:])), uint64(ne.Uint32(data[off+12:]))
		end := uint64(off) + pos + ksize + vsize
		if end > uint64(len(data)) {
			return w.fail("%s: leaf element %d lies outside its page", name, i)
		}
		k := data[uint64(off)+pos : uint64(off)+pos+ksize]
		v := data[uint64(off)+pos+ksize : end]
		if w.inEvents && len(k) == 8 && !w.damaged {
			w.lastKey = binary.BigEndian.Uint64(k)
		}
		if flags&leafBucketFlag == 0 {
			continue
		}
		if len(v) < bucketHeader {
			return w.fail("%s: bucket %q has a value of %d bytes", name, k, len(v))
		}
		sub := fmt.Sprintf("bucket %q", k)
		if depth > 0 {
			sub = name + "/" + sub
		}
		root := ne.Uint64(v)
		if err := w.bucket(root, bytes.Clone(v[bucketHeader:]), sub, depth+1); err != nil {
			return err
		}
	}
	return nil
}
