package proxyhealth

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/proxyhealth/proxyhealth/actors"
	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
	"github.com/proxyhealth/proxyhealth/rotation"
)

// Defaults of RotationConfig.
const (
	// DefaultPanicThreshold is the usable share of the candidates below
	// which picks are made in panic mode (Envoy's panic threshold).
	DefaultPanicThreshold = rotation.DefaultPanicThreshold
	// DefaultMaxEjectionShare is the share of the pool passive outlier
	// detection may hold ejected at once (at least one proxy).
	DefaultMaxEjectionShare = actors.DefaultMaxEjectionShare
)

// RotationConfig configures how the engine hands proxies out (Pick) and
// how far real traffic may take them out of rotation. The zero value means
// the defaults.
type RotationConfig struct {
	// Strategy is the strategy of picks that name none. Default
	// round-robin.
	Strategy Strategy
	// IncludeDegraded makes degraded proxies usable (picked like healthy
	// ones). Default false: only healthy proxies are handed out.
	IncludeDegraded bool
	// PanicThreshold (0..1): when fewer than this share of a pick's
	// candidates (its matching, unpaused proxies) are usable, the pick is
	// made among the least-bad candidates instead of failing: fewest recent
	// failures, then most recent success. Default 0.5; DisablePanic turns
	// panic mode off.
	PanicThreshold float64
	// DisablePanic turns panic mode off: picks fail with ErrNoProxy when
	// nothing is usable.
	DisablePanic bool
	// MaxEjectionShare (0..1] bounds the share of the pool that passive
	// outlier detection holds ejected at once (at least one proxy), so a
	// bad target cannot empty the pool. Default 0.5.
	MaxEjectionShare float64
}

func (r RotationConfig) withDefaults() RotationConfig {
	if r.Strategy == "" {
		r.Strategy = RoundRobin
	}
	if r.PanicThreshold == 0 {
		r.PanicThreshold = DefaultPanicThreshold
	}
	if r.MaxEjectionShare == 0 {
		r.MaxEjectionShare = DefaultMaxEjectionShare
	}
	return r
}

// Validate reports the first invalid field of the rotation config.
func (r RotationConfig) Validate() error {
	r = r.withDefaults()
	switch {
	case !validStrategy(r.Strategy):
		return fmt.Errorf("%w: rotation.strategy = %q; must be one of %v", ErrBadConfig, r.Strategy, Strategies)
	case !(r.PanicThreshold > 0 && r.PanicThreshold <= 1):
		return fmt.Errorf("%w: rotation.panic_threshold = %v; must be in (0, 1] (a share; disable panic mode with disable_panic)", ErrBadConfig, r.PanicThreshold)
	case !(r.MaxEjectionShare > 0 && r.MaxEjectionShare <= 1):
		return fmt.Errorf("%w: rotation.max_ejection_share = %v; must be in (0, 1]", ErrBadConfig, r.MaxEjectionShare)
	}
	return nil
}

func validStrategy(s Strategy) bool {
	for _, v := range Strategies {
		if s == v {
			return true
		}
	}
	return false
}

// poolOptions are the picker's options for this config, on the engine's
// clock.
func (r RotationConfig) poolOptions(now func() time.Time) rotation.Options {
	o := rotation.DefaultOptions()
	o.Now = now
	o.Strategy = r.Strategy
	o.IncludeDegraded = r.IncludeDegraded
	o.PanicThreshold = r.PanicThreshold
	if r.DisablePanic {
		o.PanicThreshold = 0
	}
	return o
}

// rotator keeps the picker's pool in step with the live status: after each
// batch the live status applied, it updates the members the batch touched
// and publishes, then journals panic mode turning on or off. It runs on
// the live status's feeder goroutine.
type rotator struct {
	pool      *rotation.Pool
	budget    *actors.EjectionBudget
	live      *projections.Live
	proxy     func(id string) (*proxy, bool) // the running proxy
	journal   journal.Journal
	now       func() int64
	log       *slog.Logger
	threshold float64 // panic threshold, in percent for the events
	touched   map[string]struct{}
	wmu       sync.Mutex // serializes the pool's writers: the feeder, refresh

	// Deferred publishing (large pools, batches of check results and
	// additions only),
	// guarded by wmu: when the last publish was made, whether one is
	// owed, its timer, and whether the engine is closing.
	lastPublish time.Time
	mono        func() time.Time // time.Now; tests stop it
	owed        bool
	owedTimer   *time.Timer
	closed      bool

	mu        sync.Mutex
	journaled bool // the panic state the journal holds (or will)
	appending bool
	wg        sync.WaitGroup
}

