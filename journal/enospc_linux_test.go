package journal_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/testutil"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/journal/journaltest"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// TestBoltFullDisk fills a real filesystem under the journal: Append fails
// with ENOSPC, nothing acknowledged is lost, and once there is space again
// the journal appends and checks clean, also after a reopen.
func TestBoltFullDisk(t *testing.T) {
	ctx := context.Background()
	dir := testutil.MountTmpfs(t, "8m")
	path := filepath.Join(dir, "journal.db")
	j := openBolt(t, path)
	defer j.Close()
	acked := 0
	appendBatch := func(n int) error {
		envs := make([]*pb.Envelope, n)
		for i := range envs {
			envs[i] = journaltest.Failed(journaltest.ProxyID(i%50), time.Duration(acked+i)*time.Second)
		}
		_, err := j.Append(ctx, envs)
		if err == nil {
			acked += n
		}
		return err
	}
	if err := appendBatch(100); err != nil {
		t.Fatal(err)
	}
	// Fill the filesystem.
	filler := filepath.Join(dir, "filler")
	testutil.FillDisk(t, filler)
	var full error
	for range 1000 {
		if full = appendBatch(500); full != nil {
			break
		}
	}
	if !errors.Is(full, syscall.ENOSPC) {
		t.Fatalf("Append on a full disk = %v, want an error wrapping ENOSPC", full)
	}
	t.Logf("on the full disk: %v", full)
	if err := appendBatch(1); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("a second Append on the full disk = %v, want ENOSPC", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := appendBatch(500); err != nil {
		t.Fatalf("Append once space is back: %v", err)
	}
	check := func(j journal.Journal) {
		t.Helper()
		if err := j.Check(ctx); err != nil {
			t.Fatal(err)
		}
		if n := len(journaltest.ReadAll(t, j, 1)); n != acked || j.Head() != uint64(acked) {
			t.Fatalf("%d events, head %d; want the %d acknowledged", n, j.Head(), acked)
		}
	}
	check(j)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j2 := openBolt(t, path, journal.WithReadOnly())
	defer j2.Close()
	check(j2)
}
