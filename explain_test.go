package proxyhealth_test

import (
	"context"
	"errors"
	"iter"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
	"github.com/proxyhealth/proxyhealth/journal"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

const storyProxy = "00000000000000a1"

// storyBuilder hand-builds one proxy's journal events, numbering them as
// the journal would (seq, stream seq, prev seq).
type storyBuilder struct {
	base time.Time
	envs []*pb.Envelope
}

func newStory() *storyBuilder {
	return &storyBuilder{base: time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)}
}

func (b *storyBuilder) add(at time.Duration, env *pb.Envelope) *storyBuilder {
	n := uint64(len(b.envs)) + 1
	env.Seq, env.StreamSeq, env.PrevSeq = n, n, n-1
	env.AtUnixNano = b.base.Add(at).UnixNano()
	env.ProxyId, env.Source = storyProxy, "lab"
	b.envs = append(b.envs, env)
	return b
}

func (b *storyBuilder) added(at time.Duration, url string, creds bool) *storyBuilder {
	return b.add(at, &pb.Envelope{Event: &pb.Envelope_ProxyAdded{ProxyAdded: &pb.ProxyAdded{UrlRedacted: url, Source: "lab", HasCredentials: creds}}})
}

func (b *storyBuilder) ok(at time.Duration, ms int) *storyBuilder {
	lat := &pb.Latency{TotalNs: int64(ms) * int64(time.Millisecond)}
	return b.add(at, &pb.Envelope{Event: &pb.Envelope_CheckSucceeded{CheckSucceeded: &pb.CheckSucceeded{Latency: lat, StatusCode: 204}}})
}

func (b *storyBuilder) fail(at time.Duration, class pb.FailureClass, msg string) *storyBuilder {
	return b.add(at, &pb.Envelope{Event: &pb.Envelope_CheckFailed{CheckFailed: &pb.CheckFailed{Class: class, Message: msg, Latency: &pb.Latency{TotalNs: 1e6}}}})
}

func (b *storyBuilder) change(at time.Duration, from, to pb.HealthState, attempt uint32, reason string) *storyBuilder {
	return b.add(at, &pb.Envelope{Event: &pb.Envelope_StateChanged{StateChanged: &pb.StateChanged{From: from, To: to, Reason: reason, RecoveryAttempt: attempt}}})
}

func (b *storyBuilder) passive(at time.Duration, class pb.FailureClass, n uint32) *storyBuilder {
	return b.add(at, &pb.Envelope{Event: &pb.Envelope_PassiveFailureReported{PassiveFailureReported: &pb.PassiveFailureReported{Class: class, Consecutive: n}}})
}

func (b *storyBuilder) eject(at time.Duration, class pb.FailureClass, n uint32, d time.Duration, mult uint32) *storyBuilder {
	until := b.base.Add(at + d).UnixNano()
	return b.add(at, &pb.Envelope{Event: &pb.Envelope_ProxyEjected{ProxyEjected: &pb.ProxyEjected{Class: class, Consecutive: n, UntilUnixNano: until, Multiplier: mult}}})
}

func (b *storyBuilder) returned(at time.Duration) *storyBuilder {
	return b.add(at, &pb.Envelope{Event: &pb.Envelope_ProxyReturned{ProxyReturned: &pb.ProxyReturned{Reason: "ejection ended"}}})
}

func (b *storyBuilder) pool(at time.Duration) *storyBuilder {
	env := &pb.Envelope{Event: &pb.Envelope_PoolPanicEntered{PoolPanicEntered: &pb.PoolPanicEntered{Usable: 1, Candidates: 10, ThresholdPercentage: 50}}}
	b.add(at, env)
	env.ProxyId, env.Source, env.StreamSeq, env.PrevSeq = "", "", 0, 0
	return b
}

// all yields the envelopes as ReadJournal does.
func (b *storyBuilder) all() iter.Seq2[*pb.Envelope, error] {
	return func(yield func(*pb.Envelope, error) bool) {
		for _, env := range b.envs {
			if !yield(env, nil) {
				return
			}
		}
	}
}

