package proxyhealth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/proxyhealth/proxyhealth/actors"
	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/internal/idindex"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/probe"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
	"github.com/proxyhealth/proxyhealth/rotation"
)

// JournalFile is the journal's file name inside Config.DataDir.
const JournalFile = "journal.db"

// Engine monitors pools of proxies. Every proxy is a supervised actor that
// schedules its own checks and journals every result before acting on it.
// All methods are safe for concurrent use.
type Engine struct {
	cfg     Config
	journal journal.Journal
	sys     *actor.ActorSystem
	env     *actors.Env
	log     *slog.Logger
	// startedFromLive counts the proxy actors that started from the live
	// status's state instead of replaying their stream (Env.Current)
	startedFromLive atomic.Int64

	mu      sync.Mutex
	closed  bool
	sources map[string]*source
	// proxies finds the proxies' records by ID: an idindex.Index, as a
	// record holds its ID (its spec's), which a map would keep again as
	// its key.
	proxies idindex.Index[proxy, *proxy]

	proj    *projected
	rot     *rotator
	jhealth journalHealth
	// reconfMu serializes source reconfigurations (reloads, list
	// refreshes).
	reconfMu sync.Mutex
	// hostSystem: sys is the host application's (Config.ActorSystem); the
	// engine's actors are named with actorPrefix and Close stops only them.
	hostSystem  bool
	actorPrefix string
	creds       *credentials // nil without a data directory
	subs        *fanout
	bg          sync.WaitGroup
	bgCancel    context.CancelFunc
	retain      *retainer
	// cl is the engine's side of a cluster (nil outside one).
	cl *clusterNode
}

type source struct {
	// cfg is the source's configuration, without its proxies unless it
	// has a list (see SourceConfig.kept).
	cfg SourceConfig
	// list is the source's proxy list (nil without one) and refresher the
	// actor that refreshes it.
	list      *listState
	refresher *actor.PID
	checker   *probe.Checker
	pid       *actor.PID
	version   int
	// settings are the check settings its proxies' specs share (their
	// ConfigRef is name@vVERSION, for auditors); replaced, never changed.
	settings *actors.CheckSettings
}

// checkSettings returns a source's check settings at version v.
func checkSettings(sc SourceConfig, v int) *actors.CheckSettings {
	return &actors.CheckSettings{ConfigRef: fmt.Sprintf("%s@v%d", sc.Name, v), Health: sc.Health, Timeout: sc.Probe.Timeout}
}

// proxy is the engine's record of a proxy and its actor's spec in one
// object: the actors register &p.spec as it is, and the engine reads the
// proxy's ID, source, origin, tags (normalized) and weight (from the
// configuration or the list) there, so that they are not kept twice. The
// record is its spec's checker (CheckAsync), which keeps the credentials
// of url inside the engine without a closure a proxy.
//
// Once its spec is handed to the actors only pid changes (under e.mu): any
// other change makes a new record (newProxy, renewed), since the actor
// reads the spec without the engine's lock.
type proxy struct {
	spec    actors.ProxySpec
	url     probe.ProxyURL
	checker *probe.Checker // its source's when the record was made
	pid     *actor.PID
}

// newProxy makes the record of the proxy at u in source src, its spec
// built for the source's current check settings and checker.
func newProxy(u probe.ProxyURL, src *source, origin pb.ProxyOrigin, tags []string, weight float64) *proxy {
	p := &proxy{url: u, checker: src.checker}
	p.spec = actors.ProxySpec{
		ID:             u.ID(),
		Source:         src.cfg.Name,
		URLRedacted:    u.Redacted(),
		HasCredentials: u.HasCredentials(),
		Origin:         origin,
		Tags:           tags,
		Weight:         weight,
		Settings:       src.settings,
		// The probe's event loop runs the common checks without a
		// goroutine each (and the others on one of their own), so the
		// actor needs no Check.
		CheckAsync: p,
	}
	return p
}

// renewed returns a copy of p to change before it is handed over: p's
// spec may be in the actors' hands already.
func (p *proxy) renewed() *proxy {
	np := new(proxy)
	*np = *p
	np.spec.CheckAsync = np
	return np
}

// source returns the name of the proxy's source.
func (p *proxy) source() string { return p.spec.Source }

// IndexID returns the proxy's ID (see idindex).
func (p *proxy) IndexID() string { return p.spec.ID }

// CheckAsync implements actors.AsyncChecker: it runs one check of the
// proxy through its source's checker. The actor's completion goes to the
// probe as it is, converted: a check allocates no adapter.
func (p *proxy) CheckAsync(ctx context.Context, done *actors.CheckDone) {
	p.checker.CheckAsync(ctx, p.url, (*probeDone)(done))
}

