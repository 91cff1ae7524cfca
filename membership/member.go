package membership

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"
)

// endpointQueueSize is the remote's queue per peer and of its endpoint
// manager (protoactor's default, 1,000,000 slots, costs about 30 MB of
// heap per member).
const endpointQueueSize = 10_000

// peerDialTimeout bounds one connection attempt to another member.
const peerDialTimeout = time.Second

// peerDialOptions replace the remote's dial options (plain
// grpc.WithInsecure). protoactor's endpoint writer dials a peer up to five
// times and, when a non-blocking dial's stream fails (the peer is gone),
// drops the *grpc.ClientConn without closing it: each such connection
// retries for ever (kill -9 of a member left 4 of them in every survivor).
// A blocking dial with a timeout closes its connection itself when it
// fails, and a refused connection fails at once.
func peerDialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithBlock(),
		grpc.WithTimeout(peerDialTimeout),
		grpc.FailOnNonTempDialError(true),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: reconnectMaxDelay},
			MinConnectTimeout: peerDialTimeout,
		}),
	}
}

// Member is this process's membership of a cluster: protoactor's remote
// and cluster on an actor system, with the member list kept in etcd.
type Member struct {
	sys   *actor.ActorSystem
	c     *cluster.Cluster
	p     *provider
	guard *guard

	endOnce sync.Once
	endErr  error
}

