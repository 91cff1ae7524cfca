package proxyhealth

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// WithJournalOptions returns cfg with extra options for its bbolt journal
// (fault injection in tests).
func WithJournalOptions(cfg Config, opts ...journal.BoltOption) Config {
	cfg.journalOptions = append(cfg.journalOptions, opts...)
	return cfg
}

// FakeCluster is an in-process cluster membership for tests: members join
// and leave instantly, messages are delivered synchronously, and a test
// can kill, fence or expel a member as etcd would.
type FakeCluster struct {
	mu      sync.Mutex
	members map[string]*fakeMember
	drop    func(from, to string, msg proto.Message) bool
}

// Drop makes the cluster lose the messages for which drop returns true (nil:
// none), as protoactor's remote loses what it queued for a connection it
// tears down.
func (fc *FakeCluster) Drop(drop func(from, to string, msg proto.Message) bool) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	fc.drop = drop
}

// NewFakeCluster returns an empty fake cluster.
func NewFakeCluster() *FakeCluster { return &FakeCluster{members: map[string]*fakeMember{}} }

// Config makes cfg a member of the fake cluster at addr.
func (fc *FakeCluster) Config(cfg Config, addr string) Config {
	cfg.Cluster = ClusterConfig{Name: "fake", Etcd: []string{"fake"}, Advertise: addr}
	cfg.clusterJoin = func(ctx context.Context, e *Engine) (clusterMember, clusterTransport, error) {
		m := &fakeMember{fc: fc, self: addr, e: e, lost: make(chan struct{})}
		m.fresh.Store(true)
		fc.mu.Lock()
		if old := fc.members[addr]; old != nil && !old.dead {
			fc.mu.Unlock()
			return nil, nil, fmt.Errorf("fake cluster: %s is a member already", addr)
		}
		fc.members[addr] = m
		fc.mu.Unlock()
		fc.publish()
		return m, m, nil
	}
	return cfg
}

// Members lists the live members.
func (fc *FakeCluster) Members() []string {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.liveLocked()
}

func (fc *FakeCluster) liveLocked() []string {
	var out []string
	for a, m := range fc.members {
		if !m.dead {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}

// Kill is kill -9 as the cluster sees it: the member is dropped (as when
// its lease expires), its checks stop (its process is gone: its fence is
// down), and nothing it sends arrives any more.
func (fc *FakeCluster) Kill(addr string) {
	fc.mu.Lock()
	m := fc.members[addr]
	m.dead = true
	m.fresh.Store(false)
	fc.mu.Unlock()
	fc.publish()
}

// Expel is a lost membership (a member paused past its lease): the
// others drop it, and it learns so (Lost closes) when it runs again.
func (fc *FakeCluster) Expel(addr string) {
	fc.mu.Lock()
	m := fc.members[addr]
	m.dead = true
	fc.mu.Unlock()
	fc.publish()
	m.fresh.Store(false)
	close(m.lost)
}

// Mute makes a member stop answering queries (it stays a member).
func (fc *FakeCluster) Mute(addr string, on bool) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	fc.members[addr].mute.Store(on)
}

// SetFresh sets whether a member's lease is confirmed.
func (fc *FakeCluster) SetFresh(addr string, ok bool) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	fc.members[addr].fresh.Store(ok)
}

// publish tells every live member the member list.
func (fc *FakeCluster) publish() {
	fc.mu.Lock()
	live := fc.liveLocked()
	var fns []func([]string)
	for _, m := range fc.members {
		if !m.dead {
			fns = append(fns, m.watchers...)
		}
	}
	fc.mu.Unlock()
	for _, fn := range fns {
		fn(live)
	}
}

type fakeMember struct {
	mute     atomic.Bool // answers no query
	fc       *FakeCluster
	self     string
	e        *Engine
	fresh    atomic.Bool
	lost     chan struct{}
	dead     bool // under fc.mu
	watchers []func([]string)
}

