package proxyhealth

import (
	"context"
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/probe"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// Record is one journal event flattened for people and JSON (the fields of
// `proxyhealth journal replay --format json` and GET /v1/journal).
type Record = events.Record

// RecordOf flattens a journal event.
func RecordOf(env *pb.Envelope) Record { return events.RecordOf(env) }

// EventTypes are the event type names a JournalFilter accepts.
var EventTypes = slices.Clone(events.TypeNames)

// JournalFilter selects journal events. The zero value selects every
// retained event.
type JournalFilter struct {
	// Proxy is a proxy ID or URL (a URL is turned into its ID; credentials
	// in it are ignored).
	Proxy string
	// Types are event type names (EventTypes); empty means all.
	Types []string
	// Source is a source name.
	Source string
	// Since and Until bound the event time: Since <= at < Until (a zero
	// bound is open).
	Since, Until time.Time
	// After selects events with seq > After (a cursor: pass the last seq
	// of the previous page).
	After uint64
	// Limit is the largest number of events yielded (0: no limit).
	Limit int
}

// Validate reports a filter that can match nothing because a value is
// wrong, naming the field.
func (f JournalFilter) Validate() error {
	for _, t := range f.Types {
		if !slices.Contains(events.TypeNames, t) {
			return fmt.Errorf("%w: type %q is not an event type; use %s", ErrBadConfig, t, strings.Join(events.TypeNames, ", "))
		}
	}
	if f.Proxy != "" {
		if _, err := ResolveProxyID(f.Proxy); err != nil {
			return fmt.Errorf("%w: proxy: %w", ErrBadConfig, err)
		}
	}
	if f.Limit < 0 {
		return fmt.Errorf("%w: limit %d: must not be negative", ErrBadConfig, f.Limit)
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return fmt.Errorf("%w: since %s is not before until %s", ErrBadConfig, f.Since.Format(time.RFC3339), f.Until.Format(time.RFC3339))
	}
	return nil
}

// ParseTime reads a time bound of a JournalFilter as people write it (the
// CLI's --since/--until, GET /v1/journal's since/until): RFC 3339, a date
// and time without zone (2006-01-02T15:04:05, "2006-01-02 15:04:05") or a
// date (2006-01-02), both in the local time zone, or a duration meaning
// that long before now (90m, 24h; not negative).
func ParseTime(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%w: %q: a duration means that long ago and must not be negative", ErrBadConfig, s)
		}
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%w: %q is neither a time (RFC 3339 like 2006-01-02T15:04:05Z, or a date 2006-01-02) nor a duration meaning that long ago (90m, 24h)", ErrBadConfig, s)
}

// ResolveProxyID returns the ID of a proxy given by its ID (16 hex digits)
// or its URL (credentials are ignored and never appear in the error).
func ResolveProxyID(s string) (string, error) {
	if isProxyID(s) {
		return s, nil
	}
	u, err := probe.ParseProxyURL(s)
	if err != nil {
		return "", fmt.Errorf("want a proxy ID or URL: %w", err)
	}
	return u.ID(), nil
}

func isProxyID(s string) bool {
	if len(s) != 16 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// filterJournal yields the events of j that f selects, in seq order. It
// reads one proxy's stream when f names a proxy, the journal from
// max(First, After+1) otherwise, and holds one event at a time.
func filterJournal(ctx context.Context, j journal.Journal, f JournalFilter) iter.Seq2[*pb.Envelope, error] {
	return func(yield func(*pb.Envelope, error) bool) {
		if err := f.Validate(); err != nil {
			yield(nil, err)
			return
		}
		var src iter.Seq2[*pb.Envelope, error]
		if f.Proxy != "" {
			id, _ := ResolveProxyID(f.Proxy)
			src = j.ReadStream(ctx, id, 1)
		} else {
			src = j.Read(ctx, max(j.First(), f.After+1))
		}
		n := 0
		for env, err := range src {
			if err != nil {
				yield(nil, err)
				return
			}
			if env.GetSeq() <= f.After {
				continue
			}
			at := events.At(env)
			if (!f.Until.IsZero() && !at.Before(f.Until)) || (!f.Since.IsZero() && at.Before(f.Since)) || (f.Source != "" && env.GetSource() != f.Source) ||
				(len(f.Types) > 0 && !slices.Contains(f.Types, events.TypeName(env))) {
				continue
			}
			if !yield(env, nil) {
				return
			}
			if n++; f.Limit > 0 && n >= f.Limit {
				return
			}
		}
	}
}

// ReadJournal yields the journal events that f selects, in seq order,
// reading at the journal's pace (bounded memory). Paginate with f.After and
// f.Limit.
func (e *Engine) ReadJournal(ctx context.Context, f JournalFilter) iter.Seq2[*pb.Envelope, error] {
	return filterJournal(ctx, e.journal, f)
}