// Open starts an engine: it opens (or creates) the journal, starts the
// actor system and one actor per configured proxy. Each proxy resumes its
// state from the journal before its first new check. Open returns when every
// configured proxy is running and its ProxyAdded (for new ones) is durable.
func Open(ctx context.Context, cfg Config) (*Engine, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// The engine keeps no copy of the configured proxies (at 100,000 of
	// them, 7 MB of URLs and entries): they are started below, and each
	// source keeps what it reads again (source.cfg). The engine's Config,
	// and cfg, which the closures below capture, go without them.
	configured := cfg.Sources
	cfg.Sources = nil
	e := &Engine{
		cfg:     cfg,
		log:     cfg.Logger,
		sources: map[string]*source{},
	}
	var j journal.Journal
	if cfg.DataDir != "" {
		// 0700 whatever the umask: the directory holds the audit trail
		// and, for run-time proxies, credentials.
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("proxyhealth: create data directory: %w", err)
		}
		if err := checkJournalFile(cfg); err != nil {
			return nil, err
		}
		creds, err := openCredentials(cfg.DataDir)
		if err != nil {
			return nil, err
		}
		e.creds = creds
		observe := cfg.OnJournalCommit
		opts := []journal.BoltOption{journal.WithCommitObserver(func(c journal.CommitStats) {
			e.jhealth.observe(c, cfg.Clock.Now())
			if observe != nil {
				observe(c)
			}
		})}
		opts = append(opts, journal.WithCommitDelay(max(cfg.JournalCommitDelay, 0)))
		opts = append(opts, cfg.journalOptions...)
		b, err := journal.OpenBolt(filepath.Join(cfg.DataDir, JournalFile), opts...)
		if err != nil {
			return nil, err
		}
		j = b
	} else {
		j = journal.NewMem()
	}
	e.journal = j
	if cfg.ActorSystem != nil {
		e.sys, e.hostSystem = cfg.ActorSystem, true
		e.actorPrefix = fmt.Sprintf("proxyhealth-%d-", engineSeq.Add(1))
	} else {
		e.sys = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
			return slog.New(minLevel{cfg.Logger.Handler(), slog.LevelWarn}).With(slog.String("component", "protoactor"))
		}))
		actors.CompactRegistry(e.sys)
	}
	if cfg.Cluster.enabled() {
		if err := e.joinCluster(ctx); err != nil {
			_ = j.Close()
			e.shutdownSystem()
			return nil, err
		}
	}
	budget := actors.NewEjectionBudget(cfg.Rotation.MaxEjectionShare)
	e.env = &actors.Env{
		Journal:       j,
		Clock:         cfg.Clock,
		Limiter:       actors.NewLimiter(cfg.Concurrency),
		Logger:        cfg.Logger,
		SnapshotEvery: uint64(cfg.SnapshotEvery),
		Track:         e.track,
		Abandoned:     e.abandoned,
		Ejections:     budget,
		Current:       e.current,
	}
	if e.cl != nil {
		e.env.MayCheck = e.cl.mayCheck
	}
	if err := e.env.Init(); err != nil {
		_ = j.Close()
		e.leaveEarly(ctx)
		e.shutdownSystem()
		return nil, err
	}
	pool, err := rotation.NewPool(cfg.Rotation.poolOptions(cfg.Clock.Now))
	if err != nil { // Validate checked the config
		_ = j.Close()
		e.leaveEarly(ctx)
		e.shutdownSystem()
		e.env.Close()
		return nil, fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	e.rot = &rotator{pool: pool, budget: budget, proxy: e.runningProxy, journal: j, log: cfg.Logger,
		now: func() int64 { return cfg.Clock.Now().UnixNano() }, threshold: cfg.Rotation.PanicThreshold * 100, touched: map[string]struct{}{}}
	if err := e.startProjections(ctx, configured); err != nil {
		_ = e.proj.stop(context.WithoutCancel(ctx))
		e.rot.close()
		e.rot.wait()
		_ = j.Close()
		e.leaveEarly(ctx)
		e.shutdownSystem()
		e.env.Close()
		return nil, err
	}
	bgCtx, cancel := context.WithCancel(context.Background())
	e.bgCancel = cancel
	e.subs = newFanout(j, cfg.SubscriberBuffer, cfg.Logger)
	e.bg.Add(1)
	go func() { defer e.bg.Done(); e.subs.run(bgCtx) }()
	if cfg.Retention > 0 {
		e.retain = newRetainer(e, cfg.Retention)
	}
	for _, sc := range configured {
		if err := e.AddSource(ctx, sc); err != nil {
			_ = e.Close(context.WithoutCancel(ctx))
			return nil, err
		}
	}
	if cfg.ResumeAddedProxies {
		if err := e.resumeAdded(ctx); err != nil {
			_ = e.Close(context.WithoutCancel(ctx))
			return nil, err
		}
	}
	if e.cl != nil {
		e.cl.start()
	}
	return e, nil
}

// Journal returns a read-only view of the engine's journal: read it,
// subscribe to it, check it; its writes fail with journal.ErrReadOnly (only
// the engine appends) and its Close does nothing.
func (e *Engine) Journal() journal.Journal { return journal.ReadOnly(e.journal) }

// AddSource starts a new source and its proxies.
func (e *Engine) AddSource(ctx context.Context, sc SourceConfig) error {
	src, err := e.addSource(ctx, sc)
	if src != nil && src.list != nil {
		err = errors.Join(err, e.startList(ctx, src))
	}
	return err
}

// probeOptions are the options of the sources' checkers: the
// configuration's and, in a cluster, the fence as the checks' gate, so that
// a check that passed the fence and then waited to start (for the event
// loop, or in a process that was stopped past its lease) opens no
// connection once the fence is down.
func (e *Engine) probeOptions() []probe.Option {
	if e.cl == nil {
		return e.cfg.ProbeOptions
	}
	return append(slices.Clone(e.cfg.ProbeOptions), probe.WithGate(e.cl.mayCheck))
}

