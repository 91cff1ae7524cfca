package props_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leanovate/gopter"
	"github.com/leanovate/gopter/commands"
	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
)

// TestEngineProps is a stateful (gopter commands) test of the whole engine
// against a simple model. It runs random sequences of: add/remove proxy,
// farm behaviour changes (so checks succeed or fail with each class),
// passive outcomes, pause/resume of a proxy, a source and the pool, revive,
// config change (Reconcile), retention (on by default;
// -props.engine.retention=false leaves it out), time moving on the fake
// clock, clean restarts and crashes (SIGKILL of the child process running
// the engine, at a random moment of a tick, or from Config.OnJournalCommit,
// which runs after the commit and before the appenders are answered: so
// exactly between an operator's command's commit and its acknowledgement). After every step the
// child checks that the live status equals a fold of the journal, that the
// counts add up, that seqs are gap-free globally and per proxy, that every
// transition is in the state machine's table and that no password leaked;
// and that view.db equals a rebuild from the journal, table by table; the
// parent checks the proxies, their sources and pause flags against the
// model, that commands fail exactly when the model says they must, and that
// every new check's class is the one the farm's behaviour gives.
//
// Replay a failure with the seed it logs:
//
//	go test ./props_test/ -run '^TestEngineProps$' -props.seed=SEED -v
//
// More sequences (make soak): -props.engine.count=N or
// PROPS_ENGINE_COUNT=N; longer ones: -props.engine.steps=N.
func TestEngineProps(t *testing.T) {
	count := *engineCount
	if s := os.Getenv("PROPS_ENGINE_COUNT"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			t.Fatalf("PROPS_ENGINE_COUNT=%q: want a positive number of sequences", s)
		}
		count = n
	}
	farm, err := fakeproxy.Start(context.Background(), farmSize, fakeproxy.WithCredentials("u", secret))
	if err != nil {
		t.Fatal(err)
	}
	defer farm.Close()
	sharedFarm = farm
	// The data directories live on tmpfs where there is one: fsync costs
	// nothing there, so steps are short and the window in which an append
	// is in flight unseen is tiny.
	root := t.TempDir()
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "props-engine-"); err == nil {
			root = d
			defer os.RemoveAll(d)
		}
	}
	h := &harness{t: t, farm: farm, root: root}
	defer h.stopAll()

	seed := *seedFlag
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	p := gopter.DefaultTestParametersWithSeed(seed)
	p.MinSuccessfulTests = count
	p.MaxSize = *engineSteps
	p.Workers = 1
	t.Logf("gopter seed %d; replay: go test ./props_test/ -run '^TestEngineProps$' -props.seed=%d -props.engine.count=%d -props.engine.steps=%d -v",
		seed, seed, count, *engineSteps)
	props := gopter.NewProperties(p)
	props.Property("engine", commands.Prop(h.commands()))
	props.TestingRun(t)
	t.Logf("ran %d sequences, %d steps, %d crashes (%d at a commit), %d clean restarts, %d view comparisons",
		h.stats.seqs, h.stats.steps, h.stats.crashes, h.stats.commitCrashes, h.stats.restarts, h.stats.views)
	var edges []string
	for e, n := range h.edges {
		edges = append(edges, fmt.Sprintf("%s=%d", e, n))
	}
	sort.Strings(edges)
	t.Logf("sequences per transition: %s", strings.Join(edges, " "))
}

var (
	engineCount     = flag.Int("props.engine.count", 12, "sequences TestEngineProps runs (also PROPS_ENGINE_COUNT)")
	engineRetention = flag.Bool("props.engine.retention", true, "journal retention of 30 min and retention steps in TestEngineProps (=false leaves retention out)")
	engineStrict    = flag.Bool("props.engine.strict", false, "compare, for proxies whose history retention trimmed, their success-rate windows and last success and the view's history rows too (history retention deleted: they differ from a rebuild by design, see Config.Retention)")
	engineSteps     = flag.Int("props.engine.steps", 40, "maximum commands per sequence of TestEngineProps")
)

const farmSize = 6

// sharedFarm is TestEngineProps' farm (PostCondition has no harness).
var sharedFarm *fakeproxy.Farm

