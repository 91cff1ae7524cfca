// Package rotation hands proxies out: a lock-free picker over an immutable
// snapshot of the pool that the engine publishes after each projection
// step. It knows nothing of actors or the journal: the engine feeds it
// members and their status (Pool.Set, Pool.Remove, Pool.Publish), and
// programs pick through the engine's facade (proxyhealth.Engine.Pick).
package rotation

import (
	"errors"
	"net/url"
	"strconv"
	"time"
)

// ErrNoProxy is returned by Pick when nothing at all can be handed out:
// no proxy matches the request's filters, or every match is paused or
// failed (given up on).
var ErrNoProxy = errors.New("rotation: no usable proxy")

// ErrBadRequest wraps a request the picker cannot serve (an unknown
// strategy, sticky without a key).
var ErrBadRequest = errors.New("rotation: bad pick request")

// Strategy is how a proxy is chosen among the usable ones.
type Strategy string

// The strategies. The names are the CLI's and the API's (--strategy,
// GET /v1/pick?strategy=).
const (
	// RoundRobin cycles through the usable proxies.
	RoundRobin Strategy = "round-robin"
	// Random picks a usable proxy uniformly at random.
	Random Strategy = "random"
	// LeastLatency prefers proxies with the lowest latency EWMA.
	LeastLatency Strategy = "least-latency"
	// Weighted picks at random, weighted by each proxy's recent success
	// rate.
	Weighted Strategy = "weighted"
	// Sticky maps a key to a proxy by consistent hashing: the key keeps its
	// proxy while that proxy stays usable.
	Sticky Strategy = "sticky"
)

// Strategies lists every strategy, in documentation order.
var Strategies = []Strategy{RoundRobin, Random, LeastLatency, Weighted, Sticky}

// State is a proxy's health state as the picker sees it; the values are
// those of proto HealthState (unknown 0 … failed 5).
type State uint8

// The health states.
const (
	StateUnknown State = iota
	StateHealthy
	StateDegraded
	StateUnhealthy
	StateRecovering
	StateFailed
)

// String returns the lowercase state name used by the API.
func (s State) String() string {
	switch s {
	case StateUnknown:
		return "unknown"
	case StateHealthy:
		return "healthy"
	case StateDegraded:
		return "degraded"
	case StateUnhealthy:
		return "unhealthy"
	case StateRecovering:
		return "recovering"
	case StateFailed:
		return "failed"
	}
	return "state_" + strconv.Itoa(int(s))
}

// Member is a proxy the picker may hand out. Its identity and address are
// fixed for the proxy's life; Set with a changed Member replaces it.
type Member struct {
	// ID is the proxy's stable ID.
	ID string
	// URL is the proxy's full URL, credentials included, for the process
	// that routes traffic through it. Never log or print it (use
	// URL.Redacted()).
	URL *url.URL
	// Scheme is http, https, socks4, socks4a, socks5 or socks5h.
	Scheme string
	// Host and Port are the proxy's address.
	Host string
	Port int
	// Source is the proxy's source (named group).
	Source string
	// Tags are free labels a request can filter on (from the sources).
	Tags []string
	// Weight scales the member's share under the weighted strategy (its
	// recent success rate × Weight); 0 means 1.
	Weight float64
}

// Status is what the picker knows of a member's health, as of the last
// projection step that changed it.
type Status struct {
	// State is the member's health state.
	State State
	// Paused: an operator took the proxy out of checks and rotation.
	Paused bool
	// Ejected: passive outlier detection took the proxy out of rotation
	// until its ejection ends.
	Ejected bool
	// LatencyEWMA is the moving average of passed checks' latency; zero
	// when unknown.
	LatencyEWMA time.Duration
	// SuccessRate is the recent share (0..1) of passed checks; Checks is
	// how many checks it is computed from (0: unknown).
	SuccessRate float64
	Checks      uint32
	// ConsecutiveFailures counts the failures (active and passive) since
	// the last success.
	ConsecutiveFailures uint32
	// LastSuccess is the time of the last passed check or reported
	// success, unix nanoseconds; 0 for never.
	LastSuccess int64
}

// Request says what to pick. The zero value picks any usable proxy with
// the picker's default strategy.
type Request struct {
	// Strategy; "" means the picker's default.
	Strategy Strategy
	// Key is the sticky key (required by Sticky, ignored otherwise).
	Key string
	// Source, Scheme and Tag filter the candidates; "" matches all. A
	// request with Tag picks among the members carrying that tag.
	Source string
	Scheme string
	Tag    string
	// Exclude lists proxy IDs not to pick (a retry avoiding the proxies
	// already tried). Keep it short: it is scanned linearly.
	Exclude []string
}

// Pick is a proxy handed out. Its Member is the one Set, but for Tags: the
// pool's copy, which members with the same tags share and every pick hands
// out, so it must not be modified.
type Pick struct {
	Member
	// State is the member's state when it was picked.
	State State
	// Panic is true when the pick was made in panic mode: too few usable
	// candidates, so the least-bad one was picked instead.
	Panic bool
}

// Outcome is what real traffic saw through a proxy, reported back to the
// engine (Engine.ReportOutcome) for passive outlier detection.
type Outcome struct {
	// ProxyID is the proxy the traffic went through.
	ProxyID string
	// OK is true when the proxy did its job, also when the target answered
	// with an error status through it (a target error is not the proxy's).
	OK bool
	// Class names a local-origin failure (the proxy's own): "refused",
	// "timeout", "reset", "tls", "dns", "proxy_auth_required",
	// "bad_status" (a 5xx from the proxy itself), "protocol" or "other" —
	// the names of the probe's failure classes. Empty when OK.
	Class string
	// Latency is how long the request took through the proxy (0: not
	// measured).
	Latency time.Duration
}
