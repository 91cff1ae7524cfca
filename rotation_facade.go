package proxyhealth

import "github.com/proxyhealth/proxyhealth/rotation"

// Rotation's vocabulary (package rotation): what a program asks for when it
// wants a proxy to route traffic through, what it gets, and what it
// reports back.
type (
	// PickRequest says what to pick: strategy, sticky key, filters.
	PickRequest = rotation.Request
	// Picked is a proxy handed out, with its full URL (credentials
	// included: never log it; use URL.Redacted()).
	Picked = rotation.Pick
	// Strategy is how a proxy is chosen among the usable ones.
	Strategy = rotation.Strategy
	// Outcome is what real traffic saw through a proxy.
	Outcome = rotation.Outcome
)

// The pick strategies (--strategy, GET /v1/pick?strategy=).
const (
	RoundRobin   = rotation.RoundRobin
	Random       = rotation.Random
	LeastLatency = rotation.LeastLatency
	Weighted     = rotation.Weighted
	Sticky       = rotation.Sticky
)

// ErrNoProxy is returned by Pick when nothing at all can be handed out.
var ErrNoProxy = rotation.ErrNoProxy

// Strategies lists every pick strategy, in documentation order.
var Strategies = rotation.Strategies