// addSource is AddSource without starting the source's list refresher
// (the caller does, once it holds no lock the refresher takes).
func (e *Engine) addSource(ctx context.Context, sc SourceConfig) (*source, error) {
	sc = sc.withDefaults()
	if err := sc.validate(); err != nil {
		return nil, err
	}
	checker, err := probe.NewChecker(sc.Probe, e.probeOptions()...)
	if err != nil {
		return nil, fmt.Errorf("%w: source %q: %w", ErrBadConfig, sc.Name, err)
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, ErrClosed
	}
	if _, ok := e.sources[sc.Name]; ok {
		e.mu.Unlock()
		return nil, fmt.Errorf("%w: source %q already exists", ErrBadConfig, sc.Name)
	}
	strategy := actors.DefaultRestartBackoff(e.log)
	strategy.AfterFunc = func(d time.Duration, f func()) { e.cfg.Clock.AfterFunc(d, f) }
	pid, err := e.sys.Root.SpawnNamed(actors.SourceProps(e.env, sc.Name, strategy), e.actorPrefix+"source-"+sc.Name)
	if err != nil {
		e.mu.Unlock()
		return nil, fmt.Errorf("proxyhealth: start source %q: %w", sc.Name, err)
	}
	src := &source{cfg: sc.kept(), checker: checker, pid: pid, version: 1, settings: checkSettings(sc, 1)}
	if sc.List.set() {
		src.list = newListState(sc.List)
	}
	e.sources[sc.Name] = src
	e.mu.Unlock()
	if src.list != nil {
		e.loadList(sc.Name, src.list)
	}
	_, err = e.addProxies(ctx, sc.Name, append(sc.entries(), src.listProxies()...), pb.ProxyOrigin_PROXY_ORIGIN_CONFIG)
	return src, err
}

// listProxies returns the proxies of the source's list (none without one).
func (s *source) listProxies() []ProxyEntry {
	if s.list == nil {
		return nil
	}
	return s.list.proxies()
}

// AddProxy adds a proxy to a source ("" means "default") and returns its
// ID once its ProxyAdded event is durable. The proxy is checked as soon as
// the concurrency limit allows.
//
// It is a run-time addition (origin "api" in its ProxyAdded): with
// Config.ResumeAddedProxies a restarted engine checks it again, and with a
// data directory a URL with credentials is kept in CredentialsFile (mode
// 0600) for that, never in the journal. An error wrapping
// ErrJournalFailing means nothing was added; one wrapping
// ErrOutcomeUnknown means ctx ended before the journal said.
func (e *Engine) AddProxy(ctx context.Context, sourceName, rawURL string) (string, error) {
	if e.cl != nil {
		return "", fmt.Errorf("%w: add the proxy to the shared configuration and reload every member", ErrClusterManaged)
	}
	ids, err := e.addProxies(ctx, sourceName, []ProxyEntry{{URL: rawURL}}, pb.ProxyOrigin_PROXY_ORIGIN_API)
	if err != nil {
		return "", err
	}
	return ids[0], nil
}

func (e *Engine) addProxies(ctx context.Context, sourceName string, entries []ProxyEntry, origin pb.ProxyOrigin) ([]string, error) {
	return e.addProxiesWith(ctx, sourceName, entries, origin, addOptions{})
}

// addOptions are the cluster's additions to addProxies.
type addOptions struct {
	// placed: the entries are this member's already (placement chose
	// them); otherwise, in a cluster, only the entries this member owns
	// are started (all are recorded as configured).
	placed bool
	// adopt, if set, gives a proxy's adoption record (nil: none).
	adopt func(id, reason string) *events.Adopt
}

