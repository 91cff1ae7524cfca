package projections_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// BenchmarkNotifyLatency measures the time from the return of
// journal.Append (the commit) to the notification's arrival at a Go
// subscriber and at a loopback webhook, one notification at a time.
func BenchmarkNotifyLatency(b *testing.B) {
	got := make(chan time.Time, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		got <- time.Now()
	}))
	defer srv.Close()
	j := journal.NewMem()
	defer j.Close()
	n, err := projections.NewNotifier(j, projections.NotifierOptions{Webhooks: []projections.WebhookOptions{{URL: srv.URL}}})
	if err != nil {
		b.Fatal(err)
	}
	sub, cancelSub := n.Subscribe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.Run(ctx) }()
	defer func() {
		cancel()
		<-done
		cancelSub()
		n.Close(context.Background())
	}()
	subLat := make([]time.Duration, 0, b.N)
	hookLat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		if _, err := j.Append(context.Background(), []*pb.Envelope{poolEnv(i%2 == 0, 1)}); err != nil {
			b.Fatal(err)
		}
		committed := time.Now()
		<-sub
		subLat = append(subLat, time.Since(committed))
		hookLat = append(hookLat, (<-got).Sub(committed))
	}
	b.StopTimer()
	slices.Sort(subLat)
	slices.Sort(hookLat)
	b.ReportMetric(float64(subLat[len(subLat)*99/100].Microseconds()), "sub-p99-µs")
	b.ReportMetric(float64(hookLat[len(hookLat)/2].Microseconds()), "webhook-p50-µs")
	b.ReportMetric(float64(hookLat[len(hookLat)*99/100].Microseconds()), "webhook-p99-µs")
	b.ReportMetric(float64(hookLat[len(hookLat)-1].Microseconds()), "webhook-max-µs")
}
