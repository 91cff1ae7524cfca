package httpapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/proxyhealth/proxyhealth"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// Defaults of Options.
const (
	// DefaultMaxBodyBytes bounds request bodies.
	DefaultMaxBodyBytes = 64 << 10
	// DefaultHeartbeat is the interval of SSE heartbeat comments.
	DefaultHeartbeat = 15 * time.Second
	// DefaultListLimit is the page size of GET /v1/proxies without ?limit=.
	DefaultListLimit = 100
	// MaxListLimit is the largest accepted ?limit=.
	MaxListLimit = 10000
	// MaxStateChanges is how many recent transitions GET /v1/proxies/{id}
	// returns.
	MaxStateChanges = 16
	// DefaultMaxRequests bounds the requests served at once (event streams
	// and journal reads aside); DefaultMaxStreams bounds the open event
	// streams and journal reads. Past either, requests answer 503 with
	// Retry-After.
	DefaultMaxRequests = 256
	DefaultMaxStreams  = 64
	// DefaultBodyReadTimeout bounds reading a request's body, so that a
	// client that sends it slowly cannot hold a request slot.
	DefaultBodyReadTimeout = 10 * time.Second
)

// Engine is what the API needs from the engine; *proxyhealth.Engine
// implements it.
type Engine interface {
	AddProxy(ctx context.Context, source, rawURL string) (string, error)
	RemoveProxy(ctx context.Context, id string) error
	Revive(ctx context.Context, id string) error
	Pause(ctx context.Context, source string) error
	Resume(ctx context.Context, source string) error
	// PauseProxy and ResumeProxy pause and resume one proxy (journaled
	// per proxy).
	PauseProxy(ctx context.Context, id string) error
	// ConfirmSource applies the list a source holds because it shrank by
	// more than its shrink guard; RefreshSource reads a source's list now.
	ConfirmSource(ctx context.Context, name string) error
	RefreshSource(ctx context.Context, name string) error
	ResumeProxy(ctx context.Context, id string) error
	// ReadJournal yields the journal events f selects, in seq order, at
	// the reader's pace (GET /v1/journal streams them; the event stream
	// and the metrics read the oldest retained seq with it).
	ReadJournal(ctx context.Context, f proxyhealth.JournalFilter) iter.Seq2[*pb.Envelope, error]
	// JournalHead is the seq of the last committed event.
	JournalHead() uint64
	// CheckHistory returns a proxy's check results since a time, newest
	// first (GET /v1/proxies/{id}).
	CheckHistory(ctx context.Context, id string, since time.Time) ([]proxyhealth.CheckRecord, error)
	// Tail follows the committed journal from a seq (the event stream and
	// the metrics read it).
	Tail(from uint64) proxyhealth.Tail
	// Pick and PickN hand proxies out (GET /v1/pick); the Picked URL
	// carries credentials, which the API shows only when asked with a
	// token (see the package documentation).
	Pick(req proxyhealth.PickRequest) (proxyhealth.Picked, error)
	PickN(req proxyhealth.PickRequest, dst []proxyhealth.Picked) (int, error)
	// ReportOutcome feeds what real traffic saw through a proxy into
	// passive outlier detection (POST /v1/proxies/{id}/outcome).
	ReportOutcome(o proxyhealth.Outcome) error
	// Panic is the pool-wide panic state the picker last computed, and
	// Ejections how many proxies passive outlier detection holds out of
	// rotation and may hold (/metrics, GET /v1/traffic).
	Panic() proxyhealth.PanicState
	Ejections() (ejected, limit int)
}

// EventTail is the journal tail the API reads (proxyhealth.Tail).
type EventTail = proxyhealth.Tail

// Status is the live pool status the read endpoints serve;
// proxyhealth.StatusReader (what Engine.Status returns) is one.
type Status interface {
	Summary() proxyhealth.Summary
	List(f proxyhealth.ListFilter, offset, limit int) (int, []proxyhealth.ProxyView)
	Proxy(id string) (proxyhealth.ProxyView, bool)
	StateChanges(id string, n int) []proxyhealth.StateChange
}