// behaviours the farm's proxies are set to; the class a check through a
// proxy with (without) credentials must give.
var behaviours = []struct {
	name        string
	b           fakeproxy.Behavior
	class, auth string
}{
	{"ok", fakeproxy.OK(), "", ""},
	{"refuse", fakeproxy.Refuse(), "refused", "refused"},
	{"status503", fakeproxy.Status(503), "bad_status", "bad_status"},
	{"auth", fakeproxy.AuthRequired(), "proxy_auth_required", ""},
	{"reset", fakeproxy.Reset(), "reset", "reset"},
	{"garbage", fakeproxy.Garbage(), "protocol", "protocol"},
}

var outcomeClasses = []string{"", "refused", "timeout", "reset", "bad_status", "other"}

// mproxy is the model of a proxy.
type mproxy struct {
	Source string
	Paused bool
}

// emodel is the state the commands run against. NextState copies it.
type emodel struct {
	Now     time.Time
	Health  [2]Thresholds
	Proxies map[int]mproxy // by farm index
	Beh     [farmSize]int
}

func (m *emodel) clone() *emodel {
	n := *m
	n.Proxies = make(map[int]mproxy, len(m.Proxies))
	for k, v := range m.Proxies {
		n.Proxies[k] = v
	}
	return &n
}

func (m *emodel) String() string {
	return fmt.Sprintf("now=%s health=%+v proxies=%v beh=%v", m.Now.Format(time.RFC3339), m.Health, m.Proxies, m.Beh)
}

// proxyURL is farm proxy i's URL: odd ones carry credentials.
func proxyURL(f *fakeproxy.Farm, i int) string {
	if i%2 == 1 {
		return f.URLWith(i, "http", "u", secret)
	}
	return f.URL(i)
}

// cmd is one generated command.
type cmd struct {
	Op     string
	Idx    int // farm index
	Src    int
	D      time.Duration
	Beh    int
	OK     bool
	Class  string
	Health [2]Thresholds
	Crash  int // 0 none, 1 SIGKILL right after the command's commit, 2 SIGKILL at a random moment of a tick
}

func (c *cmd) String() string {
	s := c.Op
	switch c.Op {
	case "add", "remove", "pause", "resume", "revive":
		s += fmt.Sprintf("(%d)", c.Idx)
	case "outcome":
		s += fmt.Sprintf("(%d,ok=%v,%q)", c.Idx, c.OK, c.Class)
	case "behaviour":
		s += fmt.Sprintf("(%d=%s)", c.Idx, behaviours[c.Beh].name)
	case "pause_source", "resume_source":
		s += "(" + sources[c.Src] + ")"
	case "tick":
		s += "(" + c.D.String() + ")"
	case "reconcile":
		s += fmt.Sprintf("(%+v)", c.Health)
	}
	if c.Crash == 1 {
		s += "+crash@commit"
	} else if c.Crash == 2 {
		s += "+kill"
	}
	return s
}

// sut is the child process running the engine, with its pipes.
type sut struct {
	h    *harness
	dir  string
	proc *exec.Cmd
	in   *json.Encoder
	out  *json.Decoder
	wIn  *os.File
	rOut *os.File
	// The model's time and thresholds, kept here for restarts (Run does
	// not see the model).
	now    time.Time
	health [2]Thresholds
	edges  map[string]bool // transitions seen in the journal
}

type harness struct {
	t     *testing.T
	farm  *fakeproxy.Farm
	root  string
	n     int
	live  []*sut
	stats struct{ seqs, steps, crashes, commitCrashes, restarts, views int }
	edges map[string]int // sequences that made each transition
}

func (h *harness) stopAll() {
	for _, s := range h.live {
		s.kill()
	}
}

// start starts a child on s.dir and opens the engine at m's time.
func (s *sut) start(m *emodel) (*childReply, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	c := exec.Command(os.Args[0], "-test.run=^$")
	c.Env = append(os.Environ(), childEnv+"="+s.dir)
	c.Stderr = os.Stderr
	c.ExtraFiles = []*os.File{inR, outW}
	if err := c.Start(); err != nil {
		return nil, err
	}
	inR.Close()
	outW.Close()
	s.proc, s.wIn, s.rOut = c, inW, outR
	s.in, s.out = json.NewEncoder(inW), json.NewDecoder(outR)
	return s.call(childReq{Op: "open", Start: m.Now, Health: m.Health, Strict: *engineStrict, Retain: *engineRetention})
}

