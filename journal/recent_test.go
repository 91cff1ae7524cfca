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
	const total = (recentMin/100 + 6) * 100
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
	if shared == 0 || shared > recentMin || shared == total {
		t.Fatalf("%d of %d envelopes came from memory, want some, at most %d (the window)", shared, total, recentMin)
	}
}

// TestRecentWindowFitsLargeCommits: a commit larger than the window (a
// wave of proxies added at start) still reaches a subscription that kept
// up from memory, and the window narrows back once commits are small.
func TestRecentWindowFitsLargeCommits(t *testing.T) {
	j := openNoSync(t)
	ctx := context.Background()
	live := j.Subscribe(1)
	defer live.Close()
	appendAndFollow := func(n int) {
		t.Helper()
		batch := make([]*pb.Envelope, n)
		for i := range batch {
			batch[i] = testEnvelope(fmt.Sprintf("p%d", i), 0)
		}
		if _, err := j.Append(ctx, batch); err != nil {
			t.Fatal(err)
		}
		for i := range batch {
			e, err := live.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if e != batch[i] {
				t.Fatalf("envelope %d of a commit of %d: decoded again instead of shared (window %d)", i, n, len(j.recent.buf))
			}
		}
	}
	window := func() int {
		j.recent.mu.RLock()
		defer j.recent.mu.RUnlock()
		return len(j.recent.buf)
	}
	appendAndFollow(10)
	if w := window(); w != recentMin {
		t.Fatalf("window %d after a small commit, want %d", w, recentMin)
	}
	big := 3*recentMin + 5 // more than the window
	appendAndFollow(big)
	if w := window(); w < big || w > recentMax {
		t.Fatalf("window %d after a commit of %d, want at least that, at most %d", w, big, recentMax)
	}
	// A commit larger than recentMax: its last recentMax envelopes are held.
	huge := recentMax + 100
	batch := make([]*pb.Envelope, huge)
	for i := range batch {
		batch[i] = testEnvelope("p", 0)
	}
	seqs, err := j.Append(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if w := window(); w != recentMax {
		t.Fatalf("window %d after a commit of %d, want the most, %d", w, huge, recentMax)
	}
	if got, ok := j.recent.get(seqs[0], seqs[huge-1], huge, nil); ok {
		t.Fatalf("the first envelope of a commit of %d is held (%d returned), want it read from the store", huge, len(got))
	}
	if got, ok := j.recent.get(seqs[huge-recentMax], seqs[huge-1], huge, nil); !ok || len(got) != recentMax || got[recentMax-1] != batch[huge-1] {
		t.Fatalf("the last %d envelopes of the commit: %d held (ok %v), want all, shared", recentMax, len(got), ok)
	}
	for range huge {
		if _, err := live.Next(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < recentCalm; i++ {
		appendAndFollow(3)
	}
	if w := window(); w != recentMin {
		t.Fatalf("window %d after %d small commits, want back to %d", w, recentCalm, recentMin)
	}
	// What was held stays readable from memory across the narrowing.
	appendAndFollow(recentMin / 2)
}

// TestRecentHoldsTheNewest: through widenings and narrowings, the window
// holds exactly the newest envelopes that fit, each at its seq.
func TestRecentHoldsTheNewest(t *testing.T) {
	var r recent
	seq, held := uint64(0), uint64(0)
	sizes := []int{1, 100, recentMin - 1, 5000, 7, recentMax + 3, 1, 20_000}
	for range recentCalm + 1 {
		sizes = append(sizes, 5)
	}
	sizes = append(sizes, 1500, 3000, 2)
	for range recentCalm {
		sizes = append(sizes, 1)
	}
	for _, n := range sizes {
		envs := make([]undo, n)
		for i := range envs {
			seq++
			envs[i].env = &pb.Envelope{Seq: seq}
		}
		r.add(envs)
		// What was held and fits the new window, then the commit's newest.
		size := uint64(len(r.buf))
		held = min(min(held, size)+uint64(n), size)
		got, ok := r.get(seq-held+1, seq, int(held)+1, nil)
		if !ok || uint64(len(got)) != held {
			t.Fatalf("after a commit of %d (seq %d, window %d): %d held (ok %v), want %d", n, seq, len(r.buf), len(got), ok, held)
		}
		for i, e := range got {
			if want := seq - held + 1 + uint64(i); e.GetSeq() != want {
				t.Fatalf("after a commit of %d: position %d holds seq %d, want %d", n, i, e.GetSeq(), want)
			}
		}
		if _, ok := r.get(seq-held, seq, 1, nil); ok && held < seq {
			t.Fatalf("after a commit of %d: seq %d is held, want only the newest %d", n, seq-held, held)
		}
	}
	if len(r.buf) != recentMin {
		t.Fatalf("window %d at the end, want %d", len(r.buf), recentMin)
	}
}