// apply follows one batch of the live status.
func (r *rotator) apply(batch []*pb.Envelope) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	for _, env := range batch {
		if id := env.GetProxyId(); id != "" {
			r.touched[id] = struct{}{}
		}
	}
	for id := range r.touched {
		r.update(id)
	}
	clear(r.touched)
	if r.closed {
		return
	}
	if d := publishDelay(r.pool.Len()); d > 0 && deferrable(batch) {
		// A publish rebuilds the picker's groups, O(pool size): with
		// thousands of check results a second (a first sweep of 100,000
		// proxies, about a quarter of the engine's CPU), results wait up
		// to d and go out together, and so do new proxies (unchecked,
		// they are picked only in panic mode, as the least bad; while a
		// large pool is added, batches mix additions and first checks).
		// Operators' commands, removals and ejections go out at once.
		if wait := d - r.monoNow().Sub(r.lastPublish); wait > 0 {
			if !r.owed {
				r.owed = true
				r.owedTimer = time.AfterFunc(wait, r.publishOwed)
			}
			return
		}
	}
	r.publishNow()
}

// publishDelay is how long check results may wait for the picker's next
// publish in a pool of n members: none below 5,000 members, then 10 µs a
// member (100 ms at 10,000, 1 s at 100,000), at most 1 s, so a publish
// (about 40 ns a member) costs well under 1 % of a CPU.
func publishDelay(n int) time.Duration {
	if n < 5000 {
		return 0
	}
	return min(time.Duration(n)*10*time.Microsecond, time.Second)
}

// deferrable reports whether a batch holds nothing but the outcomes of
// checks (and the state changes and exit observations they cause) and
// proxies added.
func deferrable(batch []*pb.Envelope) bool {
	for _, env := range batch {
		switch env.GetEvent().(type) {
		case *pb.Envelope_CheckSucceeded, *pb.Envelope_CheckFailed, *pb.Envelope_StateChanged, *pb.Envelope_ExitObserved, *pb.Envelope_ProxyAdded:
		default:
			return false
		}
	}
	return true
}

// publishNow publishes; wmu is held.
func (r *rotator) publishNow() {
	if r.owedTimer != nil {
		r.owedTimer.Stop()
		r.owedTimer = nil
	}
	r.owed = false
	r.lastPublish = r.monoNow()
	r.publish()
}

// monoNow is the real time (not the engine's clock: deferring a publish
// only spreads CPU, and a test's fake clock must not hold picks back).
func (r *rotator) monoNow() time.Time {
	if r.mono != nil {
		return r.mono()
	}
	return time.Now()
}

// publishOwed makes a deferred publish (the timer's goroutine).
func (r *rotator) publishOwed() {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.owed && !r.closed {
		r.publishNow()
	}
}

// close stops deferred publishing (Engine.Close, before the journal
// closes); a publish owed is dropped: nobody picks any more.
func (r *rotator) close() {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	r.closed = true
	if r.owedTimer != nil {
		r.owedTimer.Stop()
		r.owedTimer = nil
	}
	r.owed = false
}

// follow makes the rotator follow live, caught up with the journal: the
// panic state the journal holds is the last one live applied.
func (r *rotator) follow(live *projections.Live) {
	r.live = live
	r.mu.Lock()
	r.journaled = live.Summary().PanicMode
	r.mu.Unlock()
}

// refresh updates the given proxies (just started: a proxy resumed from the
// journal journals nothing until its next check).
func (r *rotator) refresh(ids []string) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	for _, id := range ids {
		r.update(id)
	}
	r.publishNow()
}

// update refreshes one proxy's member and status.
func (r *rotator) update(id string) {
	b, ok := r.live.Brief(id)
	if !ok {
		r.remove(id)
		return
	}
	p, ok := r.proxy(id)
	if !ok { // known to the journal, not run by this engine
		r.remove(id)
		return
	}
	// While the pool's member is what memberOf would build from p, with
	// the tags and weight the live status gives (most updates are check
	// results), only the status changes. The member is compared with the
	// running proxy, not with a copy of what it was built from (a map of
	// them cost about 50 bytes a proxy).
	if r.pool.SetStatusIf(id, statusOf(b), func(m *rotation.Member) bool {
		return builtFrom(m, p) && m.Weight == b.Weight && sameTags(m.Tags, b)
	}) {
		return // the usual case, a check result: no member to build
	}
	m := memberOf(id, p)
	m.Tags, m.Weight = memberTags(b), b.Weight
	r.pool.Set(m, statusOf(b))
}

