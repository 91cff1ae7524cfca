// Package journaltest is the contract test suite that every
// [journal.Journal] implementation must pass, plus helpers that build
// realistic envelopes for tests and benchmarks.
package journaltest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/proxyhealth/proxyhealth/journal"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// Harness tells the suite how to create, reopen and damage journals of one
// implementation.
type Harness struct {
	// Open returns a new, empty journal. The suite closes it.
	Open func(t *testing.T) journal.Journal
	// Reopen closes old and opens the same journal again. Nil for
	// implementations without durability: those subtests are skipped.
	Reopen func(t *testing.T, old journal.Journal) journal.Journal
	// Damage damages j, which holds at least 100 events, so that Check must
	// report ErrCorrupt, and returns the journal to check (j itself, or j
	// reopened after damaging its file).
	Damage func(t *testing.T, j journal.Journal) journal.Journal
}

// Run runs the contract suite as subtests of t.
func Run(t *testing.T, h Harness) {
	s := &suite{h: h}
	t.Run("AppendOrder", s.appendOrder)
	t.Run("ConcurrentAppendsGapFree", s.concurrentAppends)
	t.Run("StreamSeqs", s.streamSeqs)
	t.Run("AppendAsync", s.appendAsync)
	t.Run("SaveSnapshotAsync", s.snapshotAsync)
	t.Run("StreamConflict", s.streamConflict)
	t.Run("InvalidEvents", s.invalidEvents)
	t.Run("ReadFromMiddle", s.readFromMiddle)
	t.Run("HeadsEmptyAndAfter", s.heads)
	t.Run("Durability", s.durability)
	t.Run("SubscribeConcurrent", s.subscribeConcurrent)
	t.Run("SubscribeFromMiddle", s.subscribeFromMiddle)
	t.Run("SubscribeClose", s.subscribeClose)
	t.Run("Snapshots", s.snapshots)
	t.Run("Retention", s.retention)
	t.Run("RetentionDurable", s.retentionDurable)
	t.Run("RetentionConcurrent", s.retentionConcurrent)
	t.Run("RetentionCarriesPoolState", s.retentionCarries)
	t.Run("CheckDetectsDamage", s.checkDetectsDamage)
	t.Run("Closed", s.closed)
	t.Run("ContextCancelled", s.contextCancelled)
}

type suite struct{ h Harness }

// open opens a journal that is closed when the test ends.
func (s *suite) open(t *testing.T) journal.Journal {
	t.Helper()
	j := s.h.Open(t)
	t.Cleanup(func() { _ = j.Close() })
	return j
}

