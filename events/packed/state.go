// Package packed holds a proxy's events.State in fewer bytes, for whatever
// keeps one state per proxy in memory: the proxy's actor, the live status
// and the SQLite view's row cache.
//
// An events.State is 408 bytes: eight time.Time of 24 bytes each, int32
// enums, and the proxy's ID, which the projections already hold as their
// key. A State keeps the times as unix nanoseconds, the enums in a byte
// each, no ID, and what only ejections and cluster adoptions set (four
// times, two counts) behind a pointer that most proxies leave nil: 216
// bytes. Unpack gives back exactly the events.State
// that Pack was given (==): a state whose values the compact form cannot
// hold (a time that is not what events makes of unix nanoseconds, an enum
// value above 255, another ID) is kept whole beside it.
package packed

import (
	"time"

	"github.com/proxyhealth/proxyhealth/events"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// The flag bits of State.flags.
const (
	fHasCredentials = 1 << iota
	fAdded
	fRemoved
	fPaused
	fHasLatencyEWMA
	fEjected // EjectedUntil is not zero
)

// The times of a state: the first numCommon are State.times, the others
// rare.times (from numCommon on).
const (
	tAdded = iota
	tLastCheck
	tLastChange
	tEjectedUntil
	tLastEjected
	tLastReturn
	tAdopted
	numTimes

	numCommon = tEjectedUntil
)

// State is an events.State without its ProxyID, in fewer bytes. The zero
// value is events.State{} (with ID ""). Its accessors answer from the
// compact fields even when the whole state is kept (whole != nil): the
// fields they read always hold exactly.
type State struct {
	source, urlRedacted, lastError, tags, exitIP string

	totalChecks, totalFailures, streamSeq, seq uint64
	weight                                     float64
	latencyEWMA                                time.Duration
	lastLatency                                events.Latency
	times                                      [numCommon]int64 // unix ns; 0: the zero time

	consecutiveSuccesses, consecutiveFailures, recoveryAttempt, lastStatusCode uint32

	origin, health, lastErrorClass, anonymity uint8
	flags                                     uint8

	// rare holds what only ejections and cluster adoptions set; nil: all
	// zero, as for most proxies (32 bytes less in every packed state).
	rare *rare
	// whole is the state itself when the compact fields cannot hold it.
	whole *events.State
}

// rare are the fields of a State that most proxies never set. A rare is
// never changed once made: Repack shares it between a state and the next.
type rare struct {
	times                               [numTimes - numCommon]int64 // unix ns; 0: the zero time
	passiveFailures, ejectionMultiplier uint32
}

// Pack returns *s in compact form; id is the ID the caller will give
// Unpack (s.ProxyID, normally).
func Pack(s *events.State, id string) State {
	var p State
	p.Repack(s, id)
	return p
}

// Repack sets p to *s in compact form, as Pack does, sharing p's rare
// fields when they did not change: a state that keeps them packs without
// allocating.
func (p *State) Repack(s *events.State, id string) {
	prev := p.rare
	*p = State{
		source: s.Source, urlRedacted: s.URLRedacted, lastError: s.LastError, tags: s.Tags, exitIP: s.ExitIP,
		totalChecks: s.TotalChecks, totalFailures: s.TotalFailures, streamSeq: s.StreamSeq, seq: s.Seq,
		weight: s.Weight, latencyEWMA: s.LatencyEWMA, lastLatency: s.LastLatency,
		consecutiveSuccesses: s.ConsecutiveSuccesses, consecutiveFailures: s.ConsecutiveFailures,
		recoveryAttempt: s.RecoveryAttempt, lastStatusCode: s.LastStatusCode,
		origin: uint8(s.Origin), health: uint8(s.Health), lastErrorClass: uint8(s.LastErrorClass), anonymity: uint8(s.Anonymity),
	}
	exact := s.ProxyID == id && fits(int32(s.Origin)) && fits(int32(s.Health)) && fits(int32(s.LastErrorClass)) && fits(int32(s.Anonymity))
	exact = packTime(&p.times[tAdded], &s.AddedAt) && exact
	exact = packTime(&p.times[tLastCheck], &s.LastCheckAt) && exact
	exact = packTime(&p.times[tLastChange], &s.LastChangeAt) && exact
	r := rare{passiveFailures: s.PassiveFailures, ejectionMultiplier: s.EjectionMultiplier}
	exact = packTime(&r.times[tEjectedUntil-numCommon], &s.EjectedUntil) && exact
	exact = packTime(&r.times[tLastEjected-numCommon], &s.LastEjectedAt) && exact
	exact = packTime(&r.times[tLastReturn-numCommon], &s.LastReturnAt) && exact
	exact = packTime(&r.times[tAdopted-numCommon], &s.AdoptedAt) && exact
	switch {
	case r == rare{}:
	case prev != nil && *prev == r:
		p.rare = prev
	default:
		p.rare = new(rare)
		*p.rare = r
	}
	p.flags = flag(s.HasCredentials, fHasCredentials) | flag(s.Added, fAdded) | flag(s.Removed, fRemoved) | flag(s.Paused, fPaused) |
		flag(s.HasLatencyEWMA, fHasLatencyEWMA) | flag(!s.EjectedUntil.IsZero(), fEjected)
	if !exact {
		w := *s
		p.whole = &w
	}
}

// packTime sets *n to *t as unix nanoseconds (0: the zero time) and
// reports whether fromUnixNano gives *t back.
func packTime(n *int64, t *time.Time) bool {
	if *t == (time.Time{}) {
		*n = 0
		return true
	}
	*n = unixNano(*t)
	return *n != 0 && time.Unix(0, *n).UTC() == *t
}

func flag(on bool, bit uint8) uint8 {
	if on {
		return bit
	}
	return 0
}

// Unpack returns the events.State that Pack was given; id must be the id
// Pack was given.
func (p *State) Unpack(id string) events.State {
	if p.whole != nil {
		return *p.whole
	}
	t := &p.times
	var r rare
	if p.rare != nil {
		r = *p.rare
	}
	return events.State{
		ProxyID: id, Source: p.source, URLRedacted: p.urlRedacted, HasCredentials: p.has(fHasCredentials),
		Origin: pb.ProxyOrigin(p.origin), Added: p.has(fAdded), Removed: p.has(fRemoved), Paused: p.has(fPaused),
		Health: pb.HealthState(p.health), ConsecutiveSuccesses: p.consecutiveSuccesses, ConsecutiveFailures: p.consecutiveFailures,
		RecoveryAttempt: p.recoveryAttempt, PassiveFailures: r.passiveFailures, TotalChecks: p.totalChecks, TotalFailures: p.totalFailures,
		AddedAt: fromUnixNano(t[tAdded]), LastCheckAt: fromUnixNano(t[tLastCheck]), LastChangeAt: fromUnixNano(t[tLastChange]),
		LastErrorClass: pb.FailureClass(p.lastErrorClass), LastError: p.lastError, LastStatusCode: p.lastStatusCode, LastLatency: p.lastLatency,
		Tags: p.tags, Weight: p.weight, ExitIP: p.exitIP, Anonymity: pb.Anonymity(p.anonymity),
		EjectedUntil: fromUnixNano(r.times[tEjectedUntil-numCommon]), EjectionMultiplier: r.ejectionMultiplier,
		LastEjectedAt: fromUnixNano(r.times[tLastEjected-numCommon]), LastReturnAt: fromUnixNano(r.times[tLastReturn-numCommon]),
		AdoptedAt: fromUnixNano(r.times[tAdopted-numCommon]), LatencyEWMA: p.latencyEWMA, HasLatencyEWMA: p.has(fHasLatencyEWMA), StreamSeq: p.streamSeq, Seq: p.seq,
	}
}

func (p *State) has(bit uint8) bool { return p.flags&bit != 0 }

// Health is the state's Health.
func (p *State) Health() pb.HealthState {
	if p.whole != nil {
		return p.whole.Health
	}
	return pb.HealthState(p.health)
}

// Anonymity is the state's Anonymity.
func (p *State) Anonymity() pb.Anonymity {
	if p.whole != nil {
		return p.whole.Anonymity
	}
	return pb.Anonymity(p.anonymity)
}

// Source is the state's Source.
func (p *State) Source() string { return p.source }

// Tags is the state's Tags.
func (p *State) Tags() string { return p.tags }

// Added is the state's Added.
func (p *State) Added() bool { return p.has(fAdded) }

// Removed is the state's Removed.
func (p *State) Removed() bool { return p.has(fRemoved) }

// Paused is the state's Paused.
func (p *State) Paused() bool { return p.has(fPaused) }

// Ejected is the state's Ejected().
func (p *State) Ejected() bool { return p.has(fEjected) }

// LatencyEWMA is the state's LatencyEWMA and HasLatencyEWMA.
func (p *State) LatencyEWMA() (time.Duration, bool) { return p.latencyEWMA, p.has(fHasLatencyEWMA) }

// StreamSeq is the state's StreamSeq.
func (p *State) StreamSeq() uint64 { return p.streamSeq }

func fits(v int32) bool { return v >= 0 && v <= 255 }

// unixNano and fromUnixNano map times as events.ToSnapshot and
// events.FromSnapshot do: the zero time is 0, any other time is UTC.
var (
	unixNano     = events.UnixNano
	fromUnixNano = events.FromUnixNano
)

// TotalChecks is the state's TotalChecks.
func (p *State) TotalChecks() uint64 { return p.totalChecks }

// EjectedUntil is the state's EjectedUntil.
func (p *State) EjectedUntil() time.Time {
	switch {
	case p.whole != nil:
		return p.whole.EjectedUntil
	case p.rare == nil:
		return time.Time{}
	}
	return fromUnixNano(p.rare.times[tEjectedUntil-numCommon])
}

// ConsecutiveFailures is the state's ConsecutiveFailures.
func (p *State) ConsecutiveFailures() uint32 { return p.consecutiveFailures }

// Weight is the state's Weight.
func (p *State) Weight() float64 { return p.weight }

// ExitIP is the state's ExitIP.
func (p *State) ExitIP() string { return p.exitIP }
