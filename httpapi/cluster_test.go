package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/httpapi"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
	"github.com/proxyhealth/proxyhealth/rotation"
)

// *proxyhealth.Engine has the cluster side the server type-asserts.
var _ interface {
	Cluster() (proxyhealth.ClusterStatus, bool)
	ClusterSummary(ctx context.Context) (proxyhealth.Summary, proxyhealth.ClusterAnswer, error)
	ClusterList(ctx context.Context, f proxyhealth.ListFilter, offset, limit int) (int, []proxyhealth.ProxyView, proxyhealth.ClusterAnswer, error)
	ClusterPick(ctx context.Context, req proxyhealth.PickRequest) (proxyhealth.Picked, proxyhealth.ClusterAnswer, error)
} = (*proxyhealth.Engine)(nil)

// clusterEngine is a fake engine that reports health and answers the
// cluster-wide queries with what the test sets, recording the calls.
type clusterEngine struct {
	*healthEngine
	cmu     sync.Mutex
	member  bool
	st      proxyhealth.ClusterStatus
	sum     proxyhealth.Summary
	total   int
	views   []proxyhealth.ProxyView
	picked  proxyhealth.Picked
	err     error // of the three queries
	ans     proxyhealth.ClusterAnswer
	queries []string
}

func (c *clusterEngine) Cluster() (proxyhealth.ClusterStatus, bool) {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	return c.st, c.member
}

func (c *clusterEngine) query(s string) (proxyhealth.ClusterAnswer, error) {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	c.queries = append(c.queries, s)
	return c.ans, c.err
}

func (c *clusterEngine) calls() []string {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	return append([]string(nil), c.queries...)
}

func (c *clusterEngine) set(fn func(c *clusterEngine)) {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	fn(c)
}

func (c *clusterEngine) ClusterSummary(context.Context) (proxyhealth.Summary, proxyhealth.ClusterAnswer, error) {
	a, err := c.query("summary")
	c.cmu.Lock()
	defer c.cmu.Unlock()
	return c.sum, a, err
}

func (c *clusterEngine) ClusterList(_ context.Context, f proxyhealth.ListFilter, offset, limit int) (int, []proxyhealth.ProxyView, proxyhealth.ClusterAnswer, error) {
	a, err := c.query(fmt.Sprintf("list state=%s source=%s tag=%s anonymity=%s offset=%d limit=%d", f.State, f.Source, f.Tag, f.Anonymity, offset, limit))
	c.cmu.Lock()
	defer c.cmu.Unlock()
	return c.total, c.views, a, err
}

func (c *clusterEngine) ClusterPick(_ context.Context, req proxyhealth.PickRequest) (proxyhealth.Picked, proxyhealth.ClusterAnswer, error) {
	a, err := c.query(fmt.Sprintf("pick strategy=%s source=%s", req.Strategy, req.Source))
	c.cmu.Lock()
	defer c.cmu.Unlock()
	return c.picked, a, err
}

// The cluster fixture's members: this one, two others; m3 is missing.
const (
	self = "127.0.0.1:7001"
	m2   = "127.0.0.1:7002"
	m3   = "127.0.0.1:7003"
)

// newClusterFixture is a fixture (seedPool: three local proxies) whose
// engine is a member of a three-member cluster in which m3 did not answer;
// the cluster-wide summary counts 10 proxies.
func newClusterFixture(t *testing.T, opts httpapi.Options) (*fixture, *clusterEngine) {
	t.Helper()
	var ce *clusterEngine
	f := newFixtureWith(t, opts, func(e *fakeEngine) httpapi.Engine {
		ce = &clusterEngine{healthEngine: &healthEngine{fakeEngine: e, h: healthyHealth()}, member: true}
		return ce
	})
	st := proxyhealth.ClusterStatus{Name: "prod", Self: self, Members: []string{self, m2, m3}, Fresh: true, Checked: 3, Configured: 10, Replicas: 7}
	h := healthyHealth()
	h.Cluster = &st
	ce.setHealth(h)
	ce.set(func(c *clusterEngine) {
		c.st = st
		c.sum = proxyhealth.Summary{Counts: proxyhealth.Counts{Total: 10, Healthy: 8, Unhealthy: 2, HealthPercentage: 80},
			Sources: []proxyhealth.SourceSummary{{Name: "a", Counts: proxyhealth.Counts{Total: 10, Healthy: 8, Unhealthy: 2, HealthPercentage: 80}}}}
		c.ans = proxyhealth.ClusterAnswer{Members: []string{self, m2}, Missing: []proxyhealth.MissingMember{{Member: m3, Error: "timeout after 1s"}}}
	})
	f.seedPool()
	// The pool history's first sample (at New) is a cluster summary:
	// wait for it, then start the record afresh.
	testutil.Eventually(t, 10*time.Second, "the first pool history sample", func() bool { return len(ce.calls()) > 0 })
	ce.set(func(c *clusterEngine) { c.queries = nil })
	return f, ce
}

