package proxyhealth

import (
	"context"
	"fmt"
	"time"

	"github.com/proxyhealth/proxyhealth/actors"
	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/probe"
	"github.com/proxyhealth/proxyhealth/projections"
)

// Defaults and limits of the configuration, for programs (and the CLI)
// that build a Config: one source of truth, so nothing restates a number.
const (
	// DefaultTargetURL is what a check fetches through the proxy by
	// default.
	DefaultTargetURL = probe.DefaultTargetURL
	// DefaultTimeout bounds one whole check by default.
	DefaultTimeout = probe.DefaultTimeout
	// DefaultConcurrency is the default bound of checks in flight.
	DefaultConcurrency = actors.DefaultConcurrency
	// DefaultSnapshotEvery is how many events a proxy appends between
	// snapshots by default.
	DefaultSnapshotEvery = actors.DefaultSnapshotEvery
	// MinInterval is the smallest check and suspect interval.
	MinInterval = events.MinInterval
	// DefaultRetention is how long journal events are kept by default.
	DefaultRetention = journal.DefaultRetention
	// DefaultCheckpointEvery is how often a running engine saves the live
	// status's checkpoint by default (Config.CheckpointEvery).
	DefaultCheckpointEvery = 5 * time.Minute
	// DefaultPoolThreshold is the healthy percentage below which the pool
	// is degraded; DefaultPoolMargin the hysteresis in points.
	DefaultPoolThreshold = projections.DefaultPoolThreshold
	DefaultPoolMargin    = projections.DefaultPoolMargin
	// DefaultWebhookTimeout bounds one webhook delivery attempt.
	DefaultWebhookTimeout = projections.DefaultWebhookTimeout
	// DefaultHistoryCap is how many check results CheckHistory returns at
	// most.
	DefaultHistoryCap = projections.DefaultHistoryCap
	// MaxErrorExcerpt bounds the excerpt of a proxy URL that an error
	// shows (redacted).
	MaxErrorExcerpt = probe.MaxErrorExcerpt
)

// Pieces of a ProbeConfig.
type (
	// StatusRange is a range of HTTP status codes that pass a check.
	StatusRange = probe.StatusRange
	// ProbeMode is how a proxy is checked (its own protocol, or a TCP
	// connect only).
	ProbeMode = probe.Mode
	// ProbeHeader is a request header a check sends.
	ProbeHeader = probe.Header
)

// ErrBadProbeConfig wraps ProbeConfig.Validate's errors.
var ErrBadProbeConfig = probe.ErrBadConfig

// ParseStatusRanges parses "200-299,301".
func ParseStatusRanges(s string) ([]StatusRange, error) { return probe.ParseStatusRanges(s) }

// ParseProbeMode parses "auto" or "tcp-connect".
func ParseProbeMode(s string) (ProbeMode, error) { return probe.ParseMode(s) }

// ProbeClose is how check connections are closed (ProbeConfig.Close):
// auto (the default: with a RST for tcp-connect checks, a FIN otherwise),
// fin, or reset.
type ProbeClose = probe.CloseMode

// ParseProbeClose parses a close mode: "auto", "fin", "reset" ("" is auto).
func ParseProbeClose(s string) (ProbeClose, error) { return probe.ParseCloseMode(s) }

// CheckResult is the outcome of one check of a proxy.
type CheckResult struct {
	// Proxy is what the proxy URL says (without credentials).
	Proxy ProxyInfo
	// Config is the probe configuration in force, defaults filled in.
	Config ProbeConfig
	// OK is true when the check passed; Class names the failure otherwise.
	OK    bool
	Class string
	// StatusCode is the target's answer through the proxy (0 when none).
	StatusCode int
	// Message says what happened, for people.
	Message string
	// Connect, FirstByte and Total are the check's latencies.
	Connect, FirstByte, Total time.Duration
	// Canceled is true when ctx ended the check (it is no observation).
	Canceled bool
}

// CheckProxy checks one proxy once, as the engine would (`proxyhealth
// check`). Nothing is journaled. A bad URL or config wraps ErrBadConfig or
// ErrBadProbeConfig.
func CheckProxy(ctx context.Context, rawURL string, cfg ProbeConfig) (CheckResult, error) {
	u, err := probe.ParseProxyURL(rawURL)
	if err != nil {
		return CheckResult{}, fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	checker, err := probe.NewChecker(cfg)
	if err != nil {
		return CheckResult{}, err
	}
	r := checker.Check(ctx, u)
	return CheckResult{
		Proxy:  ProxyInfo{ID: u.ID(), Redacted: u.Redacted(), HasCredentials: u.HasCredentials()},
		Config: checker.Config(), OK: r.OK(), Class: events.ClassName(r.Class), StatusCode: r.StatusCode,
		Message: r.Message, Connect: r.Connect, FirstByte: r.FirstByte, Total: r.Total, Canceled: r.Canceled,
	}, nil
}
