package proxyhealth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/proxyhealth/proxyhealth/actors"
	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/membership"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// ClusterConfig makes the engine one member of a cluster that checks one
// pool together: every member loads the same sources (the same
// configuration), and each proxy is checked by exactly one member, chosen
// by rendezvous hashing of the proxy's ID over the live members'
// addresses. Membership is kept in etcd (a lease per member); the members
// talk over protoactor-go's remote.
type ClusterConfig struct {
	// Name of the cluster; empty: no cluster (the default). Members of one
	// cluster share the name and the etcd endpoints.
	Name string
	// Etcd are the etcd endpoints (host:port or URLs).
	Etcd []string
	// Advertise is the host:port this member listens on for the other
	// members and advertises to them (the member's identity in placement:
	// a member restarted on the same address takes its share back).
	Advertise string
	// LeaseTTL is the member's etcd lease: a member that stops renewing it
	// (killed, paused, cut off from etcd) is dropped after it, and its
	// proxies are checked by the others. Default 2 s.
	LeaseTTL time.Duration
}

// DefaultLeaseTTL is the default ClusterConfig.LeaseTTL.
const DefaultLeaseTTL = 2 * time.Second

// Cluster errors.
var (
	// ErrClusterLost wraps why a member lost its membership (its lease
	// expired: it was paused or cut off from etcd too long). The member
	// stopped checking at once; it must rejoin as a new member: close the
	// engine and open a new one (the daemon exits non-zero so that its
	// supervisor restarts it).
	ErrClusterLost = errors.New("proxyhealth: cluster membership lost")
	// ErrNotOwner is returned for a command about a proxy another member
	// checks; the error names the member to send it to.
	ErrNotOwner = errors.New("proxyhealth: the proxy is checked by another cluster member")
	// ErrClusterManaged is returned by AddProxy and RemoveProxy in a
	// cluster: every member loads the same sources, so proxies are added
	// and removed in the shared configuration (then reload every member).
	ErrClusterManaged = errors.New("proxyhealth: in a cluster, proxies come from the shared configuration")
)

// NotOwnerError is the error of a command about a proxy another cluster
// member checks; it matches ErrNotOwner (errors.Is) and names the member
// (its advertised address) to send the command to.
type NotOwnerError struct {
	ProxyID string
	Member  string
}

func (e *NotOwnerError) Error() string {
	return fmt.Sprintf("%v: proxy %s is checked by member %s; send the request there", ErrNotOwner, e.ProxyID, e.Member)
}

// Is makes errors.Is(err, ErrNotOwner) true.
func (e *NotOwnerError) Is(target error) bool { return target == ErrNotOwner }

func (c ClusterConfig) enabled() bool { return c.Name != "" }

func (c ClusterConfig) withDefaults() ClusterConfig {
	if c.enabled() && c.LeaseTTL == 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	return c
}

func (c ClusterConfig) validate(cfg Config) error {
	if !c.enabled() {
		if len(c.Etcd) > 0 || c.Advertise != "" {
			return fmt.Errorf("%w: cluster: etcd endpoints or an advertise address without a cluster name; set cluster.name (--cluster) too", ErrBadConfig)
		}
		return nil
	}
	if len(c.Etcd) == 0 {
		return fmt.Errorf("%w: cluster %q: no etcd endpoints; give them with --etcd (cluster.etcd)", ErrBadConfig, c.Name)
	}
	if c.Advertise == "" {
		return fmt.Errorf("%w: cluster %q: no advertise address; give this member's host:port with --advertise (cluster.advertise)", ErrBadConfig, c.Name)
	}
	if c.LeaseTTL < time.Second {
		return fmt.Errorf("%w: cluster %q: lease TTL %v is below 1 s (etcd grants at least 2 s at its default timing)", ErrBadConfig, c.Name, c.LeaseTTL)
	}
	if cfg.ActorSystem != nil {
		return fmt.Errorf("%w: cluster %q: a cluster member runs its own actor system (remote and cluster start on it); leave Config.ActorSystem unset", ErrBadConfig, c.Name)
	}
	return nil
}

// clusterMember is what the engine needs of its membership
// (*membership.Member; tests use an in-process fake).
type clusterMember interface {
	Self() string
	Members() []string
	Watch(fn func(members []string)) (stop func())
	Fresh() bool
	Lost() <-chan struct{}
	Err() error
	Leave(ctx context.Context) error
}

