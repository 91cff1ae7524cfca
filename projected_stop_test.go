package proxyhealth

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// TestStoppedLiveStatusHasTheJournal: events committed after the live
// feeder stopped (the last checks of a stopping engine) reach the live
// status when the projections stop, so a stopped engine's Status is its
// journal's. TestArchiveReadsADataDirectory once saw the engine's status
// one check behind its journal.
func TestStoppedLiveStatusHasTheJournal(t *testing.T) {
	ctx := context.Background()
	j := journal.NewMem()
	defer j.Close()
	const id = "p1"
	add := func(stream uint64, ev *pb.Envelope) *pb.Envelope {
		t.Helper()
		ev.ProxyId, ev.StreamSeq, ev.AtUnixNano = id, stream, int64(stream)*1e9
		if _, err := j.Append(ctx, []*pb.Envelope{ev}); err != nil {
			t.Fatal(err)
		}
		return ev
	}
	added := add(1, &pb.Envelope{Event: &pb.Envelope_ProxyAdded{ProxyAdded: &pb.ProxyAdded{UrlRedacted: "http://10.0.0.1:3128", Source: "s"}}})
	p := &projected{live: projections.NewLive(projections.LiveOptions{}), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	p.live.Apply(added) // what the feeder applied before it stopped
	_, cancel := context.WithCancel(ctx)
	p.cancel, p.j = cancel, j
	p.halt()
	add(2, &pb.Envelope{Event: &pb.Envelope_CheckSucceeded{CheckSucceeded: &pb.CheckSucceeded{StatusCode: 204, Latency: &pb.Latency{TotalNs: 1e6}}}})
	if err := p.stop(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := p.live.Seq(), j.Head(); got != want {
		t.Fatalf("live status at seq %d after stop, journal head %d", got, want)
	}
	if st, ok := p.live.Proxy(id); !ok || st.TotalChecks != 1 {
		t.Fatalf("live status of %s after stop: %+v, %v; want its check", id, st, ok)
	}
}