// TestClusterPool: a member's GET /v1/pool counts the whole cluster, says
// who answered (body and header) and keeps its own cluster view;
// scope=local answers for this member only, as before.
func TestClusterPool(t *testing.T) {
	f, ce := newClusterFixture(t, httpapi.Options{})

	resp := f.doResp("GET", "/v1/pool", "")
	defer resp.Body.Close()
	var p httpapi.Pool
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/pool: %d %v", resp.StatusCode, err)
	}
	if p.Total != 10 || p.Healthy != 8 || p.Unhealthy != 2 || p.Sources["a"].Total != 10 {
		t.Errorf("cluster-wide pool counts %+v, want the cluster summary's (10 proxies)", p.Counts)
	}
	wantAns := &httpapi.ClusterAnswer{Members: []string{self, m2}, Missing: []httpapi.MissingMember{{Member: m3, Error: "timeout after 1s"}}}
	if !reflect.DeepEqual(p.ClusterAnswer, wantAns) {
		t.Errorf("cluster_answer %+v, want %+v", p.ClusterAnswer, wantAns)
	}
	if got := resp.Header.Get(httpapi.MissingMembersHeader); got != m3 {
		t.Errorf("%s: %q, want %q", httpapi.MissingMembersHeader, got, m3)
	}
	if got := resp.Header.Get(httpapi.ScopeHeader); got != "cluster" {
		t.Errorf("%s: %q, want cluster", httpapi.ScopeHeader, got)
	}
	if p.Cluster == nil || p.Cluster.Self != self || p.Cluster.Checked != 3 || p.Journal == nil {
		t.Errorf("the pool's cluster object is not this member's own view: %+v", p.Cluster)
	}
	if calls := ce.calls(); !reflect.DeepEqual(calls, []string{"summary"}) {
		t.Errorf("engine queries %v, want one cluster summary", calls)
	}

	var explicit httpapi.Pool
	f.getJSON("/v1/pool?scope=cluster", &explicit)
	if explicit.Total != 10 || explicit.ClusterAnswer == nil {
		t.Errorf("scope=cluster: %+v", explicit)
	}

	resp = f.doResp("GET", "/v1/pool?scope=local", "")
	defer resp.Body.Close()
	var raw map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scope=local: %d %v", resp.StatusCode, err)
	}
	if raw["total"] != float64(3) || raw["cluster_answer"] != nil || raw["cluster"] == nil {
		t.Errorf("scope=local: total %v cluster_answer %v cluster %v; want this member's 3 proxies, no cluster_answer, its cluster view", raw["total"], raw["cluster_answer"], raw["cluster"])
	}
	if resp.Header.Get(httpapi.ScopeHeader) != "local" || resp.Header.Get(httpapi.MissingMembersHeader) != "" {
		t.Errorf("scope=local headers: %v", resp.Header)
	}
	if calls := ce.calls(); len(calls) != 2 {
		t.Errorf("scope=local asked the cluster: %v", calls)
	}

	// Every member answered: no header, an empty missing list.
	ce.set(func(c *clusterEngine) { c.ans = proxyhealth.ClusterAnswer{Members: []string{self, m2, m3}} })
	resp = f.doResp("GET", "/v1/pool", "")
	defer resp.Body.Close()
	var all httpapi.Pool
	if err := json.NewDecoder(resp.Body).Decode(&all); err != nil {
		t.Fatal(err)
	}
	if _, set := resp.Header[httpapi.MissingMembersHeader]; set || all.ClusterAnswer == nil || len(all.ClusterAnswer.Members) != 3 || all.ClusterAnswer.Missing == nil {
		t.Errorf("all answered: header %v, cluster_answer %+v", resp.Header, all.ClusterAnswer)
	}

	// The engine failing the query answers an error, not this member's
	// counts as if they were the cluster's.
	ce.set(func(c *clusterEngine) { c.err = fmt.Errorf("%w: interrupted", context.Canceled) })
	code, body := f.do("GET", "/v1/pool", "")
	wantError(t, "failed cluster summary", code, body, http.StatusServiceUnavailable, "interrupted")
}

