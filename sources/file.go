package sources

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"
)

// DefaultPollInterval is how often a file source is looked at.
const DefaultPollInterval = 2 * time.Second

// ErrFile is wrapped when a list file cannot be read (missing, no
// permission, a directory).
var ErrFile = errors.New("sources: cannot read the proxy list file")

// fileError is "PATH: reason", wrapping ErrFile and maybe the cause.
type fileError struct {
	path, reason string
	cause        error
}

func (e *fileError) Error() string { return e.path + ": " + e.reason }
func (e *fileError) Unwrap() []error {
	if e.cause == nil {
		return []error{ErrFile}
	}
	return []error{ErrFile, e.cause}
}

// FileSource is a proxy list file, polled for changes. It reads the file
// when its size, modification time or identity (inode: a new file renamed
// over it) changed since the last read, and only once the change has
// settled: the first Poll that sees a change waits, the next one reads if
// the file still looks the same, and the read counts only if the file did
// not change while being read. So an editor's or a script's partial write
// is not taken for the list (still, write lists atomically: to a temporary
// file, then rename it over the list).
//
// Polling, not inotify (fsnotify): it needs no new dependency, and works
// where inotify does not (NFS and other network file systems, some
// container bind mounts) and across the ways files get replaced (an
// editor's rename, a Kubernetes ConfigMap's symlink swap, which watches on
// a single file miss). A stat every DefaultPollInterval is cheap. Its
// limit: a change that keeps the size and lands within the file system's
// time stamp granularity (1 ns on ext4, xfs, btrfs; 1-2 s on some others)
// of the previous one goes unseen until the next change.
//
// The zero value is not usable: set Path. Methods are safe for concurrent
// use.
type FileSource struct {
	// Path is the list file.
	Path string
	// Limits bound the list (MaxBytes bounds the file).
	Limits Limits

	mu      sync.Mutex
	started bool      // a Poll read (or failed to read) the file once
	applied fileStamp // the file as it was at the last read
	seen    fileStamp // the file as the last Poll saw it
}

// fileStamp is what Poll compares.
type fileStamp struct {
	info    fs.FileInfo // nil when stat failed
	errText string      // the stat error, when it failed
}

func (a fileStamp) equal(b fileStamp) bool {
	if a.info == nil || b.info == nil {
		return a.info == nil && b.info == nil && a.errText == b.errText
	}
	return a.info.Size() == b.info.Size() && a.info.ModTime().Equal(b.info.ModTime()) &&
		a.info.Mode() == b.info.Mode() && os.SameFile(a.info, b.info)
}

func stampOf(fi fs.FileInfo, err error) fileStamp {
	if err != nil {
		return fileStamp{errText: unwrapPathError(err).Error()}
	}
	return fileStamp{info: fi}
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Poll looks at the file once. It returns changed=true when there is
// something new to report: the list read from a changed file (err nil), or
// a new failure (a missing or unreadable file, a refused list: the caller
// keeps its last good list). Otherwise (nothing changed, or a change not
// settled yet) it returns an empty List, false and nil. The first Poll
// reads the file at once. Errors name the path and never show a line that
// is not a proxy URL (see Parse).
func (f *FileSource) Poll(ctx context.Context) (list List, changed bool, err error) {
	if err := ctx.Err(); err != nil {
		return List{}, false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fi, statErr := os.Stat(f.Path)
	st := stampOf(fi, statErr)
	if f.started {
		if st.equal(f.applied) {
			f.seen = st
			return List{}, false, nil
		}
		if !st.equal(f.seen) {
			f.seen = st // changed since the last look: let it settle
			return List{}, false, nil
		}
	}
	if statErr != nil {
		f.started, f.applied, f.seen = true, st, st
		return List{}, true, &fileError{f.Path, "cannot read the proxy list: " + st.errText, statErr}
	}
	list, after, err := f.read(ctx, st)
	if err != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return List{}, false, err
	}
	if !after.equal(st) {
		f.seen = after // written while we read: read again once it settles
		return List{}, false, nil
	}
	f.started, f.applied, f.seen = true, st, st
	return list, true, err
}

// read reads and parses the file, and returns how the opened file looked
// after reading.
func (f *FileSource) read(ctx context.Context, before fileStamp) (List, fileStamp, error) {
	lim := f.Limits.withDefaults()
	if before.info.IsDir() {
		return List{}, before, &fileError{f.Path, "cannot read the proxy list: it is a directory", nil}
	}
	if !before.info.Mode().IsRegular() {
		// A FIFO would block the read; a device may never end.
		return List{}, before, &fileError{f.Path, "cannot read the proxy list: not a regular file (a device, a pipe or a socket)", nil}
	}
	if before.info.Size() > lim.MaxBytes {
		return List{}, before, &ParseError{Name: f.Path, Reason: fmt.Sprintf("the file is %d bytes, over the %s limit: refused", before.info.Size(), sizeString(lim.MaxBytes)), Err: ErrTooLarge}
	}
	file, err := os.Open(f.Path)
	if err != nil {
		return List{}, before, &fileError{f.Path, "cannot read the proxy list: " + unwrapPathError(err).Error(), err}
	}
	defer file.Close()
	list, perr := Parse(f.Path, &ctxReader{ctx: ctx, r: file}, lim)
	if err := ctx.Err(); err != nil {
		return List{}, before, err
	}
	fi, err := file.Stat()
	return list, stampOf(fi, err), perr
}

// ctxReader stops reading when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Watch polls the file every interval (DefaultPollInterval when zero or
// negative), starting at once, and calls fn with each change Poll reports:
// a new list, or a new error (an error is reported once, not at every
// poll, until the file changes again). fn runs on Watch's goroutine; Watch
// returns when ctx is done.
func (f *FileSource) Watch(ctx context.Context, interval time.Duration, fn func(List, error)) {
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if list, changed, err := f.Poll(ctx); changed {
			fn(list, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Watch watches the list file at path: (&FileSource{Path: path, Limits:
// limits}).Watch(ctx, interval, fn).
func Watch(ctx context.Context, path string, interval time.Duration, limits Limits, fn func(List, error)) {
	(&FileSource{Path: path, Limits: limits}).Watch(ctx, interval, fn)
}