// clusterTransport delivers messages to other members' engines.
type clusterTransport interface {
	Send(member string, msg proto.Message)
	Ask(ctx context.Context, member string, q *pb.QueryRequest, timeout time.Duration) (*pb.QueryResponse, error)
}

// clusterJoin joins the cluster; the default is joinEtcd.
type clusterJoin func(ctx context.Context, e *Engine) (clusterMember, clusterTransport, error)

// desired is a proxy the configuration lists, checked here or elsewhere.
type desired struct {
	source string
	entry  ProxyEntry
}

// replica is the last state another member replicated for a proxy,
// marshalled (about 100 bytes instead of a few hundred as a message).
type replica struct {
	from      string
	lastCheck int64
	raw       []byte
}

// Cluster timings.
const (
	// replicateEvery is how often a member sends the state changes of its
	// proxies to the others.
	replicateEvery = 100 * time.Millisecond
	// recordsPerMessage bounds one StateRecords message.
	recordsPerMessage = 1000
	// dumpTimeout bounds how long a joining member waits for the others'
	// states before it starts checking.
	dumpTimeout = 3 * time.Second
	// dumpRetry is how often a joining member asks the members whose
	// states have not arrived for them again (DumpRequest): the remote
	// drops messages while it replaces a connection.
	dumpRetry = 500 * time.Millisecond
)

// clusterNode is the engine's side of the cluster: placement of the
// configured proxies over the live members, hand-over, replication of
// state changes, and the fence.
type clusterNode struct {
	e    *Engine
	m    clusterMember
	tr   clusterTransport
	self string
	log  *slog.Logger

	// closing fences checks while the engine leaves.
	closing atomic.Bool
	lost    atomic.Bool

	mu       sync.Mutex
	members  []string
	desired  map[string]desired
	replicas map[string]replica
	// outbox holds the IDs whose state changed since the last send.
	outbox map[string]struct{}

	kick   chan struct{} // a new member list to place by
	joined chan struct{} // a new member list to send dumps by
	lostCh chan struct{} // closed once lost is set
	// dumped are the members whose dump (all their states) arrived;
	// dumpedCh is closed and replaced when one arrives.
	dumped    map[string]bool
	dumpedCh  chan struct{}
	stopWatch func()
	sub       *journal.Subscription // the journal from the join on
	ctx       context.Context
	cancel    context.CancelFunc
	bg        sync.WaitGroup
}

// newClusterNode returns the engine's cluster side before it joins: it
// can receive other members' records already (they start sending when
// they see this member, which may be before Join returns).
func newClusterNode(e *Engine) *clusterNode {
	return &clusterNode{
		e: e, log: e.log, desired: map[string]desired{}, replicas: map[string]replica{}, outbox: map[string]struct{}{},
		kick: make(chan struct{}, 1), joined: make(chan struct{}, 1), lostCh: make(chan struct{}),
		dumped: map[string]bool{}, dumpedCh: make(chan struct{}),
	}
}

// attach completes the node once it joined: it follows the member list
// from now on and sends its states to every member it sees join (placement
// starts later, with start).
func (c *clusterNode) attach(m clusterMember, tr clusterTransport) {
	c.mu.Lock()
	c.m, c.tr, c.self = m, tr, m.Self()
	c.members = m.Members()
	c.log = c.e.log.With(slog.String("member", c.self))
	c.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.ctx = ctx
	// Replication follows the journal from before the first proxy starts
	// (start reads it from here): the first checks' changes go out too.
	c.sub = c.e.journal.Subscribe(c.e.journal.Head() + 1)
	c.bg.Add(2)
	go func() { defer c.bg.Done(); c.dumpLoop(ctx) }()
	go func() {
		defer c.bg.Done()
		select {
		case <-ctx.Done():
		case <-m.Lost():
			c.lost.Store(true)
			close(c.lostCh)
			c.log.Error("cluster membership lost: checks stopped; this member must rejoin as a new one (restart it)", slog.Any("error", m.Err()))
		}
	}()
	c.stopWatch = c.m.Watch(func(members []string) {
		c.mu.Lock()
		c.members = slices.Clone(members)
		c.mu.Unlock()
		for _, ch := range []chan struct{}{c.kick, c.joined} {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	})
}

// dumpLoop sends all of this member's states to each member it sees join
// (and, at first, to every member already there), ending with
// end_of_dump: a newcomer starts checking from them.
func (c *clusterNode) dumpLoop(ctx context.Context) {
	seen := map[string]bool{c.self: true}
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.joined:
		}
		c.mu.Lock()
		cur := slices.Clone(c.members)
		c.mu.Unlock()
		for _, m := range cur {
			if !seen[m] && !c.closing.Load() {
				c.sendAll(m)
			}
		}
		clear(seen)
		seen[c.self] = true
		for _, m := range cur {
			seen[m] = true
		}
	}
}

