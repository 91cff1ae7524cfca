package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proxyhealth/proxyhealth"
)

// clusterProvider is an engine that may be a cluster member;
// *proxyhealth.Engine is one. Without it (or outside a cluster, when
// Cluster reports false) GET /v1/pool, /v1/proxies and /v1/pick answer for
// this engine only, and /metrics has no cluster gauges.
type clusterProvider interface {
	// Cluster is this member's view of its cluster; false outside one.
	Cluster() (proxyhealth.ClusterStatus, bool)
	// ClusterSummary, ClusterList and ClusterPick answer for every member
	// (fan-out with a deadline); the ClusterAnswer names the members that
	// answered and those that did not.
	ClusterSummary(ctx context.Context) (proxyhealth.Summary, proxyhealth.ClusterAnswer, error)
	ClusterList(ctx context.Context, f proxyhealth.ListFilter, offset, limit int) (int, []proxyhealth.ProxyView, proxyhealth.ClusterAnswer, error)
	ClusterPick(ctx context.Context, req proxyhealth.PickRequest) (proxyhealth.Picked, proxyhealth.ClusterAnswer, error)
}

// The values of ?scope= on GET /v1/pool, /v1/proxies and /v1/pick.
const (
	// ScopeCluster answers for every member of the cluster (the default
	// on a cluster member).
	ScopeCluster = "cluster"
	// ScopeLocal answers for this server's engine only (the default, and
	// the only scope, outside a cluster).
	ScopeLocal = "local"
)

// Response headers of the cluster-wide answers.
const (
	// ScopeHeader is set on every answer of GET /v1/pool, /v1/proxies and
	// /v1/pick: the scope the answer covers, "cluster" or "local".
	ScopeHeader = "X-Proxyhealth-Scope"
	// MissingMembersHeader lists, comma-separated and sorted, the members
	// whose part a cluster-wide answer lacks (absent when none is
	// missing); the body's cluster_answer.missing says why.
	MissingMembersHeader = "X-Proxyhealth-Missing-Members"
)

// ClusterAnswer says who a cluster-wide answer comes from: GET /v1/pool,
// /v1/proxies and /v1/pick carry it as "cluster_answer" when they answer
// for the cluster (absent with scope=local or outside a cluster).
type ClusterAnswer struct {
	// Members are the members whose part is in the answer (this one
	// included), sorted.
	Members []string `json:"members"`
	// Missing are the members that did not answer in time, with why:
	// their proxies are not in the answer.
	Missing []MissingMember `json:"missing"`
	// Shares is how many proxies each member that answered checks
	// (GET /v1/pool only).
	Shares map[string]int `json:"shares,omitempty"`
}

// MissingMember is a member whose part a cluster-wide answer lacks.
type MissingMember struct {
	// Member is the member's advertised cluster address.
	Member string `json:"member"`
	// Error says why its part is missing (timeout, unreachable, …).
	Error string `json:"error"`
}

// clusterAnswerOf converts the engine's answer (never nil slices, so the
// JSON always has both lists).
func clusterAnswerOf(a proxyhealth.ClusterAnswer) *ClusterAnswer {
	out := &ClusterAnswer{Members: append([]string{}, a.Members...), Missing: []MissingMember{}, Shares: a.Shares}
	for _, m := range a.Missing {
		out.Missing = append(out.Missing, MissingMember{Member: m.Member, Error: m.Error})
	}
	return out
}

// scope resolves ?scope= of r: true to answer for the whole cluster.
// scope=cluster outside a cluster and unknown values answer 400; false
// ok means the request was answered.
func (s *Server) scope(w http.ResponseWriter, r *http.Request) (cluster, ok bool) {
	return s.scopeOf(w, rawQuery(r.URL.RawQuery).get("scope"))
}

// scopeOf is scope for a request whose scope parameter is v (for a
// handler that has parsed the query already).
func (s *Server) scopeOf(w http.ResponseWriter, v string) (cluster, ok bool) {
	member := false
	if s.cluster != nil {
		_, member = s.cluster.Cluster()
	}
	switch v {
	case "":
		cluster = member
	case ScopeLocal:
	case ScopeCluster:
		if !member {
			writeError(w, http.StatusBadRequest, "scope=cluster: not a cluster member (this server runs without --cluster); omit scope, or use scope=local")
			return false, false
		}
		cluster = true
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("scope=%q is not a scope; use cluster (every member, the default on a cluster member) or local (this member only)", limit(v)))
		return false, false
	}
	if cluster {
		w.Header().Set(ScopeHeader, ScopeCluster)
	} else {
		w.Header().Set(ScopeHeader, ScopeLocal)
	}
	return cluster, true
}

