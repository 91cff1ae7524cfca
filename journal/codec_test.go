package journal

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// TestFastCodecMatchesSchema fails when the generated Envelope, CheckSucceeded,
// CheckFailed or Latency gain, lose or change a field: the direct codec
// (codec.go) then turns itself off, and journals are written and read
// through protobuf-go only (correct, but slower) until codecSchema and the
// codec are brought up to date.
func TestFastCodecMatchesSchema(t *testing.T) {
	if m := schemaMismatch(); m != "" || !fastCodec {
		t.Fatalf("the direct codec is off: %s; update codec.go for the new schema", m)
	}
}

// codecEnvelope builds an envelope of the codec's kinds from fuzz values.
func codecEnvelope(kind uint8, seq, streamSeq uint64, at int64, proxyID, source string, prevSeq uint64,
	class int32, status uint32, msg string, lat uint8, connect, firstByte, total int64) *pb.Envelope {
	e := &pb.Envelope{Seq: seq, StreamSeq: streamSeq, AtUnixNano: at, ProxyId: proxyID, Source: source, PrevSeq: prevSeq}
	var l *pb.Latency
	switch lat % 3 {
	case 1:
		l = &pb.Latency{}
	case 2:
		l = &pb.Latency{ConnectNs: connect, FirstByteNs: firstByte, TotalNs: total}
	}
	switch kind % 5 {
	case 0:
		e.Event = &pb.Envelope_CheckSucceeded{CheckSucceeded: &pb.CheckSucceeded{Latency: l, StatusCode: status}}
	case 1:
		e.Event = &pb.Envelope_CheckFailed{CheckFailed: &pb.CheckFailed{Class: pb.FailureClass(class), StatusCode: status, Message: msg, Latency: l}}
	case 2:
		e.Event = &pb.Envelope_CheckSucceeded{} // nil event message
	case 3:
		e.Event = &pb.Envelope_StateChanged{StateChanged: &pb.StateChanged{Reason: msg}}
	}
	return e
}

// FuzzEnvelopeCodec checks the direct codec against protobuf-go: an
// envelope it marshals has exactly proto.Marshal's bytes, and any bytes it
// decodes decode to the same message with proto.Unmarshal (without error);
// whatever it declines, protobuf-go handles.
func FuzzEnvelopeCodec(f *testing.F) {
	f.Add(uint8(0), uint64(7), uint64(3), int64(1_700_000_000_000_000_000), "0123456789abcdef", "default", uint64(4),
		int32(2), uint32(200), "dial tcp 10.0.0.7:1080: i/o timeout", uint8(2), int64(12_345_678), int64(48_765_432), int64(61_234_567), []byte(nil))
	f.Add(uint8(1), uint64(1), uint64(0), int64(-5), "", "", uint64(0),
		int32(-1), uint32(0), "", uint8(1), int64(-1), int64(0), int64(math.MaxInt64), []byte{0x60, 0x01})
	f.Add(uint8(1), uint64(math.MaxUint64), uint64(1), int64(math.MinInt64), "p\xff", "s", uint64(9),
		int32(math.MaxInt32), uint32(math.MaxUint32), "bad \xc3", uint8(0), int64(0), int64(0), int64(0), []byte{0x08, 0x01, 0x08, 0x02})
	f.Add(uint8(2), uint64(2), uint64(0), int64(0), "x", "", uint64(0),
		int32(0), uint32(0), "", uint8(0), int64(0), int64(0), int64(0), []byte{0x62, 0x00, 0x6a, 0x00})
	f.Add(uint8(3), uint64(2), uint64(2), int64(2), "x", "y", uint64(1),
		int32(0), uint32(0), "why", uint8(0), int64(0), int64(0), int64(0), []byte{0x62, 0x02, 0x0a, 0x00, 0x62, 0x02, 0x10, 0x05})
	f.Fuzz(func(t *testing.T, kind uint8, seq, streamSeq uint64, at int64, proxyID, source string, prevSeq uint64,
		class int32, status uint32, msg string, lat uint8, connect, firstByte, total int64, raw []byte) {
		e := codecEnvelope(kind, seq, streamSeq, at, proxyID, source, prevSeq, class, status, msg, lat, connect, firstByte, total)
		want, werr := proto.Marshal(e)
		prefix := []byte{0xAA}
		got, ok := appendEnvelopeFast(prefix, e)
		switch {
		case ok && werr != nil:
			t.Fatalf("direct codec marshalled %v, proto.Marshal failed: %v", e, werr)
		case ok && !bytes.Equal(got[1:], want):
			t.Fatalf("direct codec marshalled %v as\n%x\nproto.Marshal as\n%x", e, got[1:], want)
		case !ok && !bytes.Equal(got, prefix):
			t.Fatalf("declined, but changed dst to %x", got)
		}
		body, mid, bok := appendBodyFast(prefix, e)
		switch {
		case bok != ok:
			t.Fatalf("appendBodyFast ok=%v, appendEnvelopeFast ok=%v", bok, ok)
		case ok:
			if spliced := appendSpliced(prefix, body[1:], mid-1, e.Seq, e.StreamSeq, e.PrevSeq); !bytes.Equal(spliced[1:], want) {
				t.Fatalf("spliced %v as\n%x\nproto.Marshal as\n%x", e, spliced[1:], want)
			}
		case !bytes.Equal(body, prefix):
			t.Fatalf("appendBodyFast declined, but changed dst to %x", body)
		}
		if werr == nil {
			checkDecode(t, want)
			// The same record followed by raw fields: not canonical,
			// possibly invalid, but decoded alike or declined.
			checkDecode(t, append(append([]byte(nil), want...), raw...))
		}
		checkDecode(t, raw)
	})
}