// TestClusterScopeParam: scope= takes cluster or local; outside a
// cluster, scope=cluster is refused and scope=local changes nothing.
func TestClusterScopeParam(t *testing.T) {
	f, _ := newClusterFixture(t, httpapi.Options{})
	for _, path := range []string{"/v1/pool", "/v1/proxies", "/v1/pick"} {
		code, body := f.do("GET", path+"?scope=everywhere", "")
		wantError(t, path+"?scope=everywhere", code, body, http.StatusBadRequest, `scope="everywhere" is not a scope; use cluster`)
		wantError(t, path+"?scope=everywhere", code, body, http.StatusBadRequest, "local")
	}

	for name, fx := range map[string]*fixture{
		"no cluster side": newFixture(t, httpapi.Options{}),
		"not a member": func() *fixture {
			f, ce := newClusterFixture(t, httpapi.Options{})
			ce.set(func(c *clusterEngine) { c.member = false })
			ce.setHealth(healthyHealth())
			return f
		}(),
	} {
		fx.seedPool()
		for _, path := range []string{"/v1/pool", "/v1/proxies", "/v1/pick"} {
			code, body := fx.do("GET", path+"?scope=cluster", "")
			wantError(t, name+": "+path+"?scope=cluster", code, body, http.StatusBadRequest, "not a cluster member")
		}
		for _, path := range []string{"/v1/pool", "/v1/proxies?state=healthy"} {
			sep := "?"
			if strings.Contains(path, "?") {
				sep = "&"
			}
			c1, plain := fx.do("GET", path, "")
			c2, local := fx.do("GET", path+sep+"scope=local", "")
			if c1 != http.StatusOK || c2 != http.StatusOK || plain != local {
				t.Errorf("%s: %s answered %d %s, with scope=local %d %s", name, path, c1, plain, c2, local)
			}
			if strings.Contains(plain, "cluster_answer") {
				t.Errorf("%s: %s has a cluster_answer outside a cluster: %s", name, path, plain)
			}
		}
	}
}

// TestClusterProxies: a member's GET /v1/proxies lists the whole cluster
// with the request's filter and page; a page beyond what the cluster-wide
// list reaches is a 400 with the engine's advice.
func TestClusterProxies(t *testing.T) {
	f, ce := newClusterFixture(t, httpapi.Options{})
	ce.set(func(c *clusterEngine) {
		c.total = 42
		c.views = []proxyhealth.ProxyView{{ID: p9, URLRedacted: "http://10.0.0.9:3128", Source: "a", State: "healthy"}}
	})
	resp := f.doResp("GET", "/v1/proxies?state=healthy&source=a&offset=5&limit=1", "")
	defer resp.Body.Close()
	var l httpapi.ProxyList
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/proxies: %d %v", resp.StatusCode, err)
	}
	if l.Total != 42 || len(l.Proxies) != 1 || l.Proxies[0].ID != p9 || l.Proxies[0].Weight != 1 {
		t.Errorf("cluster-wide list %+v", l)
	}
	if l.ClusterAnswer == nil || len(l.ClusterAnswer.Missing) != 1 || l.ClusterAnswer.Missing[0].Member != m3 {
		t.Errorf("cluster_answer %+v, want m3 missing", l.ClusterAnswer)
	}
	if resp.Header.Get(httpapi.MissingMembersHeader) != m3 {
		t.Errorf("missing header %q", resp.Header.Get(httpapi.MissingMembersHeader))
	}
	if calls := ce.calls(); !reflect.DeepEqual(calls, []string{"list state=healthy source=a tag= anonymity= offset=5 limit=1"}) {
		t.Errorf("engine queries %v", calls)
	}

	var local httpapi.ProxyList
	f.getJSON("/v1/proxies?scope=local", &local)
	if local.Total != 3 || local.ClusterAnswer != nil {
		t.Errorf("scope=local: %+v, want this member's 3 proxies", local)
	}

	ce.set(func(c *clusterEngine) {
		c.err = fmt.Errorf("%w: offset + limit = 20100; a cluster-wide list reaches at most 20000 proxies deep (filter it, or ask each member with scope=local)", proxyhealth.ErrClusterQuery)
	})
	code, body := f.do("GET", "/v1/proxies?offset=20000&limit=100", "")
	wantError(t, "deep page", code, body, http.StatusBadRequest, "scope=local")
}

