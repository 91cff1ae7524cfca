package proxyhealth

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"

	"github.com/proxyhealth/proxyhealth/probe"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// ReconcileDiff is what Reconcile changed: proxy IDs, sorted. Changed are
// the kept proxies whose source's check settings changed.
type ReconcileDiff struct {
	Added   []string `json:"added"`
	Removed []string `json:"removed"`
	Changed []string `json:"changed"`
}

// Reconcile makes the engine's configured sources exactly sources (a
// configuration reload): new sources are started, sources that are gone
// lose their configured proxies, every source gets its new check settings,
// and each source holds exactly its listed proxies plus the proxies added
// at run time (AddProxy) that the configuration does not list. A proxy that
// moves between sources is removed from the old one before it is added to
// the new one. Run-time proxies of a source that is gone are removed, except
// in the default source, which stays while it has any. Proxies keep their
// state. The whole configuration is validated first; on a validation error
// nothing changes (the error wraps ErrBadConfig).
func (e *Engine) Reconcile(ctx context.Context, sources []SourceConfig) (ReconcileDiff, error) {
	var diff ReconcileDiff
	cfg := Config{Sources: sources}
	if err := cfg.Validate(); err != nil {
		return diff, err
	}
	type want struct{ source, raw string }
	wanted := map[string]want{} // proxy ID → where the configuration lists it
	byName := map[string]SourceConfig{}
	for _, sc := range sources {
		sc = sc.withDefaults()
		byName[sc.Name] = sc
		for _, pe := range sc.entries() {
			wanted[probe.MustParseProxyURL(pe.URL).ID()] = want{sc.Name, pe.URL}
		}
	}

	// One reconfiguration at a time: a list refresh waits until the reload
	// is applied (and would otherwise race its two passes). The refreshers
	// of sources that get a list start after.
	var toStart []*source
	e.reconfMu.Lock()
	defer func() {
		for _, src := range toStart {
			_ = e.startList(ctx, src)
		}
	}()
	defer e.reconfMu.Unlock()

	// What runs now.
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return diff, ErrClosed
	}
	type running struct {
		source   string
		origin   pb.ProxyOrigin
		redacted string
		tags     []string
		weight   float64
	}
	now := map[string]running{}
	for p := range e.proxies.All() {
		if p.pid != nil {
			now[p.spec.ID] = running{p.source(), p.spec.Origin, p.url.Redacted(), p.spec.Tags, p.spec.Weight}
		}
	}
	oldSettings := map[string]SourceConfig{}
	var withList []*source // sources with a list
	for name, s := range e.sources {
		oldSettings[name] = s.cfg
		if s.list != nil {
			withList = append(withList, s)
		}
	}
	e.mu.Unlock()
	// A list's proxies stay while its source keeps that list; a source that
	// loses its list (or is gone) stops refreshing it.
	for _, s := range withList {
		if sc, ok := byName[s.cfg.Name]; ok && sameList(s.list.cfg, sc.List) {
			for _, pe := range s.list.proxies() {
				if id, err := ResolveProxyID(pe.URL); err == nil {
					wanted[id] = want{s.cfg.Name, pe.URL}
				}
			}
			continue
		}
		e.stopList(s)
	}

	// The run-time proxies that stay: their source is still configured (or
	// is the default source) and the configuration does not list them.
	keepRunTime := map[string][]string{} // source → redacted URLs (same ID: the engine keeps their credentials)
	for id, r := range now {
		if r.origin != pb.ProxyOrigin_PROXY_ORIGIN_API {
			continue
		}
		if _, listed := wanted[id]; listed {
			continue
		}
		if _, ok := byName[r.source]; ok || r.source == DefaultSource {
			keepRunTime[r.source] = append(keepRunTime[r.source], r.redacted)
			wanted[id] = want{r.source, r.redacted}
		}
	}
	if _, ok := byName[DefaultSource]; !ok && len(keepRunTime[DefaultSource]) > 0 {
		if s, ok := oldSettings[DefaultSource]; ok {
			// Its settings, for its run-time proxies only: what the old
			// configuration listed (and its list) goes with it.
			s.Proxies, s.Entries, s.List = nil, nil, SourceList{}
			byName[DefaultSource] = s
		}
	}
	for name, urls := range keepRunTime {
		sc := byName[name]
		sc.Proxies = append(slices.Clone(sc.Proxies), urls...)
		byName[name] = sc
	}

	var errs []error
	// Pass 1: every running source keeps only the proxies it keeps, so
	// that a proxy moving between sources is free to be added in pass 2.
	for name, old := range oldSettings {
		keep := SourceConfig{Name: name, Health: old.Health, Probe: old.Probe}
		shrink := false
		for id, r := range now {
			if r.source != name {
				continue
			}
			if w, ok := wanted[id]; ok && w.source == name {
				// As it runs: its metadata changes in pass 2, if at all.
				keep.Entries = append(keep.Entries, ProxyEntry{URL: r.redacted, Tags: r.tags, Weight: r.weight})
			} else {
				shrink = true
				diff.Removed = append(diff.Removed, id)
			}
		}
		if shrink {
			_, _, err := e.reconfigure(ctx, keep)
			errs = append(errs, err)
		}
	}
	// Pass 2: every configured source gets its settings and proxies.
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		sc := byName[name]
		old, running := oldSettings[name]
		if running && (old.Health != sc.Health || !probeEqual(old.Probe, sc.Probe)) {
			for id, r := range now {
				if r.source == name && wanted[id].source == name {
					diff.Changed = append(diff.Changed, id)
				}
			}
		}
		for id, w := range wanted {
			if r, ok := now[id]; w.source == name && (!ok || r.source != name) {
				diff.Added = append(diff.Added, id)
			}
		}
		if running {
			cur, start, err := e.reconfigure(ctx, sc)
			errs = append(errs, err)
			if start {
				toStart = append(toStart, cur)
			}
		} else {
			src, err := e.addSource(ctx, sc)
			errs = append(errs, err)
			if src != nil && src.list != nil {
				toStart = append(toStart, src)
			}
		}
	}
	// Run-time proxies that the configuration now lists are configured
	// ones from now on (the configuration has their URL). The origin is in
	// the spec the actor holds, so the record is replaced, not changed;
	// one still starting (no pid yet: its start would set the pid on the
	// old record) is left for the next reload.
	e.mu.Lock()
	var listed []string
	for id, w := range wanted {
		if p := e.proxies.Get(id); p != nil && p.pid != nil && p.spec.Origin == pb.ProxyOrigin_PROXY_ORIGIN_API && p.source() == w.source && !slices.Contains(keepRunTime[w.source], w.raw) {
			np := p.renewed()
			np.spec.Origin = pb.ProxyOrigin_PROXY_ORIGIN_CONFIG
			e.proxies.Set(np) // in place of p
			listed = append(listed, id)
		}
	}
	e.mu.Unlock()
	if e.creds != nil && len(listed) > 0 {
		_ = e.creds.drop(listed...)
	}
	slices.Sort(diff.Added)
	slices.Sort(diff.Removed)
	slices.Sort(diff.Changed)
	diff.Removed = slices.Compact(diff.Removed)
	if err := errors.Join(errs...); err != nil {
		return diff, fmt.Errorf("proxyhealth: reconcile: %w", err)
	}
	return diff, nil
}

// probeEqual compares check settings. A reload builds a new TLS config
// from the same CA file, so TLS configs compare by what they trust.
func probeEqual(a, b probe.Config) bool {
	a, b = a.WithDefaults(), b.WithDefaults()
	ta, tb := a.TLSConfig, b.TLSConfig
	a.TLSConfig, b.TLSConfig = nil, nil
	if !reflect.DeepEqual(a, b) || (ta == nil) != (tb == nil) {
		return false
	}
	return ta == nil || ta.InsecureSkipVerify == tb.InsecureSkipVerify && ta.ServerName == tb.ServerName &&
		(ta.RootCAs == nil) == (tb.RootCAs == nil) && (ta.RootCAs == nil || ta.RootCAs.Equal(tb.RootCAs))
}
