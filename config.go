package proxyhealth

import (
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"math"
	"os"
	"regexp"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/proxyhealth/proxyhealth/actors"
	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/internal/clock"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/probe"
	"github.com/proxyhealth/proxyhealth/projections"
)

// DefaultJournalCommitDelay is the default Config.JournalCommitDelay.
const DefaultJournalCommitDelay = 50 * time.Millisecond

// RecommendedGCPercent is the GOGC the proxyhealth daemon runs with (unless
// GOGC is set in its environment), and what a program whose main job is
// the engine may set with debug.SetGCPercent. The engine's heap is mostly
// long-lived (actors, live status) and it allocates little per check, so
// collecting at +20 % instead of Go's default +100 % keeps the resident
// set much smaller for a few percent of CPU. Against +25 %, at 10,000
// proxies: peak RSS 62.5, 62.7 and 63.2 MiB against 63.5, 64.2 (and
// 63.5–65.6 in eight runs of the same code before), for about 1.5 more
// CPU-ms of GC per 1,000 checks (10.4–10.7 → 11.6–12.7; BenchmarkDaemon,
// 2026-12-07, alternated). +25 % against +50 %, measured with
// BenchmarkDaemon (alternating runs; the GC's CPU is the runtime's own
// estimate): at 10,000 proxies peak RSS 103 → 96 MiB for about 5 more
// CPU-ms of GC per 1,000 checks (5 → 10); at 100,000 about 608 → 540 MiB
// for about 11 more (5 → 16, from 0–2 cycles a 20 s window) and about
// 0.8 ms more on the API's p99 (a cycle's mark phase takes one of two
// cores and comes about twice as often). The engine itself never changes
// the process's GC settings.
const RecommendedGCPercent = 20

// Clock tells the time and runs functions later: the engine's only time
// source (timers of checks, backoffs, retention). The default is the
// system clock; tests inject a fake one.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc calls f in its own goroutine after d; the Timer's Stop
	// prevents the call if it has not started.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending Clock.AfterFunc: Stop prevents it from firing and
// reports whether it did (*time.Timer fits).
type Timer = interface{ Stop() bool }

// DefaultSource is the name of the source used when none is given.
const DefaultSource = "default"

