package fakeproxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Errors returned by the farm.
var (
	// ErrClosed is returned by Set and SetCredentials after Close.
	ErrClosed = errors.New("fakeproxy: farm is closed")
	// ErrBadIndex is returned for a proxy index outside [0, Len()).
	ErrBadIndex = errors.New("fakeproxy: proxy index out of range")
	// ErrFDLimit is returned by Start when the process cannot open enough
	// file descriptors for the requested number of proxies.
	ErrFDLimit = errors.New("fakeproxy: file descriptor limit too low")
)

// Option configures a Farm.
type Option func(*options)

type options struct {
	body      string
	seed      uint64
	seeded    bool
	user      string
	pass      string
	scheme    string
	behavior  Behavior
	anonymity Anonymity
	host      string
	overlap   time.Duration
}

// WithBody sets the body served by OK responses (default "ok").
func WithBody(body string) Option { return func(o *options) { o.body = body } }

// WithSeed seeds the random source used by Flaky, for reproducible runs.
func WithSeed(seed uint64) Option { return func(o *options) { o.seed, o.seeded = seed, true } }

// WithCredentials gives every proxy the credentials that AuthRequired (or
// RequireAuth) behaviors demand; SetCredentials overrides them per proxy.
func WithCredentials(user, pass string) Option {
	return func(o *options) { o.user, o.pass = user, pass }
}

// WithScheme sets the scheme URL reports (default "http"). Every proxy
// speaks all protocols whatever the scheme.
func WithScheme(scheme string) Option { return func(o *options) { o.scheme = scheme } }

// WithHost sets the local address the farm listens on (default
// "127.0.0.1"); any loopback address works on Linux (all of 127.0.0.0/8),
// which lets several farms of tens of thousands of proxies share one
// machine, each with its own ~22,000 ports. The host must be an IP literal.
func WithHost(host string) Option { return func(o *options) { o.host = host } }

// WithOverlapWindow makes the farm count overlaps, the signature of two
// checkers that both believe they own a proxy: an overlap is a check of a
// proxy from another source address than its previous check, less than
// window after it. Two owners alternate and overlap again and again, for
// as long as both check (Stats.MaxOverlap); a hand-over from one checker
// to another overlaps once at most (when the new owner's first check comes
// within the window). Give it about twice the check interval. Zero (the
// default) counts none.
func WithOverlapWindow(window time.Duration) Option {
	return func(o *options) { o.overlap = window }
}

// WithBehavior sets every proxy's initial behavior (default OK).
func WithBehavior(b Behavior) Option { return func(o *options) { o.behavior = b } }

// Stats are the checks one proxy received. A check is one accepted TCP
// connection (connections refused while the proxy is in Refuse are not
// seen and not counted).
type Stats struct {
	// Checks is the number of accepted connections.
	Checks uint64
	// First and Last are the accept times of the first and last check.
	First, Last time.Time
	// MinInterval is the shortest time between two consecutive checks
	// (zero with fewer than two checks).
	MinInterval time.Duration
	// Echoes is the number of echo answers (requests for EchoPath) sent.
	Echoes uint64
	// Sources are the checks per source address (the client's IP, e.g. one
	// 127.0.0.x per checker on loopback), ordered by address.
	Sources []SourceStats
	// Overlaps is the number of checks from another source than the
	// check before, within the overlap window of it (WithOverlapWindow);
	// always zero without a window.
	Overlaps uint64
	// MaxOverlap is the longest run of overlaps, from its first
	// overlapping check to its last, each within the window of the one
	// before: about how long two sources checked the proxy at once. A
	// single overlap (a hand-over) is a run of zero length.
	MaxOverlap time.Duration
	// LastOverlap is the time of the latest overlapping check (zero
	// without one).
	LastOverlap time.Time
}

// SourceStats are the checks one proxy received from one source address.
type SourceStats struct {
	// IP is the source address (IPv4-mapped IPv6 addresses unmapped).
	IP netip.Addr
	// Checks is the number of connections accepted from IP.
	Checks uint64
	// First and Last are the accept times of the first and last of them.
	First, Last time.Time
}