// Join makes sys a member of cfg.Cluster: it connects to etcd (at most
// cfg.DialTimeout), starts protoactor's remote on cfg.Advertise and the
// cluster (disthash as the required identity lookup; no grains are used)
// with this package's etcd provider, and returns once the member sees
// itself in the member list (about 1 s: protoactor's StartMember sleeps
// 1 s). ctx bounds the requests to etcd of the start (each also bounded
// by cfg.DialTimeout). Create sys with ActorSystemOptions to keep
// protoactor quiet. A sys
// whose Join failed is not to be reused; after a failure past the
// connection to etcd it has been shut down.
func Join(ctx context.Context, sys *actor.ActorSystem, cfg Config) (*Member, error) {
	if sys == nil {
		return nil, fmt.Errorf("%w: Join needs an actor system (actor.NewActorSystem(membership.ActorSystemOptions(logger)...))", ErrConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	p, err := newProvider(ctx, cfg)
	if err != nil {
		return nil, err
	}
	host, portS, _ := net.SplitHostPort(cfg.Advertise)
	port, _ := strconv.Atoi(portS)
	g := newGuard(cfg.Logger)
	opts := []remote.ConfigOption{
		remote.WithEndpointWriterQueueSize(endpointQueueSize),
		remote.WithEndpointManagerQueueSize(endpointQueueSize),
		remote.WithServerOptions(grpc.ChainStreamInterceptor(g.intercept)),
		remote.WithDialOptions(peerDialOptions()...),
	}
	if port != 0 && net.ParseIP(host) == nil {
		// a host name: advertise it as given, not the address it resolved to
		opts = append(opts, remote.WithAdvertisedHost(cfg.Advertise))
	}
	rc := remote.Configure(host, port, opts...)
	// One connection attempt per endpoint writer, not five: each failed
	// attempt blocks the writer (and so a Leave, which waits for it) for
	// 2 s more, and the next message to the peer starts a new writer.
	rc.MaxRetryCount = 1
	m := &Member{sys: sys, p: p, guard: g}
	if err := m.start(cfg, rc); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Member) start(cfg Config, rc *remote.Config) (err error) {
	started := false
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		if started {
			m.shutdown(true)
		} else {
			_ = m.p.Shutdown(true) // revokes the lease granted for this member
		}
		err = fmt.Errorf("%w on %s: %v: choose a free port or an address of this machine", ErrListen, cfg.Advertise, r)
	}()
	m.c = cluster.New(m.sys, cluster.Configure(cfg.Cluster, m.p, disthash.New(), rc))
	m.c.StartMember() // panics when the remote cannot listen
	started = true
	m.p.mu.Lock()
	serr := m.p.startErr
	m.p.mu.Unlock()
	if serr != nil {
		m.shutdown(true)
		return serr
	}
	return nil
}

// Self is this member's advertised host:port (with the actual port when
// port 0 was asked). Remote messages to the member's actor named N go to
// actor.NewPID(m.Self(), N).
func (m *Member) Self() string { return m.sys.Address() }

// Members returns the live members' host:port, sorted, this one included
// (as long as its membership is not lost). It is the list placement works
// on: Owner(key, m.Members()).
func (m *Member) Members() []string { return m.p.memberList() }

// Watch calls fn with the current member list at once and then with
// every change of it, in order, one call at a time, on a goroutine of its
// own. stop ends the calls and waits for a running one to return (so it
// must not be called from fn); Leave stops every watcher.
func (m *Member) Watch(fn func(members []string)) (stop func()) { return m.p.subscribe(fn) }

// Fresh reports whether the member's lease is confirmed alive now: the
// send time of the last keep-alive etcd answered plus the TTL etcd gave is
// still ahead on the monotonic clock, and the membership is not lost. It
// is one atomic load and a clock read, for every check: a member that is
// not fresh must not check (another may own its proxies by now).
func (m *Member) Fresh() bool { return m.p.fresh() }

// Lost is closed when the membership is lost for good (etcd says the
// lease expired, or the member's key was deleted). The owner must stop
// checking and rejoin as a new member: a new actor system, in practice a
// process exit (non-zero) and a restart.
func (m *Member) Lost() <-chan struct{} { return m.p.lost }

// Err says why the membership was lost (wrapping ErrLeaseExpired or
// ErrKeyDeleted), nil while it is not.
func (m *Member) Err() error { return m.p.err() }

// Cluster is protoactor's cluster of this member.
func (m *Member) Cluster() *cluster.Cluster { return m.c }

// Leave leaves the cluster gracefully: it revokes the lease first (the
// others see the member leave at once, and Fresh is false from then on),
// then shuts the cluster down, which shuts the actor system down too (so
// the engine calls Leave last), stops the watchers and closes the etcd
// client. ctx bounds the revocation; an error means etcd could not be
// told (the others then drop the member after its TTL), the rest is done
// anyway. Later calls return the first call's result.
func (m *Member) Leave(ctx context.Context) error {
	m.endOnce.Do(func() {
		m.endErr = m.p.revoke(ctx)
		m.shutdown(true)
	})
	return m.endErr
}

// Crash is for tests: it stops the member the way kill -9 stops a
// process, as far as the others can tell: the lease is neither revoked
// nor kept alive (the others drop the member after its TTL) and nothing
// is said to them; the actor system, the remote and the etcd client are
// shut down, so that nothing is left running in the test's process.
func (m *Member) Crash() {
	m.endOnce.Do(func() {
		m.endErr = ErrLeft
		m.shutdown(false)
	})
}

// shutdown does what cluster.Shutdown(true) does, without its 2 s sleep
// ("to wait ownership transferring complete": for grains, of which a
// member has none). graceful=false skips the "left" gossip and the
// revocation.
func (m *Member) shutdown(graceful bool) {
	c := m.c
	if graceful {
		c.Gossip.SetState(cluster.GracefullyLeftKey, &emptypb.Empty{})
	} else {
		m.p.stop()
	}
	c.ActorSystem.Shutdown()
	if graceful {
		_ = m.p.Shutdown(true)
	}
	c.IdentityLookup.Shutdown()
	c.Gossip.Shutdown()
	m.stopRemote()
}

// stopRemote stops protoactor's remote gracefully. Its endpoint manager
// tells every connected peer's reader to disconnect by a send on a channel
// that the reader closes when the peer's stream ends; when a peer leaves
// at the same moment, the send panics ("send on closed channel", seen
// when three members left at once under -race). The writers are stopped
// by then, so the server is stopped hard instead.
func (m *Member) stopRemote() {
	defer func() {
		if r := recover(); r != nil {
			m.p.log.Debug("membership: protoactor's remote panicked while stopping (a peer disconnected at the same time); stopping its server hard", "panic", fmt.Sprint(r))
			m.c.Remote.Shutdown(false)
		}
	}()
	m.c.Remote.Shutdown(true)
}
