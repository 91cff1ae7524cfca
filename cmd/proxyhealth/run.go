package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"syscall"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/httpapi"
)

const runUsage = `Usage: proxyhealth run [--proxies [NAME=]FILE]... [--config FILE] [flags]

Runs the monitoring daemon: every proxy is checked on its own schedule, every
result is journaled in DIR/journal.db, and the HTTP API, Prometheus metrics
and the dashboard are served on --listen.

With --serve ADDR it is also the rotating endpoint: an HTTP forward proxy
(absolute-form and CONNECT) and a SOCKS5 proxy on the same port that sends
each request through a healthy proxy picked by --strategy, retries
idempotent requests on another one after a connection failure, and feeds
what traffic sees back into the health state (three failures of a proxy's
own eject it from rotation for a while). A session key keeps its proxy:
header X-Proxyhealth-Session, or proxy user NAME-session-KEY. Upstream
credentials never reach clients.

Proxy lists have one URL a line (http://, https://, socks5://, socks5h://,
socks4://, socks4a://, optional user:pass@; a bare host:port means http://),
'#' comments and blank lines. A bad line stops start-up with FILE:LINE and
exit code 2. Check settings given as flags override the config file for
every source.

Signals: SIGHUP (or POST /v1/reload, which answers the diff) reloads the
config file and proxy lists: sources and proxies added, removed, moved or
changed without a restart, proxies added through the API kept; a bad file
is logged (POST /v1/reload: 400 naming FILE:LINE) and the running
configuration kept. listen, data, concurrency, retention, checkpoint_every,
log_format, pool, webhooks and serve apply after a restart. SIGINT/SIGTERM
stop gracefully (checks in flight are cancelled, the journal is flushed, the
live status saved, exit 0). A restart with the
same --data resumes every proxy's state from the journal.`