// call sends req and waits for the reply; an error means the child died.
func (s *sut) call(req childReq) (*childReply, error) {
	if err := s.in.Encode(req); err != nil {
		return nil, err
	}
	var rep childReply
	if err := s.out.Decode(&rep); err != nil {
		return nil, err
	}
	for _, e := range rep.Edges {
		s.edges[e] = true
	}
	return &rep, nil
}

// close closes the engine cleanly and waits for the child to exit; it
// returns what went wrong: Close's error, or the child's failure (its
// TestMain runs goleak after Close; its stderr is the test's).
func (s *sut) close() string {
	rep, err := s.call(childReq{Op: "close"})
	msg := ""
	switch {
	case err != nil:
		msg = "close: the child died: " + err.Error()
	case rep.Err != "":
		msg = "Engine.Close: " + rep.Err
	}
	s.wIn.Close()
	if err := s.proc.Wait(); err != nil && msg == "" {
		msg = "the child failed after a clean Close (leaked goroutines or a failed test: see its output above): " + err.Error()
	}
	s.rOut.Close()
	s.proc = nil
	return msg
}

// kill SIGKILLs the child and reaps it.
func (s *sut) kill() {
	if s.proc == nil {
		return
	}
	_ = s.proc.Process.Kill()
	_ = s.proc.Wait()
	s.wIn.Close()
	s.rOut.Close()
	s.proc = nil
}

// result is what a command observed.
type result struct {
	rep     *childReply
	err     string // the harness failed (not the engine)
	crashed bool
	reopen  *childReply
}

func (h *harness) commands() *commands.ProtoCommands {
	return &commands.ProtoCommands{
		NewSystemUnderTestFunc: func(initial commands.State) commands.SystemUnderTest {
			m := initial.(*emodel)
			h.n++
			h.stats.seqs++
			dir := fmt.Sprintf("%s/seq%d", h.root, h.n)
			if err := os.MkdirAll(dir, 0o700); err != nil {
				h.t.Fatal(err)
			}
			for i := range farmSize {
				if err := h.farm.Set(i, behaviours[m.Beh[i]].b); err != nil {
					h.t.Fatal(err)
				}
			}
			s := &sut{h: h, dir: dir, now: m.Now, health: m.Health, edges: map[string]bool{}}
			h.live = append(h.live, s)
			rep, err := s.start(m)
			if err != nil {
				h.t.Fatalf("start the engine's child process: %v", err)
			}
			if rep.Err != "" || len(rep.Violations) > 0 {
				h.t.Errorf("opening a new engine in %s: %s %s", dir, rep.Err, strings.Join(rep.Violations, "\n"))
			}
			return s
		},
		DestroySystemUnderTestFunc: func(x commands.SystemUnderTest) {
			s := x.(*sut)
			if s.proc != nil {
				// A last look at the view, then a clean close.
				if rep, err := s.call(childReq{Op: "verify", Verify: true}); err == nil && len(rep.Violations) > 0 {
					h.t.Errorf("at the end of sequence %s: %s", s.dir, strings.Join(rep.Violations, "\n"))
				}
				h.stats.views++
				if msg := s.close(); msg != "" {
					h.t.Errorf("at the end of sequence %s: %s", s.dir, msg)
				}
			}
			_ = os.RemoveAll(s.dir)
			if h.edges == nil {
				h.edges = map[string]int{}
			}
			for e := range s.edges {
				h.edges[e]++
			}
		},
		InitialStateGen: func(p *gopter.GenParameters) *gopter.GenResult {
			r := p.Rng
			m := &emodel{Now: t0, Proxies: map[int]mproxy{}}
			for i := range m.Health {
				m.Health[i] = genThresholds(r)
			}
			for i := range m.Beh {
				if r.Intn(2) == 0 {
					m.Beh[i] = r.Intn(len(behaviours))
				}
			}
			return gopter.NewGenResult(m, gopter.NoShrinker)
		},
		GenCommandFunc: func(st commands.State) gopter.Gen {
			m := st.(*emodel)
			return func(p *gopter.GenParameters) *gopter.GenResult {
				return gopter.NewGenResult(h.genCmd(p.Rng, m), gopter.NoShrinker)
			}
		},
	}
}

func genThresholds(r *rand.Rand) Thresholds {
	return Thresholds{H: 1 + uint32(r.Intn(3)), U: 1 + uint32(r.Intn(5)), MaxRec: uint32(r.Intn(3)), PFT: 1 + uint32(r.Intn(3)), FSH: r.Intn(2) == 0}
}

