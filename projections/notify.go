package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections/internal/fold"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// Notification types.
const (
	// NotifyProxyDown: a proxy became unhealthy (once per down episode: a
	// failed recovery attempt, or giving up, does not notify again).
	NotifyProxyDown = "proxy_down"
	// NotifyProxyRecovered: a proxy that was down became healthy again.
	NotifyProxyRecovered = "proxy_recovered"
	// NotifyPoolDegraded: a PoolDegraded event was journaled.
	NotifyPoolDegraded = "pool_degraded"
	// NotifyPoolRecovered: a PoolRecovered event was journaled.
	NotifyPoolRecovered = "pool_recovered"
)

// Notification is one alert derived from a committed journal event. Its
// JSON form (webhook body) is
//
//	{"type":"proxy_down","at":"2025-03-04T05:06:07.123456789Z","seq":42,
//	 "proxy_id":"00000000deadbeef","url":"http://10.0.0.7:3128","source":"main",
//	 "from":"degraded","to":"unhealthy","reason":"3 consecutive failures (threshold 3), last: timeout"}
//
//	{"type":"pool_degraded","at":"…","seq":43,"healthy_percentage":40,"threshold":50,"healthy":4,"total":10}
//
// Proxy notifications carry no pool fields and vice versa. url is always
// redacted (no credentials). at is the event's time (RFC 3339, nanoseconds).
type Notification struct {
	Type string
	At   time.Time
	Seq  uint64

	ProxyID string
	URL     string
	Source  string
	From    string
	To      string
	Reason  string

	HealthyPercentage float64
	Threshold         float64
	Healthy           uint32
	// Total is the number of proxies the percentage is computed over
	// (those with a known state).
	Total uint32
}

// IsPool reports whether n is a pool-level notification.
func (n Notification) IsPool() bool {
	return n.Type == NotifyPoolDegraded || n.Type == NotifyPoolRecovered
}

type notificationJSON struct {
	Type              string   `json:"type"`
	At                string   `json:"at"`
	Seq               uint64   `json:"seq"`
	ProxyID           string   `json:"proxy_id,omitempty"`
	URL               string   `json:"url,omitempty"`
	Source            string   `json:"source,omitempty"`
	From              string   `json:"from,omitempty"`
	To                string   `json:"to,omitempty"`
	Reason            string   `json:"reason,omitempty"`
	HealthyPercentage *float64 `json:"healthy_percentage,omitempty"`
	Threshold         *float64 `json:"threshold,omitempty"`
	Healthy           *uint32  `json:"healthy,omitempty"`
	Total             *uint32  `json:"total,omitempty"`
}

// MarshalJSON renders the documented shape.
func (n Notification) MarshalJSON() ([]byte, error) {
	j := notificationJSON{Type: n.Type, At: n.At.UTC().Format(time.RFC3339Nano), Seq: n.Seq}
	if n.IsPool() {
		j.HealthyPercentage, j.Threshold, j.Healthy, j.Total = &n.HealthyPercentage, &n.Threshold, &n.Healthy, &n.Total
	} else {
		j.ProxyID, j.URL, j.Source, j.From, j.To, j.Reason = n.ProxyID, n.URL, n.Source, n.From, n.To, n.Reason
	}
	return json.Marshal(j)
}

// UnmarshalJSON parses the documented shape.
func (n *Notification) UnmarshalJSON(b []byte) error {
	var j notificationJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	at, err := time.Parse(time.RFC3339Nano, j.At)
	if err != nil {
		return fmt.Errorf("projections: notification time %q: %w", j.At, err)
	}
	*n = Notification{Type: j.Type, At: at, Seq: j.Seq, ProxyID: j.ProxyID, URL: j.URL, Source: j.Source, From: j.From, To: j.To, Reason: j.Reason}
	if j.HealthyPercentage != nil {
		n.HealthyPercentage = *j.HealthyPercentage
	}
	if j.Threshold != nil {
		n.Threshold = *j.Threshold
	}
	if j.Healthy != nil {
		n.Healthy = *j.Healthy
	}
	if j.Total != nil {
		n.Total = *j.Total
	}
	return nil
}

