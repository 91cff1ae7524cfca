package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/proxyhealth/proxyhealth"
)

func (s *Server) pool(w http.ResponseWriter, r *http.Request) {
	clustered, ok := s.scope(w, r)
	if !ok {
		return
	}
	pa := poolAnswers.Get().(*poolAnswer)
	defer pa.release()
	var sum proxyhealth.Summary
	var ans *ClusterAnswer
	if clustered {
		cs, a, err := s.cluster.ClusterSummary(r.Context())
		if err != nil {
			s.clusterQueryError(w, r, err, commandTarget{check: "GET /v1/pool?scope=local"})
			return
		}
		sum, ans = cs, clusterAnswerOf(a)
		setMissing(w, ans)
	} else {
		sum = pa.summary(s.status)
	}
	h, hasH := pa.health(s)
	p := pa.fill(sum, h, hasH)
	p.ClusterAnswer = ans
	writeAppended(w, http.StatusOK, p)
}

func (s *Server) listProxies(w http.ResponseWriter, r *http.Request) {
	q := rawQuery(r.URL.RawQuery)
	f := proxyhealth.ListFilter{State: q.get("state"), Source: q.get("source"), Tag: q.get("tag"), Anonymity: q.get("anonymity")}
	if f.Anonymity != "" && !validAnonymity(f.Anonymity) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("anonymity=%q is not a level; use transparent, anonymous or elite", f.Anonymity))
		return
	}
	if f.State != "" {
		if _, ok := proxyhealth.ParseState(f.State); !ok {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("state=%q is not a state; use unknown, healthy, degraded, unhealthy, recovering or failed", f.State))
			return
		}
	}
	limit, ok := intParam(w, q.get("limit"), "limit", DefaultListLimit, 0, MaxListLimit)
	if !ok {
		return
	}
	offset, ok := intParam(w, q.get("offset"), "offset", 0, 0, 1<<31-1)
	if !ok {
		return
	}
	clustered, ok := s.scopeOf(w, q.get("scope"))
	if !ok {
		return
	}
	var total int
	var views []proxyhealth.ProxyView
	var ans *ClusterAnswer
	page := listPages.Get().(*listPage)
	defer page.release()
	if clustered {
		var a proxyhealth.ClusterAnswer
		var err error
		total, views, a, err = s.cluster.ClusterList(r.Context(), f, offset, limit)
		if err != nil {
			s.clusterQueryError(w, r, err, commandTarget{check: "GET /v1/proxies?scope=local"})
			return
		}
		ans = clusterAnswerOf(a)
		setMissing(w, ans)
	} else if la, ok := s.status.(proxyhealth.ListAppender); ok {
		total, page.views = la.AppendList(page.views[:0], f, offset, limit)
		views = page.views
	} else {
		total, views = s.status.List(f, offset, limit)
	}
	writeAppended(w, http.StatusOK, ProxyList{Total: total, Proxies: page.proxies(views), ClusterAnswer: ans})
}

