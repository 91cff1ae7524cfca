package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/proxyhealth/proxyhealth"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

const journalUsage = `Usage: proxyhealth journal replay|verify|stats|salvage --data DIR [flags]
       proxyhealth journal replay|stats --server URL [--token TOKEN] [flags]
       proxyhealth journal explain PROXY --data DIR | --server URL [flags]
       proxyhealth journal replay|explain --data DIR1 --data DIR2 ... --server URL1 ... [flags]

The journal (DIR/journal.db) is the audit trail: every check, decision and
operator action, in order, with a global sequence number.

  replay   prints events, one a line (text, or JSON lines with seq, at,
           proxy_id, source, type and the event's fields)
  verify   checks the journal's integrity (page structure, every record's
           checksum, gap-free sequences and streams); exit 0 only if it
           is clean
  stats    counts by type, size and time span
  explain  tells one proxy's story (ID or URL) in plain sentences: checks
           passed and failed, unhealthy, recovery attempts, ejections,
           operator actions
  salvage  copies every intact event of a damaged journal into a new
           journal file (--out, default DIR/journal.salvaged.db): the
           longest gap-free run from the first retained event, with the
           snapshots and stream heads it needs; it reports what it could
           not copy and never modifies journal.db. Then move journal.db
           aside and the new file into its place.

The journal is opened read-only. While a daemon runs on the same data
directory the file is locked (bbolt allows no reader beside its writer):
replay and stats then read it from the daemon with --server URL (GET
/v1/journal, page by page; same output), verify and salvage need the
daemon stopped.

In a cluster each member journals what its own actors decide in its own
data directory. replay and explain take several --data and --server (one
journal a member, mixed as you like) and merge them by event time, ties
broken by the order given, then by seq; a member's own events keep their
order. Each record names its member: a column after the time in text, a
"member" field in JSON; explain names the member of each sentence.
Filters apply to every member. If a member cannot be read at all nothing
is printed; if one fails part-way the others are printed to their end and
the failure is named last (exit 1). One --token serves every --server.`

const journalExamples = `  proxyhealth journal replay --data ./proxyhealth-data --type state_changed --since 1h
  proxyhealth journal replay --data ./proxyhealth-data --proxy socks5://10.0.0.7:1080 --format json
  proxyhealth journal replay --data ./proxyhealth-data --source residential --since 2025-03-04 --until 2025-03-05
  proxyhealth journal verify --data ./proxyhealth-data
  proxyhealth journal stats --data ./proxyhealth-data --format json
  proxyhealth journal replay --server http://127.0.0.1:9480 --type proxy_paused,proxy_resumed --since 24h
  PROXYHEALTH_TOKEN=s3cret proxyhealth journal stats --server http://10.0.0.2:9480
  proxyhealth journal salvage --data ./proxyhealth-data --out ./journal.salvaged.db
  proxyhealth journal replay --data /srv/a/data --data /srv/b/data --proxy socks5://10.0.0.7:1080
  proxyhealth journal replay --server http://10.0.0.2:9480 --server http://10.0.0.3:9480 --type state_changed --since 1h`

func runJournal(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "proxyhealth journal: missing subcommand: replay, verify, stats, salvage or explain (see 'proxyhealth journal --help')")
		return exitUsage
	}
	switch args[0] {
	case "replay":
		return journalReplay(ctx, args[1:], stdout, stderr)
	case "verify":
		return journalVerify(ctx, args[1:], stdout, stderr)
	case "stats":
		return journalStats(ctx, args[1:], stdout, stderr)
	case "salvage":
		return journalSalvage(ctx, args[1:], stdout, stderr)
	case "explain":
		return journalExplain(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fs := newFlagSet("journal", journalUsage, journalExamples, stdout, stderr)
		fs.printUsage()
		return exitOK
	}
	fmt.Fprintf(stderr, "proxyhealth journal: unknown subcommand %q: use replay, verify, stats, salvage or explain (see 'proxyhealth journal --help')\n", args[0])
	return exitUsage
}

// journalLockWait is how long the offline commands wait for the journal's
// lock before deciding that a daemon holds it.
const journalLockWait = 500 * time.Millisecond