// records yields the envelopes flattened, as GET /v1/journal serves them.
func (b *storyBuilder) records() iter.Seq2[proxyhealth.Record, error] {
	return func(yield func(proxyhealth.Record, error) bool) {
		for _, env := range b.envs {
			if !yield(proxyhealth.RecordOf(env), nil) {
				return
			}
		}
	}
}

const (
	stUnknown    = pb.HealthState_HEALTH_STATE_UNKNOWN
	stHealthy    = pb.HealthState_HEALTH_STATE_HEALTHY
	stDegraded   = pb.HealthState_HEALTH_STATE_DEGRADED
	stUnhealthy  = pb.HealthState_HEALTH_STATE_UNHEALTHY
	stRecovering = pb.HealthState_HEALTH_STATE_RECOVERING
	stFailed     = pb.HealthState_HEALTH_STATE_FAILED
	clRefused    = pb.FailureClass_FAILURE_CLASS_REFUSED
	clTimeout    = pb.FailureClass_FAILURE_CLASS_TIMEOUT
)

func storyTexts(s proxyhealth.Story) []string {
	var out []string
	for _, l := range s.Lines {
		out = append(out, l.Text)
	}
	return out
}

// TestExplainTellsEachKindOfSentence: every kind of event becomes its
// sentence, and runs of alike events fold into one.
func TestExplainTellsEachKindOfSentence(t *testing.T) {
	s, m := time.Second, time.Minute
	for _, tc := range []struct {
		name  string
		b     *storyBuilder
		want  []string
		state string
		now   string
	}{{
		name: "a run of passed checks folds into one sentence with the latency range",
		b: func() *storyBuilder {
			b := newStory().added(0, "socks5://10.0.0.7:1080", true).ok(0, 40).change(0, stUnknown, stHealthy, 0, "first check succeeded")
			for i := 1; i < 12; i++ {
				b.ok(time.Duration(i)*30*s, 40+i+i/3)
			}
			return b
		}(),
		want: []string{
			`added: socks5://10.0.0.7:1080 in source "lab" (its URL carries credentials; they are never stored)`,
			"12 checks passed between 10:00:00 and 10:05:30, latency 40–54 ms",
			"healthy since 10:00:00: first check succeeded",
		},
		state: "healthy",
		now:   "healthy since 2026-03-04T10:00:00Z",
	}, {
		name: "a cluster member takes the proxy over from another",
		b: newStory().added(0, "http://10.0.0.8:3128", false).add(0, &pb.Envelope{Event: &pb.Envelope_ProxyAdopted{ProxyAdopted: &pb.ProxyAdopted{
			FromMember: "10.1.0.2:7000", Previous: stUnknown, Reason: "taken over by cluster placement",
			State: &pb.ProxySnapshot{State: stRecovering, RecoveryAttempt: 2, LastCheckUnixNano: 1}}}}).ok(s, 40),
		want: []string{
			`added: http://10.0.0.8:3128 in source "lab"`,
			"taken over from cluster member 10.1.0.2:7000 in state recovering (was unknown here), recovery attempt 2: taken over by cluster placement: checked here from now on",
			"1 check passed at 10:00:01, latency 40 ms",
		},
		state: "recovering",
	}, {
		name: "failures fold by class, then unhealthy after the threshold",
		b: newStory().added(0, "http://10.0.0.8:3128", false).ok(0, 42).change(0, stUnknown, stHealthy, 0, "first check succeeded").
			fail(6*m+10*s, clRefused, "connection refused").change(6*m+10*s, stHealthy, stDegraded, 0, "check failed: refused").
			fail(6*m+11*s, clRefused, "connection refused").fail(6*m+12*s, clRefused, "connection refused").
			change(6*m+12*s, stDegraded, stUnhealthy, 0, "3 consecutive failures (threshold 3), last: refused"),
		want: []string{
			`added: http://10.0.0.8:3128 in source "lab"`,
			"1 check passed at 10:00:00, latency 42 ms",
			"healthy since 10:00:00: first check succeeded",
			"3 checks failed between 10:06:10 and 10:06:12: refused ×3 (connection refused)",
			"degraded (still in rotation): check failed: refused",
			"went unhealthy (out of rotation) after 3 consecutive failures (threshold 3), last: refused",
		},
		state: "unhealthy",
	}, {
		name: "mixed failure classes are counted each",
		b: newStory().added(0, "http://10.0.0.8:3128", false).fail(0, clTimeout, "i/o timeout").fail(s, clRefused, "connection refused").
			fail(2*s, clTimeout, "i/o timeout (again)"),
		want: []string{
			`added: http://10.0.0.8:3128 in source "lab"`,
			"3 checks failed between 10:00:00 and 10:00:02: timeout ×2 (i/o timeout (again)), refused (connection refused)",
		},
		state: "unknown",
	}, {
		name: "recovery attempts: the cooldown measured, failed, then succeeded",
		b: newStory().added(0, "http://10.0.0.9:80", false).
			fail(0, clRefused, "connection refused").change(0, stUnknown, stDegraded, 0, "check failed: refused").
			fail(s, clRefused, "connection refused").fail(2*s, clRefused, "connection refused").
			change(2*s, stDegraded, stUnhealthy, 0, "3 consecutive failures (threshold 3), last: refused").
			change(m+2*s, stUnhealthy, stRecovering, 1, "cooldown expired, recovery attempt 1").
			fail(m+3*s, clTimeout, "i/o timeout").change(m+3*s, stRecovering, stUnhealthy, 1, "recovery attempt 1 failed: timeout").
			change(3*m+3*s, stUnhealthy, stRecovering, 2, "cooldown expired, recovery attempt 2").
			ok(3*m+4*s, 50).ok(3*m+5*s, 60).change(3*m+5*s, stRecovering, stHealthy, 0, "2 consecutive successes (threshold 2)").
			ok(4*m, 45),
		want: []string{
			`added: http://10.0.0.9:80 in source "lab"`,
			"3 checks failed between 10:00:00 and 10:00:02: refused ×3 (connection refused)",
			"degraded (still in rotation): check failed: refused",
			"went unhealthy (out of rotation) after 3 consecutive failures (threshold 3), last: refused",
			"recovery attempt 1 after a 1m0s cooldown: failed: timeout (i/o timeout)",
			"recovery attempt 2 after a 2m0s cooldown: succeeded, healthy again after 2 passed checks",
			"1 check passed at 10:04:00, latency 45 ms",
		},
		state: "healthy",
	}, {
		name: "the last recovery attempt fails: gave up",
		b: newStory().added(0, "http://10.0.0.9:80", false).
			change(0, stRecovering, stUnhealthy, 4, "recovery attempt 4 failed: refused").
			change(16*m, stUnhealthy, stRecovering, 5, "cooldown expired, recovery attempt 5").
			ok(16*m+s, 30).fail(16*m+2*s, clRefused, "connection refused").
			change(16*m+2*s, stRecovering, stFailed, 5, "recovery attempt 5 of 5 failed: refused; giving up until revived"),
		want: []string{
			`added: http://10.0.0.9:80 in source "lab"`,
			"went unhealthy (out of rotation): recovery attempt 4 failed: refused",
			"recovery attempt 5 after a 16m0s cooldown: failed after 1 check passed: refused (connection refused)",
			"gave up: recovery attempt 5 of 5 failed: refused; giving up until revived; no more checks until revived",
		},
		state: "failed",
	}, {
		name: "a recovery attempt under way when the story ends",
		b: newStory().added(0, "http://10.0.0.9:80", false).change(0, stDegraded, stUnhealthy, 0, "3 consecutive failures (threshold 3), last: refused").
			change(30*s, stUnhealthy, stRecovering, 1, "cooldown expired, recovery attempt 1").ok(31*s, 30),
		want: []string{
			`added: http://10.0.0.9:80 in source "lab"`,
			"went unhealthy (out of rotation) after 3 consecutive failures (threshold 3), last: refused",
			"recovery attempt 1 after a 30s cooldown: under way (1 check passed so far)",
		},
		state: "recovering",
	}, {
		name: "passive failures eject it; the ejection's sentence tells how long traffic avoided it",
		b: newStory().added(0, "http://10.0.0.7:8080", false).ok(0, 40).change(0, stUnknown, stHealthy, 0, "first check succeeded").
			passive(7*m, clRefused, 1).passive(7*m+5*s, clRefused, 2).passive(7*m+10*s, clRefused, 3).
			eject(7*m+10*s, clRefused, 3, 30*s, 1).ok(7*m+10*s, 41).returned(7*m+40*s).
			passive(9*m, clTimeout, 1).add(9*m+s, &pb.Envelope{Event: &pb.Envelope_PassiveSuccessReported{PassiveSuccessReported: &pb.PassiveSuccessReported{}}}),
		want: []string{
			`added: http://10.0.0.7:8080 in source "lab"`,
			"1 check passed at 10:00:00, latency 40 ms",
			"healthy since 10:00:00: first check succeeded",
			"ejected from rotation for 30s after 3 failures of real traffic (refused ×3, between 10:07:00 and 10:07:10); traffic avoided it until 10:07:40",
			"1 check passed at 10:07:10, latency 41 ms",
			"returned to rotation: ejection ended after 30s",
			"1 failure of real traffic reported at 10:09:00: timeout",
			"real traffic through it succeeded again, ending a streak of 1 failure",
		},
		state: "healthy",
	}, {
		name: "a repeat ejection still under way, while unhealthy it stays out on return",
		b: newStory().added(0, "http://10.0.0.7:8080", false).passive(0, clRefused, 3).eject(0, clRefused, 3, 2*m, 2).
			change(30*s, stDegraded, stUnhealthy, 0, "3 consecutive failures (threshold 3), last: refused").returned(2 * m),
		want: []string{
			`added: http://10.0.0.7:8080 in source "lab"`,
			"ejected from rotation for 2m0s (repeat ejection, ×2) after 3 failures of real traffic (refused); traffic avoided it until 10:02:00",
			"went unhealthy (out of rotation) after 3 consecutive failures (threshold 3), last: refused",
			"ejection ended after 2m0s; still out of rotation: unhealthy",
		},
		state: "unhealthy",
	}, {
		name: "an ejection not over when the story ends",
		b:    newStory().added(0, "http://10.0.0.7:8080", false).passive(0, clRefused, 3).eject(0, clRefused, 3, 30*s, 1),
		want: []string{
			`added: http://10.0.0.7:8080 in source "lab"`,
			"ejected from rotation for 30s after 3 failures of real traffic (refused); traffic avoids it until 10:00:30",
		},
		state: "unknown",
		now:   "unknown since 2026-03-04T10:00:00Z, ejected from rotation",
	}, {
		name: "operator actions; the revive's state change is not told twice; pool events are not part of it",
		b: newStory().added(0, "http://10.0.0.7:8080", false).pool(s).
			add(2*s, &pb.Envelope{Event: &pb.Envelope_ProxyPaused{ProxyPaused: &pb.ProxyPaused{Reason: "paused by operator"}}}).
			add(3*s, &pb.Envelope{Event: &pb.Envelope_ProxyResumed{ProxyResumed: &pb.ProxyResumed{Reason: "resumed by operator"}}}).
			change(4*s, stDegraded, stUnhealthy, 0, "3 consecutive failures (threshold 3), last: refused").
			change(5*s, stUnhealthy, stRecovering, 1, "cooldown expired, recovery attempt 1").
			add(6*s, &pb.Envelope{Event: &pb.Envelope_ProxyRevived{ProxyRevived: &pb.ProxyRevived{Reason: "revived by operator"}}}).
			change(6*s, stRecovering, stUnknown, 0, "revived: revived by operator").
			add(7*s, &pb.Envelope{Event: &pb.Envelope_ProxyPaused{ProxyPaused: &pb.ProxyPaused{}}}).
			add(8*s, &pb.Envelope{Event: &pb.Envelope_ProxyRemoved{ProxyRemoved: &pb.ProxyRemoved{Reason: "its source is no longer configured"}}}),
		want: []string{
			`added: http://10.0.0.7:8080 in source "lab"`,
			"paused by operator: no checks, pickers skip it until resumed",
			"resumed by operator: checks resume",
			"went unhealthy (out of rotation) after 3 consecutive failures (threshold 3), last: refused",
			"recovery attempt 1 after a 1s cooldown: cut short by the revive",
			"revived by operator: back to unknown, checked at once",
			"paused: no checks, pickers skip it until resumed",
			"removed: its source is no longer configured",
		},
		state: "unknown",
		now:   "removed; it was unknown since 2026-03-04T10:00:06Z, paused",
	}, {
		name: "a re-added proxy starts afresh",
		b: newStory().added(0, "http://10.0.0.7:8080", false).
			add(s, &pb.Envelope{Event: &pb.Envelope_ProxyRemoved{ProxyRemoved: &pb.ProxyRemoved{Reason: "removed by operator"}}}).
			added(24*time.Hour, "http://10.0.0.7:8080", false).ok(24*time.Hour, 5).ok(24*time.Hour+s, 7),
		want: []string{
			`added: http://10.0.0.7:8080 in source "lab"`,
			"removed by operator",
			`added again: http://10.0.0.7:8080 in source "lab"`,
			"2 checks passed between 10:00:00 and 10:00:01, latency 5.0–7.0 ms",
		},
		state: "unknown",
		now:   "unknown since 2026-03-05T10:00:00Z",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := proxyhealth.Explain(tc.b.all())
			if err != nil {
				t.Fatal(err)
			}
			if got := storyTexts(st); !slices.Equal(got, tc.want) {
				t.Errorf("story:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if st.ProxyID != storyProxy || st.Source != "lab" || st.State != tc.state || st.URL == "" {
				t.Errorf("story of %s (%s, source %s): state %q, want %q", st.ProxyID, st.URL, st.Source, st.State, tc.state)
			}
			if tc.now != "" && st.Now() != tc.now {
				t.Errorf("Now() = %q, want %q", st.Now(), tc.now)
			}
			if st.Truncated || st.FirstSeq != 1 || st.LastSeq != uint64(len(tc.b.envs)) {
				t.Errorf("first seq %d, last %d (of %d), truncated %v", st.FirstSeq, st.LastSeq, len(tc.b.envs), st.Truncated)
			}
			for i, l := range st.Lines {
				if l.Seq == 0 || l.At.IsZero() || (i > 0 && (l.Seq <= st.Lines[i-1].Seq || l.At.Before(st.Lines[i-1].At))) {
					t.Errorf("line %d (%q) at %v seq %d is out of order", i, l.Text, l.At, l.Seq)
				}
			}
			// The records of GET /v1/journal tell the same story, but
			// for an ejection's planned length.
			rs, err := proxyhealth.ExplainRecords(tc.b.records())
			if err != nil {
				t.Fatal(err)
			}
			for i, want := range storyTexts(st) {
				if i >= len(rs.Lines) {
					t.Errorf("the records' story ends at line %d", i)
					break
				}
				got := rs.Lines[i].Text
				if strings.HasPrefix(want, "ejected") {
					if !strings.HasPrefix(got, "ejected from rotation after ") || (strings.Contains(want, "avoided it until") != strings.Contains(got, "avoided it until")) {
						t.Errorf("from records: %q\nfrom envelopes: %q", got, want)
					}
					continue
				}
				if got != want || rs.Lines[i].Seq != st.Lines[i].Seq || !rs.Lines[i].At.Equal(st.Lines[i].At) {
					t.Errorf("line %d from records: %q, from envelopes: %q", i, got, want)
				}
			}
		})
	}
}