var ticks = []time.Duration{0, 5 * time.Second, 5 * time.Second, 40 * time.Second, 2 * time.Minute, 6 * time.Minute, 35 * time.Minute}

// genCmd draws a command valid in m.
func (h *harness) genCmd(r *rand.Rand, m *emodel) *cmd {
	c := &cmd{Idx: r.Intn(farmSize), Src: r.Intn(2)}
	var present []int
	for i := range farmSize {
		if _, ok := m.Proxies[i]; ok {
			present = append(present, i)
		}
	}
	pick := r.Intn(100)
	if len(present) == 0 && pick >= 14 {
		pick = 0 // add first
	}
	if len(present) > 0 {
		c.Idx = present[r.Intn(len(present))]
	}
	switch {
	case pick < 11:
		c.Op, c.Idx = "add", r.Intn(farmSize) // may be a duplicate
	case pick < 14:
		c.Op = "reconcile"
		c.Health = m.Health
		c.Health[r.Intn(2)] = genThresholds(r)
	case pick < 17:
		c.Op = "remove"
	case pick < 32:
		c.Op, c.Beh = "behaviour", 0 // half of the flips make a proxy work again
		if r.Intn(2) == 0 {
			c.Beh = 1 + r.Intn(len(behaviours)-1)
		}
	case pick < 56:
		c.Op, c.D = "tick", ticks[r.Intn(len(ticks))]
	case pick < 62:
		c.Op = "outcome"
		c.Class = outcomeClasses[r.Intn(len(outcomeClasses))]
		c.OK = c.Class == ""
	case pick < 66:
		c.Op = "pause"
	case pick < 70:
		c.Op = "resume"
	case pick < 73:
		c.Op = "pause_source"
	case pick < 76:
		c.Op = "resume_source"
	case pick < 78:
		c.Op = "pause_pool"
	case pick < 80:
		c.Op = "resume_pool"
	case pick < 86:
		c.Op = "revive"
	case pick < 89 && *engineRetention:
		c.Op = "retention"
	case pick < 92:
		c.Op = "restart"
	case pick < 97:
		c.Op, c.D, c.Crash = "tick", ticks[2+r.Intn(len(ticks)-2)], 2
	default:
		c.Op = "verify"
	}
	switch c.Op {
	case "add", "remove", "pause", "resume", "revive":
		// (A command to many proxies killed at its first commit is
		// partly applied: the model would not know which part.)
		if r.Intn(5) == 0 {
			c.Crash = 1
		}
	}
	return c
}

func (c *cmd) PreCondition(st commands.State) bool {
	m := st.(*emodel)
	_, ok := m.Proxies[c.Idx]
	switch c.Op {
	case "remove", "pause", "resume", "revive", "outcome":
		return ok
	}
	return true
}

func (c *cmd) NextState(st commands.State) commands.State {
	m := st.(*emodel).clone()
	p, ok := m.Proxies[c.Idx]
	switch c.Op {
	case "add":
		if !ok {
			m.Proxies[c.Idx] = mproxy{Source: sources[c.Src]}
		}
	case "remove":
		delete(m.Proxies, c.Idx)
	case "pause", "resume":
		p.Paused = c.Op == "pause"
		m.Proxies[c.Idx] = p
	case "pause_source", "resume_source", "pause_pool", "resume_pool":
		for i, q := range m.Proxies {
			if strings.HasSuffix(c.Op, "pool") || q.Source == sources[c.Src] {
				q.Paused = strings.HasPrefix(c.Op, "pause")
				m.Proxies[i] = q
			}
		}
	case "behaviour":
		m.Beh[c.Idx] = c.Beh
	case "reconcile":
		m.Health = c.Health
	case "tick":
		m.Now = m.Now.Add(c.D)
	}
	return m
}