// statusProvider is an engine that serves its live status;
// *proxyhealth.Engine is one.
type statusProvider interface {
	Status() proxyhealth.StatusReader
}

// healthProvider is an engine that reports its own condition (journal
// writes, projections); *proxyhealth.Engine is one. Without it /healthz
// always answers ok and /v1/pool has no journal or projections.
type healthProvider interface {
	Health() proxyhealth.Health
}

// healthAppender is a healthProvider that appends the projections'
// conditions to the caller's slice; *proxyhealth.Engine is one.
type healthAppender interface {
	AppendHealth(projs []proxyhealth.ProjectionHealth) proxyhealth.Health
}

// notificationProvider is an engine that derives once-per-episode
// notifications (proxy_down, proxy_recovered, pool_degraded,
// pool_recovered); *proxyhealth.Engine is one. Without it /v1/events
// carries journal events only.
type notificationProvider interface {
	Notifications() (<-chan proxyhealth.Notification, func())
}

// ErrBadOptions is returned by New for Options it cannot serve with.
var ErrBadOptions = errors.New("httpapi: bad options")

// Options configures New.
type Options struct {
	// Status is the live status. When nil, New uses the engine's
	// Status() if it has one (*proxyhealth.Engine has); otherwise New
	// returns an error (ErrBadOptions).
	Status Status
	// Token, when not empty, requires "Authorization: Bearer Token" on
	// every endpoint except /healthz and the dashboard page.
	Token string
	// MaxBodyBytes bounds request bodies (default 64 KiB).
	MaxBodyBytes int64
	// Heartbeat is the interval of SSE heartbeat comments (default 15 s).
	Heartbeat time.Duration
	// Version is reported by /healthz and the dashboard.
	Version string
	// Logger receives request errors (5xx). Nil means silent.
	Logger *slog.Logger
	// Now returns the current time (default time.Now); tests inject one.
	Now func() time.Time
	// AllowedHosts are the host names (or IP addresses) besides loopback
	// ones and the listen address by which clients reach the server, as
	// sent in the Host header: "proxyhealth.internal" (any port),
	// ".example.net" (example.net and every subdomain) or "*" (any host:
	// only behind a reverse proxy that checks the Host itself). Requests
	// for any other host are refused with 421; see the package
	// documentation.
	AllowedHosts []string
	// Reload re-reads the configuration and applies it (the daemon reads
	// its config file and calls Engine.Reconcile), for POST /v1/reload.
	// An error wrapping proxyhealth.ErrBadConfig answers 400 with its
	// text (the running configuration must then be unchanged); nil
	// answers POST /v1/reload with 501.
	Reload func(ctx context.Context) (proxyhealth.ReconcileDiff, error)
	// PoolHistoryInterval is how often the pool summary is sampled for
	// GET /v1/pool/history (default 10 s); PoolHistoryWindow is how far
	// back the samples go (default 1 h). At most MaxPoolHistorySamples
	// samples are kept.
	PoolHistoryInterval time.Duration
	PoolHistoryWindow   time.Duration
	// MaxRequests bounds the requests served at once, event streams and
	// journal reads aside (default DefaultMaxRequests); MaxStreams bounds
	// the open event streams (/v1/events) and journal reads (/v1/journal)
	// (default DefaultMaxStreams). Past either, a request answers 503 with
	// Retry-After: 1.
	MaxRequests, MaxStreams int
	// BodyReadTimeout bounds reading a request body (default
	// DefaultBodyReadTimeout): a client that sends its body slower is cut
	// off.
	BodyReadTimeout time.Duration
	// Traffic reports the counters of the rotating forward-proxy endpoint
	// (the daemon wires endpoint.Server.Stats into it), for /metrics, GET
	// /v1/traffic and the dashboard's traffic panel. Nil: no rotating
	// endpoint runs, and none of these report traffic.
	Traffic func() TrafficStats
}