// TestStoryString: the rendering is UTC whatever the local zone.
func TestStoryString(t *testing.T) {
	st, err := proxyhealth.Explain(newStory().added(0, "http://10.0.0.7:8080", false).ok(0, 40).change(0, stUnknown, stHealthy, 0, "first check succeeded").all())
	if err != nil {
		t.Fatal(err)
	}
	want := `proxy 00000000000000a1 http://10.0.0.7:8080 (source "lab"): healthy since 2026-03-04T10:00:00Z
2026-03-04T10:00:00Z  added: http://10.0.0.7:8080 in source "lab"
2026-03-04T10:00:00Z  1 check passed at 10:00:00, latency 40 ms
2026-03-04T10:00:00Z  healthy since 10:00:00: first check succeeded
`
	if got := st.String(); got != want {
		t.Errorf("String():\n%s\nwant:\n%s", got, want)
	}
}

// TestExplainErrors: no event of a proxy, events of two proxies, a read
// error and a history cut by retention.
func TestExplainErrors(t *testing.T) {
	if _, err := proxyhealth.Explain(newStory().pool(0).all()); !errors.Is(err, proxyhealth.ErrUnknownProxy) {
		t.Errorf("pool events only: %v, want ErrUnknownProxy", err)
	}
	b := newStory().added(0, "http://10.0.0.7:8080", false).ok(0, 1)
	b.envs[1].ProxyId = "00000000000000b2"
	if _, err := proxyhealth.Explain(b.all()); !errors.Is(err, proxyhealth.ErrNotOneProxy) || !strings.Contains(err.Error(), "00000000000000b2") {
		t.Errorf("two proxies: %v, want ErrNotOneProxy naming the second", err)
	}
	boom := errors.New("disk on fire")
	_, err := proxyhealth.Explain(func(yield func(*pb.Envelope, error) bool) { yield(nil, boom) })
	if !errors.Is(err, boom) {
		t.Errorf("read error: %v", err)
	}
	b = newStory().added(0, "http://10.0.0.7:8080", false).ok(0, 1).ok(time.Second, 2)
	b.envs = b.envs[1:]
	st, err := proxyhealth.Explain(b.all())
	if err != nil || !st.Truncated || !strings.Contains(st.Lines[0].Text, "retention deleted the older ones") || st.URL != "" {
		t.Errorf("truncated history: %+v, %v", st, err)
	}
	var r proxyhealth.Record
	r.At, r.ProxyID, r.Type = "yesterday", storyProxy, "check_succeeded"
	if _, err := proxyhealth.ExplainRecords(func(yield func(proxyhealth.Record, error) bool) { yield(r, nil) }); err == nil || !strings.Contains(err.Error(), `"yesterday"`) {
		t.Errorf("record with a bad time: %v", err)
	}
}