// Run runs the command in the child; a crash restarts it.
func (c *cmd) Run(x commands.SystemUnderTest) commands.Result {
	s := x.(*sut)
	h := s.h
	h.stats.steps++
	res := &result{}
	req := childReq{Op: c.Op, Verify: true, Crash: c.Crash == 1}
	h.stats.views++
	switch c.Op {
	case "behaviour":
		if err := h.farm.Set(c.Idx, behaviours[c.Beh].b); err != nil {
			res.err = err.Error()
			return res
		}
		req.Op = "verify"
	case "add":
		req.URL, req.Source = proxyURL(h.farm, c.Idx), sources[c.Src]
	case "remove", "pause", "resume", "revive", "outcome":
		req.ID = idOf(h.farm, c.Idx)
		req.OK, req.Class = c.OK, c.Class
	case "pause_source", "resume_source":
		req.Source = sources[c.Src]
	case "tick":
		req.D = c.D
		s.now = s.now.Add(c.D)
	case "reconcile":
		req.Health = c.Health
		s.health = c.Health
	case "restart":
		h.stats.restarts++
		if msg := s.close(); msg != "" {
			res.err = msg
			return res
		}
		return c.reopen(s, res, req)
	}
	if c.Crash == 2 {
		if err := s.in.Encode(req); err != nil {
			res.err = err.Error()
			return res
		}
		time.Sleep(time.Duration(rand.Int63n(int64(30 * time.Millisecond)))) // the moment of the crash, not a wait for a condition
		s.kill()
		res.crashed = true
		h.stats.crashes++
		return c.reopen(s, res, req)
	}
	rep, err := s.call(req)
	if err != nil {
		if !req.Crash {
			res.err = "the child died: " + err.Error()
			return res
		}
		_ = s.proc.Wait()
		s.wIn.Close()
		s.rOut.Close()
		s.proc = nil
		res.crashed = true
		h.stats.crashes++
		h.stats.commitCrashes++
		return c.reopen(s, res, req)
	}
	res.rep = rep
	return res
}

// reopen starts a new child on the same directory at the model's time
// after the command.
func (c *cmd) reopen(s *sut, res *result, req childReq) commands.Result {
	s.h.stats.views++
	rep, err := s.start(&emodel{Now: s.now, Health: s.health})
	if err != nil {
		res.err = "restart: " + err.Error()
		return res
	}
	res.reopen = rep
	return res
}

func idOf(f *fakeproxy.Farm, i int) string {
	info, err := proxyhealth.ParseProxy(proxyURL(f, i))
	if err != nil {
		panic(err)
	}
	return info.ID
}

func fail(f string, a ...any) *gopter.PropResult {
	return &gopter.PropResult{Status: gopter.PropFalse, Labels: []string{fmt.Sprintf(f, a...)}}
}

// PostCondition compares what the command observed with the model (st is
// the model after the command).
func (c *cmd) PostCondition(st commands.State, x commands.Result) *gopter.PropResult {
	m, res := st.(*emodel), x.(*result)
	if res.err != "" {
		return fail("%s: %s", c, res.err)
	}
	var viol []string
	if res.rep != nil {
		viol = append(viol, res.rep.Violations...)
	}
	if res.reopen != nil {
		if res.reopen.Err != "" {
			return fail("%s: reopening the engine after a crash or restart failed: %s", c, res.reopen.Err)
		}
		for _, v := range res.reopen.Violations {
			viol = append(viol, "after the restart: "+v)
		}
	}
	if len(viol) > 0 {
		return fail("%s: %s", c, strings.Join(viol, "\n"))
	}
	obs := map[string]pview{}
	if res.reopen != nil {
		obs = res.reopen.After
	} else if res.rep != nil {
		obs = res.rep.After
	}
	// The proxies, their sources and pause flags are the model's.
	idx := map[string]int{}
	for i := range farmSize {
		idx[idOf(sharedFarm, i)] = i
	}
	for i, p := range m.Proxies {
		v, ok := obs[idOf(sharedFarm, i)]
		switch {
		case !ok:
			return fail("%s: proxy %d (%s) is missing from the live status %v", c, i, idOf(sharedFarm, i), obs)
		case v.Source != p.Source || v.Paused != p.Paused:
			return fail("%s: proxy %d: source %s paused=%v, the model says %s paused=%v", c, i, v.Source, v.Paused, p.Source, p.Paused)
		}
	}
	for id := range obs {
		if _, ok := m.Proxies[idx[id]]; !ok {
			return fail("%s: proxy %s is in the live status, the model has no proxy %d", c, id, idx[id])
		}
	}
	if res.rep == nil {
		return &gopter.PropResult{Status: gopter.PropTrue}
	}
	rep := res.rep
	// Commands fail exactly when they must.
	switch c.Op {
	case "add":
		if _, before := rep.Before[idOf(sharedFarm, c.Idx)]; before != (rep.ErrKind == "duplicate") {
			return fail("%s: present before=%v, error %q", c, before, rep.Err)
		}
		if rep.ErrKind != "" && rep.ErrKind != "duplicate" {
			return fail("%s: %s", c, rep.Err)
		}
	case "revive":
		s := rep.Before[idOf(sharedFarm, c.Idx)].State
		if revivable := s == "failed" || s == "unhealthy" || s == "recovering"; revivable != (rep.Err == "") {
			return fail("%s: state %s before, error %q", c, s, rep.Err)
		}
		if rep.Err != "" && rep.ErrKind != "not_revivable" {
			return fail("%s: state %s before, error %q (want ErrNotRevivable)", c, s, rep.Err)
		}
	default:
		if rep.Err != "" {
			return fail("%s: %s", c, rep.Err)
		}
	}
	// Every new check gave the class of its proxy's behaviour; a proxy
	// paused throughout was not checked.
	for id, a := range rep.After {
		b, ok := rep.Before[id]
		if !ok || a.Checks <= b.Checks {
			continue
		}
		if b.Paused && a.Paused {
			return fail("%s: proxy %d was paused throughout, yet checked %d times", c, idx[id], a.Checks-b.Checks)
		}
		i := idx[id]
		beh := behaviours[m.Beh[i]]
		want := beh.class
		if i%2 == 1 {
			want = beh.auth
		}
		if (want == "") != a.OKLast || (want != "" && a.Class != want) {
			return fail("%s: proxy %d (behaviour %s, credentials %v): last check ok=%v class %q, want class %q", c, i, beh.name, i%2 == 1, a.OKLast, a.Class, want)
		}
	}
	return &gopter.PropResult{Status: gopter.PropTrue}
}

