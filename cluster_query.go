package proxyhealth

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/proxyhealth/proxyhealth/actors"
	"github.com/proxyhealth/proxyhealth/probe"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
	"github.com/proxyhealth/proxyhealth/rotation"
)

// DefaultClusterQueryTimeout bounds how long a cluster-wide query waits for
// the other members (less if the caller's context ends sooner).
const DefaultClusterQueryTimeout = time.Second

// maxClusterListFirst bounds how many matches one member returns for a
// cluster-wide list (offset + limit of the merged page).
const maxClusterListFirst = 20000

// ErrClusterQuery is returned by the cluster-wide queries outside a
// cluster, and for a list page beyond what members return.
var ErrClusterQuery = errors.New("proxyhealth: cluster query")

// ClusterAnswer says who a cluster-wide answer comes from.
type ClusterAnswer struct {
	// Members are the members whose part is in the answer (this one
	// included), sorted.
	Members []string `json:"members"`
	// Missing are the members that did not answer in time: their proxies
	// are not in the answer. Never silently dropped.
	Missing []MissingMember `json:"missing,omitempty"`
	// Shares is how many proxies each member that answered checks (set by
	// ClusterSummary).
	Shares map[string]int `json:"shares,omitempty"`
}

// MissingMember is a member whose part a cluster-wide answer lacks.
type MissingMember struct {
	Member string `json:"member"`
	Error  string `json:"error"`
}

// ClusterSummary is the pool's summary over every member: each member's
// Summary of the proxies it checks, added up.
func (e *Engine) ClusterSummary(ctx context.Context) (Summary, ClusterAnswer, error) {
	c := e.cl
	if c == nil {
		return Summary{}, ClusterAnswer{}, fmt.Errorf("%w: not a cluster member", ErrClusterQuery)
	}
	parts, ans := c.ask(ctx, &pb.QueryRequest{Kind: "summary"})
	sums := []Summary{e.proj.live.Summary()}
	shares := map[string]int{c.self: sums[0].Total}
	for _, p := range parts {
		var s Summary
		if err := json.Unmarshal(p.GetJson(), &s); err != nil {
			ans.missing(p.GetMember(), fmt.Errorf("undecodable answer: %w", err))
			continue
		}
		sums = append(sums, s)
		shares[p.GetMember()] = s.Total
	}
	out := ans.done()
	out.Shares = shares
	return mergeSummaries(sums), out, nil
}

// clusterPage is a member's part of a cluster-wide list.
type clusterPage struct {
	Total   int         `json:"total"`
	Proxies []ProxyView `json:"proxies"`
}

// ClusterList is Status().List over every member: the total of matches and
// the page of them sorted by ID, after skipping offset. offset + limit is
// at most 20,000.
func (e *Engine) ClusterList(ctx context.Context, f ListFilter, offset, limit int) (int, []ProxyView, ClusterAnswer, error) {
	c := e.cl
	if c == nil {
		return 0, nil, ClusterAnswer{}, fmt.Errorf("%w: not a cluster member", ErrClusterQuery)
	}
	offset, limit = max(offset, 0), max(limit, 0)
	first := offset + limit
	if first > maxClusterListFirst {
		return 0, nil, ClusterAnswer{}, fmt.Errorf("%w: offset + limit = %d; a cluster-wide list reaches at most %d proxies deep (filter it, or ask each member with scope=local)", ErrClusterQuery, first, maxClusterListFirst)
	}
	parts, ans := c.ask(ctx, &pb.QueryRequest{Kind: "list", State: f.State, Source: f.Source, Tag: f.Tag, Anonymity: f.Anonymity, First: int32(first)})
	total, views := e.proj.live.List(f, 0, first)
	for _, p := range parts {
		var pg clusterPage
		if err := json.Unmarshal(p.GetJson(), &pg); err != nil {
			ans.missing(p.GetMember(), fmt.Errorf("undecodable answer: %w", err))
			continue
		}
		total += pg.Total
		views = append(views, pg.Proxies...)
	}
	slices.SortFunc(views, func(a, b ProxyView) int { return cmp.Compare(a.ID, b.ID) })
	views = slices.CompactFunc(views, func(a, b ProxyView) bool { return a.ID == b.ID }) // a hand-over in flight
	if offset >= len(views) {
		return total, nil, ans.done(), nil
	}
	return total, views[offset:min(len(views), first)], ans.done(), nil
}