// Server is the API's http.Handler. Close it to end event streams and
// stop the metrics follower.
type Server struct {
	eng    Engine
	tail   func(from uint64) EventTail
	status Status
	// health is the engine's health, its projections appended to the
	// given slice when the engine can (healthAppender); false: the
	// engine does not report it.
	health  func(projs []proxyhealth.ProjectionHealth) (proxyhealth.Health, bool)
	hosts   hostPolicy
	opts    Options
	mux     *http.ServeMux
	metrics *metrics
	// metricsH serves the metrics registry.
	metricsH http.Handler
	log      *slog.Logger
	// notifications subscribes to the engine's notifications; nil when
	// the engine has none.
	notifications func() (<-chan proxyhealth.Notification, func())
	poolHist      *poolHistory
	// cluster is the engine's cluster side; nil when the engine has none.
	cluster clusterProvider
	// requests and streams are the slots of requests served at once and
	// of open event streams and journal reads.
	requests, streams chan struct{}

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns the API handler. It starts two goroutines: one follows the
// journal for the metrics (it ends with Close or when the journal closes),
// one samples the pool summary for GET /v1/pool/history (it ends with
// Close). Options it cannot serve with are an error wrapping ErrBadOptions.
func New(eng Engine, opts Options) (*Server, error) {
	if eng == nil {
		return nil, fmt.Errorf("%w: the engine is nil", ErrBadOptions)
	}
	tail := eng.Tail
	if opts.Status == nil {
		sp, ok := eng.(statusProvider)
		if !ok {
			return nil, fmt.Errorf("%w: Options.Status is nil and the engine has no Status() to use instead; pass the live status", ErrBadOptions)
		}
		opts.Status = sp.Status()
	}
	if opts.MaxBodyBytes < 0 || opts.Heartbeat < 0 || opts.PoolHistoryInterval < 0 || opts.PoolHistoryWindow < 0 ||
		opts.MaxRequests < 0 || opts.MaxStreams < 0 || opts.BodyReadTimeout < 0 {
		return nil, fmt.Errorf("%w: MaxBodyBytes, Heartbeat, PoolHistoryInterval, PoolHistoryWindow, MaxRequests, MaxStreams and BodyReadTimeout must not be negative (0 means the default)", ErrBadOptions)
	}
	if opts.MaxRequests == 0 {
		opts.MaxRequests = DefaultMaxRequests
	}
	if opts.MaxStreams == 0 {
		opts.MaxStreams = DefaultMaxStreams
	}
	if opts.BodyReadTimeout == 0 {
		opts.BodyReadTimeout = DefaultBodyReadTimeout
	}
	if opts.MaxBodyBytes == 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.Heartbeat == 0 {
		opts.Heartbeat = DefaultHeartbeat
	}
	if opts.PoolHistoryInterval == 0 {
		opts.PoolHistoryInterval = DefaultPoolHistoryInterval
	}
	if opts.PoolHistoryWindow == 0 {
		opts.PoolHistoryWindow = DefaultPoolHistoryWindow
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{eng: eng, tail: tail, status: opts.Status, opts: opts, log: log, hosts: newHostPolicy(opts.AllowedHosts),
		requests: make(chan struct{}, opts.MaxRequests), streams: make(chan struct{}, opts.MaxStreams)}
	s.health = func([]proxyhealth.ProjectionHealth) (proxyhealth.Health, bool) { return proxyhealth.Health{}, false }
	if ha, ok := eng.(healthAppender); ok {
		s.health = func(projs []proxyhealth.ProjectionHealth) (proxyhealth.Health, bool) {
			return ha.AppendHealth(projs), true
		}
	} else if hp, ok := eng.(healthProvider); ok {
		s.health = func([]proxyhealth.ProjectionHealth) (proxyhealth.Health, bool) { return hp.Health(), true }
	}
	if np, ok := eng.(notificationProvider); ok {
		s.notifications = np.Notifications
	}
	if cp, ok := eng.(clusterProvider); ok {
		s.cluster = cp
	}
	s.poolHist = newPoolHistory(opts.PoolHistoryInterval, opts.PoolHistoryWindow)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.metrics = newMetrics(s.ctx, eng, tail, opts.Status, s.health, opts.Traffic)
	if s.cluster != nil {
		s.metrics.reg.MustRegister(clusterCollector{s.cluster})
	}
	s.metricsH = s.metrics.handler()
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.metrics.follow(s.ctx) }()
	go func() { defer s.wg.Done(); s.samplePool(s.ctx) }()

	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		path := rt.Path
		if path == "/" {
			path = "/{$}"
		}
		mux.Handle(rt.Method+" "+path, s.handler(rt))
	}
	mux.HandleFunc("/", s.notFound)
	s.mux = mux
	return s, nil
}