func (r *rotator) remove(id string) { r.pool.Remove(id) }

// builtFrom reports whether memberOf(m.ID, p) would give m's source and
// URL (its scheme, host, port and credentials).
func builtFrom(m *rotation.Member, p *proxy) bool {
	u := m.URL
	if u == nil || m.Source != p.source() || u.Scheme != p.url.Scheme() || u.Host != p.url.HostPort() {
		return false
	}
	if p.url.HasCredentials() != (u.User != nil) {
		return false
	}
	if u.User == nil {
		return true
	}
	user, pass := p.url.RevealCredentials()
	mp, _ := u.User.Password()
	return u.User.Username() == user && mp == pass
}

// Derived tags: what an echo target saw of a proxy is filterable like its
// own tags (PickRequest.Tag "anonymity:elite", "exit_ip:203.0.113.7").
const (
	AnonymityTagPrefix = "anonymity:"
	ExitIPTagPrefix    = "exit_ip:"
)

// memberTags are a proxy's tags for the picker: its own, and the derived
// ones.
func memberTags(b projections.Brief) []string {
	var tags []string
	if b.Tags != "" {
		tags = strings.Split(b.Tags, ",")
	}
	if b.Anonymity != pb.Anonymity_ANONYMITY_UNSPECIFIED {
		tags = append(tags, anonymityTag(b.Anonymity))
	}
	if b.ExitIP != "" {
		tags = append(tags, ExitIPTagPrefix+b.ExitIP)
	}
	return tags
}

// anonymityTags are the derived tags of the known anonymity levels, which
// every member of a level shares.
var anonymityTags = func() map[pb.Anonymity]string {
	m := map[pb.Anonymity]string{}
	for v := range pb.Anonymity_name {
		m[pb.Anonymity(v)] = AnonymityTagPrefix + events.AnonymityName(pb.Anonymity(v))
	}
	return m
}()

// anonymityTag is a's derived tag.
func anonymityTag(a pb.Anonymity) string {
	if t, ok := anonymityTags[a]; ok {
		return t
	}
	return AnonymityTagPrefix + events.AnonymityName(a)
}

// sameTags reports whether tags are memberTags(b), without building them.
func sameTags(tags []string, b projections.Brief) bool {
	i := 0
	if b.Tags != "" {
		for rest, more := b.Tags, true; more; i++ {
			var t string
			t, rest, more = strings.Cut(rest, ",")
			if i >= len(tags) || tags[i] != t {
				return false
			}
		}
	}
	if b.Anonymity != pb.Anonymity_ANONYMITY_UNSPECIFIED {
		if i >= len(tags) || !isTag(tags[i], AnonymityTagPrefix, anonymityName(b.Anonymity)) {
			return false
		}
		i++
	}
	if b.ExitIP != "" {
		if i >= len(tags) || !isTag(tags[i], ExitIPTagPrefix, b.ExitIP) {
			return false
		}
		i++
	}
	return i == len(tags)
}

// isTag reports whether tag is prefix+value.
func isTag(tag, prefix, value string) bool {
	return len(tag) == len(prefix)+len(value) && strings.HasPrefix(tag, prefix) && tag[len(prefix):] == value
}

// anonymityNames are events.AnonymityName of the known levels, which it
// builds anew at each call.
var anonymityNames = func() map[pb.Anonymity]string {
	m := map[pb.Anonymity]string{}
	for v := range pb.Anonymity_name {
		m[pb.Anonymity(v)] = events.AnonymityName(pb.Anonymity(v))
	}
	return m
}()

// anonymityName is events.AnonymityName without an allocation for the
// known levels.
func anonymityName(a pb.Anonymity) string {
	if n, ok := anonymityNames[a]; ok {
		return n
	}
	return events.AnonymityName(a)
}

// statusOf is what the picker needs of a proxy's live status.
func statusOf(b projections.Brief) rotation.Status {
	return rotation.Status{
		State: rotation.State(b.State), Paused: b.Paused, Ejected: b.Ejected,
		LatencyEWMA: b.LatencyEWMA, SuccessRate: b.SuccessRate1h, Checks: b.Checks1h,
		ConsecutiveFailures: b.ConsecutiveFailures, LastSuccess: b.LastSuccess,
	}
}

