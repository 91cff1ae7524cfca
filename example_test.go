package proxyhealth_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/proxyhealth/proxyhealth"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// A proxy's journal, as Engine.ReadJournal or Archive.ReadJournal yield it
// for JournalFilter{Proxy: id}, told as a story. (Engine.Explain and
// Archive.Explain do the reading; `proxyhealth journal explain PROXY`
// prints the same.)
func ExampleExplain() {
	at := func(min, sec int) int64 { return time.Date(2026, 3, 4, 10, min, sec, 0, time.UTC).UnixNano() }
	ms := func(n int64) *pb.Latency { return &pb.Latency{TotalNs: n * int64(time.Millisecond)} }
	refused := &pb.CheckFailed{Class: pb.FailureClass_FAILURE_CLASS_REFUSED, Message: "connection refused"}
	change := func(from, to pb.HealthState, attempt uint32, reason string) *pb.Envelope {
		return &pb.Envelope{Event: &pb.Envelope_StateChanged{StateChanged: &pb.StateChanged{From: from, To: to, RecoveryAttempt: attempt, Reason: reason}}}
	}
	const (
		unknown    = pb.HealthState_HEALTH_STATE_UNKNOWN
		healthy    = pb.HealthState_HEALTH_STATE_HEALTHY
		degraded   = pb.HealthState_HEALTH_STATE_DEGRADED
		unhealthy  = pb.HealthState_HEALTH_STATE_UNHEALTHY
		recovering = pb.HealthState_HEALTH_STATE_RECOVERING
	)
	journal := []struct {
		at  int64
		env *pb.Envelope
	}{
		{at(0, 0), &pb.Envelope{Event: &pb.Envelope_ProxyAdded{ProxyAdded: &pb.ProxyAdded{UrlRedacted: "socks5://10.0.0.7:1080", Source: "residential", HasCredentials: true}}}},
		{at(0, 0), &pb.Envelope{Event: &pb.Envelope_CheckSucceeded{CheckSucceeded: &pb.CheckSucceeded{Latency: ms(42)}}}},
		{at(0, 0), change(unknown, healthy, 0, "first check succeeded")},
		{at(0, 30), &pb.Envelope{Event: &pb.Envelope_CheckSucceeded{CheckSucceeded: &pb.CheckSucceeded{Latency: ms(55)}}}},
		{at(1, 0), &pb.Envelope{Event: &pb.Envelope_CheckSucceeded{CheckSucceeded: &pb.CheckSucceeded{Latency: ms(40)}}}},
		{at(1, 30), &pb.Envelope{Event: &pb.Envelope_CheckFailed{CheckFailed: refused}}},
		{at(1, 30), change(healthy, degraded, 0, "check failed: refused")},
		{at(1, 31), &pb.Envelope{Event: &pb.Envelope_CheckFailed{CheckFailed: refused}}},
		{at(1, 32), &pb.Envelope{Event: &pb.Envelope_CheckFailed{CheckFailed: refused}}},
		{at(1, 32), change(degraded, unhealthy, 0, "3 consecutive failures (threshold 3), last: refused")},
		{at(2, 32), change(unhealthy, recovering, 1, "cooldown expired, recovery attempt 1")},
		{at(2, 33), &pb.Envelope{Event: &pb.Envelope_CheckSucceeded{CheckSucceeded: &pb.CheckSucceeded{Latency: ms(48)}}}},
		{at(2, 34), &pb.Envelope{Event: &pb.Envelope_CheckSucceeded{CheckSucceeded: &pb.CheckSucceeded{Latency: ms(47)}}}},
		{at(2, 34), change(recovering, healthy, 0, "2 consecutive successes (threshold 2)")},
		{at(3, 0), &pb.Envelope{Event: &pb.Envelope_PassiveFailureReported{PassiveFailureReported: &pb.PassiveFailureReported{Class: pb.FailureClass_FAILURE_CLASS_RESET, Consecutive: 1}}}},
		{at(3, 1), &pb.Envelope{Event: &pb.Envelope_PassiveFailureReported{PassiveFailureReported: &pb.PassiveFailureReported{Class: pb.FailureClass_FAILURE_CLASS_RESET, Consecutive: 2}}}},
		{at(3, 2), &pb.Envelope{Event: &pb.Envelope_PassiveFailureReported{PassiveFailureReported: &pb.PassiveFailureReported{Class: pb.FailureClass_FAILURE_CLASS_RESET, Consecutive: 3}}}},
		{at(3, 2), &pb.Envelope{Event: &pb.Envelope_ProxyEjected{ProxyEjected: &pb.ProxyEjected{Class: pb.FailureClass_FAILURE_CLASS_RESET, Consecutive: 3, Multiplier: 1, UntilUnixNano: at(3, 32)}}}},
		{at(3, 32), &pb.Envelope{Event: &pb.Envelope_ProxyReturned{ProxyReturned: &pb.ProxyReturned{Reason: "ejection of 30s ended"}}}},
	}
	events := func(yield func(*pb.Envelope, error) bool) {
		for i, e := range journal {
			e.env.Seq, e.env.StreamSeq, e.env.AtUnixNano = uint64(i+1), uint64(i+1), e.at
			e.env.ProxyId, e.env.Source = "5d1e7b0c9a2f4e61", "residential"
			if !yield(e.env, nil) {
				return
			}
		}
	}

	story, err := proxyhealth.Explain(events)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(story)
	// Output:
	// proxy 5d1e7b0c9a2f4e61 socks5://10.0.0.7:1080 (source "residential"): healthy since 2026-03-04T10:02:34Z
	// 2026-03-04T10:00:00Z  added: socks5://10.0.0.7:1080 in source "residential" (its URL carries credentials; they are never stored)
	// 2026-03-04T10:00:00Z  3 checks passed between 10:00:00 and 10:01:00, latency 40–55 ms
	// 2026-03-04T10:00:00Z  healthy since 10:00:00: first check succeeded
	// 2026-03-04T10:01:30Z  3 checks failed between 10:01:30 and 10:01:32: refused ×3 (connection refused)
	// 2026-03-04T10:01:30Z  degraded (still in rotation): check failed: refused
	// 2026-03-04T10:01:32Z  went unhealthy (out of rotation) after 3 consecutive failures (threshold 3), last: refused
	// 2026-03-04T10:02:32Z  recovery attempt 1 after a 1m0s cooldown: succeeded, healthy again after 2 passed checks
	// 2026-03-04T10:03:02Z  ejected from rotation for 30s after 3 failures of real traffic (reset ×3, between 10:03:00 and 10:03:02); traffic avoided it until 10:03:32
	// 2026-03-04T10:03:32Z  returned to rotation: ejection ended after 30s
}