func (e *Engine) addProxiesWith(ctx context.Context, sourceName string, entries []ProxyEntry, origin pb.ProxyOrigin, opt addOptions) ([]string, error) {
	if sourceName == "" {
		sourceName = DefaultSource
	}
	raws := make([]string, len(entries))
	for i, pe := range entries {
		raws[i] = pe.URL
	}
	urls := make([]probe.ProxyURL, len(raws))
	for i, raw := range raws {
		u, err := probe.ParseProxyURL(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadConfig, err)
		}
		if u.IsRedactedForm() {
			return nil, fmt.Errorf("%w: %s is a redacted URL (the user name shown as a tag): it names a proxy but has no credentials to reach it; give the proxy's URL with its user name and password", ErrBadConfig, u.Redacted())
		}
		urls[i] = u
	}
	if e.cl != nil && !opt.placed {
		// Every member knows every configured proxy; each starts its own.
		ids := make([]string, len(urls))
		for i, u := range urls {
			ids[i] = u.ID()
		}
		mine := e.cl.place(sourceName, ids, entries)
		if len(mine) < len(urls) {
			var fu []probe.ProxyURL
			var fe []ProxyEntry
			var fr []string
			for _, i := range mine {
				fu, fe, fr = append(fu, urls[i]), append(fe, entries[i]), append(fr, raws[i])
			}
			urls, entries, raws = fu, fe, fr
			if len(urls) == 0 {
				return nil, nil
			}
		}
		opt.adopt = e.cl.adoption
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, ErrClosed
	}
	src, ok := e.sources[sourceName]
	if !ok && sourceName == DefaultSource {
		// The documented default source exists from its first use, with
		// the default check settings.
		e.mu.Unlock()
		if err := e.AddSource(ctx, SourceConfig{Name: DefaultSource}); err != nil && !errors.Is(err, ErrBadConfig) {
			return nil, err
		}
		e.mu.Lock()
		src, ok = e.sources[sourceName]
	}
	if !ok {
		e.mu.Unlock()
		return nil, fmt.Errorf("%w: %q", ErrUnknownSource, sourceName)
	}
	added := make([]*proxy, len(urls))
	ids := make([]string, len(urls))
	for i, u := range urls {
		ids[i] = u.ID()
		if p := e.proxies.Get(ids[i]); p != nil {
			for _, id := range ids[:i] {
				e.proxies.Delete(id)
			}
			e.mu.Unlock()
			return nil, fmt.Errorf("%w: %s is already monitored in source %q", ErrDuplicate, u.Redacted(), p.source())
		}
		tags, weight := src.cfg.metadata(entries[i])
		added[i] = newProxy(u, src, origin, tags, weight)
		e.proxies.Put(added[i])
	}
	// From here on each proxy's URL is read from its record: the parsed
	// list (about 170 bytes a proxy) is garbage while the waves start.
	srcPID := src.pid
	e.mu.Unlock()

	// A run-time proxy's credentials are durable before it is added.
	var kept []string
	if e.creds != nil && origin == pb.ProxyOrigin_PROXY_ORIGIN_API {
		for i, p := range added {
			if !p.url.HasCredentials() {
				continue
			}
			if err := e.creds.put(ids[i], raws[i]); err != nil {
				e.forget(added, kept)
				return nil, fmt.Errorf("proxyhealth: add %s: keep its credentials: %w", p.url.Redacted(), err)
			}
			kept = append(kept, ids[i])
		}
	}

	// The proxies start in waves of spawnWave: one request spawns a wave,
	// one fan-out waits until each of its proxies has journaled its
	// ProxyAdded (Sync), then the next wave starts.
	outcomes := make([]error, len(ids)) // each proxy's failed spawn or Sync
	for lo := 0; lo < len(ids); lo += spawnWave {
		hi := min(lo+spawnWave, len(ids))
		if err := e.startWave(ctx, src, srcPID, added[lo:hi], ids[lo:hi], outcomes[lo:hi], opt); err != nil {
			// The later waves were never asked for: they are not added.
			e.forget(added[hi:], kept)
			return ids, fmt.Errorf("add %d proxies to source %q: %w", len(ids), sourceName, err)
		}
	}
	// A proxy whose ProxyAdded did not become durable is not added: its
	// actor stopped (see actors.ErrJournalFailing), and nothing of it is
	// applied later. One whose outcome is unknown (the caller stopped
	// waiting) stays until its actor says (Env.Abandoned).
	var errs []error
	var gone []*proxy
	for i, err := range outcomes {
		if err == nil {
			continue
		}
		errs = append(errs, fmt.Errorf("add %s: %w", added[i].url.Redacted(), err))
		if !errors.Is(err, ErrOutcomeUnknown) {
			gone = append(gone, added[i])
		}
	}
	e.forget(gone, kept)
	e.settle(ctx)
	e.rot.refresh(ids) // a resumed proxy journals nothing at start
	return ids, errors.Join(errs...)
}

// spawnWave is how many proxies addProxiesWith starts at once. Everything
// a proxy's start holds until its ProxyAdded is durable (its spec, the
// decided event, the append and the Sync request) is then held for one wave
// instead of the whole list: adding 100,000 proxies at once held about 70
// MB more live heap at its peak than the running daemon (about 100 MiB of
// resident set with the GC's headroom).
var spawnWave = 8192 // a variable for tests

// startWave starts the proxies added (ids[i] is added[i]'s ID) with one
// SpawnProxies request to the source's actor and waits until each has
// journaled its ProxyAdded. It records in outcomes[i] added[i]'s failed
// spawn or Sync; an error means the spawn request itself got no answer.
func (e *Engine) startWave(ctx context.Context, src *source, srcPID *actor.PID, added []*proxy, ids []string, outcomes []error, opt addOptions) error {
	specs := make([]*actors.ProxySpec, len(added))
	e.mu.Lock() // the records are in e.proxies already
	for i, p := range added {
		if opt.adopt != nil { // before the spec is handed over
			p.spec.Adopt = opt.adopt(ids[i], "taken over by cluster placement")
		}
		specs[i] = &p.spec
	}
	e.mu.Unlock()
	res, err := await(ctx, e.sys.Root.RequestFuture(srcPID, &actors.SpawnProxies{Specs: specs}, requestTimeout(ctx)))
	if err != nil {
		return err
	}
	syncs := make([]request, 0, len(added))
	for i, sp := range res.(*actors.SpawnedProxies).Results {
		if sp.Err != nil {
			outcomes[i] = sp.Err
			continue
		}
		e.mu.Lock()
		added[i].pid = sp.PID
		e.mu.Unlock()
		syncs = append(syncs, request{id: ids[i], pid: sp.PID, msg: &actors.Sync{}})
	}
	if failed := e.requestAll(ctx, syncs); len(failed) > 0 {
		for i, id := range ids {
			if err := failed[id]; err != nil {
				outcomes[i] = err
			}
		}
	}
	return nil
}

