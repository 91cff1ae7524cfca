package httpapi

import (
	"net/http"
)

// StartingRetryAfter is the Retry-After (seconds) of the answers Starting
// gives.
const StartingRetryAfter = "1"

// Starting returns what a daemon serves on its API's address while its
// engine opens (a start may take seconds at 100,000 proxies, more after a
// crash that left a long journal to fold): every request is answered at
// once with 503 and Retry-After, instead of waiting unanswered in the
// listen queue. GET /healthz answers {"status": "starting", "version"},
// so that a load balancer or orchestrator tells a monitor that is
// starting from one that fails; everything else the usual error body.
// Only opts.AllowedHosts and opts.Version are used: requests for a host
// the API would refuse get its 421, and nothing else is checked, since
// the answers hold nothing but the version.
func Starting(opts Options) http.Handler {
	return &starting{hosts: newHostPolicy(opts.AllowedHosts), version: opts.Version}
}

type starting struct {
	hosts   hostPolicy
	version string
}

func (s *starting) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if !s.hosts.check(w, r) {
		return
	}
	w.Header().Set("Retry-After", StartingRetryAfter)
	if r.URL.Path == "/healthz" {
		writeJSON(w, http.StatusServiceUnavailable, Healthz{Status: "starting", Version: s.version})
		return
	}
	writeError(w, http.StatusServiceUnavailable, "proxyhealth is starting: it answers once its journal is open and its proxies are recovered; retry in a second (GET /healthz says \"starting\" until then)")
}
