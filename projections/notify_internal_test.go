package projections

import (
	"context"
	"testing"

	"github.com/proxyhealth/proxyhealth/journal"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// TestNotifierHugeStreamSeqs: a stream seq too large for a notifyProxy's
// word (never, in practice) is kept exactly all the same, with the
// proxy's source and down episode, so that duplicates are still
// recognized and an episode is notified once.
func TestNotifierHugeStreamSeqs(t *testing.T) {
	j := journal.NewMem()
	defer j.Close()
	n, err := NewNotifier(j, NotifierOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	defer n.Close(ctx)
	seq := uint64(0)
	apply := func(streamSeq uint64, e *pb.Envelope) (Notification, bool) {
		seq++
		e.Seq, e.StreamSeq, e.ProxyId, e.Source = seq, streamSeq, "p", "s"
		return n.apply(ctx, e)
	}
	to := func(h pb.HealthState) *pb.Envelope {
		return &pb.Envelope{Event: &pb.Envelope_StateChanged{StateChanged: &pb.StateChanged{From: pb.HealthState_HEALTH_STATE_HEALTHY, To: h}}}
	}
	const limit = 1<<40 - 1
	apply(limit-1, &pb.Envelope{Event: &pb.Envelope_ProxyAdded{ProxyAdded: &pb.ProxyAdded{Source: "s", UrlRedacted: "http://10.0.0.1:3128"}}})
	if len(n.wide) != 0 {
		t.Fatal("a small stream seq went wide")
	}
	note, ok := apply(limit, to(pb.HealthState_HEALTH_STATE_UNHEALTHY)) // goes wide
	if !ok || note.Type != NotifyProxyDown || note.URL != "http://10.0.0.1:3128" || note.Source != "s" {
		t.Fatalf("down: %+v, %v", note, ok)
	}
	if len(n.wide) != 1 {
		t.Fatalf("wide holds %d proxies, want 1", len(n.wide))
	}
	if _, ok := apply(limit, to(pb.HealthState_HEALTH_STATE_HEALTHY)); ok { // a duplicate
		t.Fatal("a duplicate was notified")
	}
	if _, ok := apply(limit+1, to(pb.HealthState_HEALTH_STATE_FAILED)); ok {
		t.Fatal("a down episode was notified twice")
	}
	note, ok = apply(limit+2, to(pb.HealthState_HEALTH_STATE_HEALTHY))
	if !ok || note.Type != NotifyProxyRecovered || note.Source != "s" {
		t.Fatalf("recovered: %+v, %v", note, ok)
	}
	apply(limit+3, &pb.Envelope{Event: &pb.Envelope_ProxyRemoved{ProxyRemoved: &pb.ProxyRemoved{}}})
	if len(n.proxies) != 0 || len(n.wide) != 0 {
		t.Fatalf("after the removal: proxies %d, wide %d", len(n.proxies), len(n.wide))
	}
}
