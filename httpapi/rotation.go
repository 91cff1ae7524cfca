package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/proxyhealth/proxyhealth"
)

// MaxPickN is the largest ?n= of GET /v1/pick.
const MaxPickN = 100

// MaxOutcomeLatencyMS is the largest "latency_ms" of POST
// /v1/proxies/{id}/outcome (one day).
const MaxOutcomeLatencyMS = 24 * 3600 * 1000

// pickSchemes are the proxy schemes ?scheme= of GET /v1/pick accepts.
var pickSchemes = []string{"http", "https", "socks4", "socks4a", "socks5", "socks5h"}

// PickedProxy is a proxy handed out by GET /v1/pick: the body for n=1,
// an element of the array for n>1.
type PickedProxy struct {
	ID     string `json:"id"`
	Scheme string `json:"scheme"`
	Host   string `json:"host"`
	Port   int    `json:"port"`
	// State is the proxy's health state when it was picked.
	State  string `json:"state"`
	Source string `json:"source"`
	// Panic is true when the pick was made in panic mode: too few of the
	// matching proxies were usable, so a least-bad one was handed out.
	Panic bool `json:"panic"`
	// URL is the proxy's full URL, credentials included. It is present
	// only when the server has a token (Options.Token) and the request
	// asked for it with ?credentials=true.
	URL string `json:"url,omitempty"`
	// ClusterAnswer is set on a cluster-wide pick (n=1 on a cluster
	// member without scope=local): the members asked, and those that did
	// not answer.
	ClusterAnswer *ClusterAnswer `json:"cluster_answer,omitempty"`
}

// pickedOf converts a pick; the URL (with credentials) only when creds.
func pickedOf(p proxyhealth.Picked, creds bool) PickedProxy {
	out := PickedProxy{ID: p.ID, Scheme: p.Scheme, Host: p.Host, Port: p.Port, State: p.State.String(), Source: p.Source, Panic: p.Panic}
	if creds && p.URL != nil {
		out.URL = p.URL.String()
	}
	return out
}

// pick serves GET /v1/pick.
func (s *Server) pick(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := proxyhealth.PickRequest{Strategy: proxyhealth.Strategy(q.Get("strategy")), Key: q.Get("key"),
		Source: q.Get("source"), Scheme: q.Get("scheme"), Tag: q.Get("tag")}
	if a := q.Get("anonymity"); a != "" {
		if !validAnonymity(a) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("anonymity=%q is not a level; use transparent, anonymous or elite", limit(a)))
			return
		}
		if req.Tag != "" {
			writeError(w, http.StatusBadRequest, "give tag= or anonymity=, not both: a pick filters on one of them")
			return
		}
		req.Tag = proxyhealth.AnonymityTagPrefix + a
	}
	if req.Strategy != "" && !slices.Contains(proxyhealth.Strategies, req.Strategy) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("strategy=%q is not a strategy; use one of %s (or none for the server's default)",
			limit(string(req.Strategy)), strategyList()))
		return
	}
	if req.Strategy == proxyhealth.Sticky && req.Key == "" {
		writeError(w, http.StatusBadRequest, "strategy=sticky needs key=: the session key that keeps its proxy while that proxy stays usable")
		return
	}
	if req.Scheme != "" && !slices.Contains(pickSchemes, req.Scheme) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("scheme=%q is not a proxy scheme; use one of %s", limit(req.Scheme), strings.Join(pickSchemes, ", ")))
		return
	}
	n, ok := intParam(w, q.Get("n"), "n", 1, 1, MaxPickN)
	if !ok {
		return
	}
	creds := false
	switch v := q.Get("credentials"); v {
	case "", "false":
	case "true":
		if s.opts.Token == "" {
			writeError(w, http.StatusForbidden, "credentials=true is refused: this server runs without a bearer token (--token, Options.Token), "+
				"so anyone who can reach it could read the proxies' passwords; run it with a token to get full URLs, or pick without credentials=true")
			return
		}
		creds = true
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("credentials=%q: want true or false", limit(v)))
		return
	}

	clustered, ok := s.scope(w, r)
	if !ok {
		return
	}
	if clustered && n > 1 {
		if q.Get("scope") == ScopeCluster {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("n=%d with scope=cluster: several proxies are picked from this member only; use n=1 for a cluster-wide pick, or scope=local", n))
			return
		}
		clustered = false
		w.Header().Set(ScopeHeader, ScopeLocal)
	}

	strat := req.Strategy
	if n == 1 && clustered {
		p, a, err := s.cluster.ClusterPick(r.Context(), req)
		ans := clusterAnswerOf(a)
		setMissing(w, ans)
		if err != nil {
			if errors.Is(err, proxyhealth.ErrNoProxy) {
				s.metrics.countNoProxy(strat)
				writeError(w, http.StatusServiceUnavailable, "no usable proxy in the cluster: no proxy matches the filters, or every match is paused or failed; GET /v1/pool and GET /v1/proxies show the pool"+missingText(ans))
				return
			}
			if errors.Is(err, proxyhealth.ErrClusterQuery) {
				s.clusterQueryError(w, r, err, commandTarget{check: "GET /v1/pool"})
				return
			}
			s.pickError(w, strat, err)
			return
		}
		s.metrics.countPick(strat, p.Panic)
		out := pickedOf(p, creds)
		out.ClusterAnswer = ans
		writeJSON(w, http.StatusOK, out)
		return
	}
	if n == 1 {
		p, err := s.eng.Pick(req)
		if err != nil {
			s.pickError(w, strat, err)
			return
		}
		s.metrics.countPick(strat, p.Panic)
		writeJSON(w, http.StatusOK, pickedOf(p, creds))
		return
	}
	dst := make([]proxyhealth.Picked, n)
	k, err := s.eng.PickN(req, dst)
	if err != nil {
		s.pickError(w, strat, err)
		return
	}
	out := make([]PickedProxy, k)
	panicked := false
	for i, p := range dst[:k] {
		out[i] = pickedOf(p, creds)
		panicked = panicked || p.Panic
	}
	s.metrics.countPick(strat, panicked)
	writeJSON(w, http.StatusOK, out)
}

