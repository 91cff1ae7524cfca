package actors

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

// heldDispatcher keeps the runs a mailbox schedules until the test runs
// them, so the order of posts and runs is the test's.
type heldDispatcher struct {
	mu   sync.Mutex
	runs []func()
}

func (d *heldDispatcher) Schedule(fn func()) {
	d.mu.Lock()
	d.runs = append(d.runs, fn)
	d.mu.Unlock()
}

func (d *heldDispatcher) Throughput() int { return 300 }

// runAll runs the scheduled runs, and those they schedule, and returns how
// many ran.
func (d *heldDispatcher) runAll() int {
	n := 0
	for {
		d.mu.Lock()
		if len(d.runs) == 0 {
			d.mu.Unlock()
			return n
		}
		fn := d.runs[0]
		d.runs = d.runs[1:]
		d.mu.Unlock()
		fn()
		n++
	}
}

// runOne runs the one scheduled run, keeping the slice (a run allocates
// nothing here).
func (d *heldDispatcher) runOne() {
	d.mu.Lock()
	fn := d.runs[0]
	d.runs = d.runs[:0]
	d.mu.Unlock()
	fn()
}

// recorder is a MessageInvoker that records what it runs. A user message
// "boom" panics, and its EscalateFailure suspends the mailbox, as
// protoactor's actor context does.
type recorder struct {
	mb        *mailbox
	mu        sync.Mutex
	got       []string
	failures  []string
	onMessage func(any)
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.got = append(r.got, s)
	r.mu.Unlock()
}

func (r *recorder) InvokeSystemMessage(m any) { r.add(fmt.Sprintf("sys:%v", m)) }

func (r *recorder) InvokeUserMessage(m any) {
	if m == "boom" {
		panic(errors.New("boom"))
	}
	if r.onMessage != nil {
		r.onMessage(m)
		return
	}
	r.add(fmt.Sprintf("user:%v", m))
}

func (r *recorder) EscalateFailure(reason, m any) {
	r.mu.Lock()
	r.failures = append(r.failures, fmt.Sprintf("%v on %v", reason, m))
	r.mu.Unlock()
	r.mb.PostSystemMessage(&actor.SuspendMailbox{})
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = nil
	return got
}

func newTestMailbox(d actor.Dispatcher) (*mailbox, *recorder) {
	m := proxyMailbox().(*mailbox)
	r := &recorder{mb: m}
	m.RegisterHandlers(r, d)
	m.Start()
	return m, r
}

// TestMailboxRunsSystemMessagesFirst: system messages run before user
// messages, each kind in the order posted, in one run however many posts
// came before it.
func TestMailboxRunsSystemMessagesFirst(t *testing.T) {
	d := &heldDispatcher{}
	m, r := newTestMailbox(d)
	m.PostUserMessage("u1")
	m.PostUserMessage("u2")
	m.PostSystemMessage("s1")
	m.PostUserMessage("u3")
	m.PostSystemMessage("s2")
	if n := m.UserMessageCount(); n != 3 {
		t.Fatalf("UserMessageCount = %d, want 3", n)
	}
	if runs := d.runAll(); runs != 1 {
		t.Fatalf("%d runs scheduled, want 1", runs)
	}
	want := []string{"sys:s1", "sys:s2", "user:u1", "user:u2", "user:u3"}
	if got := r.take(); !slices.Equal(got, want) {
		t.Fatalf("ran %v, want %v", got, want)
	}
	if m.q != nil || m.nsys != 0 || m.scheduled {
		t.Fatalf("an emptied mailbox keeps %v (%d system), scheduled %v", m.q, m.nsys, m.scheduled)
	}
	m.PostUserMessage("u4")
	if runs := d.runAll(); runs != 1 || !slices.Equal(r.take(), []string{"user:u4"}) {
		t.Fatalf("a post to an idle mailbox: %d runs", runs)
	}
}

