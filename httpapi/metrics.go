package httpapi

import (
	"context"
	"net/http"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/proxyhealth/proxyhealth"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// schedLatencies adds the Go runtime's scheduling latencies to the default
// Go metrics, as go_sched_latencies_seconds: how long goroutines (a
// check's actor, an API request) waited runnable for a thread. A long tail
// there and in API latencies says the process is short of CPU, not slow.
var schedLatencies = collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/sched/latencies:seconds$`)}

// gcCPU adds the Go runtime's estimate of the CPU its garbage collector
// used, as go_cpu_classes_gc_total_cpu_seconds_total: with the process's
// CPU (process_cpu_seconds_total) it gives the GC's share, the price of
// the GC setting (GOGC) the daemon runs with.
var gcCPU = collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/cpu/classes/gc/total:cpu-seconds$`)}

// metrics holds the Prometheus registry. Counters and histograms are
// derived from the committed event stream (follow); gauges are read from
// the live status and the engine's health at scrape time.
type metrics struct {
	reg    *prometheus.Registry
	ctx    context.Context // the server's: ends with Server.Close
	eng    Engine
	status Status
	health func([]proxyhealth.ProjectionHealth) (proxyhealth.Health, bool)
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
	ejections     prometheus.Counter
	returns       prometheus.Counter
	panics        prometheus.Counter
	refreshes     *prometheus.CounterVec
	picks         *prometheus.CounterVec
	outcomes      *prometheus.CounterVec
	// pickCounters are the picks counters by strategy label and result
	// (pickOK, pickPanic, pickNoProxy), resolved once: a pick costs no
	// label lookup.
	pickCounters map[proxyhealth.Strategy]*[3]prometheus.Counter
}

// The results of proxyhealth_api_picks_total.
const (
	pickOK = iota
	pickPanic
	pickNoProxy
)

func newMetrics(ctx context.Context, eng Engine, tail func(from uint64) EventTail, status Status, health func([]proxyhealth.ProjectionHealth) (proxyhealth.Health, bool), traffic func() TrafficStats) *metrics {
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
		ejections: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "proxyhealth_ejections_total",
			Help: "Proxies ejected from rotation by passive outlier detection (proxy_ejected events) since this process started.",
		}),
		returns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "proxyhealth_ejection_returns_total",
			Help: "Ejections that ended (proxy_returned events) since this process started.",
		}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "proxyhealth_panic_episodes_total",
			Help: "Panic mode episodes journaled (pool_panic_entered events) since this process started.",
		}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proxyhealth_source_refreshes_total",
			Help: "Reads of the sources' proxy lists since this process started, by source and result: applied, not_modified, failed (the last good list stays), held (it shrank by more than the shrink guard).",
		}, []string{"source", "result"}),
		picks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proxyhealth_api_picks_total",
			Help: "GET /v1/pick requests served, by strategy (\"default\" when the request named none) and result (ok, panic: made in panic mode, no_proxy: answered 503).",
		}, []string{"strategy", "result"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proxyhealth_api_outcomes_total",
			Help: "Outcomes reported through POST /v1/proxies/{id}/outcome and accepted, by ok (true, false) and failure class (empty for ok).",
		}, []string{"ok", "class"}),
		pickCounters: map[proxyhealth.Strategy]*[3]prometheus.Counter{},
	}
	for _, st := range append([]proxyhealth.Strategy{""}, proxyhealth.Strategies...) {
		label := string(st)
		if label == "" {
			label = "default"
		}
		m.pickCounters[st] = &[3]prometheus.Counter{
			m.picks.WithLabelValues(label, "ok"), m.picks.WithLabelValues(label, "panic"), m.picks.WithLabelValues(label, "no_proxy"),
		}
	}
	m.reg.MustRegister(m.checks, m.checkLatency, m.eventsTotal, m.transitions, m.delivery,
		m.appendLatency, m.batchSize, m.followedSeq, m.ejections, m.returns, m.panics, m.refreshes, m.picks, m.outcomes,
		statusCollector{m}, collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(schedLatencies, gcCPU)), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if traffic != nil {
		m.reg.MustRegister(trafficCollector(traffic))
	}
	return m
}

// countPick counts a served pick (strategy "" is the default).
func (m *metrics) countPick(st proxyhealth.Strategy, panicked bool) {
	c := m.pickCounters[st] // known: the handler checked the strategy
	if panicked {
		c[pickPanic].Inc()
		return
	}
	c[pickOK].Inc()
}

// countNoProxy counts a pick answered 503.
func (m *metrics) countNoProxy(st proxyhealth.Strategy) { m.pickCounters[st][pickNoProxy].Inc() }

