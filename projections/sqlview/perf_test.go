package sqlview_test

import (
	"context"
	"iter"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections/sqlview"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// countingJournal counts the Read calls made on its journal.
type countingJournal struct {
	journal.Journal
	reads atomic.Int64
}

func (c *countingJournal) Read(ctx context.Context, from uint64) iter.Seq2[*pb.Envelope, error] {
	c.reads.Add(1)
	return c.Journal.Read(ctx, from)
}

// TestCatchUpReadsTheJournalOnce: catching up over many batches reads the
// journal in one pass. A Read per batch decodes a whole read chunk (4,096
// envelopes from bbolt) for each batch and throws away what lies beyond
// it: with small batches most of the catch-up's CPU went there.
func TestCatchUpReadsTheJournalOnce(t *testing.T) {
	j := &countingJournal{Journal: filled(t, 3, 1000)}
	path := filepath.Join(t.TempDir(), "view.db")
	emptyView(t, path)
	v := openView(t, path, j, sqlview.Options{BatchSize: 100})
	j.reads.Store(0)
	if err := v.CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := v.Offset(); got != j.Head() {
		t.Fatalf("offset %d after CatchUp, journal head %d", got, j.Head())
	}
	if n := j.reads.Load(); n != 1 {
		t.Errorf("CatchUp of %d events in batches of 100 read the journal %d times, want 1", j.Head(), n)
	}
	equalsRebuild(t, path, j)
}