// pickError answers a failed pick: 503 when nothing can be handed out, 400
// for a request the picker refused (the server's default strategy is
// sticky and no key was given).
func (s *Server) pickError(w http.ResponseWriter, strat proxyhealth.Strategy, err error) {
	if errors.Is(err, proxyhealth.ErrNoProxy) {
		s.metrics.countNoProxy(strat)
		writeError(w, http.StatusServiceUnavailable, "no usable proxy: no proxy matches the filters, or every match is paused or failed; GET /v1/pool and GET /v1/proxies show the pool")
		return
	}
	writeError(w, http.StatusBadRequest, err.Error())
}

func strategyList() string {
	names := make([]string, len(proxyhealth.Strategies))
	for i, st := range proxyhealth.Strategies {
		names[i] = string(st)
	}
	return strings.Join(names, ", ")
}

// OutcomeRequest is the body of POST /v1/proxies/{id}/outcome: what real
// traffic saw through the proxy.
type OutcomeRequest struct {
	// OK (required) is true when the proxy did its job, also when the
	// target answered with an error through it.
	OK *bool `json:"ok"`
	// ErrorClass names the proxy's own failure (proxyhealth.OutcomeClasses);
	// it must be empty when OK is true, and empty means "other" when OK is
	// false.
	ErrorClass string `json:"error_class"`
	// LatencyMS is how long the request took through the proxy (0: not
	// measured).
	LatencyMS float64 `json:"latency_ms"`
}

