package httpapi_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/httpapi"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// scrapeUntil scrapes /metrics until every line in want appears.
func (f *fixture) scrapeUntil(want ...string) string {
	f.t.Helper()
	var code int
	var body, missing string
	testutil.EventuallyExplain(f.t, 10*time.Second, func() bool {
		code, body = f.do("GET", "/metrics", "")
		missing = ""
		for _, w := range want {
			if !strings.Contains(body, "\n"+w+"\n") {
				missing = w
				break
			}
		}
		return code == 200 && missing == ""
	}, func() string { return fmt.Sprintf("metrics to show %q (status %d):\n%s", missing, code, body) })
	return body
}

func TestMetrics(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	f.seedPool()
	body := f.scrapeUntil(
		`proxyhealth_checks_total{class="",result="success"} 3`,
		`proxyhealth_checks_total{class="timeout",result="failure"} 1`,
		`proxyhealth_check_latency_seconds_count{result="success"} 3`,
		`proxyhealth_events_total{type="state_changed"} 4`,
		`proxyhealth_state_changes_total{from="healthy",to="degraded"} 1`,
		`proxyhealth_proxies{source="a",state="healthy"} 1`,
		`proxyhealth_proxies{source="a",state="degraded"} 1`,
		`proxyhealth_proxies{source="b",state="healthy"} 1`,
		`proxyhealth_proxies_paused{source="a"} 0`,
		`proxyhealth_journal_head_seq 11`,
		`proxyhealth_projection_seq 11`,
		`proxyhealth_projection_lag_events{projection="live status"} 0`,
		`proxyhealth_metrics_seq 11`,
	)
	for _, name := range []string{"proxyhealth_event_delivery_seconds_bucket", "proxyhealth_journal_append_seconds_bucket",
		"proxyhealth_journal_batch_events_bucket", "proxyhealth_source_latency_seconds", "proxyhealth_pool_health_percentage",
		"go_goroutines", "go_sched_latencies_seconds_bucket", "go_cpu_classes_gc_total_cpu_seconds_total", "process_"} {
		if !strings.Contains(body, name) {
			t.Errorf("no %s in the metrics", name)
		}
	}
	// The latency histogram has the check latencies: 10, 30 and 20 ms
	// passed, a 1 s failure.
	for _, w := range []string{
		`proxyhealth_check_latency_seconds_bucket{result="success",le="0.025"} 2`,
		`proxyhealth_check_latency_seconds_bucket{result="failure",le="0.5"} 0`,
		`proxyhealth_check_latency_seconds_bucket{result="failure",le="1"} 1`,
	} {
		if !strings.Contains(body, w) {
			t.Errorf("no %q", w)
		}
	}

	// Events committed but not applied to the live status are the
	// projection lag.
	if _, err := f.j.Append(t.Context(), []*pb.Envelope{okEnv(p1, "a", time.Millisecond), okEnv(p1, "a", time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	f.scrapeUntil(`proxyhealth_projection_lag_events{projection="live status"} 2`, `proxyhealth_journal_head_seq 13`)

	f.srv.ObserveJournalCommit(40, 3*time.Millisecond)
	f.scrapeUntil(`proxyhealth_journal_batch_events_count 1`, `proxyhealth_journal_append_seconds_count 1`)
}

// TestSourceRefreshMetrics: each read of a source's list is counted by
// source and result.
func TestSourceRefreshMetrics(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	ok, nm, failed, held := env("", "gw"), env("", "gw"), env("", "gw"), env("", "gw")
	ok.Event = &pb.Envelope_SourceRefreshed{SourceRefreshed: &pb.SourceRefreshed{Added: 3, Total: 3}}
	nm.Event = &pb.Envelope_SourceRefreshed{SourceRefreshed: &pb.SourceRefreshed{NotModified: true, Total: 3}}
	failed.Event = &pb.Envelope_SourceRefreshFailed{SourceRefreshFailed: &pb.SourceRefreshFailed{Error: "503"}}
	held.Event = &pb.Envelope_SourceShrinkHeld{SourceShrinkHeld: &pb.SourceShrinkHeld{Previous: 3, Offered: 1, ShrinkGuard: 0.5, Seen: 1}}
	f.append(ok, nm, failed, held)
	f.scrapeUntil(`proxyhealth_source_refreshes_total{result="applied",source="gw"} 1`,
		`proxyhealth_source_refreshes_total{result="not_modified",source="gw"} 1`,
		`proxyhealth_source_refreshes_total{result="failed",source="gw"} 1`,
		`proxyhealth_source_refreshes_total{result="held",source="gw"} 1`)
}