// forget removes proxies that were registered but not started, and the
// credentials kept for them.
func (e *Engine) forget(added []*proxy, kept []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range added {
		id := p.url.ID()
		if e.proxies.Get(id) != p {
			continue
		}
		e.proxies.Delete(id)
		if slices.Contains(kept, id) {
			_ = e.creds.drop(id)
		}
	}
}

// sameCredentials reports whether a and b carry the same user name and
// password.
func sameCredentials(a, b probe.ProxyURL) bool {
	au, ap := a.RevealCredentials()
	bu, bp := b.RevealCredentials()
	return au == bu && ap == bp
}

// probeDone is a proxy actor's check completion as the probe calls it
// (probe.Done): the same object, which takes a probe.Result.
type probeDone actors.CheckDone

// Done hands the probe's result to the actor as the state machine takes it
// (a check the cluster fence held back, r.Gated, as no result at all).
func (d *probeDone) Done(r probe.Result) {
	if r.Gated {
		(*actors.CheckDone)(d).Abandon()
		return
	}
	(*actors.CheckDone)(d).Done(checkResult(r))
}

// checkResult is a probe's result as the state machine takes it.
func checkResult(r probe.Result) events.CheckResult {
	return events.CheckResult{
		Class:      r.Class,
		StatusCode: uint32(max(r.StatusCode, 0)),
		Message:    r.Message,
		Latency:    events.Latency{Connect: r.Connect, FirstByte: r.FirstByte, Total: r.Total},
		ExitIP:     r.ExitIP,
		Anonymity:  r.Anonymity,
	}
}

// ReconfigureSource applies a new check config to a running source (hot
// reload) and adds/removes proxies so that the source holds exactly
// sc.Proxies. Proxies keep their state; new thresholds apply at once.
func (e *Engine) ReconfigureSource(ctx context.Context, sc SourceConfig) error {
	e.reconfMu.Lock()
	cur, startList, err := e.reconfigure(ctx, sc)
	e.reconfMu.Unlock()
	if startList {
		err = errors.Join(err, e.startList(ctx, cur))
	}
	return err
}

// reconfigure is ReconfigureSource, with e.reconfMu held; startList says
// that the source got a list whose refresher must start.
func (e *Engine) reconfigure(ctx context.Context, sc SourceConfig) (cur *source, startList bool, err error) {
	sc = sc.withDefaults()
	if err := sc.validate(); err != nil {
		return cur, startList, err
	}
	checker, err := probe.NewChecker(sc.Probe, e.probeOptions()...)
	if err != nil {
		return cur, startList, fmt.Errorf("%w: source %q: %w", ErrBadConfig, sc.Name, err)
	}
	e.mu.Lock()
	cur, ok := e.sources[sc.Name]
	e.mu.Unlock()
	if !ok {
		return cur, startList, fmt.Errorf("%w: %q", ErrUnknownSource, sc.Name)
	}
	if cur.list != nil && !sameList(cur.list.cfg, sc.List) {
		e.stopList(cur) // another list, or none: the new one starts afresh
	}
	if cur.list == nil && sc.List.set() {
		cur.list, startList = newListState(sc.List), true
		e.loadList(sc.Name, cur.list)
	}
	want := map[string]ProxyEntry{}
	for i, pe := range append(sc.entries(), cur.listProxies()...) {
		u, err := probe.ParseProxyURL(pe.URL)
		if err != nil {
			return cur, startList, fmt.Errorf("%w: source %q proxies[%d]: %w", ErrBadConfig, sc.Name, i, err)
		}
		want[u.ID()] = pe
	}
	if e.cl != nil {
		e.cl.keepOnly(sc.Name, want)
	}
	e.mu.Lock()
	src, ok := e.sources[sc.Name]
	if !ok {
		e.mu.Unlock()
		return cur, startList, fmt.Errorf("%w: %q", ErrUnknownSource, sc.Name)
	}
	if src != cur {
		e.mu.Unlock()
		return cur, startList, fmt.Errorf("%w: %q was replaced while being reconfigured", ErrUnknownSource, sc.Name)
	}
	src.cfg, src.checker = sc.kept(), checker
	src.version++
	src.settings = checkSettings(sc, src.version)
	var remove []string
	var reconf []request
	var recredentialed []string
	var ps []*proxy // the source's: replaced below, not while ranging
	for p := range e.proxies.All() {
		if p.source() == sc.Name {
			ps = append(ps, p)
		}
	}
	for _, p := range ps {
		id := p.spec.ID
		pe, keep := want[id]
		if !keep {
			remove = append(remove, id)
			continue
		}
		delete(want, id)
		if p.pid == nil {
			// Still starting: its start sets the pid on this record
			// (or forgets it), and its actor has this spec; it gets the
			// new one at the next reload.
			continue
		}
		u := probe.MustParseProxyURL(pe.URL)
		tags, weight := sc.metadata(pe)
		if slices.Equal(tags, p.spec.Tags) {
			tags = p.spec.Tags // the new copy is garbage at once
		}
		url := p.url
		if u.HasCredentials() && !u.IsRedactedForm() && !sameCredentials(u, p.url) {
			// Same user, new password: the same proxy with changed
			// credentials.
			url = u
			recredentialed = append(recredentialed, id)
		}
		// The source's settings and checker changed: every proxy gets a
		// new record (its actor may read the old one until the
		// Reconfigure).
		np := newProxy(url, src, p.spec.Origin, tags, weight)
		np.pid = p.pid
		e.proxies.Set(np) // in place of p
		reconf = append(reconf, request{id: id, pid: np.pid, msg: &actors.Reconfigure{Spec: &np.spec}})
	}
	e.mu.Unlock()
	errs := slices.Collect(maps.Values(e.requestAll(ctx, reconf)))
	if len(recredentialed) > 0 {
		e.rot.refresh(recredentialed) // the picker hands out the new URL
	}
	for _, id := range remove {
		errs = append(errs, e.removeProxy(ctx, id))
	}
	add := make([]ProxyEntry, 0, len(want))
	for _, pe := range want {
		add = append(add, pe)
	}
	slices.SortFunc(add, func(a, b ProxyEntry) int { return strings.Compare(a.URL, b.URL) })
	if len(add) > 0 {
		_, err := e.addProxies(ctx, sc.Name, add, pb.ProxyOrigin_PROXY_ORIGIN_CONFIG)
		errs = append(errs, err)
	}
	return cur, startList, errors.Join(errs...)
}

