package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/httpapi"
)

const statusUsage = `Usage: proxyhealth status [--server URL | --data DIR] [--tag TAG] [--anonymity LEVEL] [--watch] [--format table|json]

Shows the pool summary (counts by state) and a table per source, either from
a running daemon (--server, default http://127.0.0.1:9480) or straight from
a data directory (--data) without a daemon. --format json prints the same
object as GET /v1/pool. With --tag or --anonymity (transparent, anonymous,
elite; from a daemon), it also lists the matching proxies with their state,
tags, exit IP and anonymity. A daemon that is a cluster member (run
--cluster) answers for the whole cluster: status then first lists the
members, this member's share and which members answered.`

const statusExamples = `  proxyhealth status
  proxyhealth status --server http://10.0.0.2:9480 --token "$PROXYHEALTH_TOKEN" --watch
  proxyhealth status --data ./proxyhealth-data --format json
  proxyhealth status --tag residential --anonymity elite`

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
	tag := fs.String("tag", "", "also list the proxies carrying `TAG` (from a daemon)")
	anonymity := fs.String("anonymity", "", "also list the proxies of anonymity `LEVEL`: transparent, anonymous or elite (from a daemon)")
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return fs.fail("unexpected argument %q", pos[0])
	}
	if (*tag != "" || *anonymity != "") && *data != "" {
		return fs.fail("--tag and --anonymity list proxies from a daemon (--server), not from --data")
	}
	if a := *anonymity; a != "" && a != "transparent" && a != "anonymous" && a != "elite" {
		return fs.fail("--anonymity %q: want transparent, anonymous or elite", a)
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
	// get returns the pool, and with --data what was found of the journal
	// and the view; paused lists the paused proxies (at most
	// maxPausedShown+1) when the pool has any.
	var get func(context.Context) (httpapi.Pool, *dataCheck, error)
	var paused func(context.Context, httpapi.Pool) ([]httpapi.Proxy, error)
	var matching func(context.Context) (httpapi.ProxyList, error)
	if *data != "" {
		// One read of the journal gives the pool and the paused list.
		var lastPaused []httpapi.Proxy
		get = func(ctx context.Context) (httpapi.Pool, *dataCheck, error) {
			p, dc, err := poolFromData(ctx, *data)
			lastPaused = nil
			if dc != nil {
				lastPaused = dc.paused
			}
			return p, dc, err
		}
		paused = func(context.Context, httpapi.Pool) ([]httpapi.Proxy, error) { return lastPaused, nil }
	} else {
		u, err := url.Parse(*server)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fs.fail("--server %q: want a URL like http://127.0.0.1:9480", *server)
		}
		client := &http.Client{Timeout: statusHTTPTimeout}
		get = func(ctx context.Context) (httpapi.Pool, *dataCheck, error) {
			p, err := poolFromServer(ctx, client, u, *token)
			return p, nil, err
		}
		paused = func(ctx context.Context, p httpapi.Pool) ([]httpapi.Proxy, error) {
			return pausedFromServer(ctx, client, u, *token, p)
		}
		if *tag != "" || *anonymity != "" {
			matching = func(ctx context.Context) (httpapi.ProxyList, error) {
				q := u.JoinPath("/v1/proxies")
				v := url.Values{"limit": {strconv.Itoa(maxMatchingShown)}}
				if *tag != "" {
					v.Set("tag", *tag)
				}
				if *anonymity != "" {
					v.Set("anonymity", *anonymity)
				}
				q.RawQuery = v.Encode()
				var l httpapi.ProxyList
				err := getAPI(ctx, client, q, *token, &l)
				return l, err
			}
		}
	}
	term := isTerminal(stdout)
	lastWarning := ""
	for first := true; ; first = false {
		p, dc, err := get(ctx)
		if dc != nil && dc.warning != "" && dc.warning != lastWarning {
			// Once per change, so that --watch does not repeat it.
			fmt.Fprintf(stderr, "proxyhealth status: %s\n", dc.warning)
		}
		if dc != nil {
			lastWarning = dc.warning
		}
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
			// Without a readable journal (--data) there is no pool to
			// show: the table says why, JSON gets nothing.
			noPool := dc != nil && dc.noPool
			switch {
			case format.value == "json" && !noPool:
				enc := json.NewEncoder(stdout)
				if !*watch {
					enc.SetIndent("", "  ")
				}
				_ = enc.Encode(p)
			case format.value == "json":
			case noPool:
				fmt.Fprintf(stdout, "data     %s\n", dc.summary)
			default:
				if p.Cluster != nil {
					printCluster(stdout, p)
				}
				printPoolTable(stdout, p, time.Now())
				if p.Paused > 0 {
					list, err := paused(ctx, p)
					if err != nil {
						fmt.Fprintf(stderr, "proxyhealth status: listing the paused proxies: %v\n", err)
					}
					printPaused(stdout, p.Paused, list)
				}
				if matching != nil {
					l, err := matching(ctx)
					if err != nil {
						fmt.Fprintf(stderr, "proxyhealth status: listing the matching proxies: %v\n", err)
					} else {
						printMatching(stdout, filterLabel(*tag, *anonymity), l)
					}
				}
				if dc != nil {
					fmt.Fprintf(stdout, "\ndata     %s\n", dc.summary)
				}
			}
		}
		if !*watch {
			if dc != nil && dc.fatal {
				return exitFailure
			}
			return exitOK
		}
		select {
		case <-ctx.Done():
			return exitOK
		case <-time.After(interval):
		}
	}
}