// awaitDumps waits until every other member present at the join sent its
// states (or the timeout), so that this member's proxies start from them.
// Every dumpRetry it asks the members whose states are missing again: a
// dump pushed when they saw this member join can be lost (the remote
// drops what it queued for a connection it tears down, as when this
// member restarted at the same address), or never sent (a member that did
// not see this address leave before it came back).
func (c *clusterNode) awaitDumps(ctx context.Context, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	retry := time.NewTicker(dumpRetry)
	defer retry.Stop()
	for {
		c.mu.Lock()
		var missing []string
		for _, m := range c.members {
			if m != c.self && !c.dumped[m] {
				missing = append(missing, m)
			}
		}
		ch := c.dumpedCh
		c.mu.Unlock()
		if len(missing) == 0 {
			return
		}
		select {
		case <-ch:
		case <-retry.C:
			for _, m := range missing {
				c.tr.Send(m, &pb.DumpRequest{FromMember: c.self})
			}
		case <-ctx.Done():
			c.log.Warn("cluster: joined without the states of some members (they did not send them in time); their proxies start from this member's journal or unknown", slog.Any("members", missing))
			return
		}
	}
}

// receiverName is the name of the actor that receives other members'
// messages on every member.
const receiverName = "proxyhealth"

// receiver is that actor: it hands each known message to the node and
// drops anything else (membership's guard already drops types this
// binary does not know).
func (c *clusterNode) receiver(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *pb.StateRecords:
		c.receive(m)
	case *pb.DumpRequest:
		c.answerDump(m)
	case *pb.QueryRequest:
		ctx.Respond(c.answerQuery(m))
	}
}

// answerDump sends all of this member's states to a member that asks for
// them (it joined and its dump from here is missing). Nothing before
// attach (there is no transport yet; the asker asks again) or while
// leaving (leave hands the states over).
func (c *clusterNode) answerDump(m *pb.DumpRequest) {
	c.mu.Lock()
	attached := c.tr != nil
	c.mu.Unlock()
	to := m.GetFromMember()
	if !attached || to == "" || c.closing.Load() {
		return
	}
	c.sendAll(to)
}

// remoteTransport sends to the receiver actor of another member.
type remoteTransport struct{ sys *actor.ActorSystem }

func (t remoteTransport) Send(member string, msg proto.Message) {
	t.sys.Root.Send(actor.NewPID(member, receiverName), msg)
}

