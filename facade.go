package proxyhealth

import (
	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/probe"
	"github.com/proxyhealth/proxyhealth/projections"
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