// From returns the checks from ip (zero when none came from it).
func (s Stats) From(ip netip.Addr) SourceStats {
	ip = ip.Unmap()
	for _, src := range s.Sources {
		if src.IP == ip {
			return src
		}
	}
	return SourceStats{IP: ip}
}

// Farm is a set of fake proxies listening on 127.0.0.1 (or the address of
// WithHost). All methods are
// safe for concurrent use.
type Farm struct {
	opts      options
	proxies   []*proxy
	done      chan struct{}
	closeOnce sync.Once
	closed    atomic.Bool
	wg        sync.WaitGroup
	total     atomic.Uint64

	rngMu sync.Mutex
	rng   *rand.Rand

	okBody, wrongBody []byte
	tlsServer         *tls.Config

	echo *proxy // the direct echo server (EchoURL)
}

type proxy struct {
	f      *Farm
	addr   string // "host:port", fixed for the farm's lifetime
	direct bool   // the direct echo server, not a proxy

	mu        sync.Mutex
	ln        net.Listener // nil while refusing or closed
	behavior  Behavior
	authValue string // expected Proxy-Authorization value
	user      string
	pass      string
	hasCreds  bool
	conns     map[net.Conn]struct{}
	stats     counters
	// sources are the checks per source address, in the order of their
	// first check; a handful per proxy, scanned linearly.
	sources   []SourceStats
	ov        *overlaps // with WithOverlapWindow, from the first check on
	exit      string    // exit IP reported in echo answers
	anonymity Anonymity
}

// counters are a proxy's Stats but Sources and the overlaps.
type counters struct {
	checks      uint64
	first, last time.Time
	minInterval time.Duration
	echoes      uint64
}

// overlaps are a proxy's overlap counts (WithOverlapWindow); kept apart,
// so that a farm without a window does not carry them in every proxy.
type overlaps struct {
	lastIP      netip.Addr // the source of the latest check
	count       uint64
	max         time.Duration
	last, start time.Time // the latest overlap and the first of its run
}

// Start opens n fake proxies on random ports of 127.0.0.1 (or the address
// of WithHost). ctx bounds the
// start-up only; the farm runs until Close. It raises the soft
// RLIMIT_NOFILE towards the hard limit if n listeners (plus headroom for
// connections) would not fit, and fails with ErrFDLimit if they cannot.
func Start(ctx context.Context, n int, opts ...Option) (*Farm, error) {
	if n < 0 {
		return nil, fmt.Errorf("fakeproxy: Start: n = %d, want >= 0", n)
	}
	o := options{body: "ok", scheme: "http", host: "127.0.0.1"}
	for _, opt := range opts {
		opt(&o)
	}
	if net.ParseIP(o.host) == nil {
		return nil, fmt.Errorf("fakeproxy: Start: WithHost(%q): want an IP address such as 127.0.0.2", o.host)
	}
	if err := ensureFDs(uint64(n) + 512); err != nil {
		return nil, err
	}
	tc, err := serverTLS()
	if err != nil {
		return nil, err
	}
	seed := o.seed
	if !o.seeded {
		seed = rand.Uint64()
	}
	f := &Farm{
		opts:      o,
		done:      make(chan struct{}),
		rng:       rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		okBody:    []byte(o.body),
		wrongBody: []byte("fakeproxy: wrong content"),
		tlsServer: tc,
		proxies:   make([]*proxy, n),
	}
	ln, err := listen(ctx, o.host)
	if err != nil {
		return nil, fmt.Errorf("fakeproxy: open the direct echo server's listener: %w", err)
	}
	f.echo = &proxy{f: f, addr: ln.Addr().String(), direct: true, ln: ln}
	f.wg.Add(1)
	go f.echo.acceptLoop(ln)
	for i := range f.proxies {
		ln, err := listen(ctx, o.host)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("fakeproxy: open listener %d of %d: %w", i+1, n, err)
		}
		p := &proxy{f: f, addr: ln.Addr().String(), behavior: o.behavior, exit: DefaultExit(i), anonymity: o.anonymity}
		p.setCreds(o.user, o.pass, o.user != "" || o.pass != "")
		f.proxies[i] = p
		if o.behavior.kind == kindRefuse {
			ln.Close()
			continue
		}
		p.ln = ln
		f.wg.Add(1)
		go p.acceptLoop(ln)
	}
	return f, nil
}

