package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/httpapi"
	"github.com/proxyhealth/proxyhealth/projections"
	"github.com/proxyhealth/proxyhealth/projections/sqlview"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

const statusUsage = `Usage: proxyhealth status [--server URL | --data DIR] [--watch] [--format table|json]

Shows the pool summary (counts by state) and a table per source, either from
a running daemon (--server, default http://127.0.0.1:9480) or straight from
a data directory (--data) without a daemon. --format json prints the same
object as GET /v1/pool.`

const statusExamples = `  proxyhealth status
  proxyhealth status --server http://10.0.0.2:9480 --token "$PROXYHEALTH_TOKEN" --watch
  proxyhealth status --data ./proxyhealth-data --format json`

// statusHTTPTimeout bounds one request to the daemon.
const statusHTTPTimeout = 10 * time.Second

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("status", statusUsage, statusExamples, stdout, stderr)
	server := fs.String("server", "http://"+defaultListen, "`URL` of a running daemon")
	data := fs.String("data", "", "read the data `DIR` instead of asking a daemon")
	token := fs.String("token", "", "bearer `TOKEN` of the daemon (default $PROXYHEALTH_TOKEN)")
	watch := fs.Bool("watch", false, "refresh until interrupted")
	interval := 2 * time.Second
	fs.Var(durationFlag{&interval}, "interval", "refresh `DURATION` with --watch")
	format := newChoice("table", "table", "json")
	fs.Var(format, "format", "output `FORMAT`: table or json")
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return fs.fail("unexpected argument %q", pos[0])
	}
	if fs.isSet("server") && *data != "" {
		return fs.fail("use --server or --data, not both")
	}
	if interval < 100*time.Millisecond {
		return fs.fail("--interval %v: at least 100ms", interval)
	}
	if *token == "" {
		*token = os.Getenv("PROXYHEALTH_TOKEN")
	}
	var get func(context.Context) (httpapi.Pool, error)
	if *data != "" {
		get = func(ctx context.Context) (httpapi.Pool, error) { return poolFromData(ctx, *data) }
	} else {
		u, err := url.Parse(*server)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fs.fail("--server %q: want a URL like http://127.0.0.1:9480", *server)
		}
		client := &http.Client{Timeout: statusHTTPTimeout}
		get = func(ctx context.Context) (httpapi.Pool, error) { return poolFromServer(ctx, client, u, *token) }
	}
	term := isTerminal(stdout)
	for first := true; ; first = false {
		p, err := get(ctx)
		if err != nil {
			if ctx.Err() != nil && !first {
				return exitOK
			}
			fmt.Fprintf(stderr, "proxyhealth status: %v\n", err)
			if !*watch {
				return exitFailure
			}
		} else {
			if *watch && term {
				fmt.Fprint(stdout, "\x1b[H\x1b[2J")
			} else if *watch && !first {
				fmt.Fprintln(stdout)
			}
			if format.value == "json" {
				enc := json.NewEncoder(stdout)
				if !*watch {
					enc.SetIndent("", "  ")
				}
				_ = enc.Encode(p)
			} else {
				printPoolTable(stdout, p, time.Now())
			}
		}
		if !*watch {
			return exitOK
		}
		select {
		case <-ctx.Done():
			return exitOK
		case <-time.After(interval):
		}
	}
}

