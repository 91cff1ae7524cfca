package httpapi

import (
	"net/http"
	"slices"
	"time"

	"github.com/proxyhealth/proxyhealth"
)

// JournalStatus is the journal's write condition in GET /v1/pool and
// GET /healthz.
type JournalStatus struct {
	// Status is "ok" when the journal takes writes, "failing" from a
	// failed commit until the next commit that succeeds. While failing,
	// checks go on but their results are not recorded, and commands
	// answer 503.
	Status string `json:"status"`
	// Error is the last failed commit's error ("" when ok).
	Error string `json:"error,omitempty"`
	// Since is when the current failure began (null when ok).
	Since *time.Time `json:"since"`
	// FailedCommits counts the failed commits since the engine started.
	FailedCommits uint64 `json:"failed_commits"`
	// LastCommitAt is the time of the last successful commit (null
	// before the first).
	LastCommitAt *time.Time `json:"last_commit_at"`
	// Head is the highest committed journal seq.
	Head uint64 `json:"head"`
}

// ProjectionStatus is one projection's condition in GET /v1/pool and
// GET /healthz.
type ProjectionStatus struct {
	// Name is the projection's name ("live status", "sqlite view", …).
	Name string `json:"name"`
	// State is "running", "failing" (retrying), "rebuilding" or
	// "stopped" (no longer follows the journal).
	State string `json:"state"`
	// Error is the last error while not running ("" otherwise).
	Error string `json:"error,omitempty"`
	// Since is when the projection left the running state (null while
	// running).
	Since *time.Time `json:"since"`
	// Seq is the last journal seq the projection applied; Lag is the
	// journal head minus Seq (both 0 for projections without an offset).
	Seq uint64 `json:"seq"`
	Lag uint64 `json:"lag"`
}

// Healthz is the body of GET /healthz.
type Healthz struct {
	// Status is "ok" (answered with 200), "failing" (503), or "starting"
	// (503, from Starting: the engine is not open yet; nothing else is
	// set).
	Status string `json:"status"`
	// Version is Options.Version.
	Version string `json:"version"`
	// Causes lists, one line each, what makes the engine unhealthy
	// (absent when ok).
	Causes []string `json:"causes,omitempty"`
	// Journal and Projections are the engine's condition (absent when
	// the engine does not report its health).
	Journal     *JournalStatus     `json:"journal,omitempty"`
	Projections []ProjectionStatus `json:"projections,omitempty"`
	// Cluster is this member's view of its cluster (absent outside one).
	Cluster *proxyhealth.ClusterStatus `json:"cluster,omitempty"`
}

// healthOf converts the engine's health to the API's journal and
// projections.
func healthOf(h proxyhealth.Health) (*JournalStatus, []ProjectionStatus) {
	j := new(JournalStatus)
	return j, healthInto(j, make([]ProjectionStatus, 0, len(h.Projections)), h, timePtr)
}

// healthInto sets *j to h's journal and appends h's projections to ps,
// taking the times' pointers from at.
func healthInto(j *JournalStatus, ps []ProjectionStatus, h proxyhealth.Health, at func(time.Time) *time.Time) []ProjectionStatus {
	*j = JournalStatus{Status: "ok", Error: h.Journal.Error, Since: at(h.Journal.Since),
		FailedCommits: h.Journal.FailedCommits, LastCommitAt: at(h.Journal.LastCommitAt), Head: h.Journal.Head}
	if h.Journal.Failing {
		j.Status = "failing"
	}
	for _, p := range h.Projections {
		ps = append(ps, ProjectionStatus{Name: p.Name, State: p.State, Error: p.Error, Since: at(p.Since), Seq: p.Seq, Lag: p.Lag})
	}
	return ps
}

// withheld replaces the error texts of an unauthenticated /healthz.
const withheld = "reason withheld: send the bearer token to see it"

// healthz answers 200 when the engine is healthy (or does not report its
// health) and 503 with the causes otherwise. It needs no token; with a
// token configured, a request without it gets the states but not the
// error texts (which may name files and hosts).
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	body := Healthz{Status: "ok", Version: s.opts.Version}
	h, ok := s.health(nil)
	if !ok {
		writeJSON(w, http.StatusOK, body)
		return
	}
	if !s.authorized(r) {
		if h.Journal.Error != "" {
			h.Journal.Error = withheld
		}
		h.Projections = slices.Clone(h.Projections)
		for i := range h.Projections {
			if h.Projections[i].Error != "" {
				h.Projections[i].Error = withheld
			}
		}
	}
	body.Journal, body.Projections = healthOf(h)
	body.Cluster = h.Cluster
	code := http.StatusOK
	if !h.OK {
		body.Status, body.Causes, code = "failing", h.Causes(), http.StatusServiceUnavailable
	}
	writeJSON(w, code, body)
}