// openArchive opens the data directory DIR read-only, with errors that say
// what to do.
func openArchive(ctx context.Context, dir string) (*proxyhealth.Archive, error) {
	path := journalPath(dir)
	a, err := proxyhealth.OpenArchive(ctx, dir, proxyhealth.ArchiveOptions{LockTimeout: journalLockWait})
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("no journal at %s: is --data the daemon's data directory?", path)
	case errors.Is(err, proxyhealth.ErrJournalLocked):
		return nil, fmt.Errorf("%s is locked by a running proxyhealth (bbolt allows no reader beside the writer): replay and stats can ask the daemon instead (--server URL, default listen %s); verify, salvage and rebuild need it stopped", path, defaultListen)
	}
	return a, err
}

// openArchiveFor opens the data directory for command cmd, printing the
// reason on stderr when it cannot.
func openArchiveFor(ctx context.Context, cmd, dir string, stderr io.Writer) (*proxyhealth.Archive, bool) {
	a, err := openArchive(ctx, dir)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
		return nil, false
	}
	return a, true
}

// journalFlags are the flags replay, stats and explain share: where the
// journals are (--data DIR and --server URL, each repeatable: one
// journal a member) and --token.
type journalFlags struct {
	fs    *flagSet
	srcs  *[]journalSource // in command-line order
	token *string
}

// journalSource is one journal to read: a data directory, or the daemon
// at server.
type journalSource struct {
	// name is what the merged output calls this member: the directory or
	// the URL as given (the URL without a password).
	name   string
	dir    string
	server *url.URL
}

// sourceFlag is --data or --server: each use adds a journal to the list
// both share, so their order is the command line's.
type sourceFlag struct {
	server bool
	list   *[]journalSource
}

func (f *sourceFlag) String() string {
	if f == nil || f.list == nil {
		return ""
	}
	var names []string
	for _, s := range *f.list {
		if (s.server != nil) == f.server {
			names = append(names, s.name)
		}
	}
	return strings.Join(names, ",")
}

func (f *sourceFlag) Set(v string) error {
	if !f.server {
		*f.list = append(*f.list, journalSource{name: v, dir: v})
		return nil
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s: want a URL like http://%s", short(v), defaultListen)
	}
	*f.list = append(*f.list, journalSource{name: u.Redacted(), server: u})
	return nil
}

func addJournalFlags(fs *flagSet) journalFlags {
	srcs := new([]journalSource)
	fs.Var(&sourceFlag{list: srcs}, "data", "data `DIR` holding journal.db (default "+defaultData+"); repeat it (or add --server) to merge several cluster members' journals by time")
	fs.Var(&sourceFlag{server: true, list: srcs}, "server", "read the journal of the daemon at `URL` (GET /v1/journal, page by page) instead of a data directory; works while the daemon runs; repeatable like --data")
	return journalFlags{
		fs:    fs,
		srcs:  srcs,
		token: fs.String("token", "", "bearer `TOKEN` of the daemons, with --server (default $PROXYHEALTH_TOKEN)"),
	}
}

// sources returns the journals to read, in command-line order (the
// default data directory when none is named), or a usage error.
func (jf journalFlags) sources() ([]journalSource, error) {
	srcs := *jf.srcs
	servers := 0
	seen := map[string]bool{}
	for _, s := range srcs {
		if s.server != nil {
			servers++
		}
		key := filepath.Clean(s.dir)
		if s.server != nil {
			key = strings.TrimSuffix(s.server.String(), "/")
		}
		if seen[key] {
			return nil, fmt.Errorf("%s is named twice: each --data or --server is one member's journal", s.name)
		}
		seen[key] = true
	}
	if servers == 0 {
		if jf.fs.isSet("token") {
			return nil, errors.New("--token goes with --server")
		}
		if len(srcs) == 0 {
			srcs = []journalSource{{name: defaultData, dir: defaultData}}
		}
		return srcs, nil
	}
	if *jf.token == "" {
		*jf.token = os.Getenv("PROXYHEALTH_TOKEN")
	}
	return srcs, nil
}

// records yields the records of src's journal that f selects, in seq
// order. merged is true when it is one of several journals being merged:
// a daemon's page that breaks off after some events is then asked again
// from the last one (while the merge reads other members, an answer can
// wait longer than the daemon's write timeout).
func (jf journalFlags) records(ctx context.Context, src journalSource, f proxyhealth.JournalFilter, merged bool) iter.Seq2[proxyhealth.Record, error] {
	if src.server != nil {
		return serverJournal(ctx, src.server, *jf.token, f, merged)
	}
	return func(yield func(proxyhealth.Record, error) bool) {
		for env, err := range archiveEvents(ctx, src.dir, f) {
			if err != nil {
				yield(proxyhealth.Record{}, err)
				return
			}
			if !yield(proxyhealth.RecordOf(env), nil) {
				return
			}
		}
	}
}