// TestExplainAnyHistoryOfTheStateMachine: whatever the state machine
// writes (random commands through events.Decide), the story has a
// sentence for it in journal order, never an empty one and never a
// state it was not in.
func TestExplainAnyHistoryOfTheStateMachine(t *testing.T) {
	cfg := events.DefaultConfig()
	cfg.MaxRecoveryAttempts = 3
	classes := []pb.FailureClass{clRefused, clTimeout, pb.FailureClass_FAILURE_CLASS_TOO_SLOW, pb.FailureClass_FAILURE_CLASS_RESET}
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 7))
		st := events.NewState(storyProxy)
		at := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
		var envs []*pb.Envelope
		cmds := []events.Command{events.Add{At: at, Source: "lab", URLRedacted: "http://10.0.0.7:8080"}}
		for range 300 {
			at = at.Add(time.Duration(r.IntN(60)+1) * time.Second)
			var c events.Command
			switch n := r.IntN(100); {
			case n < 40:
				c = events.CheckCompleted{At: at, Result: events.CheckResult{Latency: events.Latency{Total: time.Duration(r.IntN(200)) * time.Millisecond}}}
			case n < 70:
				c = events.CheckCompleted{At: at, Result: events.CheckResult{Class: classes[r.IntN(len(classes))], Message: "boom"}}
			case n < 78:
				c = events.CooldownExpired{At: at}
			case n < 88:
				c = events.PassiveOutcome{At: at, OK: r.IntN(3) == 0, Class: clRefused}
			case n < 92:
				c = events.EjectionExpired{At: at.Add(time.Hour)}
			case n < 94:
				c = events.Pause{At: at, Reason: "paused by operator"}
			case n < 96:
				c = events.Resume{At: at, Reason: "resumed by operator"}
			case n < 98:
				c = events.Revive{At: at, Reason: "revived by operator"}
			case n < 99:
				c = events.Remove{At: at, Reason: "removed by operator"}
			default:
				c = events.Add{At: at, Source: "lab", URLRedacted: "http://10.0.0.7:8080"}
			}
			cmds = append(cmds, c)
		}
		for _, c := range cmds {
			out, err := events.Decide(st, c, cfg)
			if err != nil {
				continue
			}
			for _, env := range out {
				n := uint64(len(envs)) + 1
				env.Seq, env.StreamSeq = n, n
				st = events.Evolve(st, env)
				envs = append(envs, env)
			}
		}
		story, err := proxyhealth.Explain(envSeq(envs))
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if story.State != events.StateName(st.Health) || story.Removed != st.Removed || story.Paused != st.Paused || story.Ejected != st.Ejected() {
			t.Errorf("seed %d: story ends %q (removed %v paused %v ejected %v), the state machine in %s %+v", seed, story.Now(), story.Removed, story.Paused, story.Ejected, events.StateName(st.Health), st)
		}
		for i, l := range story.Lines {
			if l.Text == "" || strings.Contains(l.Text, "does not know") || strings.Contains(l.Text, "state_") {
				t.Errorf("seed %d: line %d: %q", seed, i, l.Text)
			}
			if i > 0 && l.Seq <= story.Lines[i-1].Seq {
				t.Errorf("seed %d: line %d (%q) seq %d after %d", seed, i, l.Text, l.Seq, story.Lines[i-1].Seq)
			}
		}
	}
}

