package httpapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
)

// Endpoint is one endpoint of the API and the query parameters it
// accepts; any other query parameter is refused with 400.
type Endpoint struct {
	// Method and Path as in the documentation ("POST",
	// "/v1/proxies/{id}/pause").
	Method, Path string
	// Params are the accepted query parameters (none when empty).
	Params []string
	// Open endpoints are served without the bearer token.
	Open bool
	// Body is true for the endpoints that take a JSON body; the others
	// accept none (an empty body or {}).
	Body bool
}

// route is an Endpoint with its handler and the hint given with an
// unknown query parameter.
type route struct {
	Endpoint
	h    http.HandlerFunc
	hint map[string]string // unknown parameter → what to do instead
}

// routes is the one list of endpoints and what they accept.
func (s *Server) routes() []route {
	pauseHint := map[string]string{
		"proxy": "to pause or resume one proxy use POST /v1/proxies/{id}/pause or /resume",
		"id":    "to pause or resume one proxy use POST /v1/proxies/{id}/pause or /resume",
	}
	ep := func(method, path string, params ...string) Endpoint {
		return Endpoint{Method: method, Path: path, Params: params}
	}
	return []route{
		{Endpoint: Endpoint{Method: "GET", Path: "/healthz", Open: true}, h: s.healthz},
		{Endpoint: Endpoint{Method: "GET", Path: "/", Open: true}, h: s.dashboard},
		{Endpoint: ep("GET", "/metrics"), h: s.serveMetrics},
		{Endpoint: ep("GET", "/v1/pool", "scope"), h: s.pool},
		{Endpoint: ep("GET", "/v1/pool/history"), h: s.poolHistory},
		{Endpoint: ep("GET", "/v1/proxies", "state", "source", "tag", "anonymity", "limit", "offset", "scope"), h: s.listProxies},
		{Endpoint: ep("GET", "/v1/proxies/{id}"), h: s.getProxy},
		{Endpoint: ep("GET", "/v1/proxies/{id}/story", "limit"), h: s.story},
		{Endpoint: Endpoint{Method: "POST", Path: "/v1/proxies", Body: true}, h: s.addProxy},
		{Endpoint: ep("DELETE", "/v1/proxies/{id}"), h: s.removeProxy},
		{Endpoint: ep("POST", "/v1/proxies/{id}/revive"), h: s.revive},
		{Endpoint: ep("POST", "/v1/proxies/{id}/pause"), h: s.pauseProxy},
		{Endpoint: ep("POST", "/v1/proxies/{id}/resume"), h: s.resumeProxy},
		{Endpoint: Endpoint{Method: "POST", Path: "/v1/proxies/{id}/outcome", Body: true}, h: s.outcome},
		{Endpoint: ep("GET", "/v1/pick", "strategy", "source", "scheme", "tag", "anonymity", "key", "n", "credentials", "scope"), h: s.pick},
		{Endpoint: ep("GET", "/v1/traffic"), h: s.traffic},
		{Endpoint: ep("POST", "/v1/pause", "source"), h: s.pause, hint: pauseHint},
		{Endpoint: ep("POST", "/v1/resume", "source"), h: s.resume, hint: pauseHint},
		{Endpoint: ep("POST", "/v1/reload"), h: s.reload},
		{Endpoint: ep("POST", "/v1/sources/{name}/confirm"), h: s.confirmSource},
		{Endpoint: ep("POST", "/v1/sources/{name}/refresh"), h: s.refreshSource},
		{Endpoint: ep("GET", "/v1/events", "last_event_id", "type", "source", "proxy", "notify"), h: s.events},
		{Endpoint: ep("GET", "/v1/journal", "proxy", "type", "source", "since", "until", "after", "limit"), h: s.journal},
	}
}

// Endpoints lists every endpoint of the API with the query parameters it
// accepts, in the order of the package documentation.
func Endpoints() []Endpoint {
	s := &Server{}
	var out []Endpoint
	for _, r := range s.routes() {
		e := r.Endpoint
		e.Params = slices.Clone(e.Params)
		out = append(out, e)
	}
	return out
}

// handler wraps a route's handler with the token check (unless open), the
// query parameter check and, for endpoints without a body, the empty-body
// check.
func (s *Server) handler(rt route) http.Handler {
	what := rt.Method + " " + rt.Path
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !checkParams(w, r, what, rt.Params, rt.hint) {
			return
		}
		if !rt.Body && !safeMethod(r.Method) && !noBody(w, r, what) {
			return
		}
		rt.h(w, r)
	})
	if rt.Open {
		return h
	}
	return s.auth(h)
}

// checkParams answers 400 when the query has a parameter the endpoint
// does not accept, one given more than once, or cannot be parsed; false
// means the request was answered.
func checkParams(w http.ResponseWriter, r *http.Request, what string, accepted []string, hint map[string]string) bool {
	if r.URL.RawQuery == "" {
		return true
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("malformed query string: %v", err))
		return false
	}
	var unknown []string
	for k, v := range q {
		if !slices.Contains(accepted, k) {
			unknown = append(unknown, k)
			continue
		}
		if len(v) > 1 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("query parameter %q is given %d times; give it once", limit(k), len(v)))
			return false
		}
	}
	if len(unknown) == 0 {
		return true
	}
	sort.Strings(unknown)
	quoted := make([]string, len(unknown))
	for i, k := range unknown {
		quoted[i] = fmt.Sprintf("%q", limit(k))
	}
	noun := "parameter"
	if len(unknown) > 1 {
		noun = "parameters"
	}
	msg := fmt.Sprintf("unknown query %s %s for %s", noun, strings.Join(quoted, ", "), what)
	if len(accepted) == 0 {
		msg += " (it accepts none)"
	} else {
		msg += " (it accepts " + strings.Join(accepted, ", ") + ")"
	}
	for _, k := range unknown {
		if h := hint[k]; h != "" {
			msg += "; " + h
			break
		}
	}
	writeError(w, http.StatusBadRequest, msg)
	return false
}

// noBody accepts a request without a body, or whose body is an empty JSON
// object (or only white space); anything else answers 400 naming the
// unknown fields. false means the request was answered.
func noBody(w http.ResponseWriter, r *http.Request, what string) bool {
	if r.Body == nil || r.Body == http.NoBody {
		return true
	}
	b, err := io.ReadAll(r.Body)
	if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", mbe.Limit))
		return false
	} else if err != nil {
		writeError(w, http.StatusBadRequest, "reading the request body: "+err.Error())
		return false
	}
	if strings.TrimSpace(string(b)) == "" {
		return true
	}
	var empty struct{}
	if err := decodeJSON(strings.NewReader(string(b)), &empty); err != nil {
		writeError(w, http.StatusBadRequest, err.Error()+"; "+what+" takes no body fields")
		return false
	}
	return true
}

// serveMetrics serves the Prometheus metrics.
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) { s.metricsH.ServeHTTP(w, r) }
