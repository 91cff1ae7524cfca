package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/httpapi"
)

// daemon is a running engine with its live status and HTTP server (shared
// by run and demo).
type daemon struct {
	eng    *proxyhealth.Engine
	api    *proxyhealth.Engine      // the engine as the API sees it
	status proxyhealth.StatusReader // the engine's live status (read-only)
	srv    *httpapi.Server
	web    *apiServer // answers the API on its listener (set by attach)
	log    *slog.Logger

	// ep is the rotating endpoint (nil without --serve, or until it
	// serves; the API reads it for its traffic counters); epDone its end.
	ep     atomic.Pointer[proxyhealth.Endpoint]
	epAddr string
	epDone chan error

	// reloadMu serialises reloads (SIGHUP and POST /v1/reload) and guards
	// cur. settings is nil in the demo, which has no config to reload.
	reloadMu sync.Mutex
	settings *runSettings
	getenv   func(string) string
	// cur is the running configuration without its sources: a reload
	// compares the settings that apply at start-up, and the engine has
	// the sources (Engine.Reconcile applies the reloaded ones).
	cur daemonConfig
}

// reloadable is where a daemon's configuration comes from.
type reloadable struct {
	settings *runSettings        // the command line, with the config file's name
	getenv   func(string) string // the environment (PROXYHEALTH_TOKEN, secret_env)
	running  daemonConfig        // the configuration the daemon starts with
}

// startDaemon answers on ln at once (httpapi.Starting), opens the engine
// and then serves the API there. On error, ln is closed and nothing is
// left running.
func startDaemon(ctx context.Context, cfg proxyhealth.Config, ln net.Listener, token string, log *slog.Logger, serving bool) (*daemon, error) {
	api := httpapi.Options{Token: token}
	web := serveStarting(ln, api, log)
	d, err := openDaemon(ctx, cfg, api, log, nil, serving)
	if err != nil {
		web.close()
		return nil, err
	}
	d.attach(web)
	return d, nil
}

// openDaemon opens the engine (proxies added through the API before a
// restart are resumed inside it: Config.ResumeAddedProxies) and builds the
// API; serve starts answering.
// api gives the API's token and allowed host names; the rest is filled in.
// With rl, SIGHUP and POST /v1/reload re-read the configuration rl names;
// without it (the demo) there is nothing to reload and the API answers
// POST /v1/reload with 501. serving says whether the daemon will serve the
// rotating endpoint (serveEndpoint): the API then reports its traffic.
func openDaemon(ctx context.Context, cfg proxyhealth.Config, api httpapi.Options, log *slog.Logger, rl *reloadable, serving bool) (*daemon, error) {
	cfg.ResumeAddedProxies = true
	cfg.Projections = append(cfg.Projections, proxyhealth.SQLiteView()) // the daemon keeps the SQLite view
	// The journal reports each group commit to the metrics, once they exist.
	var metrics atomic.Pointer[httpapi.Server]
	cfg.OnJournalCommit = func(c proxyhealth.CommitStats) {
		if s := metrics.Load(); s != nil && c.Err == nil {
			s.ObserveJournalCommit(c.Events, c.Duration)
		}
	}
	eng, err := openEngine(ctx, cfg)
	if err != nil {
		return nil, err
	}
	d := &daemon{eng: eng, api: eng, log: log}
	if rl != nil {
		d.settings, d.getenv, d.cur = rl.settings, rl.getenv, rl.running.withoutSources()
		api.Reload = d.reloadConfig
	}
	d.status = eng.Status()
	api.Status, api.Version, api.Logger = d.status, version, log
	if serving {
		api.Traffic = d.traffic
	}
	if d.srv, err = httpapi.New(d.api, api); err != nil {
		return nil, errors.Join(fmt.Errorf("start the HTTP API: %w", err), eng.Close(ctx))
	}
	metrics.Store(d.srv)
	return d, nil
}

// openEngine is proxyhealth.Open; a test holds a start in it.
var openEngine = proxyhealth.Open

// apiServer is the daemon's HTTP server on the API's listener. It answers
// from the moment the daemon listens: until the engine is open (a start
// may fold a long journal), with httpapi.Starting's 503 "starting"
// answers, so that a client or a health check gets an answer instead of
// waiting in the listen queue; then with the API (handOver).
type apiServer struct {
	hs     *http.Server
	url    string
	served chan error // Serve's end
	h      atomic.Pointer[http.Handler]
	held   chan struct{} // closed by handOver; nil while nothing is held (see hold)
}