// poolFromServer asks a daemon for GET /v1/pool.
func poolFromServer(ctx context.Context, client *http.Client, base *url.URL, token string) (httpapi.Pool, error) {
	u := base.JoinPath("/v1/pool")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return httpapi.Pool{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return httpapi.Pool{}, fmt.Errorf("no daemon answers at %s (%v); start one with 'proxyhealth run', or read a data directory with --data", base, unwrapURLError(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return httpapi.Pool{}, fmt.Errorf("reading the answer of %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e httpapi.ErrorBody
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return httpapi.Pool{}, fmt.Errorf("%s: %s: %s", u, resp.Status, e.Error)
		}
		return httpapi.Pool{}, fmt.Errorf("%s: %s", u, resp.Status)
	}
	var p httpapi.Pool
	if err := json.Unmarshal(body, &p); err != nil {
		return httpapi.Pool{}, fmt.Errorf("%s did not answer a pool summary (is it a proxyhealth?): %w", u, err)
	}
	return p, nil
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return unwrapOpError(ue.Err)
	}
	return err
}

// poolFromData reads the pool summary from a data directory: from view.db
// (readable while a daemon runs), or, without one, by folding the journal.
func poolFromData(ctx context.Context, dir string) (httpapi.Pool, error) {
	path := filepath.Join(dir, proxyhealth.ViewFile)
	if _, err := os.Stat(path); err == nil {
		return poolFromView(ctx, path)
	}
	return poolFromJournal(ctx, dir)
}

// poolFromView queries view.db (read-only).
func poolFromView(ctx context.Context, path string) (httpapi.Pool, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return httpapi.Pool{}, err
	}
	db, err := sql.Open("sqlite3", (&url.URL{Scheme: "file", Path: abs}).String()+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		return httpapi.Pool{}, fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	p := httpapi.Pool{Sources: map[string]httpapi.SourceCounts{}}
	var newest int64
	err = db.QueryRowContext(ctx, "SELECT seq, newest_at_unix_nano FROM projection_offsets WHERE name = ?", sqlview.OffsetName).Scan(&p.JournalSeq, &newest)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return httpapi.Pool{}, fmt.Errorf("%s is not a readable proxyhealth view (%v); rebuild it with 'proxyhealth rebuild --data %s'", path, err, filepath.Dir(path))
	}
	if newest > 0 {
		t := time.Unix(0, newest).UTC()
		p.UpdatedAt = &t
	}
	rows, err := db.QueryContext(ctx, `SELECT source, total, unknown, healthy, degraded, unhealthy, recovering, failed, paused,
		health_percentage, avg_latency_ms FROM sources ORDER BY source`)
	if err != nil {
		return httpapi.Pool{}, fmt.Errorf("query %s: %w", path, err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var c httpapi.Counts
		var pct, lat sql.NullFloat64
		if err := rows.Scan(&name, &c.Total, &c.Unknown, &c.Healthy, &c.Degraded, &c.Unhealthy, &c.Recovering, &c.Failed, &c.Paused, &pct, &lat); err != nil {
			return httpapi.Pool{}, fmt.Errorf("query %s: %w", path, err)
		}
		c.HealthPercentage = pct.Float64
		p.Sources[name] = httpapi.SourceCounts{Counts: c, AvgLatencyMS: math.Round(lat.Float64*1000) / 1000}
		p.Total += c.Total
		p.Unknown += c.Unknown
		p.Healthy += c.Healthy
		p.Degraded += c.Degraded
		p.Unhealthy += c.Unhealthy
		p.Recovering += c.Recovering
		p.Failed += c.Failed
		p.Paused += c.Paused
	}
	if err := rows.Err(); err != nil {
		return httpapi.Pool{}, fmt.Errorf("query %s: %w", path, err)
	}
	if p.Total > 0 {
		p.HealthPercentage = math.Round(float64(p.Healthy)*10000/float64(p.Total)) / 100
	}
	return p, nil
}

// poolFromJournal computes the pool summary by folding the journal
// (read-only).
func poolFromJournal(ctx context.Context, dir string) (httpapi.Pool, error) {
	j, err := openJournalRO(dir)
	if err != nil {
		return httpapi.Pool{}, err
	}
	defer j.Close()
	live := projections.NewLive(projections.LiveOptions{Snapshots: j.LoadSnapshot})
	batch := make([]*pb.Envelope, 0, 1024)
	for env, err := range j.Read(ctx, 1) {
		if err != nil {
			return httpapi.Pool{}, err
		}
		batch = append(batch, env)
		if len(batch) == cap(batch) {
			live.Apply(batch...)
			batch = batch[:0]
		}
	}
	live.Apply(batch...)
	return httpapi.PoolOf(live.Summary()), nil
}

// printPoolTable prints the summary and the per-source table.
func printPoolTable(w io.Writer, p httpapi.Pool, now time.Time) {
	updated := "never"
	if p.UpdatedAt != nil {
		updated = fmt.Sprintf("%s (%s ago)", p.UpdatedAt.Local().Format("15:04:05"), now.Sub(*p.UpdatedAt).Round(time.Second))
	}
	fmt.Fprintf(w, "pool     %d proxies · %.1f%% healthy · journal seq %d · updated %s\n", p.Total, p.HealthPercentage, p.JournalSeq, updated)
	fmt.Fprintf(w, "         %s\n\n", countsLine(p.Counts))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tTOTAL\tHEALTHY\tDEGRADED\tUNHEALTHY\tRECOVERING\tFAILED\tUNKNOWN\tCHECKING\tPAUSED\tHEALTH\tAVG LATENCY")
	names := make([]string, 0, len(p.Sources))
	for n := range p.Sources {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		s := p.Sources[n]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.1f%%\t%s\n", n, s.Total, s.Healthy, s.Degraded, s.Unhealthy,
			s.Recovering, s.Failed, s.Unknown, s.Checking, s.Paused, s.HealthPercentage, fmtMS(s.AvgLatencyMS))
	}
	_ = tw.Flush()
	if len(names) == 0 {
		fmt.Fprintln(w, "(no proxies)")
	}
}

// countsLine is the one-line summary used by status and demo.
func countsLine(c httpapi.Counts) string {
	parts := []string{
		fmt.Sprintf("healthy %d", c.Healthy), fmt.Sprintf("degraded %d", c.Degraded),
		fmt.Sprintf("unhealthy %d", c.Unhealthy), fmt.Sprintf("recovering %d", c.Recovering),
		fmt.Sprintf("failed %d", c.Failed), fmt.Sprintf("unknown %d", c.Unknown),
		fmt.Sprintf("checking %d", c.Checking), fmt.Sprintf("paused %d", c.Paused),
	}
	return strings.Join(parts, " · ")
}
