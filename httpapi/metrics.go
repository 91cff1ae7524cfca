package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/proxyhealth/proxyhealth"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// metrics holds the Prometheus registry. Counters and histograms are
// derived from the committed event stream (follow); gauges are read from
// the live status and the engine's health at scrape time.
type metrics struct {
	reg    *prometheus.Registry
	ctx    context.Context // the server's: ends with Server.Close
	eng    Engine
	status Status
	health func() (proxyhealth.Health, bool)
	now    func() time.Time
	tail   EventTail // from the head at New

	checks        *prometheus.CounterVec
	checkLatency  *prometheus.HistogramVec
	eventsTotal   *prometheus.CounterVec
	transitions   *prometheus.CounterVec
	delivery      prometheus.Histogram
	appendLatency prometheus.Histogram
	batchSize     prometheus.Histogram
	followedSeq   prometheus.Gauge
}

func newMetrics(ctx context.Context, eng Engine, tail func(from uint64) EventTail, status Status, health func() (proxyhealth.Health, bool)) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(), ctx: ctx, eng: eng, status: status, health: health, now: time.Now, tail: tail(eng.JournalHead() + 1),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proxyhealth_checks_total",
			Help: "Active checks journaled since this process started, by result (success, failure) and failure class (empty for success).",
		}, []string{"result", "class"}),
		checkLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "proxyhealth_check_latency_seconds",
			Help:    "Total latency of journaled active checks, by result.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"result"}),
		eventsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proxyhealth_events_total",
			Help: "Journal events committed since this process started, by type.",
		}, []string{"type"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proxyhealth_state_changes_total",
			Help: "Health state transitions journaled since this process started.",
		}, []string{"from", "to"}),
		delivery: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "proxyhealth_event_delivery_seconds",
			Help:    "Time from an event's timestamp to its delivery to subscribers (covers the journal append with its fsync and the commit notification).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}),
		appendLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "proxyhealth_journal_append_seconds",
			Help:    "Duration of journal group commits (one transaction and fsync), as reported by the journal.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "proxyhealth_journal_batch_events",
			Help:    "Events per journal group commit, as reported by the journal.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8),
		}),
		followedSeq: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "proxyhealth_metrics_seq",
			Help: "Journal seq of the last event counted by these metrics.",
		}),
	}
	m.reg.MustRegister(m.checks, m.checkLatency, m.eventsTotal, m.transitions, m.delivery,
		m.appendLatency, m.batchSize, m.followedSeq, statusCollector{m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// follow counts the events committed from now on until ctx ends or the
// journal closes.
func (m *metrics) follow(ctx context.Context) {
	defer m.tail.Close()
	for {
		batch, err := m.tail.NextBatch(ctx, 1024)
		if err != nil {
			return
		}
		now := m.now()
		for _, env := range batch {
			m.count(env, now)
		}
	}
}

func (m *metrics) count(env *pb.Envelope, now time.Time) {
	m.eventsTotal.WithLabelValues(proxyhealth.EventType(env)).Inc()
	m.followedSeq.Set(float64(env.GetSeq()))
	if d := now.Sub(proxyhealth.EventTime(env)); d >= 0 {
		m.delivery.Observe(d.Seconds())
	}
	switch e := env.GetEvent().(type) {
	case *pb.Envelope_CheckSucceeded:
		m.checks.WithLabelValues("success", "").Inc()
		m.checkLatency.WithLabelValues("success").Observe(seconds(e.CheckSucceeded.GetLatency()))
	case *pb.Envelope_CheckFailed:
		m.checks.WithLabelValues("failure", proxyhealth.ClassName(e.CheckFailed.GetClass())).Inc()
		m.checkLatency.WithLabelValues("failure").Observe(seconds(e.CheckFailed.GetLatency()))
	case *pb.Envelope_StateChanged:
		m.transitions.WithLabelValues(proxyhealth.StateName(e.StateChanged.GetFrom()), proxyhealth.StateName(e.StateChanged.GetTo())).Inc()
	}
}

func seconds(l *pb.Latency) float64 { return float64(l.GetTotalNs()) / 1e9 }

// statusCollector reports the live status and the journal position at
// scrape time.
type statusCollector struct{ m *metrics }

var (
	descProxies = prometheus.NewDesc("proxyhealth_proxies",
		"Monitored proxies by source and health state.", []string{"source", "state"}, nil)
	descChecking = prometheus.NewDesc("proxyhealth_proxies_checking",
		"Proxies with a check in flight (or waiting for a concurrency slot), by source.", []string{"source"}, nil)
	descPaused = prometheus.NewDesc("proxyhealth_proxies_paused",
		"Paused proxies by source.", []string{"source"}, nil)
	descSourceLatency = prometheus.NewDesc("proxyhealth_source_latency_seconds",
		"Mean of the latency averages of a source's proxies (passed checks).", []string{"source"}, nil)
	descHealthPct = prometheus.NewDesc("proxyhealth_pool_health_percentage",
		"Healthy proxies as a percentage of all proxies.", nil, nil)
	descHead = prometheus.NewDesc("proxyhealth_journal_head_seq",
		"Highest committed journal seq.", nil, nil)
	descFirst = prometheus.NewDesc("proxyhealth_journal_first_seq",
		"Lowest retained journal seq.", nil, nil)
	descLiveSeq = prometheus.NewDesc("proxyhealth_projection_seq",
		"Journal seq applied by the live status that the API serves.", nil, nil)
	descLag = prometheus.NewDesc("proxyhealth_projection_lag_events",
		"Committed journal events not yet applied by a projection (journal head minus the projection's seq; 0 for projections without an offset), as the engine reports it.", []string{"projection"}, nil)
	descUp = prometheus.NewDesc("proxyhealth_projection_up",
		"1 while a projection follows the journal (running), 0 while it is failing, rebuilding or stopped.", []string{"projection"}, nil)
	descJournalFailing = prometheus.NewDesc("proxyhealth_journal_failing",
		"1 from a failed journal commit until the next successful one (check results are not recorded meanwhile), else 0.", nil, nil)
	descCommitFailures = prometheus.NewDesc("proxyhealth_journal_commit_failures_total",
		"Journal commits that failed since the engine started.", nil, nil)
)

// liveStatusProjection names the live status in proxyhealth_projection_lag_events
// when the engine does not report its health.
const liveStatusProjection = "live status"

func (statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descProxies, descChecking, descPaused, descSourceLatency, descHealthPct, descHead, descFirst,
		descLiveSeq, descLag, descUp, descJournalFailing, descCommitFailures} {
		ch <- d
	}
}

func (c statusCollector) Collect(ch chan<- prometheus.Metric) {
	head := c.m.eng.JournalHead()
	s := c.m.status.Summary()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, src := range s.Sources {
		n := src.Counts
		for _, st := range []struct {
			name string
			v    int
		}{{"unknown", n.Unknown}, {"healthy", n.Healthy}, {"degraded", n.Degraded}, {"unhealthy", n.Unhealthy}, {"recovering", n.Recovering}, {"failed", n.Failed}} {
			gauge(descProxies, float64(st.v), src.Name, st.name)
		}
		gauge(descChecking, float64(n.Checking), src.Name)
		gauge(descPaused, float64(n.Paused), src.Name)
		gauge(descSourceLatency, src.AvgLatency.Seconds(), src.Name)
	}
	gauge(descHealthPct, s.HealthPercentage)
	gauge(descHead, float64(head))
	if first, err := journalFirst(c.m.ctx, c.m.eng); err == nil {
		gauge(descFirst, float64(first))
	}
	gauge(descLiveSeq, float64(s.Seq))
	h, ok := c.m.health()
	if !ok {
		// An engine without health: the lag of the live status served.
		lag := 0.0
		if head > s.Seq {
			lag = float64(head - s.Seq)
		}
		gauge(descLag, lag, liveStatusProjection)
		return
	}
	for _, p := range h.Projections {
		gauge(descLag, float64(p.Lag), p.Name)
		up := 0.0
		if p.State == proxyhealth.ProjectionRunning {
			up = 1
		}
		gauge(descUp, up, p.Name)
	}
	failing := 0.0
	if h.Journal.Failing {
		failing = 1
	}
	gauge(descJournalFailing, failing)
	ch <- prometheus.MustNewConstMetric(descCommitFailures, prometheus.CounterValue, float64(h.Journal.FailedCommits))
}