// maxPausedShown bounds the paused proxies status lists.
const maxPausedShown = 20

// printPaused lists the paused proxies (n in all): an operator who paused
// a few and forgot them finds which, and how to resume them.
func printPaused(w io.Writer, n int, list []httpapi.Proxy) {
	fmt.Fprintf(w, "\npaused   %d %s, not checked until resumed (POST /v1/proxies/{id}/resume; POST /v1/resume resumes all)\n", n, plural(n, "proxy", "proxies"))
	if len(list) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSOURCE\tSTATE\tURL")
	for i, p := range list {
		if i == maxPausedShown {
			break
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.ID, p.Source, p.State, p.URL)
	}
	_ = tw.Flush()
	if n > maxPausedShown {
		fmt.Fprintf(w, "(and %d more; --format json and GET /v1/proxies show each proxy's \"paused\")\n", n-maxPausedShown)
	}
}

// maxMatchingShown bounds the proxies status --tag/--anonymity lists.
const maxMatchingShown = 50

func filterLabel(tag, anonymity string) string {
	var parts []string
	if tag != "" {
		parts = append(parts, "tag "+tag)
	}
	if anonymity != "" {
		parts = append(parts, "anonymity "+anonymity)
	}
	return strings.Join(parts, ", ")
}

// printMatching lists the proxies matching status's filters.
func printMatching(w io.Writer, label string, l httpapi.ProxyList) {
	fmt.Fprintf(w, "\n%s: %d %s\n", label, l.Total, plural(l.Total, "proxy", "proxies"))
	if len(l.Proxies) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSOURCE\tSTATE\tTAGS\tWEIGHT\tEXIT IP\tANONYMITY\tURL")
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, p := range l.Proxies {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%g\t%s\t%s\t%s\n", p.ID, p.Source, p.State, dash(strings.Join(p.Tags, ",")), p.Weight,
			dash(p.ExitIP), dash(p.Anonymity), p.URL)
	}
	_ = tw.Flush()
	if l.Total > len(l.Proxies) {
		fmt.Fprintf(w, "(and %d more; GET /v1/proxies pages through them)\n", l.Total-len(l.Proxies))
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// pausedFromServer lists the paused proxies of a daemon (at most
// maxPausedShown+1), reading GET /v1/proxies of the sources that have any.
func pausedFromServer(ctx context.Context, client *http.Client, base *url.URL, token string, p httpapi.Pool) ([]httpapi.Proxy, error) {
	var out []httpapi.Proxy
	for _, name := range slices.Sorted(maps.Keys(p.Sources)) {
		if p.Sources[name].Paused == 0 {
			continue
		}
		for offset := 0; ; {
			u := base.JoinPath("/v1/proxies")
			u.RawQuery = url.Values{"source": {name}, "limit": {strconv.Itoa(httpapi.MaxListLimit)}, "offset": {strconv.Itoa(offset)}}.Encode()
			var l httpapi.ProxyList
			if err := getAPI(ctx, client, u, token, &l); err != nil {
				return out, err
			}
			for _, px := range l.Proxies {
				if px.Paused {
					out = append(out, px)
				}
			}
			offset += len(l.Proxies)
			if len(out) > maxPausedShown {
				return out, nil
			}
			if len(l.Proxies) == 0 || offset >= l.Total {
				break
			}
		}
	}
	return out, nil
}

// getAPI GETs a JSON answer of the daemon into v.
func getAPI(ctx context.Context, client *http.Client, u *url.URL, token string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %v", u.Path, unwrapURLError(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading the answer of %s: %w", u.Path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e httpapi.ErrorBody
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s: %s: %s", u.Path, resp.Status, e.Error)
		}
		return fmt.Errorf("%s: %s", u.Path, resp.Status)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s: %w", u.Path, err)
	}
	return nil
}