// joinEtcd joins the cluster through etcd (package membership).
func joinEtcd(ctx context.Context, e *Engine) (clusterMember, clusterTransport, error) {
	cc := e.cfg.Cluster
	m, err := membership.Join(ctx, e.sys, membership.Config{
		Cluster: cc.Name, Endpoints: cc.Etcd, Advertise: cc.Advertise, TTL: cc.LeaseTTL, Logger: e.log,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("proxyhealth: join cluster %q: %w", cc.Name, err)
	}
	return m, remoteTransport{sys: e.sys}, nil
}

// joinCluster spawns the receiver and joins; Open calls it before any
// proxy starts, so that placement knows the member list.
func (e *Engine) joinCluster(ctx context.Context) error {
	e.cl = newClusterNode(e)
	if _, err := e.sys.Root.SpawnNamed(actor.PropsFromFunc(e.cl.receiver), receiverName); err != nil {
		return fmt.Errorf("proxyhealth: cluster: start the receiver: %w", err)
	}
	join := e.cfg.clusterJoin
	if join == nil {
		join = joinEtcd
	}
	m, tr, err := join(ctx, e)
	if err != nil {
		return err
	}
	e.cl.attach(m, tr)
	e.cl.awaitDumps(ctx, dumpTimeout)
	return nil
}

// mayCheck is the actors' fence: checks run only while the membership is
// confirmed (its lease renewed within the TTL), never after it was lost,
// and not while the member leaves.
func (c *clusterNode) mayCheck() bool {
	return !c.lost.Load() && !c.closing.Load() && c.m.Fresh()
}

// place records the configured entries of a source and returns those this
// member checks.
func (c *clusterNode) place(source string, ids []string, entries []ProxyEntry) (mine []int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, id := range ids {
		c.desired[id] = desired{source: source, entry: entries[i]}
		if membership.Owner(id, c.members) == c.self {
			mine = append(mine, i)
		}
	}
	return mine
}

// checkedBy is the member that checks a configured proxy; false if the
// configuration does not list it.
func (c *clusterNode) checkedBy(id string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.desired[id]; !ok {
		return "", false
	}
	return membership.Owner(id, c.members), true
}

// keepOnly forgets the configured proxies of source that want does not
// list (the configuration dropped them).
func (c *clusterNode) keepOnly(source string, want map[string]ProxyEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, d := range c.desired {
		if d.source == source {
			if _, ok := want[id]; !ok {
				delete(c.desired, id)
			}
		}
	}
}

// adoption is the adoption record of id, if another member replicated one.
func (c *clusterNode) adoption(id, reason string) *events.Adopt {
	c.mu.Lock()
	r, ok := c.replicas[id]
	c.mu.Unlock()
	if !ok {
		return nil
	}
	rec := &pb.ProxySnapshot{}
	if err := proto.Unmarshal(r.raw, rec); err != nil {
		return nil
	}
	return &events.Adopt{From: r.from, Record: rec, Reason: reason}
}

// start begins placement (after Open added the sources).
func (c *clusterNode) start() {
	c.bg.Add(3)
	go func() { defer c.bg.Done(); c.placeLoop(c.ctx) }()
	go func() { defer c.bg.Done(); c.changes(c.ctx, c.sub) }()
	go func() { defer c.bg.Done(); c.flushLoop(c.ctx) }()
	select { // place by the list as it is now
	case c.kick <- struct{}{}:
	default:
	}
}

// placeLoop re-places the proxies on every change of the member list.
func (c *clusterNode) placeLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		}
		if c.lost.Load() || c.closing.Load() {
			continue
		}
		if err := c.rebalance(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("cluster placement: some proxies could not be handed over or taken", slog.Any("error", err))
		}
	}
}

// rebalance hands over the proxies another member now owns and takes the
// ones this member now owns.
func (c *clusterNode) rebalance(ctx context.Context) error {
	e := c.e
	e.reconfMu.Lock()
	defer e.reconfMu.Unlock()
	c.mu.Lock()
	members := slices.Clone(c.members)
	gain := map[string][]ProxyEntry{}
	var gainIDs []string
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		c.mu.Unlock()
		return nil
	}
	lose := map[string]string{} // id → new owner
	for p := range e.proxies.All() {
		id := p.spec.ID
		if o := membership.Owner(id, members); o != c.self {
			if _, configured := c.desired[id]; configured {
				lose[id] = o
			}
		}
	}
	for id, d := range c.desired {
		if e.proxies.Get(id) == nil && membership.Owner(id, members) == c.self {
			gain[d.source] = append(gain[d.source], d.entry)
			gainIDs = append(gainIDs, id)
		}
	}
	e.mu.Unlock()
	c.mu.Unlock()

	var errs []error
	if len(lose) > 0 {
		errs = append(errs, c.handOver(ctx, lose))
	}
	for _, src := range slices.Sorted(maps.Keys(gain)) {
		if _, err := e.addProxiesWith(ctx, src, gain[src], pb.ProxyOrigin_PROXY_ORIGIN_CONFIG, addOptions{placed: true, adopt: c.adoption}); err != nil {
			errs = append(errs, fmt.Errorf("take the proxies of source %q: %w", src, err))
		}
	}
	if len(lose)+len(gainIDs) > 0 {
		c.log.Info("cluster placement changed", slog.Int("members", len(members)), slog.Int("handed_over", len(lose)), slog.Int("taken", len(gainIDs)))
	}
	return errors.Join(errs...)
}

// handOver sends each proxy's state to its new owner, then ends its
// stream here ("handed over") and stops its actor.
func (c *clusterNode) handOver(ctx context.Context, lose map[string]string) error {
	e := c.e
	by := map[string][]*pb.ProxySnapshot{}
	var reqs []request
	e.mu.Lock()
	for id, to := range lose {
		p := e.proxies.Get(id)
		if p == nil || p.pid == nil {
			continue
		}
		if st, ok := e.proj.live.State(id); ok {
			by[to] = append(by[to], events.ToSnapshot(st))
		}
		reqs = append(reqs, request{id: id, pid: p.pid, msg: &actors.Remove{Reason: "handed over to cluster member " + to}})
	}
	e.mu.Unlock()
	for to, recs := range by {
		c.send(to, recs)
	}
	failed := e.requestAll(ctx, reqs)
	e.mu.Lock()
	for _, r := range reqs {
		if failed[r.id] == nil {
			e.proxies.Delete(r.id)
		}
	}
	e.mu.Unlock()
	for _, r := range reqs {
		if failed[r.id] == nil {
			e.setChecking(r.id, false)
		}
	}
	e.settle(ctx)
	var errs []error
	for id, err := range failed {
		errs = append(errs, fmt.Errorf("hand over proxy %s: %w", id, err))
	}
	return errors.Join(errs...)
}