// countOutcome counts an accepted outcome report.
func (m *metrics) countOutcome(ok bool, class string) {
	if ok {
		m.outcomes.WithLabelValues("true", "").Inc()
		return
	}
	m.outcomes.WithLabelValues("false", class).Inc()
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
	case *pb.Envelope_ProxyEjected:
		m.ejections.Inc()
	case *pb.Envelope_ProxyReturned:
		m.returns.Inc()
	case *pb.Envelope_PoolPanicEntered:
		m.panics.Inc()
	case *pb.Envelope_SourceRefreshed:
		result := "applied"
		if e.SourceRefreshed.GetNotModified() {
			result = "not_modified"
		}
		m.refreshes.WithLabelValues(env.GetSource(), result).Inc()
	case *pb.Envelope_SourceRefreshFailed:
		m.refreshes.WithLabelValues(env.GetSource(), "failed").Inc()
	case *pb.Envelope_SourceShrinkHeld:
		m.refreshes.WithLabelValues(env.GetSource(), "held").Inc()
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
	descCkptSeq = prometheus.NewDesc("proxyhealth_live_checkpoint_seq",
		"Journal seq of the live status checkpoint saved (or restored at start) last: a start after a crash folds the journal after it (0: none).", nil, nil)
	descCkptFailing = prometheus.NewDesc("proxyhealth_live_checkpoint_failing",
		"1 from a failed save of the live status checkpoint until the next one succeeds, else 0.", nil, nil)
	descCkptFailures = prometheus.NewDesc("proxyhealth_live_checkpoint_failures_total",
		"Saves of the live status checkpoint that failed since the engine started.", nil, nil)
	descPanicMode = prometheus.NewDesc("proxyhealth_panic_mode",
		"1 while picks are made in panic mode (too few of the pool's unpaused proxies are usable: the least-bad ones are handed out), else 0.", nil, nil)
	descUsable = prometheus.NewDesc("proxyhealth_rotation_usable",
		"Proxies the picker may hand out (usable: healthy, not paused, not ejected).", nil, nil)
	descCandidates = prometheus.NewDesc("proxyhealth_rotation_candidates",
		"Proxies in rotation that are not paused (panic mode compares usable to these).", nil, nil)
	descEjected = prometheus.NewDesc("proxyhealth_proxies_ejected",
		"Proxies passive outlier detection holds out of rotation now.", nil, nil)
	descEjectionLimit = prometheus.NewDesc("proxyhealth_ejection_limit",
		"How many proxies passive outlier detection may hold out of rotation at once (the maximum ejection share of the pool, at least one).", nil, nil)
)

// liveStatusProjection names the live status in proxyhealth_projection_lag_events
// when the engine does not report its health.
const liveStatusProjection = "live status"

func (statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descProxies, descChecking, descPaused, descSourceLatency, descHealthPct, descHead, descFirst,
		descLiveSeq, descLag, descUp, descJournalFailing, descCommitFailures, descCkptSeq, descCkptFailing, descCkptFailures,
		descPanicMode, descUsable, descCandidates,
		descEjected, descEjectionLimit} {
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
	ps := c.m.eng.Panic()
	gauge(descPanicMode, b2f(ps.Active))
	gauge(descUsable, float64(ps.Usable))
	gauge(descCandidates, float64(ps.Candidates))
	ej, lim := c.m.eng.Ejections()
	gauge(descEjected, float64(ej))
	gauge(descEjectionLimit, float64(lim))
	h, ok := c.m.health(nil)
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
	gauge(descJournalFailing, b2f(h.Journal.Failing))
	ch <- prometheus.MustNewConstMetric(descCommitFailures, prometheus.CounterValue, float64(h.Journal.FailedCommits))
	gauge(descCkptSeq, float64(h.Checkpoint.Seq))
	gauge(descCkptFailing, b2f(h.Checkpoint.Failing))
	ch <- prometheus.MustNewConstMetric(descCkptFailures, prometheus.CounterValue, float64(h.Checkpoint.Failures))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// trafficCollector reports the rotating endpoint's counters at scrape
// time.
type trafficCollector func() TrafficStats

var (
	descTrafficRequests = prometheus.NewDesc("proxyhealth_endpoint_requests_total",
		"Client requests through the rotating endpoint (HTTP requests, CONNECT and SOCKS tunnels) by outcome: ok, failed (every upstream tried failed: 502), no_proxy (503), auth_failed, bad_request.", []string{"outcome"}, nil)
	descTrafficRetries = prometheus.NewDesc("proxyhealth_endpoint_retries_total",
		"Attempts on another upstream after a failed one, through the rotating endpoint.", nil, nil)
	descTrafficActive = prometheus.NewDesc("proxyhealth_endpoint_active_connections",
		"Client connections open to the rotating endpoint now.", nil, nil)
	descTrafficConns = prometheus.NewDesc("proxyhealth_endpoint_connections_total",
		"Client connections accepted by the rotating endpoint.", nil, nil)
	descTrafficBytes = prometheus.NewDesc("proxyhealth_endpoint_bytes_total",
		"Bytes through the rotating endpoint (bodies and tunnel traffic, not heads) by direction: up (client to upstream), down (back).", []string{"direction"}, nil)
)

func (trafficCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTrafficRequests, descTrafficRetries, descTrafficActive, descTrafficConns, descTrafficBytes} {
		ch <- d
	}
}

func (c trafficCollector) Collect(ch chan<- prometheus.Metric) {
	st := c()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(descTrafficRequests, st.OK, "ok")
	counter(descTrafficRequests, st.Failed, "failed")
	counter(descTrafficRequests, st.NoProxy, "no_proxy")
	counter(descTrafficRequests, st.AuthFailed, "auth_failed")
	counter(descTrafficRequests, st.BadRequest, "bad_request")
	counter(descTrafficRetries, st.Retries)
	counter(descTrafficConns, st.Conns)
	counter(descTrafficBytes, st.BytesUp, "up")
	counter(descTrafficBytes, st.BytesDown, "down")
	ch <- prometheus.MustNewConstMetric(descTrafficActive, prometheus.GaugeValue, float64(st.ActiveConns))
}