// intParam parses an optional integer query parameter within [lo, hi].
func intParam(w http.ResponseWriter, raw, name string, def, lo, hi int) (int, bool) {
	if raw == "" {
		return def, true
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < lo || n > hi {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%s=%q: want an integer from %d to %d", name, raw, lo, hi))
		return 0, false
	}
	return n, true
}

// rawQuery is a request's raw query, read as url.Values.Get reads what
// url.ParseQuery makes of it (the first valid pair with the key; pairs
// with a semicolon or a bad escape skipped) without building the map:
// GET /v1/proxies asks for seven parameters of a short query, and the map
// was about 440 bytes of garbage a request.
type rawQuery string

// get returns the first value of key, "" if there is none.
func (q rawQuery) get(key string) string {
	for rest := string(q); rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		if pair == "" || strings.Contains(pair, ";") {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		if strings.ContainsAny(k, "%+") {
			var err error
			if k, err = url.QueryUnescape(k); err != nil {
				continue
			}
		}
		if k != key {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			u, err := url.QueryUnescape(v)
			if err != nil {
				continue // ParseQuery drops the pair: a later one may count
			}
			return u
		}
		return v
	}
	return ""
}

// proxyID resolves the {id} path value, a proxy ID or a proxy URL
// (path-escaped), to the proxy's ID like the engine does
// (proxyhealth.ResolveProxyID). Neither is no proxy: false, answered with
// 404.
func proxyID(w http.ResponseWriter, r *http.Request) (string, bool) {
	raw := r.PathValue("id")
	id, err := proxyhealth.ResolveProxyID(raw)
	if err != nil {
		shown := strconv.Quote(limit(raw))
		if strings.Contains(raw, "@") { // it may hold credentials
			shown = "(a URL with user info, not shown)"
		}
		writeError(w, http.StatusNotFound, fmt.Sprintf("no proxy %s: it is neither a proxy ID (16 hex digits) nor a proxy URL; list them with GET /v1/proxies", shown))
		return "", false
	}
	return id, true
}

func (s *Server) getProxy(w http.ResponseWriter, r *http.Request) {
	id, ok := proxyID(w, r)
	if !ok {
		return
	}
	v, ok := s.status.Proxy(id)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no proxy %q; list them with GET /v1/proxies%s", id, s.elsewhereHint()))
		return
	}
	checks, err := s.eng.CheckHistory(r.Context(), id, time.Time{})
	if err != nil {
		s.engineError(w, r, err, proxyCheck(id))
		return
	}
	d := ProxyDetail{Proxy: ProxyOf(v), History: []Check{}, StateChanges: []StateChange{}}
	for _, c := range checks {
		d.History = append(d.History, checkOf(c))
	}
	for _, c := range s.status.StateChanges(id, MaxStateChanges) {
		d.StateChanges = append(d.StateChanges, stateChangeOf(c))
	}
	writeJSON(w, http.StatusOK, d)
}

// AddRequest is the body of POST /v1/proxies.
type AddRequest struct {
	// URL is the proxy URL, optionally with user:pass@ (never echoed).
	URL string `json:"url"`
	// Source is the source to add it to; "" means "default".
	Source string `json:"source"`
}

// AddResponse is the body of a successful POST /v1/proxies.
type AddResponse struct {
	ID     string `json:"id"`
	URL    string `json:"url"`
	Source string `json:"source"`
}

func (s *Server) addProxy(w http.ResponseWriter, r *http.Request) {
	var req AddRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.URL == "" {
		writeError(w, http.StatusBadRequest, `missing "url": send {"url": "http://host:port", "source": "name"}`)
		return
	}
	u, err := proxyhealth.ParseProxy(req.URL)
	if err != nil {
		// The URL is the request, not a configuration file: no
		// "invalid config" prefix.
		writeError(w, http.StatusBadRequest, strings.TrimPrefix(err.Error(), proxyhealth.ErrBadConfig.Error()+": "))
		return
	}
	id, err := s.eng.AddProxy(r.Context(), req.Source, req.URL)
	if err != nil {
		s.engineError(w, r, err, proxyCheck(u.ID))
		return
	}
	src := req.Source
	if src == "" {
		src = "default"
	}
	w.Header().Set("Location", "/v1/proxies/"+id)
	writeJSON(w, http.StatusCreated, AddResponse{ID: id, URL: u.Redacted, Source: src})
}

// ActionResponse is the body of a successful delete, revive, pause or
// resume (of a source or the pool: Source; of one proxy: ID).
type ActionResponse struct {
	// Status is "removed", "revived", "paused" or "resumed".
	Status string `json:"status"`
	ID     string `json:"id,omitempty"`
	// Source is the source paused or resumed; empty means every source.
	Source string `json:"source,omitempty"`
}

func (s *Server) removeProxy(w http.ResponseWriter, r *http.Request) {
	id, ok := proxyID(w, r)
	if !ok {
		return
	}
	if err := s.eng.RemoveProxy(r.Context(), id); err != nil {
		s.engineError(w, r, err, proxyCheck(id))
		return
	}
	writeJSON(w, http.StatusOK, ActionResponse{Status: "removed", ID: id})
}

func (s *Server) revive(w http.ResponseWriter, r *http.Request) {
	id, ok := proxyID(w, r)
	if !ok {
		return
	}
	if err := s.eng.Revive(r.Context(), id); err != nil {
		s.engineError(w, r, err, proxyCheck(id))
		return
	}
	writeJSON(w, http.StatusOK, ActionResponse{Status: "revived", ID: id})
}