// Config configures an Engine. The zero value is usable: an in-memory
// journal, no proxies, the documented defaults.
type Config struct {
	// DataDir holds journal.db (and, with projections, view.db). Empty
	// means an in-memory journal: nothing survives Close.
	DataDir string
	// Sources are the named groups of proxies, each with its own check
	// config. More can be added later with AddSource.
	Sources []SourceConfig
	// Concurrency is the maximum number of checks in flight. Default 1000.
	Concurrency int
	// SnapshotEvery is how many events a proxy appends between snapshots.
	// Default 100.
	SnapshotEvery int
	// Retention is how long journal events are kept. Default 7 days.
	// Negative disables retention. Below 24 hours the journal no longer
	// holds everything the SQLite view keeps (check results for 24 h,
	// transitions for 7 days) nor the live status's 24 h success rates,
	// so a rebuild of either has less than the running one had; a
	// proxy's state itself always survives (snapshots).
	Retention time.Duration
	// CheckpointEvery is how often the running engine saves the live
	// status's checkpoint (LiveCheckpointFile in DataDir) while events
	// flow, so that a start after a crash folds only the journal since the
	// last one instead of all that retention kept (a week by default: at
	// 10,000 proxies checked every 10 s, 3.6 million events an hour).
	// Close always saves one. Default 5 minutes (DefaultCheckpointEvery);
	// at least a second; negative: only Close saves it. Without DataDir
	// nothing is saved.
	CheckpointEvery time.Duration
	// Logger receives the engine's warnings. Default: silent.
	Logger *slog.Logger
	// SubscriberBuffer is the channel size of each Subscribe; a subscriber
	// that falls this far behind is dropped. Default 4096.
	SubscriberBuffer int
	// Clock is the time source; tests inject a fake. Default: real time.
	Clock Clock
	// ProbeOptions are passed to every probe.NewChecker (e.g. a custom
	// dialer).
	ProbeOptions []probe.Option

	// Projections are folds of the journal kept outside the engine's
	// memory, opened and run by the engine (see Projection): the SQLite
	// view is one (SQLiteView, which the daemon registers). None by
	// default.
	Projections []ProjectionSpec
	// PoolThreshold is the healthy percentage below which a PoolDegraded
	// event is journaled (default 50); PoolMargin the hysteresis in points
	// before PoolRecovered (default 10).
	PoolThreshold, PoolMargin float64
	// DisablePoolMonitor turns off PoolDegraded/PoolRecovered events.
	DisablePoolMonitor bool
	// Webhooks receive notifications (proxy_down, proxy_recovered,
	// pool_degraded, pool_recovered) as JSON POSTs, with retries; a dead
	// webhook never slows the engine.
	Webhooks []projections.WebhookOptions
	// OnNotification callbacks are called with every notification, in
	// order; they must return quickly.
	OnNotification []func(projections.Notification)
	// OnJournalCommit, if set, is called after every group commit of the
	// bbolt journal (for metrics), before the commands it made durable are
	// answered; it must return quickly.
	OnJournalCommit func(journal.CommitStats)
	// ResumeAddedProxies makes Open check again the proxies that were
	// added at run time (AddProxy, the API) before a restart, with their
	// journaled state; those with credentials get them from
	// DataDir/credentials.json (CredentialsFile). Proxies the journal
	// knows but that nobody would check any more (their source is not
	// configured, the configuration no longer lists them, or their
	// credentials were not kept) are journaled as removed with the reason,
	// so the status never shows a proxy as checked when it is not. Off by
	// default (an embedding program that adds sources after Open would
	// lose their state); the daemon turns it on.
	ResumeAddedProxies bool
	// StartFresh lets Open start on a journal that cannot back the data
	// directory's other files: an existing but empty journal.db (it is
	// replaced by a new one) or a SQLite view ahead of the journal (it is
	// moved aside and rebuilt). Without it Open refuses, since either means
	// history was lost (a truncated or replaced file) and starting over
	// would hide it.
	StartFresh bool
	// JournalCommitDelay is how long the journal lingers for more appends
	// before committing a small batch (default 50 ms; negative commits at
	// once). Proxy actors do not wait on it: they keep answering while their
	// append is in flight.
	JournalCommitDelay time.Duration
	// Rotation configures Engine.Pick and passive outlier detection's
	// pool-wide bound (the per-source ejection times are in HealthConfig).
	Rotation RotationConfig
	// ActorSystem, if set, is the host application's protoactor system:
	// the engine spawns its actors in it (named "proxyhealth-N/…") instead
	// of starting a system of its own, and Close stops only what the engine
	// spawned.
	ActorSystem *actor.ActorSystem
	// Cluster makes the engine one member of a cluster that shares the
	// pool (see ClusterConfig); off by default.
	Cluster ClusterConfig

	// clusterJoin replaces joining through etcd (tests join an in-process
	// fake membership; see export_test.go).
	clusterJoin clusterJoin
	// journalOptions are extra options of the bbolt journal (tests inject
	// faults with them; see export_test.go).
	journalOptions []journal.BoltOption
}

// SourceConfig is a named group of proxies with its own check config.
type SourceConfig struct {
	// Name identifies the source: letters, digits, '.', '_' and '-', at most
	// 64 bytes. Default "default".
	Name string
	// Health is the state machine config (thresholds, intervals). The zero
	// value means events.DefaultConfig().
	Health events.Config
	// Probe is how proxies are checked. The zero value means HEAD
	// probe.DefaultTargetURL, expect 2xx, 5 s timeout.
	Probe probe.Config
	// Proxies are proxy URLs (http, https, socks4, socks4a, socks5,
	// socks5h; bare host:port means http), optionally with user:pass@.
	Proxies []string
	// Entries are more proxies, each with its own tags and weight (a
	// proxy list's " #tags=a,b weight=2").
	Entries []ProxyEntry
	// List, if set, is a proxy list (a URL or a file) the source also
	// takes its proxies from, refreshed on its own schedule.
	List SourceList
	// Tags are given to every proxy of the source (besides an entry's
	// own); Weight is the weight of the proxies that have none (0: unset,
	// counts as 1). Tags filter /v1/proxies, the picker and status; the
	// weight scales a proxy's share under the weighted strategy.
	Tags   []string
	Weight float64
}

// ProxyEntry is a proxy with its metadata.
type ProxyEntry struct {
	// URL is the proxy URL, as in SourceConfig.Proxies.
	URL string
	// Tags are the proxy's own tags; Weight its weight (0: the source's).
	Tags   []string
	Weight float64
}