// DefaultSubscriberBuffer is the channel capacity of Notifier.Subscribe.
const DefaultSubscriberBuffer = 64

// NotifierOptions configures NewNotifier.
type NotifierOptions struct {
	// Webhooks receive every notification (of their Types) as a JSON POST.
	Webhooks []WebhookOptions
	// Callbacks are called with each notification, in order, from the
	// notifier's goroutine: they must return quickly. Panics are recovered.
	Callbacks []func(Notification)
	// SubscriberBuffer is the capacity of Subscribe's channels (default 64).
	SubscriberBuffer int
	// Transport carries the webhook requests (default: a dedicated
	// http.Transport, closed by Close).
	Transport http.RoundTripper
	// Logger receives delivery warnings. Webhook URLs are logged as
	// scheme://host only (paths and queries often hold secrets). nil is
	// silent.
	Logger *slog.Logger
}

// Notifier turns committed journal events into notifications and delivers
// them to subscribers, callbacks and webhooks within milliseconds of the
// commit. Delivery never holds up the journal or the engine: subscribers
// drop their oldest notification when full, and each webhook has its own
// bounded queue and goroutine.
//
// Run replays the journal silently to learn which proxies are down, so a
// restart neither repeats nor misses an episode's notifications; events
// committed while no notifier ran are not notified (at most once).
type Notifier struct {
	j       journal.Journal
	opts    NotifierOptions
	log     *slog.Logger
	hooks   []*webhook
	tr      *http.Transport // owned; nil when the caller gave a Transport
	proxies map[string]*notifyProxy
	// sources are the names of the proxies' sources, which notifyProxy
	// holds as an index (sourceIndex gives it).
	sources     []string
	sourceIndex map[string]uint32
	// wide holds what the proxies whose word says wideKept keep.
	wide map[*notifyProxy]notifyKept
	// head is the journal head when the notifier was created: events up to
	// it are history, replayed silently.
	head uint64
	// from is where Run starts reading when StartFrom seeded the notifier
	// (0: from the first event).
	from uint64

	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool

	applied   atomic.Uint64
	notified  atomic.Uint64
	subDrops  atomic.Uint64
	closeOnce sync.Once
}

// notifyProxy is what the notifier keeps of a proxy to tell its episodes
// and describe them: its URL, and in one word (w) its stream seq, its
// source (an index into Notifier.sources) and whether it is down, 24
// bytes in all instead of 48. It keeps no health state: none of the
// notifier's decisions reads it (a new episode is told by the event's To,
// and events.Evolve sets, never reads, the state's Health).
type notifyProxy struct {
	url string
	// w is stream seq << 24 | source << 1 | down (1), or wideKept when
	// the stream seq reaches 2^40 - 1 or the source 2^23 (never, in
	// practice), which Notifier.wide then holds.
	w uint64
}

// wideKept is the word of a notifyProxy whose fields Notifier.wide holds.
const wideKept = math.MaxUint64

// notifyKept are the fields a notifyProxy keeps in its word.
type notifyKept struct {
	streamSeq uint64
	source    uint32 // index in Notifier.sources
	down      bool
}

type subscriber struct{ c chan Notification }

