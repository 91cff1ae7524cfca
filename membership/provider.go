package membership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/protobuf/encoding/protojson"
)

// reconnectMaxDelay caps gRPC's reconnect backoff to etcd, so that the
// client is back within half a second of etcd, well inside the lease TTL
// (gRPC's default grows to 120 s: leases expired during a short outage
// and split the cluster).
const reconnectMaxDelay = 500 * time.Millisecond

// base is the origin of mono: time.Since reads the monotonic clock.
var base = time.Now()

// mono is the monotonic time since base.
func mono() time.Duration { return time.Since(base) }

// provider is the etcd ClusterProvider: one lease per member, the
// member's key under it, the member list from Get + Watch(rev+1).
type provider struct {
	cfg    Config
	log    *slog.Logger
	client *clientv3.Client
	dir    string // <prefix><cluster>/

	// set by StartMember
	c     *cluster.Cluster
	self  *cluster.Member
	key   string
	lease clientv3.LeaseID

	freshUntil atomic.Int64 // mono() until which the lease is confirmed; 0 = never
	lostFlag   atomic.Bool
	lost       chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	members  map[string]*cluster.Member // etcd key → member
	list     []string                   // live members' host:port, sorted
	subs     map[*subscriber]struct{}
	lostErr  error
	leaving  bool // no key deletion is a loss any more
	revoked  bool
	stopped  bool
	startErr error

	shutdownOnce sync.Once
	startCtx     context.Context // Join's, for StartMember's requests
}

// newProvider connects to etcd (waiting at most cfg.DialTimeout) and
// grants the member's lease, so that Join fails before anything starts
// when etcd is not there.
func newProvider(ctx context.Context, cfg Config) (*provider, error) {
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		Context:     context.Background(),
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff: backoff.Config{
					BaseDelay:  50 * time.Millisecond,
					Multiplier: 1.6,
					Jitter:     0.2,
					MaxDelay:   reconnectMaxDelay,
				},
				MinConnectTimeout: time.Second,
			}),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: connect to %v within %v: %v: check that etcd runs there", ErrEtcd, cfg.Endpoints, cfg.DialTimeout, err)
	}
	gctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	g, err := client.Grant(gctx, int64(cfg.TTL/time.Second))
	if err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("%w: grant a lease of %v at %v: %v", ErrEtcd, cfg.TTL, cfg.Endpoints, err)
	}
	pctx, pcancel := context.WithCancel(context.Background())
	p := &provider{
		cfg: cfg, log: cfg.Logger, client: client,
		dir:   cfg.Prefix + cfg.Cluster + "/",
		lease: g.ID,
		lost:  make(chan struct{}),
		ctx:   pctx, cancel: pcancel,
		members:  map[string]*cluster.Member{},
		subs:     map[*subscriber]struct{}{},
		startCtx: ctx,
	}
	// The lease lives from now for the TTL it was granted.
	p.freshUntil.Store(int64(mono() + time.Duration(g.TTL)*time.Second))
	return p, nil
}

var _ cluster.ClusterProvider = (*provider)(nil)

// StartMember registers the member under its lease, loads the member list
// (which includes it), publishes it, and starts the keep-alive and the
// watch. An error is kept for Join rather than returned: the cluster
// panics on a provider's error.
func (p *provider) StartMember(c *cluster.Cluster) error {
	if err := p.startMember(c); err != nil {
		p.mu.Lock()
		p.startErr = err
		p.mu.Unlock()
	}
	return nil
}

func (p *provider) startMember(c *cluster.Cluster) error {
	p.c = c
	addr := c.ActorSystem.Address()
	host, portS, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("membership: the remote's address %q is not host:port: %w", addr, err)
	}
	port, err := strconv.Atoi(portS)
	if err != nil {
		return fmt.Errorf("membership: the remote's address %q has no numeric port: %w", addr, err)
	}
	kinds := c.GetClusterKinds()
	slices.Sort(kinds)
	p.self = &cluster.Member{Host: host, Port: int32(port), Id: c.ActorSystem.ID, Kinds: kinds}
	p.key = p.dir + p.self.Id
	val, err := protojson.Marshal(p.self)
	if err != nil {
		return fmt.Errorf("membership: encode the member: %w", err)
	}
	ctx, cancel := context.WithTimeout(p.startCtx, p.cfg.DialTimeout)
	defer cancel()
	stop := context.AfterFunc(p.ctx, cancel)
	defer stop()
	if _, err := p.client.Put(ctx, p.key, string(val), clientv3.WithLease(p.lease)); err != nil {
		return fmt.Errorf("%w: register %s: %v", ErrEtcd, p.key, err)
	}
	rev, err := p.load(ctx)
	if err != nil {
		return err
	}
	p.wg.Add(2)
	go p.keepAlive()
	go p.watch(rev)
	return nil
}