// send sends records to one member, recordsPerMessage at a time.
func (c *clusterNode) send(to string, recs []*pb.ProxySnapshot) {
	for len(recs) > 0 {
		n := min(len(recs), recordsPerMessage)
		c.tr.Send(to, &pb.StateRecords{FromMember: c.self, Records: recs[:n]})
		recs = recs[n:]
	}
}

// sendAll sends the state of every proxy this member checks to one
// member (one that just joined).
func (c *clusterNode) sendAll(to string) {
	recs := c.ownStates()
	for len(recs) > recordsPerMessage {
		c.tr.Send(to, &pb.StateRecords{FromMember: c.self, Records: recs[:recordsPerMessage]})
		recs = recs[recordsPerMessage:]
	}
	c.tr.Send(to, &pb.StateRecords{FromMember: c.self, Records: recs, EndOfDump: true})
}

// ownStates are the current states of the proxies this member checks.
func (c *clusterNode) ownStates() []*pb.ProxySnapshot {
	e := c.e
	e.mu.Lock()
	ids := make([]string, 0, e.proxies.Len())
	for p := range e.proxies.All() {
		ids = append(ids, p.spec.ID)
	}
	e.mu.Unlock()
	recs := make([]*pb.ProxySnapshot, 0, len(ids))
	for _, id := range ids {
		if st, ok := e.proj.live.State(id); ok {
			recs = append(recs, events.ToSnapshot(st))
		}
	}
	return recs
}

// changes notes the proxies whose health, pause or adoption changed, as
// the journal commits them (nothing is replicated that is not durable
// here), once the live status shows them.
func (c *clusterNode) changes(ctx context.Context, sub *journal.Subscription) {
	for {
		batch, err := sub.NextBatch(ctx, 0)
		if err != nil {
			return
		}
		if err := c.e.proj.waitLive(ctx, batch[len(batch)-1].GetSeq()); err != nil {
			return
		}
		c.mu.Lock()
		for _, env := range batch {
			switch env.GetEvent().(type) {
			case *pb.Envelope_StateChanged, *pb.Envelope_ProxyPaused, *pb.Envelope_ProxyResumed,
				*pb.Envelope_ProxyAdopted, *pb.Envelope_ProxyRevived:
				c.outbox[env.GetProxyId()] = struct{}{}
			}
		}
		c.mu.Unlock()
	}
}

// flushLoop sends the changed states to the other members every
// replicateEvery.
func (c *clusterNode) flushLoop(ctx context.Context) {
	tick := time.NewTicker(replicateEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			c.flush()
		}
	}
}

// flush sends the outbox to every other member.
func (c *clusterNode) flush() {
	c.mu.Lock()
	if len(c.outbox) == 0 {
		c.mu.Unlock()
		return
	}
	ids := slices.Collect(maps.Keys(c.outbox))
	clear(c.outbox)
	members := slices.Clone(c.members)
	c.mu.Unlock()
	recs := make([]*pb.ProxySnapshot, 0, len(ids))
	for _, id := range ids {
		if st, ok := c.e.proj.live.State(id); ok {
			recs = append(recs, events.ToSnapshot(st))
		}
	}
	for _, m := range members {
		if m != c.self {
			c.send(m, recs)
		}
	}
}