const runExamples = `  proxyhealth run --proxies list.txt --serve 127.0.0.1:8899 --strategy least-latency
      curl -x http://127.0.0.1:8899 https://example.com/
      curl --socks5-hostname 127.0.0.1:8899 https://example.com/
  proxyhealth run --proxies residential.txt --proxies dc=datacenter.txt
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
	var epLn net.Listener
	if dc.serve != "" {
		if epLn, err = net.Listen("tcp", dc.serve); err != nil {
			_ = ln.Close()
			fmt.Fprintf(stderr, "proxyhealth run: cannot listen on %s for the rotating endpoint: %v (use --serve)\n", dc.serve, unwrapOpError(err))
			return exitFailure
		}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	log.Info("proxyhealth starting", slog.String("version", version), slog.String("listen", ln.Addr().String()),
		slog.String("data", dc.engine.DataDir), slog.Int("sources", len(dc.engine.Sources)))
	// Until the engine is open, the API's address answers 503 "starting".
	api := httpapi.Options{Token: dc.token, AllowedHosts: dc.allowHosts}
	web := serveStarting(ln, api, log)
	binPages := newBinaryRelease(log)
	binPages.release("starting")
	d, err := openDaemon(ctx, dc.engine, api, log, &reloadable{settings: &rs, getenv: os.Getenv, running: dc}, dc.serve != "")
	if err != nil {
		web.close()
		if epLn != nil {
			_ = epLn.Close()
		}
		fmt.Fprintf(stderr, "proxyhealth run: %v\n", err)
		return exitFailure
	}
	web.hold(d.srv)
	if epLn != nil {
		if err := d.serveEndpoint(ctx, epLn, dc.strategy, dc.users, nil); err != nil {
			web.close()
			d.srv.Close()
			fmt.Fprintf(stderr, "proxyhealth run: %v\n", err)
			_ = d.eng.Close(context.WithoutCancel(ctx))
			return exitFailure
		}
		log.Info("rotating endpoint", slog.String("listen", epLn.Addr().String()), slog.String("strategy", string(dc.strategy)),
			slog.String("http_proxy", "http://"+epLn.Addr().String()), slog.String("socks5", "socks5h://"+epLn.Addr().String()))
	}
	// "started" comes before the API answers (requests wait from the
	// engine's open to here): a client that reaches /healthz and finds
	// the engine healthy finds the line already logged, and one that read
	// the line is answered by the API.
	log.Info("proxyhealth started", slog.String("version", version), slog.String("api", "http://"+ln.Addr().String()+"/"),
		slog.String("data", dc.engine.DataDir), slog.Int("sources", len(dc.engine.Sources)),
		slog.Int("proxies", len(d.eng.ProxyIDs())), slog.Uint64("journal_seq", d.eng.JournalHead()))
	d.attach(web)
	binPages.release("started")

	failed, code := false, exitFailure
	if c, ok := d.eng.Cluster(); ok {
		log.Info("cluster member", slog.String("cluster", c.Name), slog.String("self", c.Self), slog.Any("members", c.Members),
			slog.Int("checked", c.Checked), slog.Int("configured", c.Configured))
	}
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-d.eng.ClusterLost(): // nil outside a cluster
			c, _ := d.eng.Cluster()
			log.Error("cluster membership lost: checks stopped; exiting so that the supervisor restarts this member and it rejoins as a new one",
				slog.String("error", c.Error), slog.Int("exit_code", exitRejoin))
			failed, code = true, exitRejoin
			break loop
		case err := <-d.epDone: // nil channel without --serve
			log.Error("the rotating endpoint stopped", slog.Any("error", err))
			d.epDone <- err
			failed = true
			break loop
		case <-hup:
			// Logged by reloadConfig.
			_, _ = d.reloadConfig(ctx)
		case err := <-d.web.served:
			log.Error("the HTTP server stopped", slog.Any("error", err))
			d.web.served <- err
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
	head := d.eng.JournalHead()
	if err != nil {
		log.Error("stopped with errors", slog.Uint64("journal_seq", head), slog.Any("error", err))
		return exitFailure
	}
	log.Info("stopped", slog.Uint64("journal_seq", head))
	if failed {
		return code
	}
	return exitOK
}

// exitRejoin is run's exit code when the member lost its cluster
// membership (its lease expired: paused or cut off from etcd too long):
// it stopped checking, and its supervisor (systemd Restart=on-failure, a
// container's restart policy) starts it again as a new member.
const exitRejoin = 3

// errNoConfig is the error of a reload in a daemon started without a
// configuration to re-read (the demo).
var errNoConfig = errors.New("proxyhealth: this daemon has no configuration file or proxy lists to reload")

// reloadConfig re-reads the config file and proxy lists and applies them
// with Engine.Reconcile (SIGHUP and POST /v1/reload): changed sources are
// reconfigured, new ones added, missing ones emptied, proxies added
// through the API kept, a proxy may move between sources. A file that
// does not load keeps the running configuration: the error wraps
// proxyhealth.ErrBadConfig and names FILE:LINE. Settings that only apply
// at start-up are reported in a warning and kept.
func (d *daemon) reloadConfig(ctx context.Context) (proxyhealth.ReconcileDiff, error) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	log := d.log
	if d.settings == nil {
		return proxyhealth.ReconcileDiff{}, errNoConfig
	}
	cur := d.cur
	next, err := d.settings.load(d.getenv)
	if err != nil {
		log.Error("reload failed; keeping the running configuration", slog.Any("error", err))
		return proxyhealth.ReconcileDiff{}, fmt.Errorf("%w: %w", proxyhealth.ErrBadConfig, err)
	}
	next.engine.Logger = cur.engine.Logger
	for _, c := range restartSettings(cur, next) {
		log.Warn("setting changed; it applies after a restart", c...)
	}
	next.keepStartupSettings(cur)
	// Once started, the reload runs to its end: a client that hangs up on
	// POST /v1/reload must not leave it half applied.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reloadTimeout)
	defer cancel()
	diff, err := d.eng.Reconcile(actx, next.engine.Sources)
	if err != nil && errors.Is(err, proxyhealth.ErrBadConfig) {
		// Validated before anything changed: the running configuration
		// stays.
		log.Error("reload failed; keeping the running configuration", slog.Any("error", err))
		return diff, err
	}
	d.cur = next.withoutSources()
	if err != nil {
		log.Error("reload applied with errors", slog.Any("error", err),
			slog.Int("added", len(diff.Added)), slog.Int("removed", len(diff.Removed)), slog.Int("changed", len(diff.Changed)))
		return diff, err
	}
	log.Info("configuration reloaded", slog.Int("sources", len(d.eng.Sources())), slog.Int("proxies", len(d.eng.ProxyIDs())),
		slog.Int("added", len(diff.Added)), slog.Int("removed", len(diff.Removed)), slog.Int("changed", len(diff.Changed)),
		slog.Any("added_ids", firstIDs(diff.Added)), slog.Any("removed_ids", firstIDs(diff.Removed)), slog.Any("changed_ids", firstIDs(diff.Changed)))
	return diff, nil
}

// reloadTimeout bounds the application of a reloaded configuration.
const reloadTimeout = 2 * time.Minute

// maxLoggedIDs bounds the proxy IDs a reload's log line lists per kind.
const maxLoggedIDs = 20

// firstIDs returns at most maxLoggedIDs IDs, and "…" when there are more.
func firstIDs(ids []string) []string {
	if len(ids) <= maxLoggedIDs {
		return ids
	}
	return append(ids[:maxLoggedIDs:maxLoggedIDs], fmt.Sprintf("… %d more", len(ids)-maxLoggedIDs))
}

// restartSettings lists the settings that differ between the running and
// the reloaded configuration but only apply at start-up, as log
// attributes. Webhooks are named, never shown (their URLs and secrets may
// hold credentials).
func restartSettings(cur, next daemonConfig) [][]any {
	var out [][]any
	for _, c := range []struct{ name, was, is string }{
		{"data", cur.engine.DataDir, next.engine.DataDir}, {"listen", cur.listen, next.listen},
		{"concurrency", fmt.Sprint(cur.engine.Concurrency), fmt.Sprint(next.engine.Concurrency)},
		{"retention", fmt.Sprint(cur.engine.Retention), fmt.Sprint(next.engine.Retention)},
		{"checkpoint_every", fmt.Sprint(cur.engine.CheckpointEvery), fmt.Sprint(next.engine.CheckpointEvery)},
		{"log_format", cur.logFormat, next.logFormat},
		{"cluster", fmt.Sprint(cur.engine.Cluster), fmt.Sprint(next.engine.Cluster)},
		{"pool.degraded_threshold", fmt.Sprint(poolThreshold(cur.engine.PoolThreshold)), fmt.Sprint(poolThreshold(next.engine.PoolThreshold))},
		{"pool.recovery_margin", fmt.Sprint(poolMargin(cur.engine.PoolMargin)), fmt.Sprint(poolMargin(next.engine.PoolMargin))},
	} {
		if c.was != c.is {
			out = append(out, []any{slog.String("setting", c.name), slog.String("running", c.was), slog.String("configured", c.is)})
		}
	}
	if !reflect.DeepEqual(cur.engine.Webhooks, next.engine.Webhooks) {
		out = append(out, []any{slog.String("setting", "webhooks"), slog.Int("running", len(cur.engine.Webhooks)), slog.Int("configured", len(next.engine.Webhooks))})
	}
	if cur.serve != next.serve || cur.strategy != next.strategy || cur.engine.Rotation != next.engine.Rotation {
		out = append(out, []any{slog.String("setting", "serve"), slog.String("running", cur.serve+" "+string(cur.strategy)), slog.String("configured", next.serve+" "+string(next.strategy))})
	}
	if !maps.Equal(cur.users, next.users) {
		// Named, never shown: they are passwords.
		out = append(out, []any{slog.String("setting", "serve.users"), slog.Int("running", len(cur.users)), slog.Int("configured", len(next.users))})
	}
	return out
}

// withoutSources returns dc without its sources: what the daemon keeps of
// its running configuration (its proxies, 7 MB at 100,000, are the
// engine's).
func (dc daemonConfig) withoutSources() daemonConfig {
	dc.engine.Sources = nil
	return dc
}

// keepStartupSettings replaces the settings that only apply at start-up
// with the running ones.
func (dc *daemonConfig) keepStartupSettings(running daemonConfig) {
	dc.engine.DataDir, dc.listen, dc.engine.Concurrency, dc.engine.Retention, dc.logFormat =
		running.engine.DataDir, running.listen, running.engine.Concurrency, running.engine.Retention, running.logFormat
	dc.engine.PoolThreshold, dc.engine.PoolMargin, dc.engine.Webhooks =
		running.engine.PoolThreshold, running.engine.PoolMargin, running.engine.Webhooks
	dc.serve, dc.strategy, dc.users, dc.engine.Rotation = running.serve, running.strategy, running.users, running.engine.Rotation
	dc.engine.Cluster, dc.engine.CheckpointEvery = running.engine.Cluster, running.engine.CheckpointEvery
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