// StartClient is not supported: every process that uses the membership
// is a member.
func (p *provider) StartClient(*cluster.Cluster) error {
	return errors.New("membership: StartClient is not supported: join as a member")
}

// Shutdown (called by the cluster's Shutdown, or by Leave and crash)
// revokes the lease when graceful (the others see the member leave at
// once), stops the keep-alive, the watch and the subscribers, waits for
// them, and closes the etcd client.
func (p *provider) Shutdown(graceful bool) error {
	var err error
	if graceful {
		ctx, cancel := context.WithTimeout(context.Background(), p.cfg.DialTimeout)
		err = p.revoke(ctx)
		cancel()
	}
	p.stop()
	return err
}

// stop ends everything without revoking (what a kill -9 leaves behind:
// the lease expires after its TTL).
func (p *provider) stop() {
	p.shutdownOnce.Do(func() {
		p.mu.Lock()
		p.leaving = true
		p.stopped = true
		subs := p.subs
		p.subs = map[*subscriber]struct{}{}
		p.mu.Unlock()
		p.freshUntil.Store(0)
		p.cancel()
		p.wg.Wait()
		for s := range subs {
			s.stop()
		}
		_ = p.client.Close()
	})
}

// revoke gives the lease up: the member's key goes with it. Fresh is
// false from here on.
func (p *provider) revoke(ctx context.Context) error {
	p.mu.Lock()
	p.leaving = true
	done := p.revoked || p.stopped
	p.revoked = true
	p.mu.Unlock()
	p.freshUntil.Store(0)
	if done {
		return nil
	}
	if _, err := p.client.Revoke(ctx, p.lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("%w: revoke the lease of %s: %v (the others drop this member after its TTL)", ErrEtcd, p.key, err)
	}
	return nil
}

// confirm records that the lease is confirmed until (a mono() time),
// unless the member is leaving: a keep-alive answered while Leave revokes
// the lease must not make the member fresh again after revoke cleared it.
func (p *provider) confirm(until time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.leaving {
		p.freshUntil.Store(int64(until))
	}
}

// fresh reports whether the lease is confirmed alive now.
func (p *provider) fresh() bool {
	return !p.lostFlag.Load() && int64(mono()) < p.freshUntil.Load()
}

// setLost records the loss of the membership, once.
func (p *provider) setLost(err error) {
	p.mu.Lock()
	if p.leaving || p.lostErr != nil {
		p.mu.Unlock()
		return
	}
	p.lostErr = err
	p.mu.Unlock()
	p.lostFlag.Store(true)
	p.freshUntil.Store(0)
	p.log.Warn("membership lost: stop checking and rejoin as a new member", "member", p.selfAddr(), "error", err)
	close(p.lost)
}

func (p *provider) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lostErr
}

func (p *provider) selfAddr() string {
	if p.self == nil {
		return ""
	}
	return p.self.Address()
}

// keepAlive renews the lease every TTL/4 with one keep-alive request at a
// time, recording the send time of each one etcd answered: the lease is
// confirmed until that time plus the TTL etcd reported.
func (p *provider) keepAlive() {
	defer p.wg.Done()
	interval := p.cfg.TTL / 4
	for {
		sent := mono()
		ctx, cancel := context.WithTimeout(p.ctx, interval)
		resp, err := p.client.KeepAliveOnce(ctx, p.lease)
		cancel()
		var wait time.Duration
		switch {
		case err == nil:
			p.confirm(sent + time.Duration(resp.TTL)*time.Second)
			wait = sent + interval - mono()
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			p.setLost(fmt.Errorf("%w: etcd no longer knows lease %x of %s (paused or cut off from etcd longer than the TTL %v, or revoked)", ErrLeaseExpired, int64(p.lease), p.key, p.cfg.TTL))
			return
		case p.ctx.Err() != nil:
			return
		default:
			p.log.Debug("membership: lease keep-alive failed; retrying", "error", err)
			wait = 50 * time.Millisecond
		}
		if !p.sleep(wait) {
			return
		}
	}
}

// sleep waits d or until the provider stops; false if it stopped.
func (p *provider) sleep(d time.Duration) bool {
	if d <= 0 {
		return p.ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.ctx.Done():
		return false
	}
}

// load reads the whole member list and publishes it; it returns the
// revision it read at.
func (p *provider) load(ctx context.Context) (int64, error) {
	resp, err := p.client.Get(ctx, p.dir, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("%w: list the members under %s: %v", ErrEtcd, p.dir, err)
	}
	members := make(map[string]*cluster.Member, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if m := p.decode(kv.Key, kv.Value); m != nil {
			members[string(kv.Key)] = m
		}
	}
	p.mu.Lock()
	p.members = members
	_, self := members[p.key]
	p.mu.Unlock()
	if !self {
		p.setLost(fmt.Errorf("%w: %s is not among the members in etcd", ErrKeyDeleted, p.key))
	}
	p.publish()
	return resp.Header.Revision, nil
}

