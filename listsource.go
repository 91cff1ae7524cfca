package proxyhealth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/proxyhealth/proxyhealth/actors"
	"github.com/proxyhealth/proxyhealth/events"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
	"github.com/proxyhealth/proxyhealth/sources"
)

// Defaults of SourceList.
const (
	// DefaultListRefresh is how often a list URL is fetched (±10 %).
	DefaultListRefresh = sources.DefaultRefresh
	// DefaultListPoll is how often a list file is looked at.
	DefaultListPoll = sources.DefaultPollInterval
	// DefaultShrinkGuard: a list that loses more than this share of its
	// proxies at once is held until confirmed.
	DefaultShrinkGuard = 0.5
	// DefaultConfirmAfter: a held list is applied once offered this many
	// refreshes in a row.
	DefaultConfirmAfter = 3
	// DefaultListGrace: a proxy that vanished from its list is removed
	// once absent from this many refreshes in a row.
	DefaultListGrace = 2
	// ListsDir is the directory of the data directory that keeps each
	// source's last good list (0700; files 0600: they hold credentials).
	ListsDir = "lists"
)

// SourceList is where a source's proxies come from besides its
// configuration: a proxy list at a URL (plain lines or JSON; see package
// sources) or in a file. The engine reads it at start-up (from the copy of
// its last good version in the data directory first), then refreshes it
// on its own schedule under the source's actor, applying each change: new
// proxies are added, vanished ones removed after Grace refreshes, tags and
// weights updated. A failed read keeps the last good list and is journaled
// (source_refresh_failed); a list that shrinks by more than ShrinkGuard is
// held (source_shrink_held) until Engine.ConfirmSource or until offered
// ConfirmAfter times in a row.
type SourceList struct {
	// URL is an http(s) URL of a proxy list; File a local file (watched).
	// One of them, or neither (no list).
	URL  string
	File string
	// Headers are sent with each fetch of URL (an API key); their values
	// never appear in errors or logs.
	Headers map[string]string
	// Refresh is the time between fetches of URL (default
	// DefaultListRefresh, jittered ±10 %) or between looks at File
	// (default DefaultListPoll).
	Refresh time.Duration
	// ShrinkGuard (0..1]: a refresh that would remove more than this
	// share of the list's proxies is held (default 0.5; 1 never holds).
	ShrinkGuard float64
	// ConfirmAfter is how many refreshes in a row must offer a held list
	// before it applies on its own (default 3).
	ConfirmAfter int
	// Grace is how many refreshes in a row (a 304 Not Modified counts) a
	// proxy must be absent from a list URL before it is removed (default
	// 2), so that a flapping provider does not churn the journal. A file's
	// removals apply at once (editing it is deliberate).
	Grace int
	// Timeout bounds one fetch (default 30 s).
	Timeout time.Duration
}

func (l SourceList) set() bool { return l.URL != "" || l.File != "" }

func (l SourceList) withDefaults() SourceList {
	if !l.set() {
		return l
	}
	if l.Refresh == 0 {
		l.Refresh = DefaultListRefresh
		if l.File != "" {
			l.Refresh = DefaultListPoll
		}
	}
	if l.ShrinkGuard == 0 {
		l.ShrinkGuard = DefaultShrinkGuard
	}
	if l.ConfirmAfter == 0 {
		l.ConfirmAfter = DefaultConfirmAfter
	}
	if l.Grace == 0 {
		l.Grace = DefaultListGrace
	}
	if l.Timeout == 0 {
		l.Timeout = sources.DefaultTimeout
	}
	return l
}