// NewNotifier validates the webhooks and starts their delivery goroutines.
// Every event committed to j from now on is notified (once Run runs);
// earlier ones are history. Call Close to stop the goroutines.
func NewNotifier(j journal.Journal, opts NotifierOptions) (*Notifier, error) {
	if opts.SubscriberBuffer <= 0 {
		opts.SubscriberBuffer = DefaultSubscriberBuffer
	}
	n := &Notifier{j: j, opts: opts, log: opts.Logger, proxies: map[string]*notifyProxy{}, sourceIndex: map[string]uint32{}, subs: map[*subscriber]struct{}{}, head: j.Head()}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	rt := opts.Transport
	if rt == nil {
		n.tr = http.DefaultTransport.(*http.Transport).Clone()
		n.tr.Proxy = nil // webhooks go direct; never through the proxies being checked
		rt = n.tr
	}
	client := &http.Client{Transport: rt, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for i, w := range opts.Webhooks {
		h, err := newWebhook(i, w, client, n.log)
		if err != nil {
			for _, h := range n.hooks {
				h.abort()
			}
			return nil, err
		}
		n.hooks = append(n.hooks, h)
	}
	for _, h := range n.hooks {
		go h.run()
	}
	return n, nil
}

// Subscribe returns a channel of notifications and a function that ends
// the subscription (closing the channel; idempotent). A subscriber that
// falls behind loses its oldest notifications, never slowing the notifier.
// The channel is closed by Close too.
func (n *Notifier) Subscribe() (<-chan Notification, func()) {
	s := &subscriber{c: make(chan Notification, n.opts.SubscriberBuffer)}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		close(s.c)
		return s.c, func() {}
	}
	n.subs[s] = struct{}{}
	return s.c, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if _, ok := n.subs[s]; ok {
			delete(n.subs, s)
			close(s.c)
		}
	}
}

// Run replays the journal silently up to the head it had when the notifier
// was created, then notifies every event committed after that, until ctx
// ends (nil) or the journal closes (an error). A notifier seeded with
// StartFrom replays from where its seed left off instead. Run one at a
// time.
func (n *Notifier) Run(ctx context.Context) error {
	head := n.head
	sub := n.j.Subscribe(max(n.from, 1))
	defer sub.Close()
	var batch []*pb.Envelope // reused: nothing keeps the slice
	for {
		var err error
		batch, err = sub.NextBatchInto(ctx, batch, 1024)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("projections: notifier: %w", err)
		}
		for _, env := range batch {
			note, ok := n.apply(ctx, env)
			n.applied.Store(env.GetSeq())
			if ok && env.GetSeq() > head {
				n.dispatch(note)
			}
		}
	}
}

// StartFrom seeds the notifier with what l says of every proxy (URL,
// source, stream seq, and whether it is in a down episode), so that Run
// replays the journal from the event after l.Seq() instead of from its
// first: the engine's Open folds the live status before it starts the
// notifier. It reports false, seeding nothing, when l cannot tell a
// proxy's episode as a replay would (a proxy adopted from another cluster
// member: an adoption changes its health without a transition); Run then
// replays the whole journal. Call it before Run, with l not being applied
// to.
func (n *Notifier) StartFrom(l *Live) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	downs := make([]bool, len(l.all))
	for i, e := range l.all {
		var ok bool
		if downs[i], ok = episodeOf(e, l.opts.StateChangeCap); !ok {
			return false
		}
	}
	n.proxies = make(map[string]*notifyProxy, len(l.all))
	for i, e := range l.all {
		st := e.st.Unpack(e.id)
		p := &notifyProxy{url: st.URLRedacted}
		n.proxies[e.id] = p
		n.keep(p, notifyKept{streamSeq: st.StreamSeq, source: n.sourceOf(st.Source), down: downs[i]})
	}
	n.applied.Store(l.seq)
	n.from = l.seq + 1
	return true
}

// episodeOf tells whether e is in a down episode as the notifier's replay
// would (apply): a transition into a down state starts one, one into
// healthy ends it, and a proxy starts outside one when added, or in the
// one its state says when it is known from a snapshot (its ProxyAdded
// deleted by retention). Its newest transitions tell: the newest into a
// down state or healthy, or else the newest from one (every other
// transition is into degraded, or into unknown when revived, which leaves
// the episode as it was). With none of those, the state before its oldest
// transition tells if the live status kept every transition since it
// started (fewer than keep, its cap), or its state now if there is none.
// ok is false when nothing tells (the cap reached without a telling
// transition), and for an adopted proxy (see StartFrom).
func episodeOf(e *entry, keep int) (down, ok bool) {
	st := e.st.Unpack(e.id)
	if !st.AdoptedAt.IsZero() {
		return false, false
	}
	health := st.Health
	for i := range e.changes.len() {
		c := e.changes.at(i) // newest first
		switch to, from := pb.HealthState(c.to), pb.HealthState(c.from); {
		case isDown(to):
			return true, true
		case to == pb.HealthState_HEALTH_STATE_HEALTHY:
			return false, true
		case isDown(from):
			return true, true
		case from == pb.HealthState_HEALTH_STATE_HEALTHY:
			return false, true
		default:
			health = from
		}
	}
	if e.changes.len() >= keep {
		return false, false // older transitions were dropped: they would tell
	}
	return isDown(health), true
}

