package journal_test

import (
	"context"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/journal/journaltest"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// TestLoadState: a proxy's state is its snapshot and the events after it;
// a proxy the journal has never seen gets the empty state (without a
// transaction: it has no stream head), in both journals.
func TestLoadState(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) journal.Journal{
		"bolt": func(t *testing.T) journal.Journal { return openBolt(t, filepath.Join(t.TempDir(), "journal.db")) },
		"mem":  func(t *testing.T) journal.Journal { return journal.NewMem() },
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			j := open(t)
			defer j.Close()
			p := journaltest.ProxyID(1)
			for i := range 5 {
				journaltest.Append(t, j, journaltest.Succeeded(p, time.Duration(i)*time.Second))
			}
			if err := j.SaveSnapshot(ctx, journaltest.Snapshot(p, 3, 3)); err != nil {
				t.Fatal(err)
			}
			st, snapSeq, err := journal.LoadState(ctx, j, p)
			if err != nil || snapSeq != 3 || st.StreamSeq != 5 || st.ProxyID != p {
				t.Fatalf("LoadState(%s) = stream seq %d, snapshot %d, %v; want 5, 3, nil", p, st.StreamSeq, snapSeq, err)
			}

			unknown := journaltest.ProxyID(9)
			st, snapSeq, err = journal.LoadState(ctx, j, unknown)
			if err != nil || snapSeq != 0 || !reflect.DeepEqual(st, events.NewState(unknown)) {
				t.Fatalf("LoadState of a proxy without events = %+v, snapshot %d, %v; want the new state", st, snapSeq, err)
			}
			cancelled, cancel := context.WithCancel(ctx)
			cancel()
			if _, _, err := journal.LoadState(cancelled, j, unknown); err == nil {
				t.Fatal("LoadState with a cancelled context returned no error")
			}
		})
	}
}

// BenchmarkLoadState measures what a restarting proxy actor's recovery
// reads: the snapshot of a proxy and the events of its stream after it
// (snapshotEvery apart at most; here 50), from a bbolt journal of 1,000
// proxies. One op is one proxy's LoadState.
func BenchmarkLoadState(b *testing.B) {
	const proxies, perProxy, snapAt = 1000, 100, 50
	j, err := journal.OpenBolt(filepath.Join(b.TempDir(), "journal.db"), journal.WithUnsafeNoSync())
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	ctx := context.Background()
	for round := range perProxy {
		envs := make([]*pb.Envelope, proxies)
		for i := range envs {
			envs[i] = journaltest.Succeeded(journaltest.ProxyID(i), time.Duration(round)*time.Second)
		}
		if _, err := j.Append(ctx, envs); err != nil {
			b.Fatal(err)
		}
		if round+1 == snapAt {
			for i := range proxies {
				p := journaltest.ProxyID(i)
				if err := j.SaveSnapshot(ctx, journaltest.Snapshot(p, snapAt, j.Head()-uint64(proxies-1-i))); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		st, snapSeq, err := journal.LoadState(ctx, j, journaltest.ProxyID(i%proxies))
		if err != nil || st.StreamSeq != perProxy || snapSeq != snapAt {
			b.Fatalf("LoadState: stream seq %d, snapshot %d, %v; want %d, %d", st.StreamSeq, snapSeq, err, perProxy, snapAt)
		}
		i++
	}
}