// pausedOf lists the paused proxies of a status (at most
// maxPausedShown+1), walking it in pages.
func pausedOf(s proxyhealth.StatusReader) []httpapi.Proxy {
	var out []httpapi.Proxy
	for offset := 0; ; offset += listPage {
		_, views := s.List(proxyhealth.ListFilter{}, offset, listPage)
		for _, v := range views {
			if v.Paused {
				out = append(out, httpapi.ProxyOf(v))
			}
		}
		if len(out) > maxPausedShown || len(views) < listPage {
			return out
		}
	}
}

// listPage is the page size of pausedOf's walk of the status.
const listPage = 4096

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

// dataCheck is what status --data found of the journal beside the view.
type dataCheck struct {
	// summary is one line on the view and the journal, for the table.
	summary string
	// warning, if set, is printed on stderr: the journal is locked,
	// missing, empty, damaged or behind the view.
	warning string
	// fatal is set when the journal cannot back the view: status exits
	// non-zero.
	fatal bool
	// noPool is set when there is no pool to show: the journal could not
	// be read (the numbers are a fold of the journal, and only the
	// journal's).
	noPool bool
	// paused lists the paused proxies (at most maxPausedShown+1).
	paused []httpapi.Proxy
}

// journalFound is the state of DIR/journal.db as status --data found it.
type journalFound struct {
	path        string
	status      proxyhealth.StatusReader // the fold of the journal, when it was readable
	missing     bool
	zeroBytes   bool
	locked      bool
	err         error // damaged, or unreadable (permissions, schema)
	damaged     bool
	head, first uint64
}

// inspectJournal opens DIR/journal.db read-only (proxyhealth.OpenArchive),
// if it can, and folds it into the pool's status: the code a restarted
// engine uses.
//
// With fold false it only opens the journal (for its head and first seq):
// the pool then comes from the view.
func inspectJournal(ctx context.Context, dir string, fold bool) journalFound {
	f := journalFound{path: journalPath(dir)}
	fi, err := os.Stat(f.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		f.missing = true
		return f
	case err != nil:
		f.err = err
		return f
	case fi.Size() == 0:
		f.zeroBytes = true
		return f
	}
	a, err := proxyhealth.OpenArchive(ctx, dir, proxyhealth.ArchiveOptions{LockTimeout: journalLockWait})
	switch {
	case errors.Is(err, fs.ErrNotExist): // removed meanwhile
		f.missing = true
		return f
	case errors.Is(err, proxyhealth.ErrJournalEmpty):
		f.zeroBytes = true
		return f
	case errors.Is(err, proxyhealth.ErrJournalLocked):
		f.locked = true
		return f
	case errors.Is(err, proxyhealth.ErrJournalCorrupt), errors.Is(err, proxyhealth.ErrNotAJournal):
		f.err, f.damaged = err, true
		return f
	case err != nil:
		f.err = err
		return f
	}
	defer a.Close()
	f.head, f.first = a.Head(), a.First()
	if !fold {
		return f
	}
	st, err := a.Status(ctx)
	if err != nil {
		// Reading every event failed somewhere: the file is damaged
		// (unless the command was interrupted).
		f.err, f.damaged = err, ctx.Err() == nil
		return f
	}
	f.status = st
	return f
}