// clusterPick is a member's pick: the proxy's ID and how it was picked
// (the asking member has the proxy's URL from the shared configuration, so
// no credential crosses the network).
type clusterPick struct {
	ID    string         `json:"id"`
	State rotation.State `json:"state"`
	Panic bool           `json:"panic"`
}

// ClusterPick picks a proxy from the whole cluster: from this member's
// own proxies when it has a usable one, else from another member's (asked
// in random order). A pick in panic mode here is used only if no other
// member has a usable proxy.
func (e *Engine) ClusterPick(ctx context.Context, req PickRequest) (Picked, ClusterAnswer, error) {
	c := e.cl
	if c == nil {
		return Picked{}, ClusterAnswer{}, fmt.Errorf("%w: not a cluster member", ErrClusterQuery)
	}
	local, lerr := e.Pick(req)
	ans := &answer{members: []string{c.self}}
	if lerr == nil && !local.Panic {
		return local, ans.done(), nil
	}
	others := c.others()
	rand.Shuffle(len(others), func(i, k int) { others[i], others[k] = others[k], others[i] })
	q := &pb.QueryRequest{Kind: "pick", Strategy: string(req.Strategy), Key: req.Key, Source: req.Source, Scheme: req.Scheme, Tag: req.Tag}
	for _, m := range others {
		res, err := c.askOne(ctx, m, q)
		if err != nil {
			ans.missing(m, err)
			continue
		}
		ans.members = append(ans.members, m)
		if res.GetError() != "" {
			continue // nothing usable there
		}
		var cp clusterPick
		if err := json.Unmarshal(res.GetJson(), &cp); err != nil {
			ans.missing(m, fmt.Errorf("undecodable answer: %w", err))
			continue
		}
		p, ok := c.pickedOf(cp)
		if !ok || (cp.Panic && lerr == nil) {
			continue
		}
		return p, ans.done(), nil
	}
	if lerr == nil {
		return local, ans.done(), nil
	}
	return Picked{}, ans.done(), lerr
}

// pickedOf builds the Picked of another member's pick from the shared
// configuration.
func (c *clusterNode) pickedOf(cp clusterPick) (Picked, bool) {
	c.mu.Lock()
	d, ok := c.desired[cp.ID]
	c.mu.Unlock()
	if !ok {
		return Picked{}, false
	}
	pu, err := probe.ParseProxyURL(d.entry.URL)
	if err != nil {
		return Picked{}, false
	}
	m := memberOf(cp.ID, &proxy{url: pu, spec: actors.ProxySpec{Source: d.source}})
	c.e.mu.Lock()
	if src, ok := c.e.sources[d.source]; ok {
		m.Tags, m.Weight = src.cfg.metadata(d.entry)
	}
	c.e.mu.Unlock()
	return Picked{Member: m, State: cp.State, Panic: cp.Panic}, true
}

// answer collects who answered a cluster-wide query.
type answer struct {
	mu      sync.Mutex
	members []string
	miss    []MissingMember
}

func (a *answer) missing(m string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.members = slices.DeleteFunc(a.members, func(x string) bool { return x == m })
	a.miss = append(a.miss, MissingMember{Member: m, Error: err.Error()})
}

func (a *answer) done() ClusterAnswer {
	a.mu.Lock()
	defer a.mu.Unlock()
	slices.Sort(a.members)
	slices.SortFunc(a.miss, func(x, y MissingMember) int { return cmp.Compare(x.Member, y.Member) })
	return ClusterAnswer{Members: slices.Clone(a.members), Missing: slices.Clone(a.miss)}
}

// others are the live members but this one.
func (c *clusterNode) others() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.DeleteFunc(slices.Clone(c.members), func(m string) bool { return m == c.self })
}

// queryTimeout is how long to wait for members: DefaultClusterQueryTimeout,
// or less when ctx ends sooner.
func queryTimeout(ctx context.Context) time.Duration {
	d := DefaultClusterQueryTimeout
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl))
	}
	return max(d, time.Millisecond)
}

// ask sends q to every other member at once and returns the answers that
// came back in time; the answer names who answered and who did not.
func (c *clusterNode) ask(ctx context.Context, q *pb.QueryRequest) ([]*pb.QueryResponse, *answer) {
	others := c.others()
	ans := &answer{members: append([]string{c.self}, others...)}
	out := make([]*pb.QueryResponse, len(others))
	var wg sync.WaitGroup
	for i, m := range others {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := c.askOne(ctx, m, q)
			if err != nil {
				ans.missing(m, err)
				return
			}
			if res.GetError() != "" {
				ans.missing(m, errors.New(res.GetError()))
				return
			}
			out[i] = res
		}()
	}
	wg.Wait()
	return slices.DeleteFunc(out, func(r *pb.QueryResponse) bool { return r == nil }), ans
}