// Applied returns the last journal seq the notifier has processed.
func (n *Notifier) Applied() uint64 { return n.applied.Load() }

// apply folds env into the per-proxy episode state and returns the
// notification it causes, if any.
func (n *Notifier) apply(ctx context.Context, env *pb.Envelope) (Notification, bool) {
	note := Notification{At: events.At(env), Seq: env.GetSeq()}
	switch e := env.GetEvent().(type) {
	case *pb.Envelope_PoolDegraded:
		p := e.PoolDegraded
		note.Type, note.HealthyPercentage, note.Threshold, note.Healthy, note.Total = NotifyPoolDegraded, p.GetHealthyPercentage(), p.GetThresholdPercentage(), p.GetHealthy(), p.GetTotal()
		return note, true
	case *pb.Envelope_PoolRecovered:
		p := e.PoolRecovered
		note.Type, note.HealthyPercentage, note.Threshold, note.Healthy, note.Total = NotifyPoolRecovered, p.GetHealthyPercentage(), p.GetThresholdPercentage(), p.GetHealthy(), p.GetTotal()
		return note, true
	}
	id := env.GetProxyId()
	if id == "" {
		return note, false
	}
	p := n.proxies[id]
	fresh := p == nil
	var k notifyKept
	var s events.State
	if fresh {
		base, skip, err := fold.Base(ctx, n.j.LoadSnapshot, env)
		if err != nil {
			base, skip, _ = fold.Base(ctx, nil, env)
		}
		s = base
		p = &notifyProxy{}
		k.down = isDown(base.Health)
		n.proxies[id] = p
		if !skip {
			s = events.Evolve(s, env)
		}
	} else {
		k = n.kept(p)
		s = events.State{ProxyID: id, Added: true, StreamSeq: k.streamSeq, URLRedacted: p.url, Source: n.sources[k.source]}
		if fold.Covered(s, env) {
			return note, false
		}
		s = events.Evolve(s, env)
	}
	if s.Removed {
		delete(n.proxies, id)
		if p.w == wideKept {
			delete(n.wide, p)
		}
		return note, false
	}
	p.url, k.streamSeq = s.URLRedacted, s.StreamSeq
	if fresh || s.Source != n.sources[k.source] { // a (re-)added proxy's source
		k.source = n.sourceOf(s.Source)
	}
	ok := false
	switch e := env.GetEvent().(type) {
	case *pb.Envelope_ProxyAdded:
		k.down = false
	case *pb.Envelope_StateChanged:
		c := e.StateChanged
		note.ProxyID, note.URL, note.Source = id, p.url, s.Source
		note.From, note.To, note.Reason = events.StateName(c.GetFrom()), events.StateName(c.GetTo()), c.GetReason()
		switch to := c.GetTo(); {
		case isDown(to) && !k.down:
			k.down, note.Type, ok = true, NotifyProxyDown, true
		case to == pb.HealthState_HEALTH_STATE_HEALTHY && k.down:
			k.down, note.Type, ok = false, NotifyProxyRecovered, true
		}
	}
	n.keep(p, k)
	return note, ok
}

// kept returns what p holds in its word (or n.wide).
func (n *Notifier) kept(p *notifyProxy) notifyKept {
	if p.w == wideKept {
		return n.wide[p]
	}
	return notifyKept{streamSeq: p.w >> 24, source: uint32(p.w>>1) & (1<<23 - 1), down: p.w&1 != 0}
}