// judge compares the journal with the view's offset (viewSeq, the last
// journal seq the view applied).
func (f journalFound) judge(dir string, viewSeq uint64) *dataCheck {
	d := &dataCheck{}
	view := fmt.Sprintf("view.db at seq %d", viewSeq)
	rebuild := fmt.Sprintf("'proxyhealth rebuild --data %s'", dir)
	switch {
	case f.locked:
		d.summary = view + " · journal.db locked by a running daemon"
		d.warning = fmt.Sprintf("%s is locked: a proxyhealth daemon is running on %s; the figures are the view's (seq %d), and the journal is not checked against them. For the daemon's live status use 'proxyhealth status --server URL' (default %s)",
			f.path, dir, viewSeq, "http://"+defaultListen)
	case f.zeroBytes:
		d.summary = view + " · journal.db empty (0 bytes)"
		d.warning = fmt.Sprintf("%s is empty (0 bytes): the events behind the view (seq %d) are gone, the file was truncated or replaced, and proxyhealth run refuses to start on it. Restore journal.db from a backup, or start over deliberately with 'proxyhealth run --start-fresh'",
			f.path, viewSeq)
		d.fatal = true
	case f.missing:
		d.summary = view + " · no journal.db"
		if viewSeq > 0 {
			d.warning = fmt.Sprintf("no journal at %s: nothing backs the view (seq %d); the journal was deleted or --data is not the daemon's data directory. Restore journal.db from a backup", f.path, viewSeq)
			d.fatal = true
		} else {
			d.warning = fmt.Sprintf("no journal at %s yet (the view is empty too)", f.path)
		}
	case f.damaged:
		d.summary = view + " · journal.db damaged"
		d.warning = fmt.Sprintf("the journal cannot be read, so nothing backs the view (seq %d): %v (details: 'proxyhealth journal verify --data %s')", viewSeq, f.err, dir)
		d.fatal = true
	case f.err != nil:
		d.summary = view + " · journal.db unreadable"
		d.warning = fmt.Sprintf("the journal could not be read, nor checked against the view (seq %d): %v", viewSeq, f.err)
		d.fatal = true
	case f.head < viewSeq:
		d.summary = fmt.Sprintf("%s · journal.db head seq %d, behind the view", view, f.head)
		what := fmt.Sprintf("ends at seq %d", f.head)
		if f.head == 0 {
			what = "holds no event"
		}
		d.warning = fmt.Sprintf("%s %s but the view is at seq %d: the journal lost history (truncated, replaced or an older copy), so it cannot back the view, and proxyhealth run refuses to start on it. Restore journal.db from a backup; or rebuild the view from what the journal holds with %s",
			f.path, what, viewSeq, rebuild)
		d.fatal = true
	case f.head > 0 && viewSeq+1 < f.first:
		d.summary = fmt.Sprintf("%s · journal.db seq %d-%d, the view is behind its retention", view, f.first, f.head)
		d.warning = fmt.Sprintf("the view (seq %d) is behind the journal's retention (first kept seq %d): events %d-%d are gone, so the view cannot catch up. Rebuild it with %s",
			viewSeq, f.first, viewSeq+1, f.first-1, rebuild)
		d.fatal = true
	case f.head == viewSeq:
		d.summary = fmt.Sprintf("%s · journal.db head seq %d (up to date)", view, f.head)
	default:
		d.summary = fmt.Sprintf("%s · journal.db head seq %d (%d events not yet in the view; a running daemon applies them)", view, f.head, f.head-viewSeq)
	}
	return d
}

// poolFromData reads the pool from a data directory without asking a
// daemon: from view.db when there is one (proxyhealth.ReadView: fast,
// and readable beside a running daemon), checked against the journal's
// head; otherwise a fold of the journal (proxyhealth.OpenArchive, the code
// a restarted engine uses).
func poolFromData(ctx context.Context, dir string) (httpapi.Pool, *dataCheck, error) {
	viewSeq, viewExists, err := proxyhealth.ViewOffset(ctx, dir)
	if err != nil {
		return httpapi.Pool{}, nil, fmt.Errorf("%s is not a readable proxyhealth view (%v); rebuild it with 'proxyhealth rebuild --data %s'", filepath.Join(dir, proxyhealth.SQLiteViewFile), err, dir)
	}
	f := inspectJournal(ctx, dir, !viewExists)
	if viewExists {
		d := f.judge(dir, viewSeq)
		if f.err != nil && !f.damaged && ctx.Err() != nil {
			return httpapi.Pool{}, d, f.err // interrupted
		}
		snap, err := proxyhealth.ReadView(ctx, dir, maxPausedShown+1)
		if err != nil {
			return httpapi.Pool{}, nil, err
		}
		for _, v := range snap.Paused {
			d.paused = append(d.paused, httpapi.ProxyOf(v))
		}
		return httpapi.PoolOf(snap.Summary), d, nil
	}
	switch {
	case f.missing:
		return httpapi.Pool{}, nil, fmt.Errorf("no journal at %s and no view: is --data the daemon's data directory?", f.path)
	case f.locked:
		return httpapi.Pool{}, nil, fmt.Errorf("%s is locked by a running proxyhealth and there is no view.db to read beside it: ask the daemon with 'proxyhealth status --server URL'", f.path)
	case f.zeroBytes:
		return httpapi.Pool{}, nil, fmt.Errorf("%s is empty (0 bytes): the events it held are gone (the file was truncated or replaced), and proxyhealth run refuses to start on it. Restore it from a backup, or start over deliberately with 'proxyhealth run --start-fresh'", f.path)
	case f.damaged:
		return httpapi.Pool{}, nil, fmt.Errorf("the journal cannot be read: %w (details: 'proxyhealth journal verify --data %s')", f.err, dir)
	case f.err != nil:
		return httpapi.Pool{}, nil, fmt.Errorf("cannot read the journal: %w", f.err)
	}
	return httpapi.PoolOf(f.status.Summary()), &dataCheck{summary: fmt.Sprintf("no view.db · folded journal.db up to seq %d", f.head), paused: pausedOf(f.status)}, nil
}