// ServeHTTP implements http.Handler. Every request passes the Host check
// (421) and every state-changing one the cross-origin checks (403, 415)
// before anything else, the token included.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if !s.hosts.check(w, r) || !s.checkCrossOrigin(w, r) {
		return
	}
	slots, what := s.requests, "requests"
	if r.URL.Path == "/v1/events" || r.URL.Path == "/v1/journal" {
		slots, what = s.streams, "event streams and journal reads"
	}
	select {
	case slots <- struct{}{}:
		defer func() { <-slots }()
	default:
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("too many %s at once (at most %d); retry in a second", what, cap(slots)))
		return
	}
	if r.Body != nil && r.Body != http.NoBody {
		// A slow body cannot hold the slot: reading it has a deadline,
		// lifted once it is read (the server's own read that watches for
		// the client going away must not time out meanwhile).
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Now().Add(s.opts.BodyReadTimeout))
		r.Body = &deadlineBody{ReadCloser: http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes), lift: func() { _ = rc.SetReadDeadline(time.Time{}) }}
	}
	// Wrong method on a known path: the mux answers 405 in plain text;
	// catch it to answer JSON.
	if _, pattern := s.mux.Handler(r); pattern == "/" {
		if allowed := s.allowedMethods(r); allowed != "" {
			w.Header().Set("Allow", allowed)
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s is not allowed on %s; use %s", r.Method, r.URL.Path, allowed))
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

// allowedMethods returns the methods the mux accepts for r's path.
func (s *Server) allowedMethods(r *http.Request) string {
	var ok []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, p := s.mux.Handler(probe); p != "" && p != "/" {
			ok = append(ok, m)
		}
	}
	return strings.Join(ok, ", ")
}

// Close ends every open event stream and stops the metrics follower. It
// is idempotent. Call it before http.Server.Shutdown, which otherwise waits
// for event streams that never end by themselves.
func (s *Server) Close() {
	s.cancel()
	s.wg.Wait()
}

// ObserveJournalCommit records one journal group commit (events written
// and the time from the first request to the fsync) in the
// proxyhealth_journal_append_seconds and proxyhealth_journal_batch_events
// histograms. The journal does not report commits yet; whoever can see them
// calls this.
func (s *Server) ObserveJournalCommit(events int, d time.Duration) {
	s.metrics.appendLatency.Observe(d.Seconds())
	s.metrics.batchSize.Observe(float64(events))
}

// authorized reports whether r carries the bearer token (true when none
// is configured).
func (s *Server) authorized(r *http.Request) bool {
	if s.opts.Token == "" {
		return true
	}
	want := []byte("Bearer " + s.opts.Token)
	return subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) == 1
}

// auth requires the bearer token when one is configured.
func (s *Server) auth(h http.Handler) http.Handler {
	if s.opts.Token == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(r) {
			got := r.Header.Get("Authorization")
			w.Header().Set("WWW-Authenticate", `Bearer realm="proxyhealth"`)
			msg := "missing bearer token: send Authorization: Bearer TOKEN (the --token or PROXYHEALTH_TOKEN of the server)"
			if len(got) > 0 {
				msg = "invalid bearer token"
			}
			writeError(w, http.StatusUnauthorized, msg)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path))
}

// writeJSON writes v as JSON with status code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, ErrorBody{Error: msg})
}

// journalRetryAfter is the Retry-After (seconds) of a command the
// journal refused.
const journalRetryAfter = "10"