// TestMailboxSpillKeepsTheOrder: the message that waits alone in the
// mailbox and the one that arrives next, of either kind, move to a spill in
// the order they run, and later posts keep it; the spill is dropped when
// the mailbox empties.
func TestMailboxSpillKeepsTheOrder(t *testing.T) {
	for _, c := range []struct {
		posts []string // "u…" user, "s…" system
		want  []string
	}{
		{[]string{"u1", "u2"}, []string{"user:u1", "user:u2"}},
		{[]string{"u1", "s1"}, []string{"sys:s1", "user:u1"}},
		{[]string{"s1", "u1"}, []string{"sys:s1", "user:u1"}},
		{[]string{"s1", "s2"}, []string{"sys:s1", "sys:s2"}},
		{[]string{"u1", "s1", "u2", "s2"}, []string{"sys:s1", "sys:s2", "user:u1", "user:u2"}},
		{[]string{"s1", "u1", "s2", "u2", "s3"}, []string{"sys:s1", "sys:s2", "sys:s3", "user:u1", "user:u2"}},
	} {
		d := &heldDispatcher{}
		m, r := newTestMailbox(d)
		for _, p := range c.posts {
			if p[0] == 's' {
				m.PostSystemMessage(p)
			} else {
				m.PostUserMessage(p)
			}
		}
		d.runAll()
		if got := r.take(); !slices.Equal(got, c.want) {
			t.Errorf("posted %v: ran %v, want %v", c.posts, got, c.want)
		}
		if m.q != nil || m.nsys != 0 {
			t.Errorf("posted %v: the emptied mailbox keeps %v, %d system", c.posts, m.q, m.nsys)
		}
	}
}

// TestMailboxNilMessage: a nil message waits and runs like any other, alone
// or among others, though an empty mailbox holds nil.
func TestMailboxNilMessage(t *testing.T) {
	for _, posts := range [][]any{{nil}, {"u1", nil, "u2"}, {nil, nil}} {
		d := &heldDispatcher{}
		m, r := newTestMailbox(d)
		var want []string
		for _, p := range posts {
			m.PostUserMessage(p)
			want = append(want, fmt.Sprintf("user:%v", p))
		}
		if n := m.UserMessageCount(); n != len(posts) {
			t.Errorf("posted %v: UserMessageCount = %d", posts, n)
		}
		d.runAll()
		if got := r.take(); !slices.Equal(got, want) {
			t.Errorf("posted %v: ran %v, want %v", posts, got, want)
		}
		if m.q != nil {
			t.Errorf("posted %v: the emptied mailbox keeps %v", posts, m.q)
		}
	}
}

// TestMailboxSuspension: SuspendMailbox holds user messages back, system
// messages still run, and ResumeMailbox lets the held ones run in order.
// Neither reaches the invoker.
func TestMailboxSuspension(t *testing.T) {
	d := &heldDispatcher{}
	m, r := newTestMailbox(d)
	m.PostSystemMessage(&actor.SuspendMailbox{})
	m.PostUserMessage("u1")
	d.runAll()
	if got := r.take(); len(got) != 0 {
		t.Fatalf("a suspended mailbox ran %v", got)
	}
	m.PostUserMessage("u2")
	if runs := d.runAll(); runs != 0 {
		t.Fatalf("a user message scheduled %d runs of a suspended mailbox", runs)
	}
	m.PostSystemMessage("s1")
	d.runAll()
	if got := r.take(); !slices.Equal(got, []string{"sys:s1"}) {
		t.Fatalf("a suspended mailbox ran %v, want only the system message", got)
	}
	m.PostSystemMessage(&actor.ResumeMailbox{})
	d.runAll()
	if got, want := r.take(), []string{"user:u1", "user:u2"}; !slices.Equal(got, want) {
		t.Fatalf("after resume: ran %v, want %v", got, want)
	}
}

// TestMailboxPanic: a panicking handler is escalated with its message and
// ends the run; the messages behind it wait for the resume (the
// supervisor's decision) and then run in order.
func TestMailboxPanic(t *testing.T) {
	d := &heldDispatcher{}
	m, r := newTestMailbox(d)
	m.PostUserMessage("u1")
	m.PostUserMessage("boom")
	m.PostUserMessage("u2")
	d.runAll()
	if got := r.take(); !slices.Equal(got, []string{"user:u1"}) {
		t.Fatalf("ran %v, want u1 only before the failure is handled", got)
	}
	if !slices.Equal(r.failures, []string{"boom on boom"}) {
		t.Fatalf("escalated %v, want the panic with its message", r.failures)
	}
	if m.UserMessageCount() != 1 || m.scheduled {
		t.Fatalf("after the panic: %d user messages waiting (want 1), scheduled %v", m.UserMessageCount(), m.scheduled)
	}
	m.PostSystemMessage(&actor.ResumeMailbox{})
	d.runAll()
	if got := r.take(); !slices.Equal(got, []string{"user:u2"}) {
		t.Fatalf("after resume: ran %v, want u2", got)
	}
}

