package proxyhealth

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/proxyhealth/proxyhealth/actors"
	"github.com/proxyhealth/proxyhealth/journal"
)

// Errors of a write that the journal did not take.
var (
	// ErrJournalFailing wraps the error of a command that was not applied
	// because the journal could not commit it (disk full, I/O error).
	// Nothing of the command was written, and nothing of it is applied
	// later; it is safe to retry once the journal takes writes again
	// (Engine.Health tells). It is the actors' sentinel, so errors.Is
	// matches either name.
	ErrJournalFailing = actors.ErrJournalFailing
	// ErrOutcomeUnknown wraps the error of a command whose caller stopped
	// waiting (its context ended) before the journal said whether it was
	// written. Read the state back (Engine.Proxy, the live status) to
	// learn the outcome before retrying.
	ErrOutcomeUnknown = errors.New("proxyhealth: outcome unknown")
)

// Health is the engine's own condition, as /healthz reports it: whether
// the journal takes writes and whether every projection keeps up. A
// monitor that cannot record what it sees must say so instead of
// reporting "ok" with stale figures.
type Health struct {
	// OK is true when the journal takes writes and every projection is
	// running.
	OK bool
	// Journal is the journal's write condition.
	Journal JournalHealth
	// Projections are the folds of the journal, sorted by name.
	Projections []ProjectionHealth
	// Cluster is this member's cluster membership (nil outside a
	// cluster): not OK while its lease is unconfirmed (checks are held
	// back) or once it was lost.
	Cluster *ClusterStatus
	// Checkpoint is the condition of the live status checkpoint the
	// running engine saves (zero without a data directory, or with
	// Config.CheckpointEvery negative). It does not make the engine
	// unhealthy: the checkpoint is a cache.
	Checkpoint CheckpointHealth
}

// CheckpointHealth is the condition of the live status checkpoint
// (LiveCheckpointFile) that the running engine saves every
// Config.CheckpointEvery.
type CheckpointHealth struct {
	// Seq is the journal seq of the last checkpoint saved, or restored by
	// Open (0: none): a start after a crash folds the journal after it.
	Seq uint64
	// SavedAt is when the running engine last saved one (zero: not yet).
	SavedAt time.Time
	// Failing is true from a failed save until the next one succeeds;
	// Error is that failure ("" when not failing).
	Failing bool
	Error   string
	// Failures counts the saves that failed since Open.
	Failures uint64
}

// Causes lists, one line each, what makes the engine unhealthy (empty
// when OK).
func (h Health) Causes() []string {
	var out []string
	if h.Journal.Failing {
		out = append(out, fmt.Sprintf("journal: %d commits failed since %s: %s",
			h.Journal.FailedCommits-h.Journal.failedBefore, h.Journal.Since.UTC().Format(time.RFC3339), h.Journal.Error))
	}
	if c := h.Cluster; c != nil && c.Lost {
		out = append(out, "cluster: membership lost ("+c.Error+"): checks stopped; restart this member so that it rejoins")
	} else if c != nil && !c.Fresh {
		out = append(out, "cluster: membership not confirmed (is etcd reachable?): checks are held back until it is")
	}
	for _, p := range h.Projections {
		if p.State != ProjectionRunning {
			msg := fmt.Sprintf("projection %q is %s", p.Name, p.State)
			if !p.Since.IsZero() {
				msg += " since " + p.Since.UTC().Format(time.RFC3339)
			}
			if p.Error != "" {
				msg += ": " + p.Error
			}
			out = append(out, msg)
		}
	}
	return out
}

// JournalHealth is the journal's write condition.
type JournalHealth struct {
	// Failing is true from a failed commit until the next commit that
	// succeeds. While it is, checks go on but their results are not
	// recorded (nor announced), and commands fail with ErrJournalFailing.
	Failing bool
	// Error is the last failed commit's error ("" when not failing).
	Error string
	// Since is when the current failure episode began (zero when not
	// failing).
	Since time.Time
	// FailedCommits counts the failed commits since Open.
	FailedCommits uint64
	// LastCommitAt is the time of the last successful commit (zero before
	// the first).
	LastCommitAt time.Time
	// Head is the highest committed seq.
	Head uint64

	failedBefore uint64 // FailedCommits when the episode began
}

// Projection states.
const (
	// ProjectionRunning: the projection follows the journal.
	ProjectionRunning = "running"
	// ProjectionFailing: the projection cannot apply events (its store is
	// failing) and retries; it catches up when the cause goes away.
	ProjectionFailing = "failing"
	// ProjectionRebuilding: the projection's store was unusable and is
	// being rebuilt from the journal.
	ProjectionRebuilding = "rebuilding"
	// ProjectionStopped: the projection ended with an error and does not
	// follow the journal any more.
	ProjectionStopped = "stopped"
)

// ProjectionHealth is one projection's condition.
type ProjectionHealth struct {
	// Name is the projection's name ("live status", "sqlite view", "pool
	// monitor", "notifier").
	Name string
	// State is one of the Projection* constants.
	State string
	// Error is the last error while not running ("" otherwise).
	Error string
	// Since is when the projection left the running state.
	Since time.Time
	// Seq is the last journal seq the projection applied; Lag is the
	// journal head minus Seq. Both are 0 for projections that do not
	// track an offset.
	Seq, Lag uint64
}

// journalHealth tracks the journal's commits (fed by the bbolt journal's
// commit observer).
type journalHealth struct {
	mu sync.Mutex
	h  JournalHealth
}

func (t *journalHealth) observe(c journal.CommitStats, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c.Err != nil {
		if !t.h.Failing {
			t.h.Failing, t.h.Since, t.h.failedBefore = true, now, t.h.FailedCommits
		}
		t.h.FailedCommits++
		t.h.Error = c.Err.Error()
		return
	}
	t.h.Failing, t.h.Error, t.h.Since, t.h.LastCommitAt = false, "", time.Time{}, now
}

func (t *journalHealth) get() JournalHealth {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.h
}

// Health reports whether the journal takes writes and whether every
// projection keeps up. It is cheap (no I/O) and safe for concurrent use.
func (e *Engine) Health() Health { return e.AppendHealth(nil) }

// AppendHealth is Health with the projections' conditions appended to
// projs[:0] (grown if it is too short): a caller that reports the health
// over and over (the HTTP API's GET /v1/pool) reuses one slice instead of
// allocating one per call. The returned Health's Projections shares
// projs's array.
func (e *Engine) AppendHealth(projs []ProjectionHealth) Health {
	h := Health{Journal: e.jhealth.get()}
	h.Journal.Head = e.journal.Head()
	h.Projections = e.proj.health(projs, h.Journal.Head)
	slices.SortFunc(h.Projections, func(a, b ProjectionHealth) int { return strings.Compare(a.Name, b.Name) })
	h.OK = !h.Journal.Failing
	for _, p := range h.Projections {
		h.OK = h.OK && p.State == ProjectionRunning
	}
	if c, ok := e.Cluster(); ok {
		c := c // to the heap only on a cluster member: every call moved the outer one
		h.Cluster = &c
		h.OK = h.OK && c.Fresh && !c.Lost
	}
	h.Checkpoint = e.proj.saver.health()
	return h
}