// runFixed plays one fixed sequence through the same harness, model and
// checks as TestEngineProps; it reports the first failing step.
func runFixed(t *testing.T, h *harness, m *emodel, seq []*cmd) {
	t.Helper()
	pc := h.commands()
	s := pc.NewSystemUnderTest(m)
	defer pc.DestroySystemUnderTest(s)
	var st commands.State = m
	for i, c := range seq {
		if !c.PreCondition(st) {
			t.Fatalf("step %d %s: precondition fails", i, c)
		}
		res := c.Run(s)
		st = c.NextState(st)
		if r := c.PostCondition(st, res); r.Status != gopter.PropTrue {
			t.Fatalf("step %d %s: %s", i, c, strings.Join(r.Labels, "\n"))
		}
	}
}

// TestEngineRetentionRepros are the smallest sequences TestEngineProps
// found with retention, replayed deterministically (clean restarts, no
// kill): both failed before the fixes (a start-up that waited for events
// retention had deleted; a run-time proxy with only a snapshot forgotten
// at a restart).
func TestEngineRetentionRepros(t *testing.T) {
	farm, err := fakeproxy.Start(context.Background(), farmSize, fakeproxy.WithCredentials("u", secret))
	if err != nil {
		t.Fatal(err)
	}
	defer farm.Close()
	sharedFarm = farm
	th := Thresholds{H: 2, U: 3, MaxRec: 2, PFT: 3, FSH: true}
	for _, tc := range []struct {
		name string
		seq  []*cmd
	}{
		// Retention deletes every event (the proxy is paused, so quiet);
		// Open then waits for the live status to reach a head no event is
		// left to reach, and fails.
		{"restart after retention deleted every event", []*cmd{
			{Op: "add", Idx: 0}, {Op: "pause", Idx: 0}, {Op: "tick", D: 35 * time.Minute},
			{Op: "retention"}, {Op: "restart"},
		}},
		// A run-time proxy whose every event retention deleted is not in
		// the live status at Open (only configured proxies are seeded from
		// their snapshots), so it is neither resumed nor journaled as
		// removed: it is gone after the restart.
		{"run-time proxy with no retained event survives a restart", []*cmd{
			{Op: "add", Idx: 0}, {Op: "pause", Idx: 0}, {Op: "tick", D: 35 * time.Minute},
			{Op: "retention"}, {Op: "add", Idx: 2}, {Op: "restart"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &harness{t: t, farm: farm, root: t.TempDir()}
			defer h.stopAll()
			runFixed(t, h, &emodel{Now: t0, Health: [2]Thresholds{th, th}, Proxies: map[int]mproxy{}}, tc.seq)
		})
	}
}