// allEntries yields what entries returns, without building the slice: a
// pool of 100,000 proxies is validated twice at a daemon's start.
func (s SourceConfig) allEntries() iter.Seq2[int, ProxyEntry] {
	return func(yield func(int, ProxyEntry) bool) {
		for i, raw := range s.Proxies {
			if !yield(i, ProxyEntry{URL: raw}) {
				return
			}
		}
		for i, pe := range s.Entries {
			if !yield(len(s.Proxies)+i, pe) {
				return
			}
		}
	}
}

// entries returns every proxy of the source with its own metadata (the
// Proxies have none).
func (s SourceConfig) entries() []ProxyEntry {
	out := make([]ProxyEntry, 0, len(s.Proxies)+len(s.Entries))
	for _, pe := range s.allEntries() {
		out = append(out, pe)
	}
	return out
}

// kept is what the engine keeps of a source's configuration once its
// proxies are started: all of it for a source with a list, whose every
// refresh applies the list together with the configured proxies; else
// everything but its proxies, which nothing reads again (a
// reconfiguration brings its own), so that a large configuration is not
// kept alive besides the proxies' records.
func (s SourceConfig) kept() SourceConfig {
	if !s.List.set() {
		s.Proxies, s.Entries = nil, nil
	}
	return s
}

// metadata is a proxy's effective metadata in the source: the source's
// tags and its own, its own weight or else the source's.
func (s SourceConfig) metadata(pe ProxyEntry) ([]string, float64) {
	w := pe.Weight
	if w == 0 {
		w = s.Weight
	}
	return events.NormalizeTags(append(slices.Clone(s.Tags), pe.Tags...)), w
}

// Errors of the engine. Match with errors.Is.
var (
	ErrBadConfig     = errors.New("proxyhealth: invalid config")
	ErrClosed        = errors.New("proxyhealth: engine closed")
	ErrUnknownProxy  = errors.New("proxyhealth: unknown proxy")
	ErrUnknownSource = errors.New("proxyhealth: unknown source")
	ErrDuplicate     = errors.New("proxyhealth: duplicate proxy")
)

var sourceName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

