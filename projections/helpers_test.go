package projections_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/internal/gen"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// committed returns n random events as committed by a journal (seqs set).
func committed(t testing.TB, seed uint64, proxies, n int) []*pb.Envelope {
	t.Helper()
	j := journal.NewMem()
	defer j.Close()
	sim := gen.NewSim(seed, proxies)
	if _, err := j.Append(context.Background(), sim.Events(n)); err != nil {
		t.Fatal(err)
	}
	return readAll(t, j)
}

func readAll(t testing.TB, j journal.Journal) []*pb.Envelope {
	t.Helper()
	var out []*pb.Envelope
	for e, err := range j.Read(context.Background(), 1) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// recount recomputes the summary's counts from every proxy view: the
// reference the incremental counts are checked against.
func recount(l *projections.Live) (projections.Counts, map[string]projections.Counts) {
	_, all := l.List(projections.ListFilter{}, 0, math.MaxInt32)
	var g projections.Counts
	src := map[string]projections.Counts{}
	for _, v := range all {
		c := src[v.Source]
		for _, p := range []*projections.Counts{&g, &c} {
			p.Total++
			switch v.State {
			case "unknown":
				p.Unknown++
			case "healthy":
				p.Healthy++
			case "degraded":
				p.Degraded++
			case "unhealthy":
				p.Unhealthy++
			case "recovering":
				p.Recovering++
			case "failed":
				p.Failed++
			}
			if v.Checking {
				p.Checking++
			}
			if v.Paused {
				p.Paused++
			}
			if v.Ejected {
				p.Ejected++
			}
			if p.Total > 0 {
				p.HealthPercentage = float64(p.Healthy) * 100 / float64(p.Total)
			}
		}
		src[v.Source] = c
	}
	return g, src
}

// checkInvariants verifies the summary against a recount and the
// total == sum of the six counts invariant.
func checkInvariants(l *projections.Live) error {
	s := l.Summary()
	sum := func(c projections.Counts) int {
		return c.Unknown + c.Healthy + c.Degraded + c.Unhealthy + c.Recovering + c.Failed
	}
	if sum(s.Counts) != s.Total {
		return fmt.Errorf("total %d != sum of states %d: %+v", s.Total, sum(s.Counts), s.Counts)
	}
	g, src := recount(l)
	if g != s.Counts {
		return fmt.Errorf("summary counts %+v, recount %+v", s.Counts, g)
	}
	if len(src) != len(s.Sources) {
		return fmt.Errorf("summary has %d sources, recount %d", len(s.Sources), len(src))
	}
	total := 0
	for _, ss := range s.Sources {
		if sum(ss.Counts) != ss.Total {
			return fmt.Errorf("source %s: total %d != sum %d", ss.Name, ss.Total, sum(ss.Counts))
		}
		if src[ss.Name] != ss.Counts {
			return fmt.Errorf("source %s: summary %+v, recount %+v", ss.Name, ss.Counts, src[ss.Name])
		}
		total += ss.Total
	}
	if total != s.Total {
		return fmt.Errorf("sources add up to %d, total %d", total, s.Total)
	}
	if !slices.IsSortedFunc(s.Sources, func(a, b projections.SourceSummary) int { return compare(a.Name, b.Name) }) {
		return fmt.Errorf("sources not sorted")
	}
	return nil
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// env builds a committed envelope by hand.
func env(seq, streamSeq uint64, at time.Time, id string, ev any) *pb.Envelope {
	e := &pb.Envelope{Seq: seq, StreamSeq: streamSeq, AtUnixNano: at.UnixNano(), ProxyId: id, Source: "s"}
	switch v := ev.(type) {
	case *pb.ProxyAdded:
		e.Event = &pb.Envelope_ProxyAdded{ProxyAdded: v}
		e.Source = v.Source
	case *pb.CheckSucceeded:
		e.Event = &pb.Envelope_CheckSucceeded{CheckSucceeded: v}
	case *pb.CheckFailed:
		e.Event = &pb.Envelope_CheckFailed{CheckFailed: v}
	case *pb.StateChanged:
		e.Event = &pb.Envelope_StateChanged{StateChanged: v}
	case *pb.ProxyRemoved:
		e.Event = &pb.Envelope_ProxyRemoved{ProxyRemoved: v}
	case *pb.ProxyPaused:
		e.Event = &pb.Envelope_ProxyPaused{ProxyPaused: v}
	case *pb.ProxyAdopted:
		e.Event = &pb.Envelope_ProxyAdopted{ProxyAdopted: v}
	case *pb.PoolDegraded:
		e.Event = &pb.Envelope_PoolDegraded{PoolDegraded: v}
	case *pb.PoolRecovered:
		e.Event = &pb.Envelope_PoolRecovered{PoolRecovered: v}
	default:
		panic(fmt.Sprintf("env: %T", ev))
	}
	return e
}

func ok(ms int) *pb.CheckSucceeded {
	return &pb.CheckSucceeded{StatusCode: 204, Latency: &pb.Latency{TotalNs: int64(ms) * int64(time.Millisecond)}}
}

func fail(c pb.FailureClass) *pb.CheckFailed {
	return &pb.CheckFailed{Class: c, Message: "boom", Latency: &pb.Latency{TotalNs: int64(time.Second)}}
}

func change(from, to pb.HealthState) *pb.StateChanged {
	return &pb.StateChanged{From: from, To: to, Reason: events.StateName(from) + "→" + events.StateName(to)}
}

// script numbers hand-made envelopes: seq from 1, stream_seq per proxy,
// one second apart from t0 unless addAt gives the time.
type script struct {
	seq     uint64
	streams map[string]uint64
	now     time.Time
	id      string
	out     []*pb.Envelope
}

func newScript(id string, t0 time.Time) *script {
	return &script{id: id, now: t0, streams: map[string]uint64{}}
}

// as switches the proxy the next envelopes are for.
func (s *script) as(id string) *script { s.id = id; return s }

func (s *script) add(ev any) *script { return s.addAt(s.now.Add(time.Second), ev) }

func (s *script) addAt(at time.Time, ev any) *script {
	s.now = at
	s.seq++
	id := s.id
	switch ev.(type) {
	case *pb.PoolDegraded, *pb.PoolRecovered:
		id = ""
	}
	var st uint64
	if id != "" {
		s.streams[id]++
		st = s.streams[id]
	}
	s.out = append(s.out, env(s.seq, st, at, id, ev))
	return s
}