// TestMailboxNeverEmpty: a mailbox that is never empty (every message
// brings the next) keeps a buffer the size of its queue, not of every
// message it ever held.
func TestMailboxNeverEmpty(t *testing.T) {
	d := &heldDispatcher{}
	m, r := newTestMailbox(d)
	const queued, total = 10, 10000
	n := 0
	maxCap := 0
	r.onMessage = func(any) {
		n++
		if sp, ok := m.q.(*spill); ok {
			maxCap = max(maxCap, cap(sp.q))
		}
		if n+queued <= total {
			m.PostUserMessage(n)
		}
	}
	for i := range queued {
		m.PostUserMessage(i)
	}
	d.runAll()
	if n != total {
		t.Fatalf("ran %d messages, want %d", n, total)
	}
	if maxCap > 128 {
		t.Fatalf("the buffer grew to %d messages for a queue of %d", maxCap, queued)
	}
}

// TestMailboxConcurrentPosts: messages posted from many goroutines at once,
// runs on the worker pool: each runs exactly once, each sender's in the
// order sent.
func TestMailboxConcurrentPosts(t *testing.T) {
	var p workers
	defer p.close()
	m, r := newTestMailbox(&p)
	const senders, each = 8, 2000
	type msg struct{ from, n int }
	next := make([]int, senders) // only the mailbox's runs touch it
	var bad []string
	var done sync.WaitGroup
	done.Add(senders * each)
	r.onMessage = func(v any) {
		mm := v.(msg)
		if mm.n != next[mm.from] {
			bad = append(bad, fmt.Sprintf("sender %d: got %d, want %d", mm.from, mm.n, next[mm.from]))
		}
		next[mm.from] = mm.n + 1
		done.Done()
	}
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if i%100 == 0 {
					m.PostSystemMessage(i)
				}
				m.PostUserMessage(msg{s, i})
			}
		}()
	}
	wg.Wait()
	waited := make(chan struct{})
	go func() { done.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
		t.Fatalf("not every message ran: %d user messages waiting", m.UserMessageCount())
	}
	if len(bad) > 0 {
		t.Fatalf("out of order: %v", bad[:min(len(bad), 5)])
	}
	testutil.Eventually(t, 10*time.Second, "the mailbox to go idle", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return !m.scheduled
	})
	if got := len(r.take()); got != senders*each/100 {
		t.Fatalf("%d system messages ran, want %d", got, senders*each/100)
	}
}

// TestMailboxIsSmall: there is one mailbox per proxy, empty nearly all the
// time: 64 bytes and no buffer then (protoactor's lock-free one holds about
// 170), and no allocation for a message that finds it empty.
func TestMailboxIsSmall(t *testing.T) {
	if n := unsafe.Sizeof(mailbox{}); n > 64 {
		t.Fatalf("mailbox is %d bytes, past the 64-byte size class", n)
	}
	d := &heldDispatcher{runs: make([]func(), 0, 1)}
	m, r := newTestMailbox(d)
	r.onMessage = func(any) {}
	var msg any = &checkDue{}
	allocs := testing.AllocsPerRun(1000, func() {
		m.PostUserMessage(msg)
		d.runOne()
	})
	// One for the method value m.run that a dispatcher other than the
	// worker pool takes.
	if allocs > 1 {
		t.Fatalf("a message costs %.1f allocations, want at most 1", allocs)
	}
	if m.q != nil {
		t.Fatalf("an idle mailbox keeps %v", m.q)
	}

	// On the worker pool a run is a job of its own: nothing is allocated.
	var p workers
	defer p.close()
	pm, pr := newTestMailbox(&p)
	ran := make(chan struct{})
	pr.onMessage = func(any) { ran <- struct{}{} }
	allocs = testing.AllocsPerRun(1000, func() {
		pm.PostUserMessage(msg)
		<-ran
	})
	if allocs > 0 {
		t.Fatalf("a message run on the worker pool costs %.1f allocations, want none", allocs)
	}
}

// BenchmarkMailbox posts messages to an empty mailbox and runs them until
// it is empty again: one (a proxy's usual message) or two at a time (the
// second spills). The dispatcher is not the worker pool, so each run also
// costs the method value m.run.
func BenchmarkMailbox(b *testing.B) {
	for _, n := range []int{1, 2} {
		b.Run(fmt.Sprintf("waiting=%d", n), func(b *testing.B) {
			d := &heldDispatcher{runs: make([]func(), 0, 1)}
			m, r := newTestMailbox(d)
			r.onMessage = func(any) {}
			var msg any = &checkDue{}
			b.ReportAllocs()
			for range b.N {
				for range n {
					m.PostUserMessage(msg)
				}
				d.runOne()
			}
		})
	}
}
