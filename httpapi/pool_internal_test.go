package httpapi

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
)

// fakeSummaries is a Status whose Summary is set by the test; it appends
// the sources as *projections.Live does.
type fakeSummaries struct {
	Status
	sum proxyhealth.Summary
}

func (f *fakeSummaries) Summary() proxyhealth.Summary { return f.AppendSummary(nil) }

func (f *fakeSummaries) AppendSummary(src []proxyhealth.SourceSummary) proxyhealth.Summary {
	s := f.sum
	s.Sources = append(src[:0], f.sum.Sources...)
	return s
}

// TestPoolAnswerReused: an answer filled, released and filled again with
// another summary and health writes what PoolOf and healthOf make of the
// second, nothing left of the first (sources, times, projections), with
// and without the health.
func TestPoolAnswerReused(t *testing.T) {
	at := time.Date(2026, 12, 7, 23, 40, 0, 0, time.FixedZone("", 3600))
	first := proxyhealth.Summary{Counts: proxyhealth.Counts{Total: 3, Healthy: 2}, Seq: 40, UpdatedAt: at, PanicMode: true,
		Sources: []proxyhealth.SourceSummary{
			{Name: "a", Counts: proxyhealth.Counts{Total: 1}, LastRefresh: at, LastError: "timeout"},
			{Name: "b", Counts: proxyhealth.Counts{Total: 1}, AvgLatency: 3 * time.Millisecond, HeldList: true},
			{Name: "c", Counts: proxyhealth.Counts{Total: 1}},
		}}
	firstH := proxyhealth.Health{Journal: proxyhealth.JournalHealth{Failing: true, Error: "disk full", Since: at, Head: 40},
		Projections: []proxyhealth.ProjectionHealth{{Name: "live", State: proxyhealth.ProjectionRunning, Seq: 40},
			{Name: "sqlite", State: proxyhealth.ProjectionFailing, Error: "disk full", Since: at, Seq: 30, Lag: 10}}}
	second := proxyhealth.Summary{Counts: proxyhealth.Counts{Total: 1, Healthy: 1}, Seq: 41,
		Sources: []proxyhealth.SourceSummary{{Name: "b", Counts: proxyhealth.Counts{Total: 1, Healthy: 1}, LastRefresh: at.Add(time.Second)}}}
	secondH := proxyhealth.Health{Journal: proxyhealth.JournalHealth{LastCommitAt: at.Add(2 * time.Second), Head: 41},
		Projections: []proxyhealth.ProjectionHealth{{Name: "live", State: proxyhealth.ProjectionRunning, Seq: 41}}}

	want := func(sum proxyhealth.Summary, h proxyhealth.Health, hasH bool) string {
		p := PoolOf(sum)
		if hasH {
			p.Journal, p.Projections = healthOf(h)
		}
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, hasH := range []bool{true, false} {
		a := &poolAnswer{pool: Pool{Sources: map[string]SourceCounts{}}}
		for i, tc := range []struct {
			sum proxyhealth.Summary
			h   proxyhealth.Health
		}{{first, firstH}, {second, secondH}, {first, firstH}} {
			st := &fakeSummaries{sum: tc.sum}
			got, err := json.Marshal(a.fill(a.summary(st), tc.h, hasH))
			if err != nil {
				t.Fatal(err)
			}
			if w := want(tc.sum, tc.h, hasH); string(got) != w {
				t.Errorf("health %v, answer %d:\n got %s\nwant %s", hasH, i, got, w)
			}
			if !a.reset() { // what release leaves for the next fill
				t.Fatal("reset dropped a small answer")
			}
		}
	}
}