// setMissing sets MissingMembersHeader when members are missing.
func setMissing(w http.ResponseWriter, a *ClusterAnswer) {
	if len(a.Missing) == 0 {
		return
	}
	names := make([]string, len(a.Missing))
	for i, m := range a.Missing {
		names[i] = m.Member
	}
	w.Header().Set(MissingMembersHeader, strings.Join(names, ","))
}

// missingText names the missing members for an error message ("" when
// none is).
func missingText(a *ClusterAnswer) string {
	if len(a.Missing) == 0 {
		return ""
	}
	parts := make([]string, len(a.Missing))
	for i, m := range a.Missing {
		parts[i] = m.Member + " (" + m.Error + ")"
	}
	return "; these members did not answer, so their proxies were not considered: " + strings.Join(parts, ", ")
}

// elsewhereHint is added to a 404 for a proxy this server does not know:
// on a cluster member, another member may check it ("" otherwise).
func (s *Server) elsewhereHint() string {
	if s.cluster == nil {
		return ""
	}
	if _, member := s.cluster.Cluster(); !member {
		return ""
	}
	return "; on a cluster member this shows only the proxies it checks itself and their journal: another member may check this one (its journal tells; GET /v1/proxies lists the whole cluster's)"
}

// clusterQueryError answers a failed cluster-wide query: 400 for a query
// the engine refused (ErrClusterQuery: a list page too deep), else as any
// engine error.
func (s *Server) clusterQueryError(w http.ResponseWriter, r *http.Request, err error, t commandTarget) {
	if errors.Is(err, proxyhealth.ErrClusterQuery) {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.engineError(w, r, err, t)
}

// NotOwnerBody is the body of a command answered 421 because another
// cluster member checks the proxy.
type NotOwnerBody struct {
	// Error is the engine's message; it names the owner.
	Error string `json:"error"`
	// Owner is the advertised cluster address of the member that checks
	// the proxy ("" if the engine's message did not name it). Send the
	// command to that member's API.
	Owner string `json:"owner"`
}

// ownerOf reads the owner's address from an ErrNotOwner error's message
// ("… is checked by member ADDR; …"); "" when it names none.
func ownerOf(err error) string {
	var no *proxyhealth.NotOwnerError
	if errors.As(err, &no) {
		return no.Member
	}
	return ""
}

// cluster gauges, per member (absent outside a cluster).
var (
	descClusterMembers = prometheus.NewDesc("proxyhealth_cluster_members",
		"Live cluster members this member sees (itself included).", nil, nil)
	descClusterFresh = prometheus.NewDesc("proxyhealth_cluster_membership_fresh",
		"1 while this member's membership lease is confirmed (it checks only then), else 0.", nil, nil)
	descClusterLost = prometheus.NewDesc("proxyhealth_cluster_membership_lost",
		"1 once this member lost its membership (it checks nothing more and must be restarted), else 0.", nil, nil)
	descClusterChecked = prometheus.NewDesc("proxyhealth_cluster_checked_proxies",
		"Proxies this member checks (its share of the cluster's).", nil, nil)
	descClusterConfigured = prometheus.NewDesc("proxyhealth_cluster_configured_proxies",
		"Proxies the shared configuration lists for the whole cluster.", nil, nil)
	descClusterReplicas = prometheus.NewDesc("proxyhealth_cluster_replicas",
		"Other members' proxy states this member holds for a takeover.", nil, nil)
)

// clusterCollector reports this member's view of its cluster at scrape
// time; nothing outside a cluster.
type clusterCollector struct{ c clusterProvider }

func (clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descClusterMembers, descClusterFresh, descClusterLost, descClusterChecked,
		descClusterConfigured, descClusterReplicas} {
		ch <- d
	}
}

func (c clusterCollector) Collect(ch chan<- prometheus.Metric) {
	st, ok := c.c.Cluster()
	if !ok {
		return
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	gauge(descClusterMembers, float64(len(st.Members)))
	gauge(descClusterFresh, b2f(st.Fresh))
	gauge(descClusterLost, b2f(st.Lost))
	gauge(descClusterChecked, float64(st.Checked))
	gauge(descClusterConfigured, float64(st.Configured))
	gauge(descClusterReplicas, float64(st.Replicas))
}