// engineError answers an engine error with the fitting status code; t
// tells what the command acted on and how to see whether it took effect.
func (s *Server) engineError(w http.ResponseWriter, r *http.Request, err error, t commandTarget) {
	code := http.StatusInternalServerError
	msg := err.Error()
	switch {
	case errors.Is(err, proxyhealth.ErrNotOwner):
		// Another cluster member checks the proxy: send the command there.
		writeJSON(w, http.StatusMisdirectedRequest, NotOwnerBody{Error: msg, Owner: ownerOf(err)})
		return
	case errors.Is(err, proxyhealth.ErrClusterManaged):
		code = http.StatusConflict
	case errors.Is(err, proxyhealth.ErrOutcomeUnknown):
		// Before the context cases: it usually wraps a context error.
		code = http.StatusGatewayTimeout
		msg = fmt.Sprintf("the outcome is unknown: the request ended before the journal said whether the command was written (%s); "+
			"%s to see whether it took effect before you retry", msg, t.check)
	case errors.Is(err, proxyhealth.ErrJournalFailing) && t.many:
		code = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", journalRetryAfter)
		msg = fmt.Sprintf("the journal cannot write: nothing was applied to the proxies named here, any other proxy took the command (%s); "+
			"retry later (GET /healthz shows when the journal takes writes again), %s shows where it took effect", msg, t.check)
	case errors.Is(err, proxyhealth.ErrJournalFailing):
		code = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", journalRetryAfter)
		msg = fmt.Sprintf("nothing was applied: the journal cannot write (%s); retry later, GET /healthz shows when it takes writes again", msg)
	case errors.Is(err, proxyhealth.ErrUnknownProxy), errors.Is(err, proxyhealth.ErrUnknownSource):
		code = http.StatusNotFound
	case errors.Is(err, proxyhealth.ErrDuplicate), errors.Is(err, proxyhealth.ErrNotRevivable),
		errors.Is(err, proxyhealth.ErrRemoved), errors.Is(err, proxyhealth.ErrNothingHeld):
		code = http.StatusConflict
	case errors.Is(err, proxyhealth.ErrBadConfig):
		code = http.StatusBadRequest
	case errors.Is(err, proxyhealth.ErrClosed), errors.Is(err, proxyhealth.ErrJournalClosed):
		code = http.StatusServiceUnavailable
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		code = http.StatusServiceUnavailable
	}
	if code >= 500 {
		s.log.Error("request failed", slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("error", err))
	}
	writeError(w, code, msg)
}

// decodeBody decodes a JSON request body into v, rejecting unknown fields,
// trailing data and bodies over the limit; false means the request was
// answered.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	err := decodeJSON(r.Body, v)
	if err == nil {
		return true
	}
	if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", mbe.Limit))
		return false
	}
	if errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, "empty request body; send a JSON object")
		return false
	}
	writeError(w, http.StatusBadRequest, err.Error())
	return false
}

// decodeJSON decodes exactly one JSON value from r into v, refusing
// unknown object fields (the error names them) and anything after the
// value.
func decodeJSON(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return err
		}
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			return err
		}
		if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return fmt.Errorf("unknown field %s in the JSON body", f)
		}
		return fmt.Errorf("invalid JSON body: %w", err)
	}
	// A second value (or garbage) after the first is refused, not ignored.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			return err
		}
		return errors.New("invalid JSON body: trailing data after the JSON object; send one object")
	}
	return nil
}

// firstProvider is an engine that knows the oldest retained journal seq
// without reading the journal.
type firstProvider interface {
	JournalFirst() uint64
}

// journalFirst is the seq of the oldest event journal retention kept (the
// head + 1 when the journal holds none): the engine's JournalFirst() when
// it has one, else the first event ReadJournal yields (which reads a chunk
// of the journal).
func journalFirst(ctx context.Context, eng Engine) (uint64, error) {
	if fp, ok := eng.(firstProvider); ok {
		return fp.JournalFirst(), nil
	}
	head := eng.JournalHead()
	for env, err := range eng.ReadJournal(ctx, proxyhealth.JournalFilter{Limit: 1}) {
		if err != nil {
			return 0, err
		}
		return env.GetSeq(), nil
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return head + 1, nil
}

// deadlineBody lifts the body's read deadline once the body was read to
// its end. After any other error the deadline stays: the server then
// fails at once to drain the rest of the body (which it does before it
// writes the response) and closes the connection instead of waiting for
// bytes that do not come.
type deadlineBody struct {
	io.ReadCloser
	lift func()
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		b.lift()
	}
	return n, err
}