// TestClusterPick: n=1 picks from the whole cluster and says who was
// asked; n>1 picks from this member (said by the scope header), and
// refuses an explicit scope=cluster; nothing usable names the missing
// members. Credentials stay out without credentials=true.
func TestClusterPick(t *testing.T) {
	f, ce := newClusterFixture(t, httpapi.Options{Token: "tok"})
	auth := []string{"Authorization", "Bearer tok"}
	u, _ := url.Parse("http://user:s3cret@10.0.0.9:3128")
	ce.set(func(c *clusterEngine) {
		c.picked = proxyhealth.Picked{Member: rotation.Member{ID: p9, URL: u, Scheme: "http", Host: "10.0.0.9", Port: 3128, Source: "a"}, State: rotation.StateHealthy}
	})
	resp := f.doResp("GET", "/v1/pick?source=a", "", auth...)
	defer resp.Body.Close()
	var raw map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/pick: %d %v", resp.StatusCode, err)
	}
	b, _ := json.Marshal(raw)
	if raw["id"] != p9 || raw["host"] != "10.0.0.9" || strings.Contains(string(b), "s3cret") {
		t.Errorf("cluster pick %s", b)
	}
	ans, _ := raw["cluster_answer"].(map[string]any)
	if ans == nil || !reflect.DeepEqual(ans["members"], []any{self, m2}) {
		t.Errorf("cluster_answer %v", raw["cluster_answer"])
	}
	if resp.Header.Get(httpapi.MissingMembersHeader) != m3 || resp.Header.Get(httpapi.ScopeHeader) != "cluster" {
		t.Errorf("headers %v", resp.Header)
	}
	var withCreds httpapi.PickedProxy
	code, body := f.do("GET", "/v1/pick?credentials=true", "", auth...)
	if err := json.Unmarshal([]byte(body), &withCreds); err != nil || code != http.StatusOK || withCreds.URL != u.String() {
		t.Errorf("credentials=true: %d %s", code, body)
	}

	// n>1: this member's PickN (the fake has nothing: 503), scope local.
	resp = f.doResp("GET", "/v1/pick?n=3", "", auth...)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(httpapi.ScopeHeader) != "local" {
		t.Errorf("n=3: %d, scope %q; want this member's answer (503 from the fake), scope local", resp.StatusCode, resp.Header.Get(httpapi.ScopeHeader))
	}
	code, body = f.do("GET", "/v1/pick?n=3&scope=cluster", "", auth...)
	wantError(t, "n=3&scope=cluster", code, body, http.StatusBadRequest, "use n=1 for a cluster-wide pick, or scope=local")
	code, body = f.do("GET", "/v1/pick?scope=local", "", auth...)
	wantError(t, "scope=local", code, body, http.StatusServiceUnavailable, "no usable proxy")
	if calls := ce.calls(); len(calls) != 2 {
		t.Errorf("cluster picks %v, want the two n=1 cluster-scoped ones", calls)
	}

	ce.set(func(c *clusterEngine) { c.err = proxyhealth.ErrNoProxy })
	code, body = f.do("GET", "/v1/pick", "", auth...)
	wantError(t, "nothing usable", code, body, http.StatusServiceUnavailable, "did not answer")
	wantError(t, "nothing usable", code, body, http.StatusServiceUnavailable, m3+" (timeout after 1s)")
}

// TestClusterCommands: a command about a proxy another member checks
// answers 421 with the owner; adding or removing a proxy in a cluster
// answers 409 with the engine's advice.
func TestClusterCommands(t *testing.T) {
	f, ce := newClusterFixture(t, httpapi.Options{})
	notOwner := fmt.Errorf("pause: %w", &proxyhealth.NotOwnerError{ProxyID: p9, Member: m2})
	ce.mu.Lock()
	ce.fakeEngine.err = notOwner
	ce.mu.Unlock()
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/proxies/" + p9 + "/pause", ""},
		{"POST", "/v1/proxies/" + p9 + "/resume", ""},
		{"POST", "/v1/proxies/" + p9 + "/revive", ""},
		{"POST", "/v1/proxies/" + p9 + "/outcome", `{"ok":false,"error_class":"timeout"}`},
	} {
		code, body := f.do(c.method, c.path, c.body)
		var nb httpapi.NotOwnerBody
		if err := json.Unmarshal([]byte(body), &nb); err != nil || code != http.StatusMisdirectedRequest || nb.Owner != m2 || !strings.Contains(nb.Error, m2) {
			t.Errorf("%s %s: %d %s; want 421 with owner %s", c.method, c.path, code, body, m2)
		}
	}

	// Reads of one proxy answer for this member's: a 404 says another
	// member may check it.
	code, body := f.do("GET", "/v1/proxies/"+p9, "")
	wantError(t, "GET of another member's proxy", code, body, http.StatusNotFound, "another member may check this one")

	ce.mu.Lock()
	ce.fakeEngine.err = fmt.Errorf("%w: add the proxy to the shared configuration and reload every member", proxyhealth.ErrClusterManaged)
	ce.mu.Unlock()
	code, body = f.do("POST", "/v1/proxies", `{"url":"http://10.9.9.9:3128"}`)
	wantError(t, "add in a cluster", code, body, http.StatusConflict, "shared configuration")
	code, body = f.do("DELETE", "/v1/proxies/"+p1, "")
	wantError(t, "remove in a cluster", code, body, http.StatusConflict, "shared configuration")
}

