package proxyhealth

import (
	"context"
	"fmt"
	"time"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/probe"
	"github.com/proxyhealth/proxyhealth/projections"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// The facade's vocabulary. These types are defined in the packages below
// the facade (events, probe, projections, journal); the aliases let a
// program (and the daemon, the CLI and the HTTP API) use the engine through
// this package alone. They are values or read-only views: nothing here
// reaches into the engine's state.
type (
	// HealthConfig drives a source's state machine: intervals,
	// thresholds, cooldowns (DefaultHealthConfig).
	HealthConfig = events.Config
	// ProbeConfig is how a source's proxies are checked: target URL,
	// method, expected status, timeout, mode.
	ProbeConfig = probe.Config
	// ProxyState is one proxy's whole health state (a fold of its stream).
	ProxyState = events.State
	// WebhookConfig is a webhook that receives notifications.
	WebhookConfig = projections.WebhookOptions
	// Notification is a once-per-episode notification: proxy_down,
	// proxy_recovered, pool_degraded, pool_recovered.
	Notification = projections.Notification
	// ProxyView is one proxy's live status.
	ProxyView = projections.ProxyView
	// Summary is the pool's live status: counts per state and source.
	Summary = projections.Summary
	// Counts are the numbers of proxies per state.
	Counts = projections.Counts
	// SourceSummary is one source's part of a Summary.
	SourceSummary = projections.SourceSummary
	// ListFilter selects proxies of the live status.
	ListFilter = projections.ListFilter
	// StateChange is one transition of a proxy's state.
	StateChange = projections.StateChange
	// CheckRecord is one check of a proxy's history.
	CheckRecord = projections.CheckRecord
	// PoolShare is the pool monitor's view of the pool.
	PoolShare = projections.PoolShare
	// CommitStats describes one group commit of the journal (metrics).
	CommitStats = journal.CommitStats
)

// DefaultHealthConfig returns the documented defaults of the state machine
// (checks every 30 s ± 10 %, unhealthy after 3 failures, …).
func DefaultHealthConfig() HealthConfig { return events.DefaultConfig() }

// Tail follows the committed journal from a seq: first the events already
// in the journal, then new ones as they commit, each exactly once and in
// order (what /v1/events streams, resuming from Last-Event-ID). A slow
// reader never slows the engine: it reads the journal at its own pace.
type Tail interface {
	// Next waits for the next event (or ctx); after the engine closed it
	// returns an error wrapping ErrJournalClosed.
	Next(ctx context.Context) (*pb.Envelope, error)
	// NextBatch waits for at least one event and returns up to max.
	NextBatch(ctx context.Context, max int) ([]*pb.Envelope, error)
	// Position is the seq of the next event Next returns.
	Position() uint64
	// Close ends the tail.
	Close()
}

// Tail returns a Tail that starts at seq from (1: the whole retained
// journal). Close it when done.
func (e *Engine) Tail(from uint64) Tail { return e.journal.Subscribe(from) }

// JournalHead is the seq of the journal's last committed event.
func (e *Engine) JournalHead() uint64 { return e.journal.Head() }

// JournalFirst is the seq of the oldest event retention kept
// (JournalHead()+1 when the journal holds none).
func (e *Engine) JournalFirst() uint64 { return e.journal.First() }

// ErrJournalClosed is returned by journal reads after the engine closed.
var ErrJournalClosed = journal.ErrClosed

// Errors of commands the state machine refuses; match with errors.Is.
var (
	// ErrNotRevivable: Revive of a proxy that is neither failed, unhealthy
	// nor recovering.
	ErrNotRevivable = events.ErrNotRevivable
	// ErrRemoved: the proxy was removed.
	ErrRemoved = events.ErrRemoved
)

// StateName is a health state's lowercase name (unknown, healthy, …).
func StateName(s pb.HealthState) string { return events.StateName(s) }

// ParseState parses a lowercase state name.
func ParseState(name string) (pb.HealthState, bool) { return events.ParseState(name) }

// ClassName is a failure class's lowercase name (timeout, refused, …).
func ClassName(c pb.FailureClass) string { return events.ClassName(c) }

// EventType is a journal event's type name (one of EventTypes).
func EventType(env *pb.Envelope) string { return events.TypeName(env) }

// EventTime is when a journal event happened.
func EventTime(env *pb.Envelope) time.Time { return events.At(env) }

// Notification types.
const (
	NotifyProxyDown      = projections.NotifyProxyDown
	NotifyProxyRecovered = projections.NotifyProxyRecovered
	NotifyPoolDegraded   = projections.NotifyPoolDegraded
	NotifyPoolRecovered  = projections.NotifyPoolRecovered
)

// ProxyInfo is what a proxy URL says about the proxy, without its
// credentials.
type ProxyInfo struct {
	// ID is the proxy's stable ID.
	ID string
	// Redacted is the URL without credentials.
	Redacted string
	// HasCredentials tells whether the URL carries user:pass.
	HasCredentials bool
}

// ParseProxy checks a proxy URL (http, https, socks4, socks4a, socks5,
// socks5h; a bare host:port means http) and returns what it says. The
// error never shows the credentials.
func ParseProxy(raw string) (ProxyInfo, error) {
	u, err := probe.ParseProxyURL(raw)
	if err != nil {
		return ProxyInfo{}, fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	return ProxyInfo{ID: u.ID(), Redacted: u.Redacted(), HasCredentials: u.HasCredentials()}, nil
}