// serveAPI starts answering on ln with h.
func serveAPI(ln net.Listener, h http.Handler, log *slog.Logger) *apiServer {
	a := &apiServer{url: "http://" + ln.Addr().String() + "/", served: make(chan error, 1)}
	a.h.Store(&h)
	a.hs = &http.Server{
		Handler:           a,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    64 << 10, // no API request needs more
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() { a.served <- a.hs.Serve(ln) }()
	return a
}

// serveStarting starts answering on ln with the "starting" answers of an
// API with opts, until handOver.
func serveStarting(ln net.Listener, opts httpapi.Options, log *slog.Logger) *apiServer {
	opts.Version = version
	return serveAPI(ln, httpapi.Starting(opts), log)
}

// ServeHTTP answers with the handler of the moment.
func (a *apiServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*a.h.Load()).ServeHTTP(w, r)
}

// handOver answers every request from now on with h, the requests held
// meanwhile (hold) too. Call hold and handOver from one goroutine.
func (a *apiServer) handOver(h http.Handler) {
	a.h.Store(&h)
	if a.held != nil {
		close(a.held)
		a.held = nil
	}
}

// hold makes the requests that arrive from now on wait (the engine is
// open, the API is not answering yet) until handOver, which must hand
// over to h: run logs "proxyhealth started" in between, so that a client
// that reads the line is answered by the API, not "starting", and the API
// answers nothing before the line. A request whose client leaves, or
// whose server closes, meanwhile ends unanswered.
func (a *apiServer) hold(h http.Handler) {
	ready := make(chan struct{})
	a.handOver(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-ready:
			h.ServeHTTP(w, r)
		case <-r.Context().Done():
		}
	}))
	a.held = ready
}

// close stops a server whose engine never opened (it only gave "starting"
// answers): the listener is closed at once.
func (a *apiServer) close() {
	_ = a.hs.Close()
	<-a.served
}

// attach makes web answer with the daemon's API, which d.stop then shuts
// down with it.
func (d *daemon) attach(web *apiServer) {
	d.web = web
	web.handOver(d.srv)
}

// serve starts answering on ln with the API (tests that open the daemon
// themselves).
func (d *daemon) serve(ln net.Listener) {
	d.attach(serveAPI(ln, d.srv, d.log))
}

// serveEndpoint starts the rotating endpoint on ln: each request goes
// through a proxy the engine picks, and what it saw is reported back. On
// error ln is closed.
// upstreamTLS, if not nil, is what the endpoint trusts of https upstream
// proxies (nil: the system's roots).
func (d *daemon) serveEndpoint(ctx context.Context, ln net.Listener, strategy proxyhealth.Strategy, users map[string]string, upstreamTLS *tls.Config) error {
	if strategy == proxyhealth.Sticky {
		// Requests with a session key always keep their proxy; the
		// others have no key to stick to.
		strategy = proxyhealth.RoundRobin
	}
	ep, err := proxyhealth.NewEndpoint(d.eng, proxyhealth.EndpointConfig{Addr: ln.Addr().String(), Strategy: strategy, Users: users, Logger: d.log, UpstreamTLS: upstreamTLS})
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("start the rotating endpoint: %w", err)
	}
	d.ep.Store(ep)
	d.epAddr, d.epDone = ln.Addr().String(), make(chan error, 1)
	go func() { d.epDone <- ep.Serve(context.WithoutCancel(ctx), ln) }()
	return nil
}

// traffic is the rotating endpoint's counters, for the API (zero until it
// serves).
func (d *daemon) traffic() httpapi.TrafficStats {
	ep := d.ep.Load()
	if ep == nil {
		return httpapi.TrafficStats{}
	}
	s := ep.Stats()
	return httpapi.TrafficStats{OK: s.OK, Failed: s.UpstreamFailed, NoProxy: s.NoProxy, AuthFailed: s.AuthFailed, BadRequest: s.BadRequest,
		Retries: s.Retries, ActiveConns: s.ActiveConns, Conns: s.Conns, BytesUp: s.BytesUp, BytesDown: s.BytesDown}
}

// stop shuts the rotating endpoint and the HTTP server down, then closes
// the engine (checks in flight are cancelled, appends finish, the journal
// is flushed).
func (d *daemon) stop(ctx context.Context) error {
	var errs []error
	if ep := d.ep.Load(); ep != nil {
		ectx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := ep.Shutdown(ectx); err != nil {
			_ = ep.Close()
		}
		cancel()
		if err := <-d.epDone; err != nil {
			errs = append(errs, fmt.Errorf("the rotating endpoint: %w", err))
		}
	}
	d.srv.Close() // ends event streams so that Shutdown can finish
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := d.web.hs.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("stop the HTTP server: %w", err))
		_ = d.web.hs.Close()
	}
	if err := d.eng.Close(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := <-d.web.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