// archiveEvents yields the events of dir's journal that f selects, in seq
// order, opening the archive when it is first read.
func archiveEvents(ctx context.Context, dir string, f proxyhealth.JournalFilter) iter.Seq2[*pb.Envelope, error] {
	return func(yield func(*pb.Envelope, error) bool) {
		a, err := openArchive(ctx, dir)
		if err != nil {
			yield(nil, err)
			return
		}
		defer a.Close()
		for env, err := range a.ReadJournal(ctx, f) {
			if !yield(env, err) || err != nil {
				return
			}
		}
	}
}

// members are the journals of srcs as the merge reads them, each
// filtered by f.
func (jf journalFlags) members(ctx context.Context, srcs []journalSource, f proxyhealth.JournalFilter) []proxyhealth.MemberJournal {
	ms := make([]proxyhealth.MemberJournal, len(srcs))
	for i, src := range srcs {
		ms[i] = proxyhealth.MemberJournal{Member: src.name}
		if src.server != nil {
			ms[i].Records = jf.records(ctx, src, f, true)
		} else {
			ms[i].Events = archiveEvents(ctx, src.dir, f)
		}
	}
	return ms
}

func journalReplay(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("journal replay", journalUsage, journalExamples, stdout, stderr)
	jf := addJournalFlags(fs)
	proxy := fs.String("proxy", "", "only the events of this proxy (`ID or URL`)")
	source := fs.String("source", "", "only the events of this `SOURCE`")
	types := fs.String("type", "", "only these event `TYPES`, comma-separated: "+strings.Join(proxyhealth.EventTypes, ", "))
	since := fs.String("since", "", "only events at or after `TIME` (RFC 3339 or 2006-01-02) or DURATION ago (90m)")
	until := fs.String("until", "", "only events before `TIME` (or DURATION ago)")
	format := newChoice("text", "text", "json")
	fs.Var(format, "format", "output `FORMAT`: text or json (JSON lines)")
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return fs.fail("unexpected argument %q", pos[0])
	}
	srcs, err := jf.sources()
	if err != nil {
		return fs.fail("%v", err)
	}
	f := proxyhealth.JournalFilter{Source: *source}
	now := time.Now()
	if *since != "" {
		if f.Since, err = parseTimeArg(*since, now); err != nil {
			return fs.fail("--since: %v", err)
		}
	}
	if *until != "" {
		if f.Until, err = parseTimeArg(*until, now); err != nil {
			return fs.fail("--until: %v", err)
		}
	}
	if *types != "" {
		for t := range strings.SplitSeq(*types, ",") {
			t = strings.TrimSpace(t)
			if !slices.Contains(proxyhealth.EventTypes, t) {
				return fs.fail("--type: %q is not an event type; use %s", t, strings.Join(proxyhealth.EventTypes, ", "))
			}
			f.Types = append(f.Types, t)
		}
	}
	if *proxy != "" {
		if f.Proxy, err = proxyhealth.ResolveProxyID(*proxy); err != nil {
			return fs.fail("--proxy: %s", strings.TrimPrefix(err.Error(), "probe: "))
		}
	}
	if err := f.Validate(); err != nil {
		return fs.fail("%s", strings.TrimPrefix(err.Error(), proxyhealth.ErrBadConfig.Error()+": "))
	}

	w := bufio.NewWriterSize(stdout, 64<<10)
	defer w.Flush()
	if len(srcs) > 1 {
		return replayMerged(ctx, jf, srcs, f, format.value == "json", w, stderr)
	}
	enc := json.NewEncoder(w)
	for r, err := range jf.records(ctx, srcs[0], f, false) {
		if err != nil {
			w.Flush()
			fmt.Fprintf(stderr, "proxyhealth journal replay: %v\n", err)
			return exitFailure
		}
		if format.value == "json" {
			if err := enc.Encode(r); err != nil {
				return exitFailure // stdout closed (e.g. | head)
			}
			continue
		}
		if _, err := fmt.Fprintln(w, textRecord(r)); err != nil {
			return exitFailure
		}
	}
	return exitOK
}