// keep stores k in p's word, or in n.wide when it does not fit.
func (n *Notifier) keep(p *notifyProxy, k notifyKept) {
	if k.streamSeq < 1<<40-1 && k.source < 1<<23 {
		if p.w == wideKept {
			delete(n.wide, p)
		}
		p.w = k.streamSeq<<24 | uint64(k.source)<<1
		if k.down {
			p.w |= 1
		}
		return
	}
	if n.wide == nil {
		n.wide = make(map[*notifyProxy]notifyKept)
	}
	p.w, n.wide[p] = wideKept, k
}

// sourceOf returns the index of the source name in n.sources, adding it
// if it is new.
func (n *Notifier) sourceOf(name string) uint32 {
	i, ok := n.sourceIndex[name]
	if !ok {
		i = uint32(len(n.sources))
		n.sources = append(n.sources, name)
		n.sourceIndex[name] = i
	}
	return i
}

// isDown reports whether a proxy in state h is in a down episode.
func isDown(h pb.HealthState) bool {
	switch h {
	case pb.HealthState_HEALTH_STATE_UNHEALTHY, pb.HealthState_HEALTH_STATE_RECOVERING, pb.HealthState_HEALTH_STATE_FAILED:
		return true
	}
	return false
}

// dispatch delivers one notification everywhere, without blocking.
func (n *Notifier) dispatch(note Notification) {
	n.notified.Add(1)
	for _, cb := range n.opts.Callbacks {
		n.callback(cb, note)
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	for s := range n.subs {
		select {
		case s.c <- note:
			continue
		default:
		}
		select { // full: drop the oldest (only this goroutine sends)
		case <-s.c:
			n.subDrops.Add(1)
		default:
		}
		select {
		case s.c <- note:
		default:
			n.subDrops.Add(1)
		}
	}
	n.mu.Unlock()
	if len(n.hooks) == 0 {
		return
	}
	body, err := json.Marshal(note)
	if err != nil { // cannot happen: only strings, numbers and a time
		n.log.Error("notifier: encode notification", "error", err)
		return
	}
	for _, h := range n.hooks {
		h.enqueue(note, body)
	}
}

func (n *Notifier) callback(cb func(Notification), note Notification) {
	defer func() {
		if r := recover(); r != nil {
			n.log.Error("notifier: callback panicked", "panic", fmt.Sprint(r), "type", note.Type, "seq", note.Seq)
		}
	}()
	cb(note)
}

// NotifierStats are delivery counters.
type NotifierStats struct {
	// Notified counts the notifications dispatched.
	Notified uint64 `json:"notified"`
	// SubscriberDrops counts notifications dropped by full subscribers.
	SubscriberDrops uint64         `json:"subscriber_drops"`
	Webhooks        []WebhookStats `json:"webhooks"`
}

// Stats returns the delivery counters.
func (n *Notifier) Stats() NotifierStats {
	s := NotifierStats{Notified: n.notified.Load(), SubscriberDrops: n.subDrops.Load()}
	for _, h := range n.hooks {
		s.Webhooks = append(s.Webhooks, h.stats())
	}
	return s
}

// Close stops delivery: subscriber channels are closed, and webhooks get
// until ctx ends to deliver what is queued (retries included); then
// in-flight requests are cancelled and the rest is dropped, and Close
// returns an error wrapping ctx's. Stop Run first; notifications dispatched
// after Close are dropped. Idempotent.
func (n *Notifier) Close(ctx context.Context) error {
	var err error
	n.closeOnce.Do(func() {
		n.mu.Lock()
		n.closed = true
		for s := range n.subs {
			close(s.c)
		}
		clear(n.subs)
		n.mu.Unlock()
		for _, h := range n.hooks {
			h.drain()
		}
		for _, h := range n.hooks {
			select {
			case <-h.done:
			case <-ctx.Done():
			}
		}
		left := 0
		for _, h := range n.hooks {
			left += h.abort()
		}
		for _, h := range n.hooks {
			<-h.done
		}
		if n.tr != nil {
			n.tr.CloseIdleConnections()
		}
		if ctx.Err() != nil && left > 0 {
			err = fmt.Errorf("projections: notifier closed before delivering %d webhook notification(s): %w", left, ctx.Err())
		}
	})
	return err
}