// publish makes the changes visible to pickers and journals a change of
// the pool-wide panic mode (once per episode).
func (r *rotator) publish() {
	r.pool.Publish()
	r.budget.SetTotal(r.pool.Len())
	ps := r.pool.Panic()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.appending || ps.Active == r.journaled {
		return
	}
	// While most proxies have not been checked yet (start-up, a large
	// addition) the pool is "in panic" only because nothing is known:
	// picks still fall back to the least-bad proxies, but an episode is
	// journaled only once the verdict rests on checks.
	if sum := r.live.Summary(); (sum.Total-sum.Unknown)*2 < sum.Total {
		return
	}
	env := &pb.Envelope{AtUnixNano: r.now()}
	if ps.Active {
		env.Event = &pb.Envelope_PoolPanicEntered{PoolPanicEntered: &pb.PoolPanicEntered{
			Usable: uint32(ps.Usable), Candidates: uint32(ps.Candidates), ThresholdPercentage: r.threshold}}
	} else {
		env.Event = &pb.Envelope_PoolPanicLeft{PoolPanicLeft: &pb.PoolPanicLeft{
			Usable: uint32(ps.Usable), Candidates: uint32(ps.Candidates), ThresholdPercentage: r.threshold}}
	}
	r.appending = true
	r.wg.Add(1)
	go func() { // the feeder never waits for the journal
		defer r.wg.Done()
		_, err := r.journal.Append(context.Background(), []*pb.Envelope{env})
		r.mu.Lock()
		r.appending = false
		if err == nil {
			r.journaled = ps.Active
		}
		r.mu.Unlock()
		if err != nil {
			r.log.Warn("could not journal the pool's panic mode; retrying with the next change", slog.Bool("panic", ps.Active), slog.Any("error", err))
		}
	}()
}

// wait waits for a panic event being appended (Close, before the journal
// closes).
func (r *rotator) wait() { r.wg.Wait() }

// memberOf builds the picker's member of a running proxy: its full URL
// (credentials included: the picker hands it to the process's own
// transport, never to logs or the API).
func memberOf(id string, p *proxy) rotation.Member {
	u := &url.URL{Scheme: p.url.Scheme(), Host: p.url.HostPort()}
	if p.url.HasCredentials() {
		user, pass := p.url.RevealCredentials()
		u.User = url.UserPassword(user, pass)
	}
	// The port is a valid one's decimal string (ParseProxyURL checked
	// it); fmt.Sscanf read it with four allocations.
	port, _ := strconv.Atoi(p.url.Port())
	return rotation.Member{ID: id, URL: u, Scheme: p.url.Scheme(), Host: p.url.Host(), Port: port, Source: p.source()}
}

// runningProxy is the rotator's lookup of a running proxy.
func (e *Engine) runningProxy(id string) (*proxy, bool) {
	e.mu.Lock()
	p := e.proxies.Get(id)
	e.mu.Unlock()
	return p, p != nil
}

// Pick hands out a usable proxy, chosen by the request's strategy among the
// proxies matching its filters: never blocking, never allocating, from a
// snapshot of the live status that follows each projection step (in pools
// of 5,000 proxies or more, check results may reach it up to 10 µs per
// proxy later, at most 1 s; operators' commands at once). In panic
// mode (too few usable candidates) it picks among the least-bad ones
// (Picked.Panic). It fails with ErrNoProxy when nothing at all can be
// handed out. The Picked URL carries the proxy's credentials, for the
// program's own traffic: never log or print it.
func (e *Engine) Pick(req PickRequest) (Picked, error) { return e.rot.pool.Pick(req) }

// PickN fills dst with up to len(dst) distinct proxies, as Pick would
// choose them, and returns how many it picked.
func (e *Engine) PickN(req PickRequest, dst []Picked) (int, error) { return e.rot.pool.PickN(req, dst) }

// PanicState is the pool-wide panic mode as the picker last computed it.
type PanicState = rotation.PanicState

// Panic returns the pool-wide panic state (panic mode on or off, and the
// usable and candidate counts it was decided from).
func (e *Engine) Panic() PanicState { return e.rot.pool.Panic() }

// Ejections returns how many proxies passive outlier detection holds out
// of rotation, and how many it may (the maximum ejection share).
func (e *Engine) Ejections() (ejected, limit int) { return e.rot.budget.Ejected() }