// replayMerged prints the journals of several members merged by time
// (proxyhealth.MergeJournals), each record naming its member: a column
// after the time in text, a "member" field in JSON. A member that cannot
// be read at all stops it before anything is printed; one that fails
// part-way is named at the end (exit 1) after the other members' events
// were printed to their end.
func replayMerged(ctx context.Context, jf journalFlags, srcs []journalSource, f proxyhealth.JournalFilter, asJSON bool, w *bufio.Writer, stderr io.Writer) int {
	width := 0
	for _, s := range srcs {
		width = max(width, len(s.name))
	}
	enc := json.NewEncoder(w)
	var (
		errs    []error
		printed int
	)
	for r, err := range proxyhealth.MergeJournals(ctx, jf.members(ctx, srcs, f)) {
		if err != nil {
			errs = append(errs, err)
			if !errors.Is(err, proxyhealth.ErrMemberJournal) {
				break // canceled
			}
			continue
		}
		if printed == 0 && len(errs) > 0 {
			break // a member could not be read at all
		}
		printed++
		if asJSON {
			if err := enc.Encode(r); err != nil {
				return exitFailure // stdout closed (e.g. | head)
			}
			continue
		}
		if _, err := fmt.Fprintln(w, textMemberRecord(r, width)); err != nil {
			return exitFailure
		}
	}
	if len(errs) == 0 {
		return exitOK
	}
	w.Flush()
	for _, err := range errs {
		fmt.Fprintf(stderr, "proxyhealth journal replay: %v\n", err)
	}
	if printed == 0 {
		fmt.Fprintln(stderr, "Nothing was printed: a merge needs every member's journal; leave out the members that cannot be read, or read them alone.")
	} else {
		fmt.Fprintln(stderr, "The other members' events were printed to their end; the events of the members above after the point named are missing.")
	}
	return exitFailure
}

// textMemberRecord is textRecord with the member after the time, padded
// to width.
func textMemberRecord(r proxyhealth.MemberRecord, width int) string {
	return r.At + "  " + fmt.Sprintf("%-*s", width, r.Member) + strings.TrimPrefix(textRecord(r.Record), r.At)
}

// textRecord formats an event for people, one line.
func textRecord(r proxyhealth.Record) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %6d  ", r.At, r.Seq)
	if r.ProxyID != "" {
		fmt.Fprintf(&b, "%s %-12s ", r.ProxyID, r.Source)
	} else {
		fmt.Fprintf(&b, "%-16s %-12s ", "pool", r.Source)
	}
	fmt.Fprintf(&b, "%-15s ", r.Type)
	lat := func() string {
		if r.LatencyMS == nil {
			return ""
		}
		return " in " + fmtMS(*r.LatencyMS)
	}
	switch r.Type {
	case "proxy_added":
		b.WriteString(r.URL)
		if r.HasCredentials {
			b.WriteString(" (with credentials)")
		}
	case "check_succeeded":
		fmt.Fprintf(&b, "status %d%s", r.StatusCode, lat())
	case "check_failed":
		b.WriteString(r.ErrorClass)
		if r.StatusCode != 0 {
			fmt.Fprintf(&b, " status %d", r.StatusCode)
		}
		b.WriteString(lat())
		if r.Message != "" {
			b.WriteString(": " + r.Message)
		}
	case "state_changed":
		fmt.Fprintf(&b, "%s -> %s", r.From, r.To)
		if r.Reason != "" {
			b.WriteString(" (" + r.Reason + ")")
		}
	case "proxy_adopted":
		fmt.Fprintf(&b, "%s -> %s from %s", r.From, r.To, r.FromMember)
		if r.Reason != "" {
			b.WriteString(" (" + r.Reason + ")")
		}
	case "passive_failure":
		fmt.Fprintf(&b, "%s, %d in a row", r.ErrorClass, r.Consecutive)
	case "pool_degraded", "pool_recovered":
		if r.Healthy != nil && r.Total != nil && r.HealthyPct != nil && r.ThresholdPct != nil {
			fmt.Fprintf(&b, "%d/%d healthy (%.1f%%, threshold %.1f%%)", *r.Healthy, *r.Total, *r.HealthyPct, *r.ThresholdPct)
		}
	default:
		b.WriteString(r.Reason)
	}
	return strings.TrimRight(b.String(), " ")
}

