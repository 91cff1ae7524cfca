// Package events holds proxyhealth's pure health state machine.
//
// The machine is two functions, in the style of etcd raft's deterministic
// core:
//
//	Decide(state, command, config) → events   (what happened)
//	Evolve(state, event)           → state    (what it means)
//
// plus NextCheckAt(state, config, r), which says when the proxy should be
// checked next. Nothing here reads a clock, touches I/O or starts a
// goroutine: time arrives inside commands, randomness arrives as an argument.
// The shell (package actors) feeds commands in, appends the events Decide
// returns to the journal, waits for the commit, and only then folds them in
// with Evolve and acts on them (persist, then apply, then side effects).
// Because Evolve is the only way state changes, replaying a proxy's stream
// from the journal rebuilds exactly the state the actor had.
//
// # States
//
//	          first success (or healthy_threshold successes)
//	unknown ───────────────────────────────────────────────▶ healthy
//	   │ failure                                              │  ▲
//	   ▼                                     first failure    │  │ healthy_threshold
//	degraded ◀────────────────────────────────────────────────┘  │ successes
//	   │  └──────────────────────────────────────────────────────┘
//	   │ unhealthy_threshold consecutive failures
//	   ▼
//	unhealthy ──cooldown expires──▶ recovering ──healthy_threshold successes──▶ healthy
//	   ▲                                 │
//	   └──────────── failure ────────────┤
//	                                     │ failure after max_recovery_attempts
//	                                     ▼
//	                                  failed ──Revive──▶ unknown
//
// "checking" (a check in flight) and "paused" are flags, not states. A check
// slower than the latency ceiling (class too_slow) is a soft failure: it
// moves a healthy or unknown proxy to degraded but never counts towards
// unhealthy.
package events