// An engine without a data directory keeps its journal in memory: for
// tests and short-lived programs. Close stops everything it started.
func ExampleOpen() {
	ctx := context.Background()
	eng, err := proxyhealth.Open(ctx, proxyhealth.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer eng.Close(ctx)
	fmt.Println("proxies:", eng.Status().Summary().Total)
	fmt.Println("journal events:", eng.JournalHead())
	// Output:
	// proxies: 0
	// journal events: 0
}

// Pick hands out a usable proxy for real traffic; with none to hand out
// it says so with ErrNoProxy.
func ExampleEngine_Pick() {
	ctx := context.Background()
	eng, err := proxyhealth.Open(ctx, proxyhealth.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer eng.Close(ctx)
	p, err := eng.Pick(proxyhealth.PickRequest{Strategy: proxyhealth.RoundRobin})
	if errors.Is(err, proxyhealth.ErrNoProxy) {
		fmt.Println("no proxy to hand out")
		return
	}
	fmt.Println("route through", p.URL.Redacted())
	// Output:
	// no proxy to hand out
}

// ReportOutcome tells the engine what real traffic through a proxy saw;
// three failures of the proxy's own in a row eject it from rotation for a
// while. A failure that is not the proxy's (too_slow, content_mismatch)
// is refused with ErrBadOutcome.
func ExampleEngine_ReportOutcome() {
	ctx := context.Background()
	eng, err := proxyhealth.Open(ctx, proxyhealth.Config{Sources: []proxyhealth.SourceConfig{{
		Name:    "lab",
		Probe:   proxyhealth.ProbeConfig{TargetURL: "http://probe.test/generate_204", Timeout: time.Second},
		Proxies: []string{"http://127.0.0.1:1"}, // nothing listens there: its checks fail
	}}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer eng.Close(ctx)
	id, _ := proxyhealth.ResolveProxyID("http://127.0.0.1:1")
	fmt.Println(eng.ReportOutcome(proxyhealth.Outcome{ProxyID: id, Class: "timeout", Latency: 5 * time.Second}))
	fmt.Println(eng.ReportOutcome(proxyhealth.Outcome{ProxyID: id, OK: true, Latency: 80 * time.Millisecond}))
	err = eng.ReportOutcome(proxyhealth.Outcome{ProxyID: id, Class: "too_slow"})
	fmt.Println(errors.Is(err, proxyhealth.ErrBadOutcome))
	err = eng.ReportOutcome(proxyhealth.Outcome{ProxyID: "0000000000000000", OK: true})
	fmt.Println(errors.Is(err, proxyhealth.ErrUnknownProxy))
	// Output:
	// <nil>
	// <nil>
	// true
	// true
}
