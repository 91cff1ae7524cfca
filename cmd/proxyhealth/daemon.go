package main

import (
	"context"
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
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections"
)

// daemon is a running engine with its live status and HTTP server (shared
// by run and demo).
type daemon struct {
	eng    *proxyhealth.Engine
	api    *trackingEngine
	status *projections.Live // the engine's live status
	srv    *httpapi.Server
	hs     *http.Server
	url    string
	log    *slog.Logger
	served chan error // the HTTP server's end
}

// startDaemon opens the engine and serves the API on ln. On error, ln is
// closed and nothing is left running.
func startDaemon(ctx context.Context, cfg proxyhealth.Config, ln net.Listener, token string, log *slog.Logger) (*daemon, error) {
	// The journal reports each group commit to the metrics, once they exist.
	var metrics atomic.Pointer[httpapi.Server]
	cfg.OnJournalCommit = func(c journal.CommitStats) {
		if s := metrics.Load(); s != nil && c.Err == nil {
			s.ObserveJournalCommit(c.Events, c.Duration)
		}
	}
	eng, err := proxyhealth.Open(ctx, cfg)
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	d := &daemon{eng: eng, api: &trackingEngine{Engine: eng, added: map[string]addedProxy{}}, log: log, served: make(chan error, 1)}
	d.status = eng.Live()
	d.srv = httpapi.New(d.api, httpapi.Options{Status: d.status, Token: token, Version: version, Logger: log})
	metrics.Store(d.srv)
	d.hs = &http.Server{
		Handler:           d.srv,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	d.url = "http://" + ln.Addr().String() + "/"
	go func() { d.served <- d.hs.Serve(ln) }()
	return d, nil
}

// stop shuts the HTTP server down, then closes the engine (checks in
// flight are cancelled, appends finish, the journal is flushed).
func (d *daemon) stop(ctx context.Context) error {
	d.srv.Close() // ends event streams so that Shutdown can finish
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var errs []error
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

// addedProxy is a proxy added through the API.
type addedProxy struct {
	source string
	raw    string // may carry credentials: memory only, never logged
}

// trackingEngine is the engine as the API sees it: it remembers the
// proxies added through the API so that a config reload keeps them.
type trackingEngine struct {
	*proxyhealth.Engine
	mu    sync.Mutex
	added map[string]addedProxy
}

// AddProxy adds a proxy and remembers it.
func (t *trackingEngine) AddProxy(ctx context.Context, source, raw string) (string, error) {
	id, err := t.Engine.AddProxy(ctx, source, raw)
	if err == nil {
		if source == "" {
			source = proxyhealth.DefaultSource
		}
		t.mu.Lock()
		t.added[id] = addedProxy{source: source, raw: raw}
		t.mu.Unlock()
	}
	return id, err
}

// RemoveProxy removes a proxy and forgets it.
func (t *trackingEngine) RemoveProxy(ctx context.Context, id string) error {
	err := t.Engine.RemoveProxy(ctx, id)
	if err == nil {
		t.mu.Lock()
		delete(t.added, id)
		t.mu.Unlock()
	}
	return err
}

// resumeAPIProxies restarts the proxies that the journal still has but the
// configuration does not list (proxies added through the API before a
// restart), so that API additions survive restarts. Proxies added with
// credentials cannot be resumed (the journal never holds credentials): they
// are logged, to be configured again.
func (d *daemon) resumeAPIProxies(ctx context.Context) {
	head := d.eng.Journal().Head()
	deadline := time.Now().Add(time.Minute)
	for d.status.Seq() < head {
		if time.Now().After(deadline) || ctx.Err() != nil {
			d.log.Warn("the live status did not catch up with the journal in time; proxies added through the API before the restart are not resumed")
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	running := map[string]bool{}
	for _, id := range d.eng.ProxyIDs() {
		running[id] = true
	}
	sources := map[string]bool{}
	for _, s := range d.eng.Sources() {
		sources[s] = true
	}
	_, all := d.status.List(projections.ListFilter{}, 0, 1<<30)
	resumed := 0
	for _, v := range all {
		if running[v.ID] || v.URLRedacted == "" {
			continue
		}
		creds, known := d.hadCredentials(ctx, v.ID)
		switch {
		case !sources[v.Source]:
			d.log.Warn("the journal has a proxy of a source that is not configured; not resumed", slog.String("proxy_id", v.ID), slog.String("url", v.URLRedacted), slog.String("source", v.Source))
		case creds || !known:
			d.log.Warn("a proxy added with credentials through the API cannot be resumed after a restart (credentials are never journaled); add it again or list it in the config", slog.String("proxy_id", v.ID), slog.String("url", v.URLRedacted), slog.String("source", v.Source))
		default:
			if _, err := d.api.AddProxy(ctx, v.Source, v.URLRedacted); err != nil {
				d.log.Warn("could not resume a proxy added through the API", slog.String("proxy_id", v.ID), slog.Any("error", err))
				continue
			}
			resumed++
		}
	}
	if resumed > 0 {
		d.log.Info("resumed proxies added through the API before the restart", slog.Int("proxies", resumed))
	}
}

// hadCredentials reports whether the proxy was added with credentials,
// from its ProxyAdded event or, if retention deleted it, its snapshot.
func (d *daemon) hadCredentials(ctx context.Context, id string) (creds, known bool) {
	j := d.eng.Journal()
	for env, err := range j.ReadStream(ctx, id, 1) {
		if err == nil {
			if a := env.GetProxyAdded(); a != nil {
				return a.GetHasCredentials(), true
			}
		}
		break
	}
	if s, err := j.LoadSnapshot(ctx, id); err == nil {
		return s.GetHasCredentials(), true
	}
	return false, false
}
