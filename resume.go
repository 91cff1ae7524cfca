package proxyhealth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/probe"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// ErrHistoryLost is returned by Open when the journal cannot back the data
// directory: journal.db exists but is empty, or the SQLite view has applied
// more events than the journal holds. Either means history was lost (a
// truncated, replaced or older file); restore the journal from a backup, or
// start over deliberately with Config.StartFresh.
var ErrHistoryLost = errors.New("proxyhealth: the journal lost history")

// checkJournalFile refuses an existing, empty journal file unless the
// config says to start fresh (then the empty file is replaced).
func checkJournalFile(cfg Config) error {
	path := filepath.Join(cfg.DataDir, JournalFile)
	fi, err := os.Stat(path)
	if err != nil || fi.Size() != 0 {
		return nil // missing: a new journal; otherwise the journal validates it
	}
	if !cfg.StartFresh {
		return fmt.Errorf("%w: %s is empty (0 bytes): the events it held are gone (the file was truncated or replaced). Restore it from a backup, or start a new journal deliberately with --start-fresh (Config.StartFresh)", ErrHistoryLost, path)
	}
	cfg.Logger.Warn("starting a new journal in place of an empty journal file (start fresh)", slog.String("file", path))
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("proxyhealth: replace the empty %s: %w", path, err)
	}
	return nil
}