func journalVerify(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("journal verify", journalUsage, journalExamples, stdout, stderr)
	data := fs.String("data", defaultData, "data `DIR` holding journal.db")
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return fs.fail("unexpected argument %q", pos[0])
	}
	a, ok := openArchiveFor(ctx, "proxyhealth journal verify", *data, stderr)
	if !ok {
		return exitFailure
	}
	defer a.Close()
	if err := a.Verify(ctx); err != nil {
		fmt.Fprintf(stderr, "proxyhealth journal verify: %s is damaged: %v\n", a.Path(), err)
		if errors.Is(err, proxyhealth.ErrJournalCorrupt) {
			fmt.Fprintf(stderr, "To copy every intact event into a new journal: proxyhealth journal salvage --data %s\n", *data)
		}
		return exitFailure
	}
	n := uint64(0)
	if a.Head() >= a.First() {
		n = a.Head() - a.First() + 1
	}
	fmt.Fprintf(stdout, "journal OK: %s, %d events (seq %d to %d)\n", a.Path(), n, a.First(), a.Head())
	return exitOK
}

// journalStatsOut is the output of journal stats.
type journalStatsOut struct {
	// Path is the journal file, or the daemon's GET /v1/journal URL.
	Path string `json:"path"`
	// SizeBytes is the file's size (absent with --server: the API does
	// not report it).
	SizeBytes *int64         `json:"size_bytes,omitempty"`
	Events    uint64         `json:"events"`
	FirstSeq  uint64         `json:"first_seq"`
	HeadSeq   uint64         `json:"head_seq"`
	FirstAt   *time.Time     `json:"first_at"`
	LastAt    *time.Time     `json:"last_at"`
	Span      string         `json:"span"`
	Proxies   int            `json:"proxies"`
	Sources   []string       `json:"sources"`
	ByType    map[string]int `json:"by_type"`
}

func journalStats(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("journal stats", journalUsage, journalExamples, stdout, stderr)
	jf := addJournalFlags(fs)
	format := newChoice("text", "text", "json")
	fs.Var(format, "format", "output `FORMAT`: text or json")
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return fs.fail("unexpected argument %q", pos[0])
	}
	srcs, err := jf.sources()
	if err != nil {
		return fs.fail("%v", err)
	}
	if len(srcs) > 1 {
		return fs.fail("stats counts one journal: run it once for each --data or --server")
	}
	src, server := srcs[0], srcs[0].server
	out := journalStatsOut{ByType: map[string]int{}}
	if server != nil {
		out.Path = server.JoinPath("/v1/journal").String()
	} else {
		// The file's numbers, before the events are counted (the file
		// is closed meanwhile: records opens it again).
		a, ok := openArchiveFor(ctx, "proxyhealth journal stats", src.dir, stderr)
		if !ok {
			return exitFailure
		}
		out.Path, out.FirstSeq, out.HeadSeq = a.Path(), a.First(), a.Head()
		if st, err := os.Stat(a.Path()); err == nil {
			size := st.Size()
			out.SizeBytes = &size
		}
		_ = a.Close()
	}
	proxies, sources := map[string]bool{}, map[string]bool{}
	var first, last time.Time
	for r, err := range jf.records(ctx, src, proxyhealth.JournalFilter{}, false) {
		if err != nil {
			fmt.Fprintf(stderr, "proxyhealth journal stats: %v\n", err)
			return exitFailure
		}
		if out.Events == 0 && server != nil {
			out.FirstSeq = r.Seq
		}
		out.Events++
		if server != nil {
			out.HeadSeq = r.Seq
		}
		out.ByType[r.Type]++
		if r.ProxyID != "" {
			proxies[r.ProxyID] = true
		}
		if r.Source != "" {
			sources[r.Source] = true
		}
		at, err := time.Parse(time.RFC3339Nano, r.At)
		if err != nil {
			fmt.Fprintf(stderr, "proxyhealth journal stats: event %d: time %s: %v\n", r.Seq, short(r.At), err)
			return exitFailure
		}
		if first.IsZero() || at.Before(first) {
			first = at
		}
		if at.After(last) {
			last = at
		}
	}
	out.Proxies = len(proxies)
	out.Sources = slices.Sorted(maps.Keys(sources))
	if !first.IsZero() {
		f, l := first.UTC(), last.UTC()
		out.FirstAt, out.LastAt = &f, &l
		out.Span = l.Sub(f).Round(time.Millisecond).String()
	}
	if format.value == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
		return exitOK
	}
	size := "size not reported by the API"
	if out.SizeBytes != nil {
		size = fmtBytes(*out.SizeBytes)
	}
	fmt.Fprintf(stdout, "journal   %s (%s)\n", out.Path, size)
	fmt.Fprintf(stdout, "events    %d (seq %d to %d)\n", out.Events, out.FirstSeq, out.HeadSeq)
	if out.FirstAt != nil {
		fmt.Fprintf(stdout, "span      %s to %s (%s)\n", out.FirstAt.Format(time.RFC3339), out.LastAt.Format(time.RFC3339), out.Span)
	}
	fmt.Fprintf(stdout, "proxies   %d in %d sources (%s)\n", out.Proxies, len(out.Sources), strings.Join(out.Sources, ", "))
	fmt.Fprintln(stdout, "by type:")
	for _, t := range proxyhealth.EventTypes {
		if n := out.ByType[t]; n > 0 {
			fmt.Fprintf(stdout, "  %-16s %d\n", t, n)
		}
	}
	if n := out.ByType["unknown"]; n > 0 {
		fmt.Fprintf(stdout, "  %-16s %d\n", "unknown", n)
	}
	return exitOK
}