func (s *Server) pause(w http.ResponseWriter, r *http.Request) {
	src := r.URL.Query().Get("source")
	if err := s.eng.Pause(r.Context(), src); err != nil {
		s.engineError(w, r, err, sourceCheck(src))
		return
	}
	writeJSON(w, http.StatusOK, ActionResponse{Status: "paused", Source: src})
}

func (s *Server) resume(w http.ResponseWriter, r *http.Request) {
	src := r.URL.Query().Get("source")
	if err := s.eng.Resume(r.Context(), src); err != nil {
		s.engineError(w, r, err, sourceCheck(src))
		return
	}
	writeJSON(w, http.StatusOK, ActionResponse{Status: "resumed", Source: src})
}

func (s *Server) pauseProxy(w http.ResponseWriter, r *http.Request) {
	id, ok := proxyID(w, r)
	if !ok {
		return
	}
	if err := s.eng.PauseProxy(r.Context(), id); err != nil {
		s.engineError(w, r, err, proxyCheck(id))
		return
	}
	writeJSON(w, http.StatusOK, ActionResponse{Status: "paused", ID: id})
}

func (s *Server) resumeProxy(w http.ResponseWriter, r *http.Request) {
	id, ok := proxyID(w, r)
	if !ok {
		return
	}
	if err := s.eng.ResumeProxy(r.Context(), id); err != nil {
		s.engineError(w, r, err, proxyCheck(id))
		return
	}
	writeJSON(w, http.StatusOK, ActionResponse{Status: "resumed", ID: id})
}

// reload runs Options.Reload and answers the diff it applied.
func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	if s.opts.Reload == nil {
		writeError(w, http.StatusNotImplemented, "this server has no configuration to reload (Options.Reload is not set: the demo, or an embedding program that did not provide it)")
		return
	}
	diff, err := s.opts.Reload(r.Context())
	if errors.Is(err, proxyhealth.ErrBadConfig) {
		writeError(w, http.StatusBadRequest, err.Error()+"; the running configuration is unchanged: fix the file and reload again")
		return
	}
	if err != nil {
		s.engineError(w, r, err, commandTarget{check: "GET /v1/proxies", many: true})
		return
	}
	for _, l := range []*[]string{&diff.Added, &diff.Removed, &diff.Changed} {
		if *l == nil {
			*l = []string{}
		}
	}
	writeJSON(w, http.StatusOK, diff)
}

// commandTarget is what a command acts on, for the messages of its
// errors.
type commandTarget struct {
	// check is the request that shows whether the command took effect.
	check string
	// many is true for commands to many proxies (pause, resume), which
	// some proxies may take and others not.
	many bool
}

// proxyCheck is the target of a command to one proxy.
func proxyCheck(id string) commandTarget {
	return commandTarget{check: "GET /v1/proxies/" + url.PathEscape(id)}
}

// sourceCheck is the target of a pause or resume of src ("" for all
// sources).
func sourceCheck(src string) commandTarget {
	if src == "" {
		return commandTarget{check: `GET /v1/proxies (each proxy's "paused")`, many: true}
	}
	return commandTarget{check: "GET /v1/proxies?source=" + url.QueryEscape(src) + ` (each proxy's "paused")`, many: true}
}

// validAnonymity reports whether name is an anonymity level.
func validAnonymity(name string) bool {
	return name == "transparent" || name == "anonymous" || name == "elite"
}

// confirmSource applies the list a source holds because it shrank by more
// than its shrink guard (GET /v1/pool shows held_list).
func (s *Server) confirmSource(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := s.eng.ConfirmSource(r.Context(), name); err != nil {
		s.engineError(w, r, err, commandTarget{check: "GET /v1/pool (sources." + name + ".held_list)"})
		return
	}
	writeJSON(w, http.StatusOK, ActionResponse{Status: "confirmed", Source: name})
}

// refreshSource reads a source's list now and answers once it is applied.
func (s *Server) refreshSource(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := s.eng.RefreshSource(r.Context(), name); err != nil {
		s.engineError(w, r, err, commandTarget{check: "GET /v1/pool (sources." + name + ".last_refresh)"})
		return
	}
	writeJSON(w, http.StatusOK, ActionResponse{Status: "refreshed", Source: name})
}