// RemoveProxy journals the proxy's removal and stops its actor.
func (e *Engine) RemoveProxy(ctx context.Context, id string) error {
	if e.cl != nil {
		return fmt.Errorf("%w: remove the proxy from the shared configuration and reload every member", ErrClusterManaged)
	}
	return e.removeProxy(ctx, id)
}

// removeProxy is RemoveProxy without the cluster's refusal (a reload
// removes proxies the configuration dropped).
func (e *Engine) removeProxy(ctx context.Context, id string) error {
	p, err := e.lookup(id)
	if err != nil {
		return err
	}
	if err := e.command(ctx, p.pid, &actors.Remove{Reason: "removed by operator"}); err != nil {
		return err
	}
	e.mu.Lock()
	e.proxies.Delete(id)
	e.mu.Unlock()
	e.setChecking(id, false)
	if e.creds != nil {
		if err := e.creds.drop(id); err != nil {
			e.log.Warn("the proxy was removed, but its credentials could not be dropped from the credentials file", slog.String("proxy_id", id), slog.Any("error", err))
		}
	}
	e.settle(ctx)
	return nil
}

// Revive brings a failed (or unhealthy/recovering) proxy back to unknown;
// it is checked at once.
func (e *Engine) Revive(ctx context.Context, id string) error {
	p, err := e.lookup(id)
	if err != nil {
		return err
	}
	return e.settled(ctx, e.command(ctx, p.pid, &actors.Revive{Reason: "revived by operator"}))
}

// PauseProxy stops one proxy's checks (journaled as ProxyPaused); a check
// in flight finishes and is recorded.
func (e *Engine) PauseProxy(ctx context.Context, id string) error {
	p, err := e.lookup(id)
	if err != nil {
		return err
	}
	return e.settled(ctx, e.command(ctx, p.pid, &actors.Pause{Reason: "paused by operator"}))
}

// ResumeProxy restarts one proxy's checks (journaled as ProxyResumed); an
// overdue proxy is checked at once.
func (e *Engine) ResumeProxy(ctx context.Context, id string) error {
	p, err := e.lookup(id)
	if err != nil {
		return err
	}
	return e.settled(ctx, e.command(ctx, p.pid, &actors.Resume{Reason: "resumed by operator"}))
}

// Pause stops the checks of every proxy of a source ("" means all
// sources). Checks in flight finish and are recorded.
func (e *Engine) Pause(ctx context.Context, sourceName string) error {
	return e.broadcast(ctx, sourceName, func() any { return &actors.Pause{Reason: "paused by operator"} })
}

// Resume restarts the checks paused by Pause; overdue proxies are checked
// at once.
func (e *Engine) Resume(ctx context.Context, sourceName string) error {
	return e.broadcast(ctx, sourceName, func() any { return &actors.Resume{Reason: "resumed by operator"} })
}

func (e *Engine) broadcast(ctx context.Context, sourceName string, msg func() any) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return ErrClosed
	}
	if _, ok := e.sources[sourceName]; sourceName != "" && !ok {
		e.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrUnknownSource, sourceName)
	}
	var reqs []request
	for p := range e.proxies.All() {
		if (sourceName == "" || p.source() == sourceName) && p.pid != nil {
			reqs = append(reqs, request{id: p.spec.ID, pid: p.pid, msg: msg()})
		}
	}
	e.mu.Unlock()
	return e.settled(ctx, errors.Join(slices.Collect(maps.Values(e.requestAll(ctx, reqs)))...))
}

// settleTimeout bounds how long a command waits for the live status to
// show what it journaled.
const settleTimeout = 5 * time.Second

// settle waits until the live status has applied everything committed so
// far, so that a command's effect shows in Status() when it returns (read
// your writes: an API client that adds a proxy and lists the proxies sees
// it). The wait is normally a few microseconds; it ends with ctx, or after
// settleTimeout should the live status be failing (Health says so).
func (e *Engine) settle(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	_ = e.proj.waitLive(ctx, e.journal.Head())
}