// askOne asks one member.
func (c *clusterNode) askOne(ctx context.Context, m string, q *pb.QueryRequest) (*pb.QueryResponse, error) {
	res, err := c.tr.Ask(ctx, m, q, queryTimeout(ctx))
	if err != nil {
		return nil, fmt.Errorf("no answer within %v: %w", queryTimeout(ctx).Round(time.Millisecond), err)
	}
	return res, nil
}

// answerQuery is this member's part of another's cluster-wide query.
func (c *clusterNode) answerQuery(q *pb.QueryRequest) *pb.QueryResponse {
	e := c.e
	res := &pb.QueryResponse{Member: c.self}
	var v any
	switch q.GetKind() {
	case "summary":
		v = e.proj.live.Summary()
	case "list":
		f := ListFilter{State: q.GetState(), Source: q.GetSource(), Tag: q.GetTag(), Anonymity: q.GetAnonymity()}
		first := min(max(int(q.GetFirst()), 0), maxClusterListFirst)
		total, views := e.proj.live.List(f, 0, first)
		v = clusterPage{Total: total, Proxies: views}
	case "pick":
		p, err := e.Pick(PickRequest{Strategy: Strategy(q.GetStrategy()), Key: q.GetKey(), Source: q.GetSource(), Scheme: q.GetScheme(), Tag: q.GetTag()})
		if err != nil {
			res.Error = err.Error()
			return res
		}
		v = clusterPick{ID: p.ID, State: p.State, Panic: p.Panic}
	default:
		res.Error = fmt.Sprintf("unknown query %q (a newer member?)", q.GetKind())
		return res
	}
	b, err := json.Marshal(v)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	res.Json = b
	return res
}

// mergeSummaries adds members' summaries up.
func mergeSummaries(sums []Summary) Summary {
	var out Summary
	var lat float64
	bySource := map[string]*SourceSummary{}
	var srcLat = map[string]float64{}
	for i, s := range sums {
		if i == 0 {
			out.Seq, out.UpdatedAt = s.Seq, s.UpdatedAt // this member's journal
		}
		out.Counts.Add(s.Counts)
		lat += float64(s.AvgLatency) * float64(s.Total)
		if s.LastCheckAt.After(out.LastCheckAt) {
			out.LastCheckAt = s.LastCheckAt
		}
		out.PoolDegraded = out.PoolDegraded || s.PoolDegraded
		out.PanicMode = out.PanicMode || s.PanicMode
		for _, ss := range s.Sources {
			m := bySource[ss.Name]
			if m == nil {
				m = &SourceSummary{Name: ss.Name}
				bySource[ss.Name] = m
			}
			m.Counts.Add(ss.Counts)
			srcLat[ss.Name] += float64(ss.AvgLatency) * float64(ss.Total)
			if ss.LastCheckAt.After(m.LastCheckAt) {
				m.LastCheckAt = ss.LastCheckAt
			}
			if ss.LastRefresh.After(m.LastRefresh) {
				m.LastRefresh = ss.LastRefresh
			}
			if ss.LastErrorAt.After(m.LastErrorAt) {
				m.LastError, m.LastErrorAt = ss.LastError, ss.LastErrorAt
			}
			m.HeldList = m.HeldList || ss.HeldList
		}
	}
	if out.Total > 0 {
		out.AvgLatency = time.Duration(lat / float64(out.Total))
	}
	for name, m := range bySource {
		if m.Total > 0 {
			m.AvgLatency = time.Duration(srcLat[name] / float64(m.Total))
		}
		out.Sources = append(out.Sources, *m)
	}
	slices.SortFunc(out.Sources, func(a, b SourceSummary) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Ask sends a query to another member's receiver and waits for its
// answer (remote request/response).
func (t remoteTransport) Ask(ctx context.Context, member string, q *pb.QueryRequest, timeout time.Duration) (*pb.QueryResponse, error) {
	res, err := t.sys.Root.RequestFuture(actor.NewPID(member, receiverName), q, timeout).Result()
	if err != nil {
		return nil, err
	}
	r, ok := res.(*pb.QueryResponse)
	if !ok {
		return nil, fmt.Errorf("unexpected answer %T", res)
	}
	return r, nil
}