func (p *provider) decode(key, val []byte) *cluster.Member {
	var m cluster.Member
	if err := protojson.Unmarshal(val, &m); err != nil || m.Id == "" || m.Host == "" {
		p.log.Warn("membership: ignoring a malformed member in etcd", "key", string(key), "error", err)
		return nil
	}
	return &m
}

// watch follows the member list from rev+1; after a watch error (a
// compaction, a cancelled watch) it reloads the list and watches again.
func (p *provider) watch(rev int64) {
	defer p.wg.Done()
	for {
		wctx, wcancel := context.WithCancel(p.ctx)
		wch := p.client.Watch(wctx, p.dir, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		for resp := range wch {
			if err := resp.Err(); err != nil {
				p.log.Debug("membership: watch ended; reloading the member list", "error", err)
				break
			}
			p.apply(resp.Events)
			rev = resp.Header.Revision
		}
		// end this watch and drain what the client still sends
		wcancel()
		for range wch {
		}
		if p.ctx.Err() != nil {
			return
		}
		for delay := 50 * time.Millisecond; ; delay = min(2*delay, time.Second) {
			ctx, cancel := context.WithTimeout(p.ctx, p.cfg.TTL)
			r, err := p.load(ctx)
			cancel()
			if err == nil {
				rev = r
				break
			}
			p.log.Debug("membership: reloading the member list failed; retrying", "error", err)
			if !p.sleep(delay) {
				return
			}
		}
	}
}

func (p *provider) apply(evs []*clientv3.Event) {
	var selfDeleted bool
	p.mu.Lock()
	for _, ev := range evs {
		key := string(ev.Kv.Key)
		switch ev.Type {
		case mvccpb.PUT:
			if m := p.decode(ev.Kv.Key, ev.Kv.Value); m != nil {
				p.members[key] = m
			}
		case mvccpb.DELETE:
			delete(p.members, key)
			if key == p.key {
				selfDeleted = true
			}
		}
	}
	p.mu.Unlock()
	if selfDeleted {
		p.setLost(fmt.Errorf("%w: %s was deleted from etcd (its lease expired or was revoked, or someone deleted it)", ErrKeyDeleted, p.key))
	}
	p.publish()
}

// publish pushes the member list to the cluster and, when it changed, to
// the subscribers. Only the watch goroutine (and StartMember before it)
// calls it, so updates reach the cluster in order.
func (p *provider) publish() {
	p.mu.Lock()
	ms := make([]*cluster.Member, 0, len(p.members))
	list := make([]string, 0, len(p.members))
	for _, m := range p.members {
		ms = append(ms, m)
		list = append(list, m.Address())
	}
	slices.Sort(list)
	changed := !slices.Equal(list, p.list)
	if changed {
		p.list = list
		for s := range p.subs {
			s.push(list)
		}
	}
	p.mu.Unlock()
	if changed {
		p.log.Debug("membership: member list", "members", list)
	}
	p.c.MemberList.UpdateClusterTopology(ms)
}

// members returns the live members' host:port, sorted.
func (p *provider) memberList() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.list)
}

// subscribe adds fn as a subscriber; it gets the current list at once.
func (p *provider) subscribe(fn func([]string)) func() {
	s := newSubscriber(fn)
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		s.stop()
		return func() {}
	}
	p.subs[s] = struct{}{}
	s.push(slices.Clone(p.list))
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		delete(p.subs, s)
		p.mu.Unlock()
		s.stop()
	}
}

// subscriber delivers every list pushed to it, in order, to fn on a
// goroutine of its own.
type subscriber struct {
	fn     func([]string)
	mu     sync.Mutex
	queue  [][]string
	signal chan struct{}
	done   chan struct{}
	exited chan struct{}
	once   sync.Once
}

func newSubscriber(fn func([]string)) *subscriber {
	s := &subscriber{fn: fn, signal: make(chan struct{}, 1), done: make(chan struct{}), exited: make(chan struct{})}
	go s.run()
	return s
}

func (s *subscriber) push(list []string) {
	s.mu.Lock()
	s.queue = append(s.queue, list)
	s.mu.Unlock()
	select {
	case s.signal <- struct{}{}:
	default:
	}
}

func (s *subscriber) run() {
	defer close(s.exited)
	for {
		select {
		case <-s.done:
			return
		case <-s.signal:
		}
		for {
			s.mu.Lock()
			if len(s.queue) == 0 {
				s.mu.Unlock()
				break
			}
			list := s.queue[0]
			s.queue = s.queue[1:]
			s.mu.Unlock()
			select {
			case <-s.done:
				return
			default:
			}
			s.fn(slices.Clone(list))
		}
	}
}

// stop ends the subscriber and waits for a running fn to return.
func (s *subscriber) stop() {
	s.once.Do(func() { close(s.done) })
	<-s.exited
}