// receive takes another member's records: each is kept (the newest per
// proxy) for when this member owns the proxy; a proxy it owns already
// adopts a newer one at once.
func (c *clusterNode) receive(msg *pb.StateRecords) {
	e := c.e
	var adopt []request
	c.mu.Lock()
	for _, rec := range msg.GetRecords() {
		id := rec.GetProxyId()
		if id == "" {
			continue
		}
		if old, ok := c.replicas[id]; ok && old.lastCheck > rec.GetLastCheckUnixNano() {
			continue
		}
		raw, err := proto.Marshal(rec)
		if err != nil {
			continue
		}
		c.replicas[id] = replica{from: msg.GetFromMember(), lastCheck: rec.GetLastCheckUnixNano(), raw: raw}
		adopt = append(adopt, request{id: id, msg: &actors.Adopt{From: msg.GetFromMember(), Record: rec, Reason: "state replicated by its previous owner"}})
	}
	if msg.GetEndOfDump() && !c.dumped[msg.GetFromMember()] {
		c.dumped[msg.GetFromMember()] = true
		close(c.dumpedCh)
		c.dumpedCh = make(chan struct{})
	}
	c.mu.Unlock()
	e.mu.Lock()
	for i := range adopt {
		if p := e.proxies.Get(adopt[i].id); p != nil && p.pid != nil {
			adopt[i].pid = p.pid
		}
	}
	e.mu.Unlock()
	for _, r := range adopt {
		if r.pid != nil {
			e.sys.Root.Send(r.pid, r.msg) // a no-op unless newer than the proxy's own state
		}
	}
}

// leave hands every proxy over to its next owner and leaves the cluster
// (the others take over at once instead of after the lease TTL). Checks
// stop first.
func (c *clusterNode) leave(ctx context.Context) error {
	c.closing.Store(true)
	c.mu.Lock()
	members := slices.DeleteFunc(slices.Clone(c.members), func(m string) bool { return m == c.self })
	c.mu.Unlock()
	if len(members) > 0 && !c.lost.Load() {
		by := map[string][]*pb.ProxySnapshot{}
		for _, rec := range c.ownStates() {
			to := membership.Owner(rec.GetProxyId(), members)
			by[to] = append(by[to], rec)
		}
		for to, recs := range by {
			c.send(to, recs)
		}
	}
	if c.stopWatch != nil {
		c.stopWatch()
	}
	if c.cancel != nil {
		c.cancel()
	}
	if c.sub != nil {
		c.sub.Close()
	}
	c.bg.Wait()
	return c.m.Leave(ctx)
}

// leaveEarly leaves the cluster when Open fails after joining.
func (e *Engine) leaveEarly(ctx context.Context) {
	if e.cl != nil && e.cl.m != nil {
		if err := e.cl.m.Leave(context.WithoutCancel(ctx)); err != nil {
			e.log.Warn("cluster: leave after a failed start", slog.Any("error", err))
		}
	}
}

// ClusterStatus is a member's view of its cluster.
type ClusterStatus struct {
	// Name is the cluster's name; Self this member's advertised address.
	Name string `json:"name"`
	Self string `json:"self"`
	// Members are the live members' addresses, sorted (Self included).
	Members []string `json:"members"`
	// Fresh is true while this member's lease is confirmed: it checks only
	// then.
	Fresh bool `json:"fresh"`
	// Lost is true once the membership was lost (Error says why): the
	// member checks nothing more and must be restarted to rejoin.
	Lost  bool   `json:"lost"`
	Error string `json:"error,omitempty"`
	// Checked is how many proxies this member checks; Configured how many
	// the configuration lists (for the whole cluster); Replicas how many
	// other members' proxy states it holds for a takeover.
	Checked    int `json:"checked"`
	Configured int `json:"configured"`
	Replicas   int `json:"replicas"`
}

// Cluster returns this member's view of its cluster; false outside one.
func (e *Engine) Cluster() (ClusterStatus, bool) {
	c := e.cl
	if c == nil || c.m == nil {
		return ClusterStatus{}, false
	}
	st := ClusterStatus{Name: e.cfg.Cluster.Name, Self: c.self, Fresh: c.m.Fresh(), Lost: c.lost.Load()}
	if st.Lost {
		if err := c.m.Err(); err != nil {
			st.Error = err.Error()
		}
	}
	c.mu.Lock()
	st.Members = slices.Clone(c.members)
	st.Configured, st.Replicas = len(c.desired), len(c.replicas)
	c.mu.Unlock()
	e.mu.Lock()
	st.Checked = e.proxies.Len()
	e.mu.Unlock()
	return st, true
}

// ClusterLost is closed when this member loses its cluster membership
// (nil outside a cluster): it has stopped checking, and must be closed and
// opened again (as a new member) to rejoin. The daemon exits non-zero then,
// for its supervisor to restart it.
func (e *Engine) ClusterLost() <-chan struct{} {
	if e.cl == nil || e.cl.m == nil {
		return nil
	}
	return e.cl.lostCh
}
