package events

import (
	"slices"
	"testing"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
	"google.golang.org/protobuf/proto"
)

// FuzzEnvelope decodes arbitrary bytes as a journal envelope (as replay
// does with what it reads from the journal) and feeds whatever decodes to
// Evolve, RecordOf, TypeName, the snapshot conversion and then Decide on
// the resulting state. None of it may panic; TypeName names a known event
// or says "unknown", RecordOf agrees with it, and an envelope without an
// event only advances the sequence numbers (Evolve's documented contract).
func FuzzEnvelope(f *testing.F) {
	lat := &pb.Latency{ConnectNs: 1e6, FirstByteNs: 2e6, TotalNs: 3e6}
	seeds := []*pb.Envelope{
		{Seq: 1, StreamSeq: 1, AtUnixNano: t0.UnixNano(), ProxyId: testID, Source: "src",
			Event: &pb.Envelope_ProxyAdded{ProxyAdded: &pb.ProxyAdded{UrlRedacted: "http://10.0.0.7:3128", Source: "src", Tags: []string{"eu", "fast"}, Weight: 2}}},
		{Seq: 2, StreamSeq: 2, ProxyId: testID,
			Event: &pb.Envelope_CheckFailed{CheckFailed: &pb.CheckFailed{Class: pb.FailureClass_FAILURE_CLASS_TIMEOUT, Message: "boom", Latency: lat}}},
		{Seq: 3, ProxyId: testID, Event: &pb.Envelope_CheckSucceeded{CheckSucceeded: &pb.CheckSucceeded{StatusCode: 204, Latency: lat}}},
		{Seq: 4, ProxyId: testID, Event: &pb.Envelope_StateChanged{StateChanged: &pb.StateChanged{From: pb.HealthState(1), To: pb.HealthState(99), RecoveryAttempt: 1 << 31}}},
		{Seq: 5, ProxyId: testID, Event: &pb.Envelope_ProxyEjected{ProxyEjected: &pb.ProxyEjected{Class: pb.FailureClass(-1), UntilUnixNano: -1 << 63, Multiplier: 1<<32 - 1}}},
		{Seq: 6, ProxyId: testID, Event: &pb.Envelope_PoolDegraded{PoolDegraded: &pb.PoolDegraded{Healthy: 1, Total: 0, HealthyPercentage: 1e308}}},
		{Seq: 7, AtUnixNano: 1<<63 - 1, ProxyId: testID, Event: &pb.Envelope_ProxyMetadataChanged{ProxyMetadataChanged: &pb.ProxyMetadataChanged{Tags: []string{"", ","}, Weight: -1}}},
		{Seq: 8, ProxyId: testID}, // no event
	}
	for i, env := range seeds {
		b, err := proto.Marshal(env)
		if err != nil {
			f.Fatalf("seed %d: %v", i, err)
		}
		f.Add(b, uint8(i))
	}
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}, uint8(0)) // length beyond the input
	f.Add([]byte{}, uint8(1))

	cfg := DefaultConfig()
	// base is an added, checked, healthy-or-not proxy: the state a journal
	// replay would have in hand when the fuzzed envelope arrives.
	base, _ := script(f, cfg, add(), ok(), ok(), fail())
	f.Fuzz(func(t *testing.T, data []byte, which uint8) {
		env := &pb.Envelope{}
		if err := proto.Unmarshal(data, env); err != nil {
			return
		}
		name := TypeName(env)
		if name != "unknown" && !slices.Contains(TypeNames, name) {
			t.Fatalf("TypeName %q is neither in TypeNames nor \"unknown\"", name)
		}
		if rec := RecordOf(env); rec.Type != name || rec.Seq != env.GetSeq() || rec.ProxyID != env.GetProxyId() {
			t.Fatalf("RecordOf %+v disagrees with the envelope (type %q)", rec, name)
		}
		if !proto.Equal(Clone(env), env) {
			t.Fatal("Clone differs from the envelope")
		}
		for _, s0 := range []State{NewState(env.GetProxyId()), base} {
			s := Evolve(s0, env)
			if env.GetEvent() == nil {
				want := s0
				if env.GetSeq() != 0 {
					want.Seq = env.GetSeq()
				}
				if env.GetStreamSeq() != 0 {
					want.StreamSeq = env.GetStreamSeq()
				}
				if s != want {
					t.Fatalf("an envelope without an event changed the state:\n got %+v\nwant %+v", s, want)
				}
			}
			_ = FromSnapshot(ToSnapshot(s))
			_, _ = NextCheckAt(s, cfg, 0.5)
			_ = s.Usable()
			_ = s.TagList()
			cmds := []Command{ok(), fail(), slow(), cool(), passiveFail(), passiveOK(), expired(), pause(), resume(), revive(), cfgChanged(), remove()}
			cmd := withAt(cmds[int(which)%len(cmds)], At(env))
			out, err := Decide(s, cmd, cfg)
			if err != nil {
				continue
			}
			_ = Fold(s, out...)
		}
	})
}