// Len returns the number of proxies.
func (f *Farm) Len() int { return len(f.proxies) }

// Addr returns proxy i's "host:port" ("127.0.0.1:port" by default).
func (f *Farm) Addr(i int) string { return f.proxies[i].addr }

// URL returns proxy i's URL with the farm's scheme (WithScheme), e.g.
// "http://127.0.0.1:40001". It carries no credentials.
func (f *Farm) URL(i int) string { return f.opts.scheme + "://" + f.proxies[i].addr }

// URLWith returns proxy i's URL with the given scheme and, if user is not
// empty, credentials (not escaped: use URL-safe test credentials).
func (f *Farm) URLWith(i int, scheme, user, pass string) string {
	if user == "" {
		return scheme + "://" + f.proxies[i].addr
	}
	if pass == "" {
		return scheme + "://" + user + "@" + f.proxies[i].addr
	}
	return scheme + "://" + user + ":" + pass + "@" + f.proxies[i].addr
}

// Behavior returns proxy i's current behavior.
func (f *Farm) Behavior(i int) Behavior {
	p := f.proxies[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.behavior
}

// Set changes proxy i's behavior for connections accepted from now on
// (connections in progress keep the behavior they started with). Switching
// to Refuse closes the listener; switching away from it re-opens the
// listener on the same port. Re-opening fails (and the proxy stays in
// Refuse) if another socket took the port in the meantime — unlikely on
// loopback, but possible.
func (f *Farm) Set(i int, b Behavior) error {
	if i < 0 || i >= len(f.proxies) {
		return fmt.Errorf("%w: %d (farm has %d)", ErrBadIndex, i, len(f.proxies))
	}
	p := f.proxies[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	if f.closed.Load() {
		return ErrClosed
	}
	switch {
	case b.kind == kindRefuse && p.ln != nil:
		p.ln.Close()
		p.ln = nil
	case b.kind != kindRefuse && p.ln == nil:
		ln, err := net.Listen("tcp", p.addr)
		if err != nil {
			return fmt.Errorf("fakeproxy: re-open proxy %d on %s: %w (the port was taken while refusing)", i, p.addr, err)
		}
		p.ln = ln
		f.wg.Add(1)
		go p.acceptLoop(ln)
	}
	p.behavior = b
	return nil
}

// SetAll sets every proxy's behavior; it stops at the first error.
func (f *Farm) SetAll(b Behavior) error {
	for i := range f.proxies {
		if err := f.Set(i, b); err != nil {
			return err
		}
	}
	return nil
}

// SetCredentials sets the credentials proxy i demands when its behavior
// requires authentication.
func (f *Farm) SetCredentials(i int, user, pass string) error {
	if i < 0 || i >= len(f.proxies) {
		return fmt.Errorf("%w: %d (farm has %d)", ErrBadIndex, i, len(f.proxies))
	}
	if f.closed.Load() {
		return ErrClosed
	}
	p := f.proxies[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setCreds(user, pass, true)
	return nil
}

func (p *proxy) setCreds(user, pass string, has bool) {
	p.user, p.pass, p.hasCreds = user, pass, has
	p.authValue = ""
	if has {
		p.authValue = "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
}

// Checks returns the number of checks (accepted connections) proxy i
// received.
func (f *Farm) Checks(i int) uint64 {
	p := f.proxies[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats.checks
}

// ChecksFrom returns the number of checks proxy i received from source
// address ip.
func (f *Farm) ChecksFrom(i int, ip netip.Addr) uint64 {
	ip = ip.Unmap()
	p := f.proxies[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, src := range p.sources {
		if src.IP == ip {
			return src.Checks
		}
	}
	return 0
}

// Stats returns proxy i's check statistics (a copy).
func (f *Farm) Stats(i int) Stats {
	p := f.proxies[i]
	p.mu.Lock()
	c := p.stats
	st := Stats{Checks: c.checks, First: c.first, Last: c.last, MinInterval: c.minInterval, Echoes: c.echoes,
		Sources: slices.Clone(p.sources)}
	if ov := p.ov; ov != nil {
		st.Overlaps, st.MaxOverlap, st.LastOverlap = ov.count, ov.max, ov.last
	}
	p.mu.Unlock()
	sortSources(st.Sources)
	return st
}

// ResetStats clears every proxy's statistics (not TotalChecks).
func (f *Farm) ResetStats() {
	for _, p := range f.proxies {
		p.mu.Lock()
		p.stats = counters{}
		p.sources = p.sources[:0]
		p.ov = nil
		p.mu.Unlock()
	}
}

// Sources returns the checks of the whole farm per source address, ordered
// by address: for each, the checks of every proxy from it, the earliest
// First and the latest Last. It locks each proxy in turn, so the figures
// of different proxies may be a few checks apart.
func (f *Farm) Sources() []SourceStats {
	var out []SourceStats
	for _, p := range f.proxies {
		p.mu.Lock()
		out = mergeSources(out, p.sources)
		p.mu.Unlock()
	}
	sortSources(out)
	return out
}

// mergeSources adds the checks of srcs to those of out, per address.
func mergeSources(out, srcs []SourceStats) []SourceStats {
	for _, src := range srcs {
		j := slices.IndexFunc(out, func(o SourceStats) bool { return o.IP == src.IP })
		if j < 0 {
			out = append(out, src)
			continue
		}
		o := &out[j]
		o.Checks += src.Checks
		if src.First.Before(o.First) {
			o.First = src.First
		}
		if src.Last.After(o.Last) {
			o.Last = src.Last
		}
	}
	return out
}

// sortSources orders srcs by address.
func sortSources(srcs []SourceStats) {
	slices.SortFunc(srcs, func(a, b SourceStats) int { return a.IP.Compare(b.IP) })
}

// record counts a check accepted at now from ip; p.mu is held.
func (p *proxy) record(ip netip.Addr, now time.Time) {
	st := &p.stats
	gap := time.Duration(-1) // since the previous check, if any
	if st.checks > 0 {
		gap = now.Sub(st.last)
		if st.minInterval == 0 || gap < st.minInterval {
			st.minInterval = gap
		}
	} else {
		st.first = now
	}
	st.checks++
	st.last = now
	found := false
	for k := range p.sources {
		if src := &p.sources[k]; src.IP == ip {
			src.Checks++
			src.Last = now
			found = true
			break
		}
	}
	if !found {
		p.sources = append(p.sources, SourceStats{IP: ip, Checks: 1, First: now, Last: now})
	}
	if window := p.f.opts.overlap; window > 0 {
		p.overlap(ip, now, gap, window)
	}
}

// overlap counts the check from ip at now as an overlap if the previous
// check, gap before (negative: none), came from another address within
// window; p.mu is held.
func (p *proxy) overlap(ip netip.Addr, now time.Time, gap, window time.Duration) {
	ov := p.ov
	if ov == nil {
		ov = &overlaps{}
		p.ov = ov
	}
	prev := ov.lastIP
	ov.lastIP = ip
	if gap < 0 || prev == ip || gap >= window {
		return
	}
	ov.count++
	if ov.last.IsZero() || now.Sub(ov.last) >= window {
		ov.start = now // a new run
	}
	ov.last = now
	ov.max = max(ov.max, now.Sub(ov.start))
}

// TotalChecks returns the number of checks all proxies received since
// Start.
func (f *Farm) TotalChecks() uint64 { return f.total.Load() }

// RootCAs returns a pool with the CA that signed the farm's TLS
// certificate, which is valid for localhost, 127.0.0.1, ::1,
// proxyhealth.test and *.proxyhealth.test.
func (f *Farm) RootCAs() *x509.CertPool { return testCA.pool }

// CACertPEM returns the test CA certificate in PEM form (for other
// processes, e.g. curl --cacert).
func (f *Farm) CACertPEM() []byte { return append([]byte(nil), testCA.pem...) }

// ClientTLSConfig returns a client TLS configuration trusting the farm's
// CA, suitable for probe.Config.TLSConfig.
func (f *Farm) ClientTLSConfig() *tls.Config { return &tls.Config{RootCAs: testCA.pool} }

// Close stops every listener, closes every open connection and waits for
// all the farm's goroutines to exit. It is idempotent.
func (f *Farm) Close() {
	f.closeOnce.Do(func() {
		f.closed.Store(true)
		close(f.done)
		for _, p := range append([]*proxy{f.echo}, f.proxies...) {
			if p == nil {
				continue
			}
			p.mu.Lock()
			if p.ln != nil {
				p.ln.Close()
				p.ln = nil
			}
			for c := range p.conns {
				c.Close()
			}
			p.mu.Unlock()
		}
		f.wg.Wait()
	})
}

// Ports are picked by the farm rather than by the kernel: bind(port 0)
// searches the ephemeral range linearly and becomes very slow with
// thousands of listeners (about 0.5 ms each at 10,000 on Linux), and
// listeners inside the ephemeral range also take ports away from outgoing
// connections. The farm scans [portLo, portHi), below Linux's default
// ephemeral range, from a random point, with a process-wide cursor; ports
// in use are skipped. If the whole range is busy it falls back to port 0.
const portLo, portHi = 10000, 32768

var portCursor atomic.Uint32

func init() { portCursor.Store(uint32(rand.IntN(portHi - portLo))) }

func listen(ctx context.Context, host string) (net.Listener, error) {
	var lc net.ListenConfig
	for range portHi - portLo {
		port := portLo + int(portCursor.Add(1)%(portHi-portLo))
		ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err == nil {
			return ln, nil
		}
		if ctx.Err() != nil || !errors.Is(err, syscall.EADDRINUSE) && !errors.Is(err, syscall.EACCES) {
			return nil, err
		}
	}
	return lc.Listen(ctx, "tcp", net.JoinHostPort(host, "0"))
}

func (p *proxy) acceptLoop(ln net.Listener) {
	defer p.f.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Transient (e.g. EMFILE): back off briefly unless closing.
			select {
			case <-p.f.done:
				return
			case <-time.After(5 * time.Millisecond):
			}
			continue
		}
		now := time.Now()
		if !p.direct {
			p.f.total.Add(1)
		}
		p.mu.Lock()
		if p.f.closed.Load() {
			p.mu.Unlock()
			c.Close()
			return
		}
		p.record(peerIP(c), now)
		b := p.behavior
		if p.conns == nil {
			p.conns = make(map[net.Conn]struct{})
		}
		p.conns[c] = struct{}{}
		sess := session{f: p.f, p: p, b: b, authValue: p.authValue, user: p.user, pass: p.pass, hasCreds: p.hasCreds,
			exit: p.exit, anonymity: p.anonymity}
		p.mu.Unlock()
		p.f.wg.Add(1)
		go p.serve(c, sess)
	}
}

func (p *proxy) serve(c net.Conn, s session) {
	defer p.f.wg.Done()
	defer func() {
		c.Close()
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
	}()
	if p.direct {
		s.runDirect(c)
		return
	}
	s.run(c)
}

// peerIP is the connection's remote address (unmapped), or the zero
// Addr for a connection that is not TCP.
func peerIP(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// flip returns true with probability prob.
func (f *Farm) flip(prob float64) (fail bool, reset bool) {
	f.rngMu.Lock()
	defer f.rngMu.Unlock()
	if f.rng.Float64() >= prob {
		return false, false
	}
	return true, f.rng.IntN(2) == 0
}

// String describes the farm, e.g. "fakeproxy.Farm(3 proxies)".
func (f *Farm) String() string { return "fakeproxy.Farm(" + strconv.Itoa(len(f.proxies)) + " proxies)" }
