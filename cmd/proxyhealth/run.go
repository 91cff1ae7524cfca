package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/httpapi"
	"github.com/proxyhealth/proxyhealth/probe"
)

const runUsage = `Usage: proxyhealth run [--proxies [NAME=]FILE]... [--config FILE] [flags]

Runs the monitoring daemon: every proxy is checked on its own schedule, every
result is journaled in DIR/journal.db, and the HTTP API, Prometheus metrics
and the dashboard are served on --listen.

Proxy lists have one URL a line (http://, https://, socks5://, socks5h://,
socks4://, socks4a://, optional user:pass@; a bare host:port means http://),
'#' comments and blank lines. A bad line stops start-up with FILE:LINE and
exit code 2. Check settings given as flags override the config file for
every source.

Signals: SIGHUP reloads the config file and proxy lists (sources and proxies
added, removed or changed without a restart; a bad file is logged and the
running configuration kept). SIGINT/SIGTERM stop gracefully (checks in
flight are cancelled, the journal is flushed, exit 0). A restart with the
same --data resumes every proxy's state from the journal.`

const runExamples = `  proxyhealth run --proxies residential.txt --proxies dc=datacenter.txt
  proxyhealth run --config proxyhealth.yaml --listen 127.0.0.1:9480
  PROXYHEALTH_TOKEN=s3cret proxyhealth run --config proxyhealth.yaml --listen 0.0.0.0:9480
  proxyhealth run --proxies list.txt --interval 10s --timeout 3s --check-url https://example.com/ --log-format json`

// runShutdownTimeout bounds the graceful stop.
const runShutdownTimeout = 30 * time.Second

func runDaemon(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("run", runUsage, runExamples, stdout, stderr)
	var rs runSettings
	rs.register(fs)
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return fs.fail("unexpected argument %q (proxy lists are given with --proxies FILE)", pos[0])
	}
	dc, err := rs.load(os.Getenv)
	if err != nil {
		fmt.Fprintf(stderr, "proxyhealth run: %v\n", err)
		return exitUsage
	}
	log := newLogger(dc.logFormat, dc.logLevel, stderr)
	dc.engine.Logger = log

	ln, err := net.Listen("tcp", dc.listen)
	if err != nil {
		fmt.Fprintf(stderr, "proxyhealth run: cannot listen on %s: %v (is another proxyhealth running? use --listen)\n", dc.listen, unwrapOpError(err))
		return exitFailure
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	log.Info("proxyhealth starting", slog.String("version", version), slog.String("listen", ln.Addr().String()),
		slog.String("data", dc.engine.DataDir), slog.Int("sources", len(dc.engine.Sources)))
	d, err := openDaemon(ctx, dc.engine, httpapi.Options{Token: dc.token, AllowedHosts: dc.allowHosts}, log)
	if err != nil {
		_ = ln.Close()
		fmt.Fprintf(stderr, "proxyhealth run: %v\n", err)
		return exitFailure
	}
	// "started" comes before the API answers: a client that reaches
	// /healthz finds the line already logged.
	log.Info("proxyhealth started", slog.String("version", version), slog.String("api", "http://"+ln.Addr().String()+"/"),
		slog.String("data", dc.engine.DataDir), slog.Int("sources", len(dc.engine.Sources)),
		slog.Int("proxies", len(d.eng.ProxyIDs())), slog.Uint64("journal_seq", d.eng.Journal().Head()))
	d.serve(ln)

	cur := dc
	failed := false
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-hup:
			cur = d.reload(ctx, &rs, cur)
		case err := <-d.served:
			log.Error("the HTTP server stopped", slog.Any("error", err))
			d.served <- err
			failed = true
			break loop
		}
	}
	log.Info("stopping", slog.Duration("timeout", runShutdownTimeout))
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), runShutdownTimeout)
	defer cancel()
	err = d.stop(sctx)
	// The head after the journal's last commit (read before the stop, it
	// missed what the stop flushed).
	head := d.eng.Journal().Head()
	if err != nil {
		log.Error("stopped with errors", slog.Uint64("journal_seq", head), slog.Any("error", err))
		return exitFailure
	}
	log.Info("stopped", slog.Uint64("journal_seq", head))
	if failed {
		return exitFailure
	}
	return exitOK
}

