package journal

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// storedPayloads returns the payloads of the stored events by seq.
func storedPayloads(t *testing.T, b *Bolt) map[uint64][]byte {
	t.Helper()
	out := make(map[uint64][]byte)
	err := b.view(func(tx *bolt.Tx) error {
		ec := newEventCursor(tx.Bucket(bucketEvents))
		for seq, v, err := ec.first(); seq != 0 || err != nil; seq, v, err = ec.next() {
			if err != nil {
				return err
			}
			p, err := eventPayload(v, seq, b.crcFrom)
			if err != nil {
				return err
			}
			out[seq] = bytes.Clone(p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// encodeEveryCommit makes the writers of the journals the test opens use
// their encoder for every commit.
func encodeEveryCommit(t *testing.T) {
	from, per := encodeFromEvents, encodePerRequest
	encodeFromEvents, encodePerRequest = 1, 1
	t.Cleanup(func() { encodeFromEvents, encodePerRequest = from, per })
}

// TestEncodedAheadIsWhatProtoMarshals: the records the writer builds from
// bodies its encoder marshalled ahead (and spliced with the seqs it
// assigned) are byte for byte what proto.Marshal makes of the committed
// envelopes, next to envelopes the codec leaves to protobuf-go and to
// requests that fail in the same commits.
func TestEncodedAheadIsWhatProtoMarshals(t *testing.T) {
	encodeEveryCommit(t)
	encoded := encodedRequests.Load()
	b := openNoSync(t)
	ctx := context.Background()
	failed := func(p string) *pb.Envelope {
		return &pb.Envelope{AtUnixNano: 5, ProxyId: p, Source: "s", Event: &pb.Envelope_CheckFailed{CheckFailed: &pb.CheckFailed{
			Class: pb.FailureClass_FAILURE_CLASS_TIMEOUT, Message: "i/o timeout", Latency: &pb.Latency{ConnectNs: -1},
		}}}
	}
	var mu sync.Mutex
	var committed []*pb.Envelope
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 40 {
				p := string(rune('a' + g))
				envs := []*pb.Envelope{testEnvelope(p, 0), failed(p), {AtUnixNano: 7, Source: "pool",
					Event: &pb.Envelope_PoolDegraded{PoolDegraded: &pb.PoolDegraded{Healthy: 1, Total: 2}}}}
				switch i % 4 {
				case 1:
					envs[0].StreamSeq = b.StreamHead(p) + 1 // explicit, and right (one appender per proxy)
				case 2:
					envs[0].StreamSeq = 1_000_000 // a conflict: the request fails, nothing of it is written
				case 3:
					envs[1].ProxyId = "bad \xff" // not UTF-8: the request fails
				}
				_, err := b.Append(ctx, envs)
				switch {
				case i%4 == 2 && !errors.Is(err, ErrStreamConflict), i%4 == 3 && !errors.Is(err, ErrInvalidEvent):
					t.Errorf("append %d: %v, want it to fail", i, err)
				case i%4 < 2 && err != nil:
					t.Error(err)
				case err == nil:
					mu.Lock()
					committed = append(committed, envs...)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if encodedRequests.Load() == encoded {
		t.Fatal("the encoder encoded no request")
	}
	stored := storedPayloads(t, b)
	if len(stored) != len(committed) || uint64(len(stored)) != b.Head() {
		t.Fatalf("%d events stored, %d committed, head %d", len(stored), len(committed), b.Head())
	}
	for _, e := range committed {
		want, err := proto.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if got := stored[e.GetSeq()]; !bytes.Equal(got, want) {
			t.Fatalf("event %d is stored as\n%x\nproto.Marshal makes\n%x", e.GetSeq(), got, want)
		}
	}
	if err := b.Check(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestEncodedRequestCanBeAbandoned: a request the encoder has marshalled
// is pending again, so its caller can still abandon it, and the writer
// then skips it; one encoded and not abandoned commits.
func TestEncodedRequestCanBeAbandoned(t *testing.T) {
	b := openNoSync(t)
	gone, kept := newRequest(testEnvelope("a", 0)), newRequest(testEnvelope("b", 0))
	preEncode(gone)
	preEncode(kept)
	if gone.pre == nil || kept.pre == nil {
		t.Fatal("the requests were not encoded")
	}
	if !gone.state.CompareAndSwap(reqPending, reqAbandoned) {
		t.Fatalf("an encoded request is in state %d, not pending: its caller cannot abandon it", gone.state.Load())
	}
	w := newWriter(b, 100) // the running writer is idle: no requests
	w.commit([]*request{gone, kept})
	<-kept.done
	if kept.err != nil || b.Head() != 1 || kept.envs[0].GetSeq() != 1 {
		t.Fatalf("kept: %v, head %d, seq %d", kept.err, b.Head(), kept.envs[0].GetSeq())
	}
	if gone.envs[0].GetSeq() != 0 || b.StreamHead("a") != 0 {
		t.Fatal("the abandoned request was written")
	}
	if kept.pre != nil {
		t.Error("the committed request still holds its encoded bodies")
	}
}

// TestEncoderKeepsOrder: requests the encoder takes during a commit are
// committed before those queued after them: asynchronous appends to one
// stream, each with the next explicit stream_seq, all succeed in order.
func TestEncoderKeepsOrder(t *testing.T) {
	encodeEveryCommit(t)
	b := openNoSync(t)
	const calls, per = 500, 20
	type result struct {
		seqs []uint64
		err  error
	}
	results := make([]result, calls)
	var wg sync.WaitGroup
	wg.Add(calls)
	for c := range calls {
		envs := make([]*pb.Envelope, per)
		for i := range envs {
			envs[i] = testEnvelope("p", uint64(c*per+i+1))
		}
		b.AppendAsync(envs, func(seqs []uint64, err error) {
			results[c] = result{seqs, err}
			wg.Done()
		})
	}
	wg.Wait()
	last := uint64(0)
	for c, r := range results {
		if r.err != nil {
			t.Fatalf("call %d: %v", c, r.err)
		}
		for _, s := range r.seqs {
			if s != last+1 {
				t.Fatalf("call %d got seq %d after %d", c, s, last)
			}
			last = s
		}
	}
	if b.StreamHead("p") != calls*per {
		t.Fatalf("stream head %d, want %d", b.StreamHead("p"), calls*per)
	}
}
