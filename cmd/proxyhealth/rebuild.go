package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

const rebuildUsage = `Usage: proxyhealth rebuild --data DIR

Rebuilds DIR/view.db, the SQLite view, from the journal. The view is a
disposable fold of the journal: rebuilding gives exactly what the daemon
maintains incrementally. The new view is built aside (view.db.tmp) and
renamed into place when complete, so an interrupted rebuild leaves the old
view intact. Stop the daemon first (it holds the journal and the view).`

const rebuildExamples = `  proxyhealth rebuild --data ./proxyhealth-data
  sqlite3 ./proxyhealth-data/view.db 'SELECT * FROM sources'`

func runRebuild(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("rebuild", rebuildUsage, rebuildExamples, stdout, stderr)
	data := fs.String("data", defaultData, "data `DIR` holding journal.db and view.db")
	quiet := fs.Bool("quiet", false, "no progress bar")
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return fs.fail("unexpected argument %q", pos[0])
	}
	a, ok := openArchiveFor(ctx, "proxyhealth rebuild", *data, stderr)
	if !ok {
		return exitFailure
	}
	defer a.Close()
	bar := newProgress(stderr, isTerminal(stderr) && !*quiet)
	start := time.Now()
	path, err := a.RebuildView(ctx, bar.update)
	bar.done()
	if err != nil {
		fmt.Fprintf(stderr, "proxyhealth rebuild: %v\n", err)
		return exitFailure
	}
	n := uint64(0)
	if a.Head() >= a.First() {
		n = a.Head() - a.First() + 1
	}
	fmt.Fprintf(stdout, "rebuilt %s from %d events (seq %d to %d) in %s\n", path, n, a.First(), a.Head(), time.Since(start).Round(time.Millisecond))
	return exitOK
}

// progress draws a progress bar on a terminal, at most 10 times a second.
type progress struct {
	w    io.Writer
	on   bool
	mu   sync.Mutex
	last time.Time
	drew bool
}

func newProgress(w io.Writer, on bool) *progress { return &progress{w: w, on: on} }

func (p *progress) update(done, total uint64) {
	if !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if now := time.Now(); now.Sub(p.last) >= 100*time.Millisecond || done == total {
		p.last = now
		const width = 40
		frac := 1.0
		if total > 0 {
			frac = float64(done) / float64(total)
		}
		n := int(frac * width)
		fmt.Fprintf(p.w, "\r[%s%s] %5.1f%%  %d/%d events", strings.Repeat("#", n), strings.Repeat(".", width-n), frac*100, done, total)
		p.drew = true
	}
}

func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drew {
		fmt.Fprintln(p.w)
	}
}
