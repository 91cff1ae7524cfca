package packed

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/events"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// roundTrip encodes s and checks Decode gives it back exactly; it reports
// whether Encode took s.
func roundTrip(t *testing.T, s events.State) bool {
	t.Helper()
	b, ok := Encode([]byte("x"), s, s.ProxyID)
	if !ok {
		if string(b) != "x" {
			t.Fatalf("Encode refused %+v but appended", s)
		}
		return false
	}
	got, err := Decode(b[1:], s.ProxyID)
	if err != nil || got != s {
		t.Fatalf("Decode(Encode(s)) = %+v, %v\nwant %+v", got, err, s)
	}
	return true
}

// TestCodecSim encodes every state a random simulation goes through, with
// values the simulation leaves alone set too.
func TestCodecSim(t *testing.T) {
	size, n := 0, 0
	simStates(func(i int, id string, s events.State) {
		if i%3 == 0 {
			s.Tags, s.ExitIP, s.Weight, s.Anonymity = "a,b", "192.0.2.1", 2.5, pb.Anonymity_ANONYMITY_ELITE
			s.Origin, s.HasCredentials = pb.ProxyOrigin(2), true
		}
		if !roundTrip(t, s) {
			t.Fatalf("a state from events is refused: %+v", s)
		}
		b, _ := Encode(nil, s, id)
		size += len(b)
		n++
	})
	t.Logf("%d states, %.0f bytes on average", n, float64(size)/float64(n))
}

// TestCodecEdges covers extreme values that must come back, and the states
// Encode must refuse.
func TestCodecEdges(t *testing.T) {
	base := events.NewState("p1")
	base.Added, base.AddedAt = true, time.Unix(0, 1_700_000_000_123_456_789).UTC()
	extreme := base
	extreme.LastCheckAt = time.Unix(0, math.MaxInt64).UTC()
	extreme.LastChangeAt = time.Unix(0, math.MinInt64+1).UTC()
	extreme.EjectedUntil = time.Unix(0, -5).UTC()
	extreme.TotalChecks, extreme.Seq, extreme.StreamSeq = math.MaxUint64, math.MaxUint64, 1
	extreme.ConsecutiveFailures, extreme.LastStatusCode = math.MaxUint32, math.MaxUint32
	extreme.Health, extreme.Anonymity, extreme.LastErrorClass = pb.HealthState(math.MaxInt32), pb.Anonymity(math.MinInt32), pb.FailureClass(-1)
	extreme.LatencyEWMA, extreme.LastLatency.Total = math.MinInt64, math.MaxInt64
	extreme.Weight = math.Inf(-1)
	extreme.LastError = string(make([]byte, 300))
	for name, s := range map[string]events.State{"base": base, "extreme": extreme, "empty": events.NewState("")} {
		if !roundTrip(t, s) {
			t.Errorf("%s: refused", name)
		}
	}
	nan := base
	nan.Weight = math.NaN()
	if b, ok := Encode(nil, nan, "p1"); !ok {
		t.Error("NaN weight refused")
	} else if got, err := Decode(b, "p1"); err != nil || !math.IsNaN(got.Weight) {
		t.Errorf("NaN weight: %v, %v", got.Weight, err)
	}
	epoch := base
	epoch.LastCheckAt = time.Unix(0, 0).UTC()
	local := base
	local.LastChangeAt = time.Unix(5, 0)
	mono := base
	mono.EjectedUntil = time.Now()
	far := base
	far.AdoptedAt = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)
	for name, s := range map[string]events.State{"epoch": epoch, "local": local, "mono": mono, "far": far} {
		if roundTrip(t, s) {
			t.Errorf("%s: taken, though it cannot come back", name)
		}
	}
	if _, ok := Encode(nil, base, "other"); ok {
		t.Error("a state with another ID was taken")
	}
}

// TestDecodeBad: truncated or altered encodings are refused, not misread.
func TestDecodeBad(t *testing.T) {
	s := events.NewState("p1")
	s.Source, s.URLRedacted, s.TotalChecks = "src", "http://h:1", 7
	b, _ := Encode(nil, s, "p1")
	for i := range len(b) {
		if _, err := Decode(b[:i], "p1"); !errors.Is(err, ErrBadEncoding) {
			t.Fatalf("a truncation to %d bytes decoded (err %v)", i, err)
		}
	}
	if _, err := Decode(append(b[:len(b):len(b)], 0), "p1"); !errors.Is(err, ErrBadEncoding) {
		t.Fatalf("trailing bytes decoded (err %v)", err)
	}
	bad := append([]byte(nil), b...)
	bad[0] = 9
	if _, err := Decode(bad, "p1"); !errors.Is(err, ErrBadEncoding) {
		t.Fatalf("another version decoded (err %v)", err)
	}
}

// BenchmarkCodec encodes and decodes a typical healthy proxy's state.
func BenchmarkCodec(b *testing.B) {
	s := events.NewState("0123456789abcdef")
	s.Added, s.Source, s.URLRedacted, s.Health = true, "list", "http://203.0.113.7:3128", pb.HealthState_HEALTH_STATE_HEALTHY
	s.AddedAt = time.Unix(0, 1_764_900_000_123_456_789).UTC()
	s.LastCheckAt, s.LastChangeAt = s.AddedAt.Add(time.Hour), s.AddedAt.Add(time.Second)
	s.TotalChecks, s.ConsecutiveSuccesses, s.StreamSeq, s.Seq = 360, 359, 362, 3_600_000
	s.LastLatency = events.Latency{Connect: 20 * time.Millisecond, FirstByte: 80 * time.Millisecond, Total: 95 * time.Millisecond}
	s.LatencyEWMA, s.HasLatencyEWMA = 93*time.Millisecond, true
	var buf []byte
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			buf, _ = Encode(buf[:0], s, s.ProxyID)
		}
		b.ReportMetric(float64(len(buf)), "bytes")
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := Decode(buf, s.ProxyID); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("pack-unpack", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			p := Pack(&s, s.ProxyID)
			_ = p.Unpack(s.ProxyID)
		}
	})
}
