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
	hs     *http.Server
	url    string
	log    *slog.Logger
	served chan error // the HTTP server's end

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

// startDaemon opens the engine and serves the API on ln. On error, ln is
// closed and nothing is left running.
func startDaemon(ctx context.Context, cfg proxyhealth.Config, ln net.Listener, token string, log *slog.Logger, serving bool) (*daemon, error) {
	d, err := openDaemon(ctx, cfg, httpapi.Options{Token: token}, log, nil, serving)
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	d.serve(ln)
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
	eng, err := proxyhealth.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	d := &daemon{eng: eng, api: eng, log: log, served: make(chan error, 1)}
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
	d.hs = &http.Server{
		Handler:           d.srv,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    64 << 10, // no API request needs more
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return d, nil
}

// serve starts answering on ln.
func (d *daemon) serve(ln net.Listener) {
	d.url = "http://" + ln.Addr().String() + "/"
	go func() { d.served <- d.hs.Serve(ln) }()
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
	if err := d.hs.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("stop the HTTP server: %w", err))
		_ = d.hs.Close()
	}
	if err := d.eng.Close(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := <-d.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
