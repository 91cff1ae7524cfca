package sqlview_test

import (
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/gen"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections/sqlview"
)

// holder is an Options.Hold that counts how often it is asked.
type holder struct {
	on    atomic.Bool
	asked atomic.Int64
}

func (h *holder) hold() bool {
	h.asked.Add(1)
	return h.on.Load()
}

// tailingHeld opens a view of j at path with Options.Hold set to h and
// returns once Run tails the journal: it has asked h about a batch
// (appended here, with h not holding). Before that, Run takes what is
// appended in its catch-up, which never holds.
func tailingHeld(t *testing.T, path string, j journal.Journal, sim *gen.Sim, h *holder, opts sqlview.Options) (*sqlview.View, *running) {
	t.Helper()
	opts.Hold = h.hold
	v, r := tailing(t, path, j, opts)
	for i := 0; h.asked.Load() == 0; i++ { // Hold is asked before a batch is applied
		if i == 100 {
			t.Fatal("Run applied 100 batches without asking Hold")
		}
		appendSim(t, j, sim, 1)
		waitFor(t, "the view to apply an event", func() bool { return v.Offset() == j.Head() })
	}
	return v, r
}

// TestRunHoldsBackWhileAsked: while Options.Hold says so, Run applies
// nothing the journal receives; once it says no more, the view catches up
// and equals a rebuild.
func TestRunHoldsBackWhileAsked(t *testing.T) {
	j, sim := steadySim(t, 7)
	path := filepath.Join(t.TempDir(), "view.db")
	h := &holder{}
	v, r := tailingHeld(t, path, j, sim, h, sqlview.Options{Linger: -1})
	held := v.Offset()
	h.on.Store(true)
	appendSim(t, j, sim, 50)
	// Run asks only when it has a batch, then every 100 ms while it holds:
	// three questions since the append mean it held for at least 200 ms.
	n := h.asked.Load()
	waitFor(t, "Run to ask Hold three times", func() bool { return h.asked.Load() >= n+3 })
	if off := v.Offset(); off != held {
		t.Fatalf("the view applied up to seq %d while held at %d", off, held)
	}
	h.on.Store(false)
	waitFor(t, "the view to catch up once released", func() bool { return v.Offset() == j.Head() })
	stopEqualsRebuild(t, r, path, j)
}

// TestRunHoldsBackAtMostMaxHold: a Hold that never lets go holds the view
// back for MaxHold only; Run then applies every batch at once, asking Hold
// once each, until Hold has said no; after that a hold can begin again.
func TestRunHoldsBackAtMostMaxHold(t *testing.T) {
	j, sim := steadySim(t, 8)
	path := filepath.Join(t.TempDir(), "view.db")
	h := &holder{}
	v, r := tailingHeld(t, path, j, sim, h, sqlview.Options{Linger: -1, MaxHold: time.Nanosecond})
	h.on.Store(true)
	// batch appends one batch and waits for the view to apply it; it
	// returns how often Hold was asked meanwhile.
	batch := func(what string) int64 {
		t.Helper()
		n := h.asked.Load()
		appendSim(t, j, sim, 20)
		waitFor(t, "the view to apply "+what, func() bool { return v.Offset() == j.Head() })
		return h.asked.Load() - n
	}
	if n := batch("the batch held for MaxHold"); n < 2 {
		t.Fatalf("Hold was asked %d times for the first batch; a hold asks at least twice", n)
	}
	for i := range 3 {
		if n := batch("a batch after the hold ran out"); n != 1 {
			t.Fatalf("batch %d after the hold ran out: Hold asked %d times, want 1 (no hold)", i, n)
		}
	}
	h.on.Store(false)
	if n := batch("a batch not held"); n != 1 {
		t.Fatalf("Hold asked %d times for a batch it does not hold, want 1", n)
	}
	h.on.Store(true)
	if n := batch("the batch of a new hold"); n < 2 {
		t.Fatalf("Hold asked %d times once it holds again; a hold asks at least twice", n)
	}
	stopEqualsRebuild(t, r, path, j)
}