// fmtBytes formats a size for people.
func fmtBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func journalSalvage(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("journal salvage", journalUsage, journalExamples, stdout, stderr)
	data := fs.String("data", defaultData, "data `DIR` holding the damaged journal.db (only read)")
	out := fs.String("out", "", "the new journal `FILE` to write; it must not exist (default DIR/journal.salvaged.db)")
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return fs.fail("unexpected argument %q", pos[0])
	}
	src := journalPath(*data)
	dst := *out
	if dst == "" {
		dst = filepath.Join(*data, "journal.salvaged.db")
	}
	if _, err := os.Stat(src); errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(stderr, "proxyhealth journal salvage: no journal at %s: is --data the daemon's data directory?\n", src)
		return exitFailure
	}
	rep, err := proxyhealth.SalvageJournal(ctx, *data, dst)
	if err != nil {
		fmt.Fprintf(stderr, "proxyhealth journal salvage: %v\n", err)
		if errors.Is(err, proxyhealth.ErrJournalLocked) {
			fmt.Fprintln(stderr, "Stop the daemon that uses this data directory first.")
		}
		return exitFailure
	}
	fmt.Fprintf(stdout, "salvaged %d events (seq %d to %d) of %d proxies and %d snapshots from %s into %s\n",
		rep.Events, rep.First, rep.Last, rep.Proxies, rep.Snapshots, rep.Source, rep.Dest)
	if rep.Damage != "" {
		fmt.Fprintf(stdout, "damage found: %s\n", rep.Damage)
	}
	if rep.StopReason != "" {
		fmt.Fprintf(stdout, "stopped: %s\n", rep.StopReason)
	}
	if rep.LostEvents > 0 {
		ranges := make([]string, 0, min(len(rep.Lost), 10))
		for i, r := range rep.Lost {
			if i == 10 {
				ranges = append(ranges, fmt.Sprintf("and %d more ranges", len(rep.Lost)-10))
				break
			}
			ranges = append(ranges, r.String())
		}
		fmt.Fprintf(stdout, "NOT copied: %d intact events after the damage (seq %s): seqs and streams must be gap-free\n", rep.LostEvents, strings.Join(ranges, ", "))
	}
	if rep.DamagedRecords > 0 {
		fmt.Fprintf(stdout, "damaged records: %d (checksum or decoding failed)\n", rep.DamagedRecords)
	}
	if rep.SkippedSnapshots > 0 {
		fmt.Fprintf(stdout, "snapshots left out: %d (they cover events that were not copied; those proxies recover from their events)\n", rep.SkippedSnapshots)
	}
	live := journalPath(*data)
	fmt.Fprintf(stdout, `
The salvaged journal passes 'proxyhealth journal verify'. Next, with the daemon stopped:
  mv %[1]s %[1]s.damaged
  mv %[2]s %[1]s
  proxyhealth rebuild --data %[3]s    # the SQLite view must follow the journal
Keep %[1]s.damaged until you no longer need what could not be copied.
`, live, dst, *data)
	return exitOK
}