func (l SourceList) validate(source string) error {
	bad := func(field string, v any, rule string) error {
		return fmt.Errorf("%w: source %q list.%s = %v; %s", ErrBadConfig, source, field, v, rule)
	}
	switch {
	case !l.set():
		return nil
	case l.URL != "" && l.File != "":
		return bad("file", l.File, "give a list URL or a list file, not both")
	case l.URL != "" && !validListURL(l.URL):
		return bad("url", sources.DisplayURL(l.URL), "want an http:// or https:// URL")
	case l.Refresh < time.Second && l.URL != "":
		return bad("refresh", l.Refresh, "want at least 1s (providers rate-limit; the default is 10m)")
	case l.Refresh < 100*time.Millisecond:
		return bad("refresh", l.Refresh, "want at least 100ms")
	case !(l.ShrinkGuard > 0 && l.ShrinkGuard <= 1):
		return bad("shrink_guard", l.ShrinkGuard, "want a share in (0, 1], e.g. 0.5 (1: never hold a shrunk list)")
	case l.ConfirmAfter < 1:
		return bad("confirm_after", l.ConfirmAfter, "want at least 1")
	case l.Grace < 1:
		return bad("grace", l.Grace, "want at least 1 refresh")
	case l.Timeout <= 0:
		return bad("timeout", l.Timeout, "want a positive duration")
	}
	return nil
}

func validListURL(raw string) bool {
	return len(raw) > 8 && (raw[:7] == "http://" || raw[:8] == "https://")
}

// listState is what the engine keeps of a source's list between refreshes.
type listState struct {
	cfg     SourceList
	origin  string // where the list comes from, shown: DisplayURL or the file
	fetcher *sources.Fetcher
	file    *sources.FileSource

	mu       sync.Mutex
	entries  map[string]*listEntry // proxy ID → entry
	etag     string
	lastMod  string
	held     []sources.Entry // a shrunk list waiting for confirmation
	heldSeen int
	confirm  bool // apply the held list at the next run
}

type listEntry struct {
	e       ProxyEntry
	missing int // refreshes in a row it was absent from
}

func newListState(cfg SourceList) *listState {
	ls := &listState{cfg: cfg, entries: map[string]*listEntry{}}
	switch {
	case cfg.URL != "":
		ls.origin = sources.DisplayURL(cfg.URL)
		ls.fetcher = &sources.Fetcher{Timeout: cfg.Timeout}
	case cfg.File != "":
		ls.origin = cfg.File
		ls.file = &sources.FileSource{Path: cfg.File}
	}
	return ls
}

// proxies returns the list's proxies, for the source's configuration.
func (ls *listState) proxies() []ProxyEntry {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	out := make([]ProxyEntry, 0, len(ls.entries))
	for _, le := range ls.entries {
		out = append(out, le.e)
	}
	slices.SortFunc(out, func(a, b ProxyEntry) int {
		switch {
		case a.URL < b.URL:
			return -1
		case a.URL > b.URL:
			return 1
		}
		return 0
	})
	return out
}

// savedList is a source's last good list in the data directory.
type savedList struct {
	Version      int          `json:"version"`
	Origin       string       `json:"origin"`
	ETag         string       `json:"etag,omitempty"`
	LastModified string       `json:"last_modified,omitempty"`
	Proxies      []ProxyEntry `json:"proxies"`
}

func (e *Engine) listPath(source string) string {
	return filepath.Join(e.cfg.DataDir, ListsDir, source+".json")
}