// outcome serves POST /v1/proxies/{id}/outcome.
func (s *Server) outcome(w http.ResponseWriter, r *http.Request) {
	id, ok := proxyID(w, r)
	if !ok {
		return
	}
	var req OutcomeRequest
	if !decodeBody(w, r, &req) {
		return
	}
	classes := strings.Join(proxyhealth.OutcomeClasses, ", ")
	switch {
	case req.OK == nil:
		writeError(w, http.StatusBadRequest, `missing "ok": send {"ok": true} or {"ok": false, "error_class": "timeout"}`)
		return
	case *req.OK && req.ErrorClass != "":
		writeError(w, http.StatusBadRequest, fmt.Sprintf(`"error_class" is %q but "ok" is true: a success has no error class; leave it out, or send "ok": false`, limit(req.ErrorClass)))
		return
	case !*req.OK && req.ErrorClass != "" && !slices.Contains(proxyhealth.OutcomeClasses, req.ErrorClass):
		writeError(w, http.StatusBadRequest, fmt.Sprintf(`"error_class" %q is not a failure class of a proxy; use one of %s`, limit(req.ErrorClass), classes))
		return
	case req.LatencyMS < 0 || req.LatencyMS > MaxOutcomeLatencyMS:
		writeError(w, http.StatusBadRequest, fmt.Sprintf(`"latency_ms" %v: want milliseconds from 0 to %d`, req.LatencyMS, MaxOutcomeLatencyMS))
		return
	}
	o := proxyhealth.Outcome{ProxyID: id, OK: *req.OK, Class: req.ErrorClass,
		Latency: time.Duration(req.LatencyMS * float64(time.Millisecond))}
	if err := s.eng.ReportOutcome(o); err != nil {
		if errors.Is(err, proxyhealth.ErrBadOutcome) {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		s.engineError(w, r, err, proxyCheck(id))
		return
	}
	class := req.ErrorClass
	if !*req.OK && class == "" {
		class = "other"
	}
	s.metrics.countOutcome(*req.OK, class)
	writeJSON(w, http.StatusAccepted, ActionResponse{Status: "reported", ID: id})
}

// TrafficStats are the counters of the rotating forward-proxy endpoint
// since it started (endpoint.Stats, field for field). Every client request
// (an absolute-form HTTP request, a CONNECT, a SOCKS CONNECT) ends in
// exactly one of OK, Failed, NoProxy, AuthFailed or BadRequest.
type TrafficStats struct {
	// OK counts requests forwarded (any status from the target) and
	// tunnels established, after retries or not.
	OK uint64 `json:"ok"`
	// Failed counts requests answered 502 (or a SOCKS failure) because
	// every attempted upstream failed.
	Failed uint64 `json:"failed"`
	// NoProxy counts requests answered 503 because no upstream was usable.
	NoProxy uint64 `json:"no_proxy"`
	// AuthFailed counts clients refused for missing or bad credentials.
	AuthFailed uint64 `json:"auth_failed"`
	// BadRequest counts malformed or unsupported requests.
	BadRequest uint64 `json:"bad_request"`
	// Retries counts attempts on another upstream after a failed one.
	Retries uint64 `json:"retries"`
	// ActiveConns is the number of client connections open now; Conns the
	// number accepted.
	ActiveConns int64  `json:"active_conns"`
	Conns       uint64 `json:"conns"`
	// BytesUp counts bytes from clients to upstreams, BytesDown the bytes
	// back (bodies and tunnel traffic, not heads).
	BytesUp   uint64 `json:"bytes_up"`
	BytesDown uint64 `json:"bytes_down"`
}

// Traffic is the body of GET /v1/traffic: the rotating endpoint's
// counters and the state of rotation, for the dashboard's traffic panel.
type Traffic struct {
	// At is when the numbers were read; rates are differences of two
	// answers divided by the difference of their At.
	At time.Time `json:"at"`
	// Endpoint holds the rotating endpoint's counters; null when the
	// server has no rotating endpoint (Options.Traffic is nil).
	Endpoint *TrafficStats `json:"endpoint"`
	// PanicMode is true while picks are made in panic mode (too few of the
	// pool's unpaused proxies are usable); Usable and Candidates are the
	// counts it was decided from.
	PanicMode  bool `json:"panic_mode"`
	Usable     int  `json:"usable"`
	Candidates int  `json:"candidates"`
	// Ejected is how many proxies passive outlier detection holds out of
	// rotation now, EjectionLimit how many it may (the maximum ejection
	// share of the pool).
	Ejected       int `json:"ejected"`
	EjectionLimit int `json:"ejection_limit"`
}

// traffic serves GET /v1/traffic.
func (s *Server) traffic(w http.ResponseWriter, _ *http.Request) {
	ps := s.eng.Panic()
	ej, lim := s.eng.Ejections()
	t := Traffic{At: s.opts.Now().UTC(), PanicMode: ps.Active, Usable: ps.Usable, Candidates: ps.Candidates, Ejected: ej, EjectionLimit: lim}
	if s.opts.Traffic != nil {
		st := s.opts.Traffic()
		t.Endpoint = &st
	}
	writeJSON(w, http.StatusOK, t)
}