// settled settles and passes err through.
func (e *Engine) settled(ctx context.Context, err error) error {
	e.settle(ctx)
	return err
}

// ReportOutcome feeds what real traffic saw through a proxy into passive
// outlier detection. Report failures of the proxy's own (Outcome.Class
// refused, timeout, reset, tls, dns, proxy_auth_required, bad_status for a
// 5xx from the proxy itself, protocol, other); a target's error through a
// working proxy is OK. PassiveFailureThreshold consecutive failures
// (default 3) eject the proxy from rotation for its ejection time (within
// the pool's maximum ejection share) and re-probe it at once; the ejection
// and its end are journaled. It never blocks.
func (e *Engine) ReportOutcome(o Outcome) error {
	p, err := e.lookup(o.ProxyID)
	if err != nil {
		return err
	}
	class := pb.FailureClass_FAILURE_CLASS_UNSPECIFIED
	if !o.OK {
		class = pb.FailureClass_FAILURE_CLASS_OTHER
		if o.Class != "" {
			c, ok := events.ParseClass(o.Class)
			if !ok || c == pb.FailureClass_FAILURE_CLASS_TOO_SLOW || c == pb.FailureClass_FAILURE_CLASS_CONTENT_MISMATCH {
				return fmt.Errorf("%w: error_class %q; use one of %v", ErrBadOutcome, o.Class, OutcomeClasses)
			}
			class = c
		}
	}
	e.sys.Root.Send(p.pid, &actors.Passive{OK: o.OK, Class: class})
	return nil
}

// OutcomeClasses are the failure classes an Outcome may name: the proxy's
// own failures.
var OutcomeClasses = []string{"refused", "timeout", "reset", "tls", "dns", "proxy_auth_required", "bad_status", "protocol", "other"}

// ErrBadOutcome: ReportOutcome was given an outcome it cannot take.
var ErrBadOutcome = errors.New("proxyhealth: bad outcome")

// ProxyStatus is one proxy's live state, straight from its actor.
type ProxyStatus struct {
	ID          string
	URL         string // without credentials
	Source      string
	State       events.State
	Checking    bool
	NextCheckAt time.Time
}

// Proxy returns a proxy's live state.
func (e *Engine) Proxy(ctx context.Context, id string) (ProxyStatus, error) {
	p, err := e.lookup(id)
	if err != nil {
		return ProxyStatus{}, err
	}
	res, err := await(ctx, e.sys.Root.RequestFuture(p.pid, &actors.GetState{}, requestTimeout(ctx)))
	if err != nil {
		return ProxyStatus{}, fmt.Errorf("proxyhealth: query proxy %s: %w", id, err)
	}
	r := res.(*actors.StateReply)
	return ProxyStatus{ID: id, URL: p.url.Redacted(), Source: p.source(), State: r.State, Checking: r.Checking, NextCheckAt: r.NextCheckAt}, nil
}

// ProxyIDs lists the IDs of the monitored proxies, sorted.
func (e *Engine) ProxyIDs() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	ids := make([]string, 0, e.proxies.Len())
	for p := range e.proxies.All() {
		ids = append(ids, p.spec.ID)
	}
	slices.Sort(ids)
	return ids
}

// RunTimeProxies lists the proxies added at run time (AddProxy, or resumed
// as such by Config.ResumeAddedProxies): proxy ID → source.
func (e *Engine) RunTimeProxies() map[string]string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]string{}
	for p := range e.proxies.All() {
		if p.spec.Origin == pb.ProxyOrigin_PROXY_ORIGIN_API {
			out[p.spec.ID] = p.source()
		}
	}
	return out
}

// Sources lists the source names, sorted.
func (e *Engine) Sources() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Sorted(maps.Keys(e.sources))
}

// Checking reports whether a check of the proxy is in flight (or waiting
// for a concurrency slot), and how many are.
// The flag lives in the live status, which the actors keep informed.
func (e *Engine) Checking(id string) (bool, int) {
	v, _ := e.proj.live.Proxy(id)
	return v.Checking, e.proj.live.Summary().Checking
}

// abandoned is the actors' Env.Abandoned hook: the proxy's actor stopped
// because its ProxyAdded was never journaled, so the engine forgets it.
func (e *Engine) abandoned(id string, pid *actor.PID) {
	e.mu.Lock()
	if p := e.proxies.Get(id); p != nil && (p.pid == nil || p.pid.Equal(pid)) {
		e.proxies.Delete(id)
	}
	e.mu.Unlock()
}

// track is the actors' Env.Track hook: the live status's tracker of the
// proxy (its checking flag and next check, reported by its actor).
func (e *Engine) track(id string) actors.Tracker { return e.proj.live.Track(id) }

// current is the actors' Env.Current hook: the proxy's state in the live
// status, when the live status has applied the proxy's stream through
// streamHead (the same fold as journal.LoadState's: its snapshot, or the
// live status's checkpoint, and the events after it).
func (e *Engine) current(id string, streamHead uint64) (events.State, bool) {
	st, ok := e.proj.live.State(id)
	if !ok || st.StreamSeq != streamHead {
		return events.State{}, false
	}
	e.startedFromLive.Add(1)
	return st, true
}