// loadList reads the source's saved list, if the engine has a data
// directory and the list comes from the same place.
func (e *Engine) loadList(source string, ls *listState) {
	if e.cfg.DataDir == "" {
		return
	}
	b, err := os.ReadFile(e.listPath(source))
	if err != nil {
		return
	}
	var sl savedList
	if err := json.Unmarshal(b, &sl); err != nil || sl.Version != 1 || sl.Origin != ls.origin {
		return
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for _, p := range sl.Proxies {
		if id, err := ResolveProxyID(p.URL); err == nil {
			ls.entries[id] = &listEntry{e: p}
		}
	}
	ls.etag, ls.lastMod = sl.ETag, sl.LastModified
}

// saveList keeps the source's list in the data directory (0600: the URLs
// carry credentials), written aside, synced and renamed into place.
func (e *Engine) saveList(source string, ls *listState) error {
	if e.cfg.DataDir == "" {
		return nil
	}
	ls.mu.Lock()
	sl := savedList{Version: 1, Origin: ls.origin, ETag: ls.etag, LastModified: ls.lastMod}
	ls.mu.Unlock()
	sl.Proxies = ls.proxies()
	b, err := json.Marshal(sl)
	if err != nil {
		return err
	}
	dir := filepath.Join(e.cfg.DataDir, ListsDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return writeFileAtomic(e.listPath(source), func(w io.Writer) error { _, err := w.Write(b); return err })
}

// startList reads a new source's list (its saved copy, or else the list
// itself, once) and starts its refresher.
func (e *Engine) startList(ctx context.Context, src *source) error {
	ls := src.list
	e.loadList(src.cfg.Name, ls)
	first := ls.cfg.Refresh
	if len(ls.entries) == 0 {
		// Nothing saved: a file is read now, so that the source starts
		// with its proxies; a provider's list right after start-up, by the
		// refresher, so that a slow provider never holds up Open (a
		// failure is journaled and retried on schedule).
		if ls.file != nil {
			e.refreshList(ctx, src.cfg.Name)
		} else {
			first = 0
		}
	}
	res, err := await(ctx, e.sys.Root.RequestFuture(src.pid, &actors.SpawnRefresher{Spec: actors.RefresherSpec{
		First: first,
		Next: func() time.Duration {
			return sources.NextRefresh(ls.cfg.Refresh, sources.DefaultRefreshJitter, randSample())
		},
		Run: func(ctx context.Context) { e.refreshList(ctx, src.cfg.Name) },
	}}, requestTimeout(ctx)))
	if err != nil {
		return fmt.Errorf("proxyhealth: start the list refresher of source %q: %w", src.cfg.Name, err)
	}
	if sp := res.(*actors.Spawned); sp.Err != nil {
		return fmt.Errorf("proxyhealth: start the list refresher of source %q: %w", src.cfg.Name, sp.Err)
	}
	e.reconfMu.Lock()
	src.refresher = res.(*actors.Spawned).PID
	e.reconfMu.Unlock()
	return nil
}

// refreshList reads a source's list once and applies it. Failures are
// journaled (source_refresh_failed) and logged; the last good list stays.
func (e *Engine) refreshList(ctx context.Context, name string) {
	e.mu.Lock()
	src, ok := e.sources[name]
	e.mu.Unlock()
	if !ok {
		return
	}
	e.reconfMu.Lock()
	ls := src.list
	e.reconfMu.Unlock()
	if ls == nil {
		return
	}
	var list sources.List
	var err error
	notModified, changed := false, true
	if ls.fetcher != nil {
		ls.mu.Lock()
		req := sources.Request{URL: ls.cfg.URL, Headers: ls.cfg.Headers, ETag: ls.etag, LastModified: ls.lastMod}
		ls.mu.Unlock()
		var res sources.Result
		if res, err = ls.fetcher.Fetch(ctx, req); err == nil {
			list, notModified = res.List, res.NotModified
			ls.mu.Lock()
			ls.etag, ls.lastMod = res.ETag, res.LastModified
			ls.mu.Unlock()
		}
	} else {
		list, changed, err = ls.file.Poll(ctx)
	}
	if ctx.Err() != nil {
		return // stopping
	}
	if err != nil {
		e.journalSource(ctx, name, &pb.Envelope{Event: &pb.Envelope_SourceRefreshFailed{SourceRefreshFailed: &pb.SourceRefreshFailed{
			Error: truncate(err.Error(), 500), Origin: ls.origin, Kept: uint32(len(ls.proxies()))}}})
		e.log.Warn("could not read the source's proxy list; the last good list stays in force", slog.String("source", name), slog.Any("error", err))
		return
	}
	if !changed {
		return // a file that did not change: nothing to say
	}
	if notModified {
		// The list as last applied: proxies that had vanished from it
		// spend another refresh of their grace.
		e.applyList(ctx, src, ls, nil, false)
		return
	}
	e.applyList(ctx, src, ls, list.Entries, false)
}

// applyList applies a list read from its source: the shrink guard, the
// grace of vanished proxies, then the source's new proxies.
func (e *Engine) applyList(ctx context.Context, src *source, ls *listState, offered []sources.Entry, confirmed bool) {
	e.reconfMu.Lock()
	defer e.reconfMu.Unlock()
	if src.list != ls || ctx.Err() != nil {
		return // the source's list changed (a reload) or the engine stops
	}
	name := src.cfg.Name
	ls.mu.Lock()
	notModified := offered == nil
	if notModified {
		for id, le := range ls.entries {
			if le.missing == 0 {
				offered = append(offered, sources.Entry{ID: id, URL: le.e.URL, Tags: le.e.Tags, Weight: le.e.Weight})
			}
		}
	}
	previous := 0
	for _, le := range ls.entries {
		if le.missing == 0 {
			previous++
		}
	}
	confirmed = confirmed || ls.confirm
	lost := previous - min(previous, len(offered))
	if previous > 0 && float64(lost) > ls.cfg.ShrinkGuard*float64(previous) && !confirmed {
		if sameEntries(ls.held, offered) {
			ls.heldSeen++
		} else {
			ls.held, ls.heldSeen = offered, 1
		}
		seen := ls.heldSeen
		if seen < ls.cfg.ConfirmAfter {
			ls.mu.Unlock()
			e.journalSource(ctx, name, &pb.Envelope{Event: &pb.Envelope_SourceShrinkHeld{SourceShrinkHeld: &pb.SourceShrinkHeld{
				Previous: uint32(previous), Offered: uint32(len(offered)), ShrinkGuard: ls.cfg.ShrinkGuard, Seen: uint32(seen), Origin: ls.origin}}})
			e.log.Warn("the source's list shrank by more than its shrink guard; held until confirmed", slog.String("source", name),
				slog.Int("previous", previous), slog.Int("offered", len(offered)), slog.Int("seen", seen))
			return
		}
	}
	// A shrink that was held and is now confirmed (by the operator, or
	// offered ConfirmAfter times) applies at once, without grace.
	wasHeld := ls.held != nil && sameEntries(ls.held, offered)
	ls.held, ls.heldSeen, ls.confirm = nil, 0, false
	added, removed := 0, 0
	present := make(map[string]bool, len(offered))
	for _, en := range offered {
		present[en.ID] = true
		pe := ProxyEntry{URL: en.URL, Tags: en.Tags, Weight: en.Weight}
		if le, ok := ls.entries[en.ID]; ok {
			le.e, le.missing = pe, 0
			continue
		}
		ls.entries[en.ID] = &listEntry{e: pe}
		added++
	}
	for id, le := range ls.entries {
		if present[id] {
			continue
		}
		le.missing++
		// A file is edited on purpose: what it no longer lists goes at
		// once. A provider's list flaps: a proxy goes after Grace
		// refreshes without it.
		if le.missing >= ls.cfg.Grace || wasHeld || ls.file != nil {
			delete(ls.entries, id)
			removed++
		}
	}
	total := len(ls.entries)
	ls.mu.Unlock()
	if notModified && removed == 0 {
		e.journalSource(ctx, name, &pb.Envelope{Event: &pb.Envelope_SourceRefreshed{SourceRefreshed: &pb.SourceRefreshed{
			Total: uint32(total), Origin: ls.origin, NotModified: true}}})
		return
	}

	e.mu.Lock()
	sc := src.cfg
	e.mu.Unlock()
	_, _, err := e.reconfigure(ctx, sc)
	if err != nil && ctx.Err() == nil {
		e.log.Warn("applying the source's list failed in part", slog.String("source", name), slog.Any("error", err))
	}
	if err := e.saveList(name, ls); err != nil {
		e.log.Warn("could not keep a copy of the source's list in the data directory", slog.String("source", name), slog.Any("error", err))
	}
	e.journalSource(ctx, name, &pb.Envelope{Event: &pb.Envelope_SourceRefreshed{SourceRefreshed: &pb.SourceRefreshed{
		Added: uint32(added), Removed: uint32(removed), Total: uint32(total), Origin: ls.origin, NotModified: notModified}}})
}

// sameEntries reports whether two lists hold the same proxies.
func sameEntries(a, b []sources.Entry) bool {
	if len(a) != len(b) {
		return false
	}
	ids := make(map[string]bool, len(a))
	for _, e := range a {
		ids[e.ID] = true
	}
	for _, e := range b {
		if !ids[e.ID] {
			return false
		}
	}
	return true
}

// ErrNothingHeld: ConfirmSource found no held list to confirm.
var ErrNothingHeld = errors.New("proxyhealth: the source holds no shrunk list to confirm")

// ConfirmSource applies the list a source holds because it shrank by more
// than its shrink guard (GET /v1/pool shows held_list; POST
// /v1/sources/{name}/confirm calls this).
func (e *Engine) ConfirmSource(ctx context.Context, name string) error {
	src, ls, _, err := e.sourceList(name)
	if err != nil {
		return err
	}
	if ls == nil {
		return fmt.Errorf("%w: source %q has no list", ErrNothingHeld, name)
	}
	ls.mu.Lock()
	held := ls.held
	ls.mu.Unlock()
	if held == nil {
		return fmt.Errorf("%w: source %q", ErrNothingHeld, name)
	}
	e.applyList(ctx, src, ls, held, true)
	return e.settled(ctx, nil)
}

// sourceList returns a source with its list and refresher (nil without a
// list), or ErrUnknownSource.
func (e *Engine) sourceList(name string) (*source, *listState, *actor.PID, error) {
	e.mu.Lock()
	src, ok := e.sources[name]
	e.mu.Unlock()
	if !ok {
		return nil, nil, nil, fmt.Errorf("%w: %q", ErrUnknownSource, name)
	}
	e.reconfMu.Lock()
	defer e.reconfMu.Unlock()
	return src, src.list, src.refresher, nil
}

// RefreshSource reads a source's list now (instead of at its next
// refresh) and returns once it is applied.
func (e *Engine) RefreshSource(ctx context.Context, name string) error {
	_, _, ref, err := e.sourceList(name)
	if err != nil {
		return err
	}
	if ref == nil {
		return fmt.Errorf("%w: source %q has no list to refresh", ErrBadConfig, name)
	}
	res, err := await(ctx, e.sys.Root.RequestFuture(ref, &actors.RefreshNow{}, requestTimeout(ctx)))
	if r, ok := res.(*actors.Reply); ok && err == nil && r.Err != nil {
		err = fmt.Errorf("proxyhealth: source %q: %w", name, r.Err)
	}
	return e.settled(ctx, err)
}

// journalSource appends a pool-level source event.
func (e *Engine) journalSource(ctx context.Context, name string, env *pb.Envelope) {
	env.Source, env.AtUnixNano = name, e.cfg.Clock.Now().UnixNano()
	if _, err := e.journal.Append(context.WithoutCancel(ctx), []*pb.Envelope{env}); err != nil {
		e.log.Warn("could not journal a source event", slog.String("source", name), slog.String("event", events.TypeName(env)), slog.Any("error", err))
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// randSample is a jitter sample in [0, 1).
func randSample() float64 { return rand.Float64() }

// stopList stops a source's refresher and forgets its list (the source no
// longer has one); its proxies go with the source's next configuration.
func (e *Engine) stopList(src *source) {
	if src.refresher != nil {
		_ = e.sys.Root.PoisonFuture(src.refresher).Wait()
	}
	src.refresher, src.list = nil, nil
}

// sameList reports whether two list configurations read the same list the
// same way.
func sameList(a, b SourceList) bool {
	return a.URL == b.URL && a.File == b.File && a.Refresh == b.Refresh && a.ShrinkGuard == b.ShrinkGuard &&
		a.ConfirmAfter == b.ConfirmAfter && a.Grace == b.Grace && a.Timeout == b.Timeout && maps.Equal(a.Headers, b.Headers)
}

// ParseProxyList reads a proxy list (plain lines with optional
// " #tags=a,b weight=N", or JSON; see package sources) as the engine reads
// a source's list: errors are "NAME:LINE: reason" and never show
// credentials or a line that is not a proxy URL.
func ParseProxyList(name string, r io.Reader) ([]ProxyEntry, error) {
	l, err := sources.Parse(name, r, sources.Limits{})
	if err != nil {
		return nil, err
	}
	out := make([]ProxyEntry, len(l.Entries))
	for i, e := range l.Entries {
		out[i] = ProxyEntry{URL: e.URL, Tags: e.Tags, Weight: e.Weight}
	}
	return out, nil
}

// ResolveListHeaders builds a list URL's headers from a configuration: a
// key NAME_env takes the value of the environment variable it names, any
// other is sent as written. Errors name the header and the variable, never
// a value.
func ResolveListHeaders(spec map[string]string, getenv func(string) string) (map[string]string, error) {
	return sources.ResolveHeaders(spec, getenv)
}