// TestClusterMetrics: a member's /metrics has the cluster gauges with its
// view's values; outside a cluster they are absent.
func TestClusterMetrics(t *testing.T) {
	f, ce := newClusterFixture(t, httpapi.Options{})
	want := []string{
		"proxyhealth_cluster_members 3\n",
		"proxyhealth_cluster_membership_fresh 1\n",
		"proxyhealth_cluster_membership_lost 0\n",
		"proxyhealth_cluster_checked_proxies 3\n",
		"proxyhealth_cluster_configured_proxies 10\n",
		"proxyhealth_cluster_replicas 7\n",
		// The pool gauges stay this member's own.
		"proxyhealth_proxies{source=\"a\",state=\"healthy\"} 1\n",
	}
	_, body := f.do("GET", "/metrics", "")
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("/metrics has no %q", strings.TrimSpace(w))
		}
	}

	ce.set(func(c *clusterEngine) { c.st.Fresh, c.st.Lost, c.st.Members = false, true, []string{self} })
	_, body = f.do("GET", "/metrics", "")
	for _, w := range []string{"proxyhealth_cluster_membership_fresh 0\n", "proxyhealth_cluster_membership_lost 1\n", "proxyhealth_cluster_members 1\n"} {
		if !strings.Contains(body, w) {
			t.Errorf("lost: /metrics has no %q", strings.TrimSpace(w))
		}
	}

	ce.set(func(c *clusterEngine) { c.member = false })
	_, body = f.do("GET", "/metrics", "")
	if strings.Contains(body, "proxyhealth_cluster_") {
		t.Errorf("outside a cluster /metrics has cluster gauges")
	}
	if !strings.Contains(body, "proxyhealth_pool_health_percentage") {
		t.Errorf("/metrics lost its pool gauges")
	}
}

// TestClusterPoolHistory: a member samples the cluster's counts for GET
// /v1/pool/history (as GET /v1/pool answers), naming the missing members;
// a failed cluster query leaves no sample; outside a cluster the samples
// are the local counts.
func TestClusterPoolHistory(t *testing.T) {
	f, ce := newClusterFixture(t, httpapi.Options{PoolHistoryInterval: 10 * time.Millisecond})
	last := func() httpapi.PoolSample {
		var h httpapi.PoolHistory
		f.getJSON("/v1/pool/history", &h)
		if len(h.Samples) == 0 {
			return httpapi.PoolSample{}
		}
		return h.Samples[len(h.Samples)-1]
	}
	testutil.EventuallyExplain(t, 10*time.Second, func() bool {
		s := last()
		return s.Total == 10 && reflect.DeepEqual(s.MissingMembers, []string{m3})
	}, func() string {
		return fmt.Sprintf("last sample %+v, want the cluster's 10 proxies, m3 missing", last())
	})

	// A failing query adds no sample (not this member's 3 as the
	// cluster's). The sampler is sequential: once a query that began
	// after the failure was set has been made, every earlier sample is in.
	ce.set(func(c *clusterEngine) { c.err = context.DeadlineExceeded })
	n := len(ce.calls())
	testutil.Eventually(t, 10*time.Second, "a failed sample", func() bool { return len(ce.calls()) >= n+1 })
	var before, after httpapi.PoolHistory
	f.getJSON("/v1/pool/history", &before)
	testutil.Eventually(t, 10*time.Second, "two more failed samples", func() bool { return len(ce.calls()) >= n+3 })
	f.getJSON("/v1/pool/history", &after)
	if len(after.Samples) != len(before.Samples) {
		t.Errorf("%d samples added while the cluster query failed: %+v", len(after.Samples)-len(before.Samples), after.Samples[len(before.Samples):])
	}

	ce.set(func(c *clusterEngine) { c.member = false })
	testutil.EventuallyExplain(t, 10*time.Second, func() bool {
		s := last()
		return s.Total == 3 && s.MissingMembers == nil
	}, func() string { return fmt.Sprintf("last sample %+v, want the local 3 proxies", last()) })
}