// reload re-reads the config file and proxy lists and applies them:
// changed sources are reconfigured, new ones added, missing ones emptied.
// Proxies added through the API stay. On error the running configuration
// is kept.
func (d *daemon) reload(ctx context.Context, rs *runSettings, cur daemonConfig) daemonConfig {
	log := d.log
	next, err := rs.load(os.Getenv)
	if err != nil {
		log.Error("reload failed; keeping the running configuration", slog.Any("error", err))
		return cur
	}
	next.engine.Logger = cur.engine.Logger
	for _, c := range []struct{ name, was, is string }{
		{"data", cur.engine.DataDir, next.engine.DataDir}, {"listen", cur.listen, next.listen},
		{"concurrency", fmt.Sprint(cur.engine.Concurrency), fmt.Sprint(next.engine.Concurrency)},
		{"retention", fmt.Sprint(cur.engine.Retention), fmt.Sprint(next.engine.Retention)},
		{"log_format", cur.logFormat, next.logFormat},
	} {
		if c.was != c.is {
			log.Warn("setting changed; it applies after a restart", slog.String("setting", c.name), slog.String("running", c.was), slog.String("configured", c.is))
		}
	}
	next.engine.DataDir, next.listen, next.engine.Concurrency, next.engine.Retention, next.logFormat =
		cur.engine.DataDir, cur.listen, cur.engine.Concurrency, cur.engine.Retention, cur.logFormat

	// Keep the proxies added through the API (unless their source went
	// away or the files now list them).
	wantIDs := map[string]string{} // proxy ID -> source
	idx := map[string]int{}
	for i, sc := range next.engine.Sources {
		idx[sc.Name] = i
		for _, raw := range sc.Proxies {
			wantIDs[mustID(raw)] = sc.Name
		}
	}
	d.api.mu.Lock()
	for id, a := range d.api.added {
		i, ok := idx[a.source]
		_, listed := wantIDs[id]
		if !ok || listed {
			delete(d.api.added, id)
			continue
		}
		next.engine.Sources[i].Proxies = append(next.engine.Sources[i].Proxies, a.raw)
		wantIDs[id] = a.source
	}
	d.api.mu.Unlock()

	// Pass 1: shrink every running source to the proxies it keeps, so that
	// a proxy moving between sources is free to be added in pass 2. Kept
	// proxies are named by their redacted URL: same ID, and the engine keeps
	// the credentials it has.
	running := map[string]bool{}
	for _, name := range d.eng.Sources() {
		running[name] = true
	}
	members := map[string][]string{} // source -> redacted URLs
	for _, id := range d.eng.ProxyIDs() {
		ps, err := d.eng.Proxy(ctx, id)
		if err != nil {
			continue // removed meanwhile
		}
		members[ps.Source] = append(members[ps.Source], ps.URL)
	}
	var errs []error
	for name, urls := range members {
		keep := proxyhealth.SourceConfig{Name: name}
		if i, ok := idx[name]; ok {
			keep.Health, keep.Probe = next.engine.Sources[i].Health, next.engine.Sources[i].Probe
		}
		for _, u := range urls {
			if wantIDs[mustID(u)] == name {
				keep.Proxies = append(keep.Proxies, u)
			}
		}
		if len(keep.Proxies) != len(urls) {
			errs = append(errs, d.eng.ReconfigureSource(ctx, keep))
		}
	}
	// Pass 2: every configured source gets its settings and proxies.
	before := len(d.eng.ProxyIDs())
	for _, sc := range next.engine.Sources {
		if running[sc.Name] {
			errs = append(errs, d.eng.ReconfigureSource(ctx, sc))
		} else {
			errs = append(errs, d.eng.AddSource(ctx, sc))
		}
	}
	// Sources gone from the config: nothing left to check.
	for name := range running {
		if _, ok := idx[name]; !ok {
			errs = append(errs, d.eng.ReconfigureSource(ctx, proxyhealth.SourceConfig{Name: name}))
		}
	}
	if err := errors.Join(errs...); err != nil {
		log.Error("reload applied with errors", slog.Any("error", err))
	}
	log.Info("configuration reloaded", slog.Int("sources", len(next.engine.Sources)),
		slog.Int("proxies", len(d.eng.ProxyIDs())), slog.Int("proxies_before", before))
	return next
}

// mustID returns the ID of an already validated proxy URL.
func mustID(raw string) string {
	u, err := probe.ParseProxyURL(raw)
	if err != nil {
		return ""
	}
	return u.ID()
}

func unwrapOpError(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

// journalPath is the journal file inside a data directory.
func journalPath(dir string) string { return filepath.Join(dir, proxyhealth.JournalFile) }
