package journal

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// TestSubscriptionsShareTheLatestEnvelopes: a subscription that keeps up
// gets the appended envelopes themselves (no second decode), one that
// starts behind the in-memory window reads the store, and both deliver the
// same story, gap-free.
func TestSubscriptionsShareTheLatestEnvelopes(t *testing.T) {
	j := openNoSync(t)
	ctx := context.Background()
	live := j.Subscribe(1)
	defer live.Close()
	const total = (recentSize/100 + 6) * 100
	appended := make(map[uint64]*pb.Envelope, total)
	for b := 0; b < total/100; b++ {
		batch := make([]*pb.Envelope, 100)
		for i := range batch {
			batch[i] = testEnvelope(fmt.Sprintf("p%d", i), uint64(b+1))
		}
		seqs, err := j.Append(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range seqs {
			appended[s] = batch[i]
		}
		// The live subscriber keeps up: every envelope is the appended one.
		for range batch {
			e, err := live.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if e != appended[e.GetSeq()] {
				t.Fatalf("seq %d: a caught-up subscription decoded the record again instead of sharing the appended envelope", e.GetSeq())
			}
		}
	}
	late := j.Subscribe(1)
	defer late.Close()
	shared := 0
	for want := uint64(1); want <= total; want++ {
		e, err := late.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if e.GetSeq() != want {
			t.Fatalf("got seq %d, want %d", e.GetSeq(), want)
		}
		if !proto.Equal(e, appended[want]) {
			t.Fatalf("seq %d: delivered %v, appended %v", want, e, appended[want])
		}
		if e == appended[want] {
			shared++
		}
	}
	// The first reads were from the store (the window had moved on),
	// the rest from memory once the subscription reached the window.
	if shared == 0 || shared > recentSize || shared == total {
		t.Fatalf("%d of %d envelopes came from memory, want some, at most %d (the window)", shared, total, recentSize)
	}
}