func envSeq(envs []*pb.Envelope) iter.Seq2[*pb.Envelope, error] {
	return func(yield func(*pb.Envelope, error) bool) {
		for _, env := range envs {
			if !yield(env, nil) {
				return
			}
		}
	}
}

// TestEngineExplain: a real engine over the fake farm. A proxy goes
// unhealthy (its fake proxy refuses), recovers (it answers again), is
// ejected by outcomes reported by real traffic and returns; its story,
// from the engine and from the data directory afterwards, says so in
// that order.
func TestEngineExplain(t *testing.T) {
	farm := startFarm(t, 2)
	dir := t.TempDir()
	h := fastHealth()
	h.EjectionTime, h.MaxEjectionTime = 300*time.Millisecond, time.Second
	e := open(t, proxyhealth.Config{DataDir: dir, Sources: []proxyhealth.SourceConfig{{Name: "farm", Health: h, Probe: farmProbe(), Proxies: []string{farm.URL(0), farm.URLWith(1, "http", "user", "s3cret")}}}})
	id, _ := proxyhealth.ResolveProxyID(farm.URL(0))
	waitState(t, e, id, stHealthy)
	if err := farm.Set(0, fakeproxy.Refuse()); err != nil {
		t.Fatal(err)
	}
	waitState(t, e, id, stUnhealthy)
	if err := farm.Set(0, fakeproxy.OK()); err != nil {
		t.Fatal(err)
	}
	waitState(t, e, id, stHealthy)
	for range 3 {
		if err := e.ReportOutcome(proxyhealth.Outcome{ProxyID: id, Class: "reset"}); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 10*time.Second, "the ejection to be journaled and to end", func() bool {
		n := 0
		for range e.ReadJournal(context.Background(), proxyhealth.JournalFilter{Proxy: id, Types: []string{"proxy_returned"}}) {
			n++
		}
		return n > 0
	})

	want := []string{
		"added: " + farm.URL(0),
		"healthy since",
		"checks? failed .*: refused",
		"went unhealthy \\(out of rotation\\) after 3 consecutive failures \\(threshold 3\\), last: refused",
		"recovery attempt 1 after a [0-9.]+m?s cooldown: succeeded, healthy again after 2 passed checks",
		"ejected from rotation for 300ms after 3 failures of real traffic \\(reset ×3.*\\); traffic avoided it until",
		"returned to rotation: ejection ended after",
	}
	check := func(from string, st proxyhealth.Story) {
		t.Helper()
		if st.ProxyID != id || st.URL != farm.URL(0) || st.Source != "farm" {
			t.Errorf("%s: story of %s %s %s", from, st.ProxyID, st.URL, st.Source)
		}
		i := 0
		for _, l := range st.Lines {
			if i < len(want) && regexp.MustCompile(want[i]).MatchString(l.Text) {
				i++
			}
		}
		if i < len(want) {
			t.Errorf("%s: the story lacks, in order, %q (and what follows):\n%s", from, want[i], st)
		}
	}
	st, err := e.Explain(t.Context(), farm.URL(0))
	if err != nil {
		t.Fatal(err)
	}
	check("engine", st)
	t.Log(st)
	withCreds, err := e.Explain(t.Context(), farm.URLWith(1, "http", "user", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	if out := withCreds.String(); strings.Contains(out, "s3cret") || strings.Contains(out, "user") || !strings.Contains(out, "carries credentials") {
		t.Errorf("the story of a proxy with credentials:\n%s", out)
	}
	if _, err := e.Explain(t.Context(), "http://127.0.0.1:1"); !errors.Is(err, proxyhealth.ErrUnknownProxy) {
		t.Errorf("Explain of a proxy the journal does not know: %v", err)
	}
	if _, err := e.Explain(t.Context(), "ftp://x"); !errors.Is(err, proxyhealth.ErrBadConfig) {
		t.Errorf("Explain of a bad URL: %v", err)
	}
	if err := e.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	a, err := proxyhealth.OpenArchive(t.Context(), dir, proxyhealth.ArchiveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	st, err = a.Explain(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	check("archive", st)
}

// BenchmarkExplainLongHistory: the story of a proxy with 100,000 events,
// read from a bbolt journal through an Archive (archive), and the fold
// alone over the same events in memory (fold).
func BenchmarkExplainLongHistory(b *testing.B) {
	const n = 100_000
	h := longHistory(n)
	dir := b.TempDir()
	j, err := journal.OpenBolt(dir+"/"+proxyhealth.JournalFile, journal.WithUnsafeNoSync())
	if err != nil {
		b.Fatal(err)
	}
	for chunk := range slices.Chunk(h.envs, 5000) {
		var fresh []*pb.Envelope
		for _, env := range chunk {
			env = events.Clone(env)
			env.Seq, env.PrevSeq = 0, 0
			fresh = append(fresh, env)
		}
		if _, err := j.Append(b.Context(), fresh); err != nil {
			b.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		b.Fatal(err)
	}
	a, err := proxyhealth.OpenArchive(b.Context(), dir, proxyhealth.ArchiveOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	b.Run("archive", func(b *testing.B) {
		for b.Loop() {
			st, err := a.Explain(b.Context(), storyProxy)
			if err != nil || st.Events != n {
				b.Fatalf("%d events, %v", st.Events, err)
			}
		}
	})
	b.Run("fold", func(b *testing.B) {
		for b.Loop() {
			st, err := proxyhealth.Explain(h.all())
			if err != nil || st.Events != n {
				b.Fatalf("%d events, %v", st.Events, err)
			}
		}
	})
}

// longHistory is a proxy checked every 30 s, failing for 3 checks and
// recovering every 200 checks: n events.
func longHistory(n int) *storyBuilder {
	b := newStory().added(0, "http://10.0.0.7:8080", false)
	at := time.Duration(0)
	for i := 0; len(b.envs) < n; i++ {
		at += 30 * time.Second
		switch i % 200 {
		case 197:
			b.fail(at, clRefused, "connection refused").change(at, stHealthy, stDegraded, 0, "check failed: refused")
		case 198:
			b.fail(at, clRefused, "connection refused")
		case 199:
			b.fail(at, clRefused, "connection refused").change(at, stDegraded, stUnhealthy, 0, "3 consecutive failures (threshold 3), last: refused")
			at += time.Minute
			b.change(at, stUnhealthy, stRecovering, 1, "cooldown expired, recovery attempt 1").ok(at, 40).ok(at+time.Second, 41).
				change(at+time.Second, stRecovering, stHealthy, 0, "2 consecutive successes (threshold 2)")
		default:
			b.ok(at, 40+i%17)
		}
	}
	b.envs = b.envs[:n]
	return b
}