// reopen reopens j, or skips the test when the harness cannot.
func (s *suite) reopen(t *testing.T, j journal.Journal) journal.Journal {
	t.Helper()
	if s.h.Reopen == nil {
		t.Skip("the implementation is not durable")
	}
	n := s.h.Reopen(t, j)
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// ProxyID returns the n-th realistic proxy ID (16 hex digits).
func ProxyID(n int) string {
	return fmt.Sprintf("%016x", uint64(n)*0x9e3779b97f4a7c15)
}

// BaseTime is the clock origin of the envelopes built by this package.
var BaseTime = time.Date(2025, 1, 6, 12, 0, 0, 0, time.UTC)

// Succeeded returns a CheckSucceeded envelope of a proxy in source
// "default" at BaseTime + at.
func Succeeded(proxyID string, at time.Duration) *pb.Envelope {
	return &pb.Envelope{
		AtUnixNano: BaseTime.Add(at).UnixNano(),
		ProxyId:    proxyID,
		Source:     "default",
		Event: &pb.Envelope_CheckSucceeded{CheckSucceeded: &pb.CheckSucceeded{
			Latency:    &pb.Latency{ConnectNs: 12_345_678, FirstByteNs: 48_765_432, TotalNs: 61_234_567},
			StatusCode: 200,
		}},
	}
}

// Failed returns a CheckFailed (timeout) envelope of a proxy in source
// "default" at BaseTime + at.
func Failed(proxyID string, at time.Duration) *pb.Envelope {
	return &pb.Envelope{
		AtUnixNano: BaseTime.Add(at).UnixNano(),
		ProxyId:    proxyID,
		Source:     "default",
		Event: &pb.Envelope_CheckFailed{CheckFailed: &pb.CheckFailed{
			Class:   pb.FailureClass_FAILURE_CLASS_TIMEOUT,
			Message: "dial tcp 10.0.0.7:1080: i/o timeout",
			Latency: &pb.Latency{TotalNs: 10_000_000_000},
		}},
	}
}

// PoolDegraded returns a pool-level envelope (no proxy_id) at BaseTime +
// at.
func PoolDegraded(at time.Duration) *pb.Envelope {
	return &pb.Envelope{
		AtUnixNano: BaseTime.Add(at).UnixNano(),
		Source:     "default",
		Event: &pb.Envelope_PoolDegraded{PoolDegraded: &pb.PoolDegraded{
			HealthyPercentage: 40, ThresholdPercentage: 50, Healthy: 4, Total: 10,
		}},
	}
}

// Snapshot returns a realistic snapshot of a proxy up to streamSeq.
func Snapshot(proxyID string, streamSeq, seq uint64) *pb.ProxySnapshot {
	return &pb.ProxySnapshot{
		ProxyId:              proxyID,
		StreamSeq:            streamSeq,
		Seq:                  seq,
		Source:               "default",
		UrlRedacted:          "socks5://10.0.0.7:1080",
		State:                pb.HealthState_HEALTH_STATE_HEALTHY,
		ConsecutiveSuccesses: uint32(streamSeq),
		TotalChecks:          streamSeq,
		LastLatency:          &pb.Latency{TotalNs: 61_234_567},
		LastStatusCode:       200,
	}
}

// Append appends envs and fails the test on error.
func Append(t testing.TB, j journal.Journal, envs ...*pb.Envelope) []uint64 {
	t.Helper()
	seqs, err := j.Append(context.Background(), envs)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if len(seqs) != len(envs) {
		t.Fatalf("Append returned %d seqs for %d envelopes", len(seqs), len(envs))
	}
	return seqs
}

// ReadAll collects Read(from) and fails the test on error.
func ReadAll(t testing.TB, j journal.Journal, from uint64) []*pb.Envelope {
	t.Helper()
	var out []*pb.Envelope
	for e, err := range j.Read(context.Background(), from) {
		if err != nil {
			t.Fatalf("Read(%d): %v", from, err)
		}
		out = append(out, e)
	}
	return out
}

// ReadStreamAll collects ReadStream(proxyID, from) and fails the test on
// error.
func ReadStreamAll(t testing.TB, j journal.Journal, proxyID string, from uint64) []*pb.Envelope {
	t.Helper()
	var out []*pb.Envelope
	for e, err := range j.ReadStream(context.Background(), proxyID, from) {
		if err != nil {
			t.Fatalf("ReadStream(%s, %d): %v", proxyID, from, err)
		}
		out = append(out, e)
	}
	return out
}

// wantSeqs fails unless envs have exactly the seqs from..to in order.
func wantSeqs(t *testing.T, envs []*pb.Envelope, from, to uint64) {
	t.Helper()
	if from > to {
		if len(envs) != 0 {
			t.Fatalf("got %d envelopes (first seq %d), want none", len(envs), envs[0].GetSeq())
		}
		return
	}
	if uint64(len(envs)) != to-from+1 {
		t.Fatalf("got %d envelopes, want seqs %d..%d (%d)", len(envs), from, to, to-from+1)
	}
	for i, e := range envs {
		if e.GetSeq() != from+uint64(i) {
			t.Fatalf("envelope %d has seq %d, want %d", i, e.GetSeq(), from+uint64(i))
		}
	}
}

// wantErr fails unless err wraps target.
func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want one wrapping %v", what, err, target)
	}
}

// check fails unless Check passes.
func check(t *testing.T, j journal.Journal) {
	t.Helper()
	if err := j.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
}

// equal fails unless two messages are equal.
func equal(t *testing.T, what string, got, want proto.Message) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Fatalf("%s:\n got  %v\n want %v", what, got, want)
	}
}

// Wrap returns an envelope at BaseTime + at, of the source, holding ev (any
// event message of the envelope's oneof, e.g. *pb.PoolRecovered), without
// a proxy ID: a pool-wide event.
func Wrap(at time.Duration, source string, ev proto.Message) *pb.Envelope {
	e := &pb.Envelope{AtUnixNano: BaseTime.Add(at).UnixNano(), Source: source}
	m := e.ProtoReflect()
	fields := m.Descriptor().Oneofs().ByName("event").Fields()
	for i := range fields.Len() {
		if fd := fields.Get(i); fd.Message() != nil && fd.Message().FullName() == ev.ProtoReflect().Descriptor().FullName() {
			m.Set(fd, protoreflect.ValueOfMessage(ev.ProtoReflect()))
			return e
		}
	}
	panic(fmt.Sprintf("journaltest.Wrap: %T is not an event of the envelope", ev))
}