// resumeAdded checks again the proxies that were added at run time before
// a restart (Config.ResumeAddedProxies), and journals the removal of every
// proxy the journal knows that nobody would check any more, with the
// reason. It runs inside Open, before any command can arrive, so a pause
// or resume right after Open reaches every proxy.
func (e *Engine) resumeAdded(ctx context.Context) error {
	all := e.proj.live.IDs() // (not List: a view per proxy, 0.3 s of start-up at 100,000)
	e.mu.Lock()
	var idle []string
	for _, id := range all {
		if e.proxies.Get(id) == nil {
			idle = append(idle, id)
		}
	}
	slices.Sort(idle) // in ID order, as before
	configured := map[string]bool{}
	for name := range e.sources {
		configured[name] = true
	}
	e.mu.Unlock()

	resume := map[string][]ProxyEntry{} // source → proxies
	var moved []string                  // run-time proxies resumed under a new ID
	var removals []idleRemoval
	var errs []error
	for _, id := range idle {
		st, _, err := journal.LoadState(ctx, e.journal, id)
		if err != nil {
			return fmt.Errorf("proxyhealth: read the journal of proxy %s: %w", id, err)
		}
		if !st.Added || st.Removed {
			continue
		}
		var reason, raw string
		var elsewhere string
		if e.cl != nil {
			elsewhere, _ = e.cl.checkedBy(id)
		}
		switch {
		case elsewhere != "":
			reason = "handed over to cluster member " + elsewhere
		case !configured[st.Source]:
			reason = fmt.Sprintf("not resumed at start-up: its source %q is not configured", st.Source)
		case st.Origin == pb.ProxyOrigin_PROXY_ORIGIN_CONFIG && oldIdentity(st):
			reason = identityMoved
		case st.Origin == pb.ProxyOrigin_PROXY_ORIGIN_CONFIG:
			reason = "not resumed at start-up: the configuration no longer lists it"
		case st.HasCredentials:
			var u string
			ok := e.creds != nil
			if ok {
				u, ok = e.creds.get(id)
			}
			if !ok {
				reason = fmt.Sprintf("not resumed at start-up: it was added at run time with credentials, which %s does not hold; add it again", CredentialsFile)
				break
			}
			raw = u
			if pu, err := probe.ParseProxyURL(u); err == nil && pu.ID() != id {
				// Resumed under its new identity; the old stream ends.
				reason = identityMoved
				moved = append(moved, id)
			}
		default:
			raw = st.URLRedacted
		}
		if reason == identityMoved && raw != "" {
			resume[st.Source] = append(resume[st.Source], ProxyEntry{URL: raw, Tags: st.TagList(), Weight: st.Weight})
		}
		if reason != "" {
			removals = append(removals, idleRemoval{st: st, reason: reason})
			continue
		}
		resume[st.Source] = append(resume[st.Source], ProxyEntry{URL: raw, Tags: st.TagList(), Weight: st.Weight})
	}
	// The old streams end before their proxies come back under new IDs.
	if err := e.removeIdle(ctx, removals); err != nil {
		errs = append(errs, err)
	}
	n := 0
	for _, src := range slices.Sorted(maps.Keys(resume)) {
		ids, err := e.addProxies(ctx, src, resume[src], pb.ProxyOrigin_PROXY_ORIGIN_API)
		if err != nil {
			errs = append(errs, fmt.Errorf("proxyhealth: resume the run-time proxies of source %q: %w", src, err))
		}
		n += len(ids)
	}
	if n > 0 {
		e.log.Info("resumed proxies added at run time before the restart", slog.Int("proxies", n))
	}
	if len(moved) > 0 && e.creds != nil {
		if err := e.creds.drop(moved...); err != nil {
			errs = append(errs, err)
		}
	}
	// The live status shows the removals before Open returns.
	if err := e.proj.waitLive(ctx, e.journal.Head()); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// identityMoved is the reason journaled for a proxy whose ID changed when
// the user name became part of a proxy's identity.
const identityMoved = "its identity now includes the user name: it goes on under a new proxy ID (journals written before this change identified proxies by scheme, host and port only)"

// oldIdentity reports whether a journaled proxy with credentials has the
// ID of the old identity (scheme, host and port, without the user name):
// its redacted URL carries no user tag.
func oldIdentity(st events.State) bool {
	if !st.HasCredentials {
		return false
	}
	u, err := probe.ParseProxyURL(st.URLRedacted)
	return err == nil && !u.IsRedactedForm()
}

// idleRemoval is a proxy of the journal that nobody would check any more,
// and why.
type idleRemoval struct {
	st     events.State
	reason string
}

// removeChunk is how many envelopes removeIdle journals in one append.
const removeChunk = 4096

// removeIdle journals the removals, many proxies to an append (an append
// each waited for a commit of its own: the demo restarted on its data with
// a new farm spent 1.4 s of its start removing its 300 old proxies, now
// 2 ms), drops their credentials, and then logs each.
func (e *Engine) removeIdle(ctx context.Context, rs []idleRemoval) error {
	var envs []*pb.Envelope
	var batch []idleRemoval
	var errs []error
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if _, err := e.journal.Append(ctx, envs); err != nil {
			return fmt.Errorf("proxyhealth: journal the removal of %d proxies: %w", len(batch), err)
		}
		if e.creds != nil {
			ids := make([]string, len(batch))
			for i, r := range batch {
				ids[i] = r.st.ProxyID
			}
			_ = e.creds.drop(ids...)
		}
		for _, r := range batch {
			st := r.st
			if r.reason == identityMoved {
				e.log.Info("a proxy's ID changed: the user name is part of its identity now; its old stream ends", slog.String("old_proxy_id", st.ProxyID),
					slog.String("url", st.URLRedacted), slog.String("source", st.Source))
				continue
			}
			e.log.Warn("a proxy of the journal is no longer monitored", slog.String("proxy_id", st.ProxyID),
				slog.String("url", st.URLRedacted), slog.String("source", st.Source), slog.String("reason", r.reason))
		}
		envs, batch = envs[:0], batch[:0]
		return nil
	}
	for _, r := range rs {
		evs, err := events.Decide(r.st, events.Remove{At: e.cfg.Clock.Now(), Reason: r.reason}, events.DefaultConfig())
		if err != nil {
			errs = append(errs, fmt.Errorf("proxyhealth: remove proxy %s: %w", r.st.ProxyID, err))
			continue
		}
		for i, env := range evs {
			env.StreamSeq = r.st.StreamSeq + uint64(i) + 1
		}
		envs, batch = append(envs, evs...), append(batch, r)
		if len(envs) >= removeChunk {
			if err := flush(); err != nil {
				return errors.Join(append(errs, err)...)
			}
		}
	}
	return errors.Join(append(errs, flush())...)
}