func (c Config) withDefaults() Config {
	c.Cluster = c.Cluster.withDefaults()
	if c.Concurrency == 0 {
		c.Concurrency = actors.DefaultConcurrency
	}
	if c.SnapshotEvery == 0 {
		c.SnapshotEvery = actors.DefaultSnapshotEvery
	}
	if c.Retention == 0 {
		c.Retention = journal.DefaultRetention
	}
	if c.CheckpointEvery == 0 {
		c.CheckpointEvery = DefaultCheckpointEvery
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.SubscriberBuffer == 0 {
		c.SubscriberBuffer = 4096
	}
	if c.JournalCommitDelay == 0 {
		c.JournalCommitDelay = DefaultJournalCommitDelay
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	c.Rotation = c.Rotation.withDefaults()
	return c
}

func (s SourceConfig) withDefaults() SourceConfig {
	if s.Name == "" {
		s.Name = DefaultSource
	}
	if s.Health == (events.Config{}) {
		s.Health = events.DefaultConfig()
	}
	// Ejection times left zero (a HealthConfig written before they
	// existed) take the defaults.
	if s.Health.EjectionTime == 0 {
		s.Health.EjectionTime = events.DefaultConfig().EjectionTime
	}
	if s.Health.MaxEjectionTime == 0 {
		s.Health.MaxEjectionTime = max(events.DefaultConfig().MaxEjectionTime, s.Health.EjectionTime)
	}
	s.Probe = s.Probe.WithDefaults()
	s.List = s.List.withDefaults()
	return s
}

// Validate reports the first problem in the config, naming the field, the
// value and what is allowed. Proxy URLs are checked too (credentials never
// appear in the error).
func (c Config) Validate() error {
	c = c.withDefaults()
	if err := c.Cluster.validate(c); err != nil {
		return err
	}
	if c.Concurrency < 1 {
		return fmt.Errorf("%w: concurrency = %d; must be at least 1", ErrBadConfig, c.Concurrency)
	}
	if c.SnapshotEvery < 1 {
		return fmt.Errorf("%w: snapshot_every = %d; must be at least 1", ErrBadConfig, c.SnapshotEvery)
	}
	if c.CheckpointEvery > 0 && c.CheckpointEvery < time.Second {
		return fmt.Errorf("%w: checkpoint_every = %s; must be at least 1s (or negative: save the live status only at Close)", ErrBadConfig, c.CheckpointEvery)
	}
	if c.SubscriberBuffer < 1 {
		return fmt.Errorf("%w: subscriber_buffer = %d; must be at least 1", ErrBadConfig, c.SubscriberBuffer)
	}
	if c.DataDir != "" {
		if fi, err := os.Stat(c.DataDir); err == nil && !fi.IsDir() {
			return fmt.Errorf("%w: data_dir %q is a file, not a directory", ErrBadConfig, c.DataDir)
		}
	}
	if !c.DisablePoolMonitor {
		if err := (projections.PoolMonitorOptions{Threshold: c.PoolThreshold, Margin: c.PoolMargin}).Validate(); err != nil {
			return fmt.Errorf("%w: %w", ErrBadConfig, err)
		}
	}
	if err := c.Rotation.Validate(); err != nil {
		return err
	}
	seenProj := map[string]bool{}
	for i, p := range c.Projections {
		if p.Name == "" || p.Open == nil || seenProj[p.Name] {
			return fmt.Errorf("%w: projections[%d] (%q): a projection needs a unique name and an Open function", ErrBadConfig, i, p.Name)
		}
		seenProj[p.Name] = true
		if p.Validate != nil {
			if err := p.Validate(); err != nil {
				return fmt.Errorf("%w: projections[%d] (%q): %w", ErrBadConfig, i, p.Name, err)
			}
		}
	}
	for i, w := range c.Webhooks {
		if err := projections.ValidateWebhook(i, w); err != nil {
			return fmt.Errorf("%w: %w", ErrBadConfig, err)
		}
	}
	seenSource := map[string]bool{}
	total := 0
	for _, s := range c.Sources {
		total += len(s.Proxies) + len(s.Entries)
	}
	seenProxy := make(map[string]string, total)
	for i, s := range c.Sources {
		s = s.withDefaults()
		if err := s.validate(); err != nil {
			return fmt.Errorf("sources[%d]: %w", i, err)
		}
		if seenSource[s.Name] {
			return fmt.Errorf("%w: sources[%d]: source %q defined twice", ErrBadConfig, i, s.Name)
		}
		seenSource[s.Name] = true
		for j, pe := range s.allEntries() {
			// The field's name is formatted only for an error: a pool of
			// 100,000 proxies is validated at every start and reload.
			field := func() string {
				if j >= len(s.Proxies) {
					return fmt.Sprintf("entries[%d]", j-len(s.Proxies))
				}
				return fmt.Sprintf("proxies[%d]", j)
			}
			u, err := probe.ParseProxyURL(pe.URL)
			if err != nil {
				return fmt.Errorf("%w: source %q %s: %w", ErrBadConfig, s.Name, field(), err)
			}
			if _, w := s.metadata(pe); !(w >= 0) || math.IsInf(w, 0) {
				return fmt.Errorf("%w: source %q %s (%s): weight %v; want a positive number (0: unset)", ErrBadConfig, s.Name, field(), u.Redacted(), pe.Weight)
			}
			if prev, dup := seenProxy[u.ID()]; dup {
				return fmt.Errorf("%w: %s appears twice (source %q and %q)", ErrDuplicate, u.Redacted(), prev, s.Name)
			}
			seenProxy[u.ID()] = s.Name
		}
	}
	return nil
}

// SourceNameRule says which source names are accepted.
const SourceNameRule = "use 1-64 letters, digits, '.', '_' or '-'"

// ValidateSourceName reports a source name the engine would refuse
// (SourceNameRule); the error wraps ErrBadConfig.
func ValidateSourceName(name string) error {
	if !sourceName.MatchString(name) {
		return fmt.Errorf("%w: source name %q; %s", ErrBadConfig, name, SourceNameRule)
	}
	return nil
}

func (s SourceConfig) validate() error {
	if err := ValidateSourceName(s.Name); err != nil {
		return err
	}
	if err := s.Health.Validate(); err != nil {
		return fmt.Errorf("%w: source %q: %w", ErrBadConfig, s.Name, err)
	}
	if err := s.Probe.Validate(); err != nil {
		return fmt.Errorf("%w: source %q: %w", ErrBadConfig, s.Name, err)
	}
	if !(s.Weight >= 0) || math.IsInf(s.Weight, 0) {
		return fmt.Errorf("%w: source %q: weight %v; want a positive number (0: unset)", ErrBadConfig, s.Name, s.Weight)
	}
	return s.List.validate(s.Name)
}