// printCluster prints a cluster member's view of its cluster (from GET
// /v1/pool's "cluster" and "cluster_answer"): the name, this member's
// membership, and each member with its share and whether it answered.
// Only this member's share is known per member (ClusterStatus.Checked); the
// others' is shown together: the cluster-wide total minus this member's.
func printCluster(w io.Writer, p httpapi.Pool) {
	c := p.Cluster
	membership := "fresh"
	switch {
	case c.Lost:
		membership = "LOST: it checks nothing and must be restarted to rejoin"
		if c.Error != "" {
			membership += " (" + c.Error + ")"
		}
	case !c.Fresh:
		membership = "lease unconfirmed: not checking until etcd confirms it"
	}
	fmt.Fprintf(w, "cluster  %s · %d %s · this member %s: %s\n", c.Name, len(c.Members), plural(len(c.Members), "member", "members"), c.Self, membership)
	a := p.ClusterAnswer
	if a == nil {
		fmt.Fprintf(w, "         the counts below are this member's proxies only\n")
	} else {
		n := len(a.Members) + len(a.Missing)
		line := fmt.Sprintf("         the counts below are the cluster's: %d of %d %s answered", len(a.Members), n, plural(n, "member", "members"))
		if len(a.Missing) > 0 {
			line += "; the proxies of the members that did not answer are not counted"
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintln(w)
	answered := map[string]string{}
	if a != nil {
		for _, m := range a.Members {
			answered[m] = "answered"
		}
		for _, m := range a.Missing {
			answered[m.Member] = "did not answer: " + m.Error
		}
	}
	members := slices.Clone(c.Members)
	for m := range answered {
		if !slices.Contains(members, m) {
			members = append(members, m)
		}
	}
	slices.Sort(members)
	share := func(n int) string {
		if c.Configured == 0 {
			return strconv.Itoa(n)
		}
		return fmt.Sprintf("%d (%.1f%%)", n, float64(n)/float64(c.Configured)*100)
	}
	// The other members that answered check the cluster-wide total minus
	// this member's share together: one such member's share is exact.
	others := 0
	for _, m := range members {
		if m != c.Self && answered[m] == "answered" {
			others++
		}
	}
	rest := max(p.Total-c.Checked, 0)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tCHECKS\tANSWER")
	for _, m := range members {
		checks, ans := "-", answered[m]
		if ans == "" {
			ans = "-"
		}
		n, known := 0, false
		if a != nil {
			n, known = a.Shares[m]
		}
		switch {
		case m == c.Self:
			checks, ans = share(c.Checked), "this member"
		case known:
			checks = share(n)
		case ans == "answered" && others == 1:
			checks = share(rest)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", m, checks, ans)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "configured %d %s in the shared configuration; this member holds %d other members' proxy states for a takeover\n",
		c.Configured, plural(c.Configured, "proxy", "proxies"), c.Replicas)
	if others > 1 && (a == nil || len(a.Shares) == 0) {
		fmt.Fprintf(w, "the %d other members that answered check %s together (each one's share: proxyhealth_cluster_checked_proxies in its /metrics)\n",
			others, share(rest))
	}
	fmt.Fprintln(w)
}

// printPoolTable prints the summary and the per-source table.
func printPoolTable(w io.Writer, p httpapi.Pool, now time.Time) {
	updated := "never"
	if p.UpdatedAt != nil {
		updated = fmt.Sprintf("%s (%s ago)", p.UpdatedAt.Local().Format("15:04:05"), now.Sub(*p.UpdatedAt).Round(time.Second))
	}
	fmt.Fprintf(w, "pool     %d proxies · %.1f%% healthy · journal seq %d · updated %s\n", p.Total, p.HealthPercentage, p.JournalSeq, updated)
	fmt.Fprintf(w, "         %s\n", countsLine(p.Counts))
	if p.PanicMode {
		fmt.Fprintln(w, "         PANIC MODE: too few proxies are usable; picks go to the least-bad ones")
	}
	fmt.Fprintln(w)
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
		fmt.Sprintf("ejected %d", c.Ejected),
	}
	return strings.Join(parts, " · ")
}