func (m *fakeMember) Self() string      { return m.self }
func (m *fakeMember) Members() []string { return m.fc.Members() }
func (m *fakeMember) Watch(fn func([]string)) func() {
	m.fc.mu.Lock()
	m.watchers = append(m.watchers, fn)
	live := m.fc.liveLocked()
	m.fc.mu.Unlock()
	fn(live)
	return func() {
		m.fc.mu.Lock()
		m.watchers = nil
		m.fc.mu.Unlock()
	}
}
func (m *fakeMember) Fresh() bool           { return m.fresh.Load() }
func (m *fakeMember) Lost() <-chan struct{} { return m.lost }
func (m *fakeMember) Err() error            { return errors.New("fake cluster: lease expired") }
func (m *fakeMember) Leave(context.Context) error {
	m.fc.mu.Lock()
	was := m.dead
	m.dead = true
	m.fc.mu.Unlock()
	if !was {
		m.fc.publish()
	}
	m.e.sys.Shutdown() // as cluster.Shutdown does
	return nil
}

// Send delivers msg to another member's engine, unless either is dead or
// the cluster drops it.
func (m *fakeMember) Send(to string, msg proto.Message) {
	m.fc.mu.Lock()
	dst := m.fc.members[to]
	ok := dst != nil && !dst.dead && !m.dead && (m.fc.drop == nil || !m.fc.drop(m.self, to, msg))
	m.fc.mu.Unlock()
	if !ok {
		return
	}
	switch msg := msg.(type) {
	case *pb.StateRecords:
		dst.e.cl.receive(proto.Clone(msg).(*pb.StateRecords))
	case *pb.DumpRequest:
		dst.e.cl.answerDump(proto.Clone(msg).(*pb.DumpRequest))
	}
}

// Ask answers q from another member's engine, unless either is dead.
func (m *fakeMember) Ask(_ context.Context, to string, q *pb.QueryRequest, _ time.Duration) (*pb.QueryResponse, error) {
	m.fc.mu.Lock()
	dst := m.fc.members[to]
	ok := dst != nil && !dst.dead && !m.dead && !dst.mute.Load()
	m.fc.mu.Unlock()
	if !ok {
		return nil, errors.New("fake cluster: the member does not answer")
	}
	return dst.e.cl.answerQuery(q), nil
}

// SetSaveAtOnceAfter sets how many events Open's fold must apply for the
// running engine to save the live status's checkpoint at once (tests);
// the returned func restores it.
func SetSaveAtOnceAfter(n uint64) (restore func()) {
	old := saveAtOnceAfter
	saveAtOnceAfter = n
	return func() { saveAtOnceAfter = old }
}

// SaveLiveCheckpointAt saves dir's live status checkpoint as a running
// engine would have saved it when its live status stood at seq (the
// journal must not be open elsewhere).
func SaveLiveCheckpointAt(ctx context.Context, dir string, seq uint64) error {
	j, err := journal.OpenBolt(filepath.Join(dir, JournalFile))
	if err != nil {
		return err
	}
	live := projections.NewLive(projections.LiveOptions{Snapshots: j.LoadSnapshot})
	err = foldLive(ctx, live, j, seq, nil)
	if err == nil && live.Seq() != seq {
		err = fmt.Errorf("folded to seq %d, not %d", live.Seq(), seq)
	}
	if err == nil {
		err = saveLiveCheckpoint(dir, live)
	}
	return errors.Join(err, j.Close())
}

// ActorsStartedFromLive returns how many of e's proxy actors started from
// the live status's state instead of replaying their stream.
func ActorsStartedFromLive(e *Engine) int64 { return e.startedFromLive.Load() }

// ArchiveRestoredAt returns the seq of the live status checkpoint a's
// Status started from (0: it folded the whole journal).
func ArchiveRestoredAt(a *Archive) uint64 { return a.restored }