// setChecking sets a proxy's checking flag in the live status by ID (a
// removed proxy's is cleared).
func (e *Engine) setChecking(id string, on bool) { e.proj.live.SetChecking(id, on) }

func (e *Engine) lookup(id string) (*proxy, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, ErrClosed
	}
	p := e.proxies.Get(id)
	if p == nil || p.pid == nil {
		if e.cl != nil {
			if o, elsewhere := e.cl.checkedBy(id); elsewhere {
				return nil, &NotOwnerError{ProxyID: id, Member: o}
			}
		}
		return nil, fmt.Errorf("%w: %q", ErrUnknownProxy, id)
	}
	return p, nil
}

// command sends one command to a proxy actor and waits for its answer. An
// error that wraps ErrOutcomeUnknown means the caller stopped waiting
// before the actor answered: the command may still apply.
func (e *Engine) command(ctx context.Context, pid *actor.PID, msg any) error {
	res, err := await(ctx, e.sys.Root.RequestFuture(pid, msg, requestTimeout(ctx)))
	if err != nil {
		if errors.Is(err, actor.ErrDeadLetter) {
			return fmt.Errorf("%w: proxy %s: its actor is not running", ErrUnknownProxy, proxyIDOfPID(pid))
		}
		return fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
	}
	return res.(*actors.Reply).Err
}

// proxyIDOfPID is the proxy ID a proxy actor's PID names (the last element
// of its path).
func proxyIDOfPID(pid *actor.PID) string {
	id := pid.GetId()
	return id[strings.LastIndexByte(id, '/')+1:]
}

// Close stops every check (probes in flight are cancelled), waits for
// appends in flight, stops the actors, flushes and closes the journal. No
// goroutine is left behind. It is idempotent.
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	srcs := make([]*actor.PID, 0, len(e.sources))
	for _, s := range e.sources {
		srcs = append(srcs, s.pid)
	}
	e.mu.Unlock()

	var errs []error
	if e.cl != nil {
		// Hand every proxy over and leave first: the others take over at
		// once (not after the lease TTL) while this member stops.
		if err := e.cl.leave(ctx); err != nil {
			errs = append(errs, fmt.Errorf("proxyhealth: close: leave the cluster: %w", err))
		}
	}

	if e.retain != nil {
		e.retain.stop()
	}
	// 1. No new checks; cancel probes in flight. 2. Wait for every probe
	// and append goroutine, so their results reach live mailboxes.
	e.env.CancelChecks()
	if err := e.env.Wait(ctx); err != nil {
		errs = append(errs, fmt.Errorf("proxyhealth: close: waiting for checks and appends: %w", err))
	}
	// 3. Stop the actors (children first, by their parents), cancelling
	// their timers.
	for _, pid := range srcs {
		if err := e.sys.Root.PoisonFuture(pid).Wait(); err != nil {
			errs = append(errs, fmt.Errorf("proxyhealth: close: stop source %s: %w", pid.GetId(), err))
		}
	}
	// 4. Stop the projections (the view's offset is durable per batch),
	// and the rotator's last panic event.
	// The rotator's last panic event goes in first (after the live
	// feeder stopped, nothing starts another), so that the view's final
	// catch-up includes it: a clean stop leaves view.db at the journal's
	// head (TestKillNineRounds once saw it one event short).
	e.proj.halt()
	e.rot.close()
	e.rot.wait()
	if err := e.proj.stop(ctx); err != nil {
		errs = append(errs, fmt.Errorf("proxyhealth: close projections: %w", err))
	} else if e.cfg.DataDir != "" && e.proj != nil {
		// The live status is at the journal's head: the next Open folds
		// from here. A failure costs that Open the whole fold, no more.
		if err := saveLiveCheckpoint(e.cfg.DataDir, e.proj.live); err != nil {
			e.log.Warn("stopping: the live status checkpoint was not saved; the next start folds the whole journal", slog.Any("error", err))
		}
	}
	// 5. Flush and close the journal; the fan-out ends with it.
	if err := e.journal.Close(); err != nil {
		errs = append(errs, fmt.Errorf("proxyhealth: close journal: %w", err))
	}
	e.bgCancel()
	e.bg.Wait()
	e.subs.closeAll()
	e.shutdownSystem()
	e.env.Close()
	return errors.Join(errs...)
}

// engineSeq numbers the engines sharing a host actor system.
var engineSeq atomic.Uint64

// shutdownSystem stops the actor system, unless it is the host's (whose
// actors of this engine Close stopped already).
func (e *Engine) shutdownSystem() {
	if !e.hostSystem && !e.sys.IsStopped() { // leaving a cluster stops it
		e.sys.Shutdown()
	}
}

// requestTimeout is the actor-request timeout derived from ctx.
func requestTimeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d), time.Millisecond)
	}
	return time.Minute
}

// await waits for a future or ctx.
func await(ctx context.Context, f *actor.Future) (any, error) {
	if ctx.Done() == nil {
		return f.Result()
	}
	type result struct {
		v   any
		err error
	}
	ch := make(chan result, 1)
	go func() { v, err := f.Result(); ch <- result{v, err} }()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// minLevel filters a handler to records at or above a level (protoactor is
// chatty at Info).
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}
func (h minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(a), h.min}
}
func (h minLevel) WithGroup(n string) slog.Handler { return minLevel{h.Handler.WithGroup(n), h.min} }