// checkDecode compares the direct decoder with proto.Unmarshal on p.
func checkDecode(t *testing.T, p []byte) {
	t.Helper()
	var in interner
	for range 2 { // a second time through the interner's table
		got := decodeEnvelopeFast(p, &in)
		if got == nil {
			return
		}
		want := new(pb.Envelope)
		if err := proto.Unmarshal(p, want); err != nil {
			t.Fatalf("direct codec decoded %x, proto.Unmarshal fails: %v", p, err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("%x: direct codec decoded\n%v\nproto.Unmarshal\n%v", p, got, want)
		}
		if b, err := proto.Marshal(got); err != nil || !bytes.Equal(b, mustMarshal(t, want)) {
			t.Fatalf("%x: the decoded envelope marshals differently (%x, %v)", p, b, err)
		}
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFastDecodeDeclines lists records the direct decoder must leave to
// protobuf-go, which merges, overrides, keeps unknown fields or fails.
func TestFastDecodeDeclines(t *testing.T) {
	ok := mustMarshal(t, codecEnvelope(0, 1, 1, 5, "p", "s", 0, 0, 200, "", 2, 1, 2, 3))
	if decodeEnvelopeFast(ok, nil) == nil {
		t.Fatalf("the canonical record %x was declined", ok)
	}
	cases := map[string][]byte{
		"seq twice":              protowire.AppendVarint(append(append([]byte(nil), ok...), 0x08), 9),
		"event twice":            append(append([]byte(nil), ok...), 0x62, 0x02, 0x10, 0x01),
		"unknown envelope field": append(append([]byte(nil), ok...), 0x38, 0x01),
		"unknown event field":    {0x08, 0x01, 0x62, 0x02, 0x18, 0x01},
		"wrong wire type":        {0x08, 0x01, 0x20, 0x01, 0x62, 0x00},
		"invalid UTF-8":          {0x08, 0x01, 0x22, 0x01, 0xff, 0x62, 0x00},
		"truncated":              ok[:len(ok)-1],
		"no event":               {0x08, 0x01},
		"other event":            {0x08, 0x01, 0x72, 0x00},
		"field number 0":         {0x00, 0x01},
		"two-byte tag":           {0x80, 0x01, 0x00},
	}
	for name, p := range cases {
		if e := decodeEnvelopeFast(p, nil); e != nil {
			t.Errorf("%s: %x decoded as %v; want it declined", name, p, e)
		}
	}
}

// TestReadAllocatesOncePerCheckEvent: reading check results allocates one
// object per envelope (the envelope with its event and latency) once the
// proxy IDs and sources are interned, where protobuf-go allocated six
// (envelope, oneof wrapper, event, latency, two strings).
func TestReadAllocatesOncePerCheckEvent(t *testing.T) {
	j := openNoSync(t)
	const n = 3000
	envs := make([]*pb.Envelope, n)
	for i := range envs {
		envs[i] = codecEnvelope(uint8(i%2), 0, 0, int64(i), string(rune('a'+i%20)), "default", 0,
			int32(pb.FailureClass_FAILURE_CLASS_TIMEOUT), 0, "timeout", 2, 1, 2, int64(i))
	}
	if _, err := j.Append(context.Background(), envs); err != nil {
		t.Fatal(err)
	}
	read := func() {
		count := 0
		for _, err := range j.Read(context.Background(), 1) {
			if err != nil {
				t.Fatal(err)
			}
			count++
		}
		if count != n {
			t.Fatalf("read %d events, want %d", count, n)
		}
	}
	allocs := testing.AllocsPerRun(5, read)
	if perEvent := allocs / n; perEvent > 1.1 {
		t.Errorf("reading allocates %.2f objects per check event, want about 1", perEvent)
	}
}

// TestDecodedEnvelopesOutliveTheFile: the decoded envelopes hold no byte of
// bbolt's mmap, whose pages are unmapped when the journal is closed.
func TestDecodedEnvelopesOutliveTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	j, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	var want []*pb.Envelope
	for i := range 50 {
		e := codecEnvelope(uint8(i%4), 0, 0, int64(i)*int64(time.Second), "proxy-"+string(rune('a'+i%5)), "src", 0,
			1, 502, "refused "+string(rune('a'+i)), uint8(i), int64(i), 2, 3)
		if i%4 == 2 {
			e.Event = &pb.Envelope_CheckSucceeded{CheckSucceeded: &pb.CheckSucceeded{StatusCode: 204}}
		}
		if _, err := j.Append(context.Background(), []*pb.Envelope{e}); err != nil {
			t.Fatal(err)
		}
		want = append(want, proto.Clone(e).(*pb.Envelope))
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := OpenBolt(path, WithReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	var got []*pb.Envelope
	for e, err := range r.Read(context.Background(), 1) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e)
	}
	for e, err := range r.ReadStream(context.Background(), "proxy-a", 1) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want)+10 {
		t.Fatalf("read %d envelopes, want %d", len(got), len(want)+10)
	}
	for i, w := range want {
		if !proto.Equal(got[i], w) {
			t.Errorf("event %d after close: %v, want %v", i+1, got[i], w)
		}
	}
	for k, i := 0, 0; i < len(want); i += 5 {
		if g := got[len(want)+k]; !proto.Equal(g, want[i]) {
			t.Errorf("stream event %d after close: %v, want %v", k+1, g, want[i])
		}
		k++
	}
}

// TestInternerKeepsProxyIDs checks that the interner keeps a pool's proxy
// IDs: after a first pass over 1,000 of them (those of BenchmarkReplay,
// journaltest.ProxyID), a second copies hardly any (5 of them share a set
// of the table, and evict each other; when the table was direct mapped,
// 216 shared a slot).
func TestInternerKeepsProxyIDs(t *testing.T) {
	ids := make([][]byte, 1000)
	for i := range ids {
		ids[i] = fmt.Appendf(nil, "%016x", uint64(i)*0x9e3779b97f4a7c15)
	}
	var in interner
	pass := func() {
		for _, id := range ids {
			if s, ok := in.str(id); !ok || s != string(id) {
				t.Fatalf("str(%s) = %q, %v", id, s, ok)
			}
		}
	}
	pass()
	if copies := testing.AllocsPerRun(3, pass); copies > 10 {
		t.Errorf("a second pass over %d proxy IDs copied %v of them", len(ids), copies)
	}
}
