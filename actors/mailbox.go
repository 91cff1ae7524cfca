package actors

import (
	"runtime"
	"slices"
	"sync"

	"github.com/asynkron/protoactor-go/actor"
)

// proxyMailbox makes the proxy actors' mailboxes.
func proxyMailbox() actor.Mailbox { return new(mailbox) }

// mailbox is the proxy actors' mailbox: its queue of messages under a
// mutex. A proxy's mailbox is empty nearly all the time, and there is one
// per proxy, so it is built to cost little when empty and nothing per
// message. It is 64 bytes (a size class) and holds no buffer while empty. protoactor's lock-free mailbox takes about 170 bytes (two
// queues, each with a node left over), allocates a node for every message,
// and a closure for every run it schedules. This one keeps a message that
// finds it empty in itself (a proxy's messages nearly always come one at a
// time: a timer, a check's result, an append's), allocates a buffer (a
// spill) only while more than one waits, and its runs go to the engine's
// worker pool as jobs of their own (workers.submit).
//
// It keeps what protoactor's defaultMailbox does, which supervision relies
// on:
//   - system messages run before user messages, each kind in the order
//     posted;
//   - *actor.SuspendMailbox holds user messages back until
//     *actor.ResumeMailbox (a failure suspends the actor's mailbox; the
//     supervisor's restart or resume lets it go on); system messages still
//     run meanwhile;
//   - a panic in a handler is recovered and handed to the invoker's
//     EscalateFailure with the message that caused it; the run ends there,
//     and the mailbox runs again if messages are waiting;
//   - a run yields its thread (runtime.Gosched) every Throughput messages.
//
// It does not unpack actor.MessageBatch, and takes no MailboxMiddleware:
// nothing sends batches to a proxy actor.
type mailbox struct {
	mu sync.Mutex
	// q holds the waiting messages, nsys system messages first, then the
	// user messages: nil while none waits, the message while one does,
	// else a *spill with them in spill.q[spill.head:]. No message is a
	// *spill (the type is this package's own), and a nil message waits as
	// nilMessage. One field for the three cases: with the message and the
	// spill in fields of their own and a flag for a message that waits,
	// the mailbox took the 80-byte size class.
	q         any
	nsys      int32
	scheduled bool // a run is scheduled or running
	suspended bool // user messages wait for ResumeMailbox
	invoker   actor.MessageInvoker
	dispatch  actor.Dispatcher
}

// nilMessage stands for a nil message while it waits in a mailbox (a nil
// q is an empty mailbox).
type nilMessage struct{}

// spill holds a mailbox's messages while more than one waits: q[head:],
// first in q's room in the spill itself (buf), so that a second message
// costs one allocation.
type spill struct {
	q    []any
	head int
	buf  [2]any
}

// spillOf returns a spill holding a then b (m.mu held).
func spillOf(a, b any) *spill {
	s := &spill{buf: [2]any{a, b}}
	s.q = s.buf[:]
	return s
}

// waiting returns the number of waiting messages (m.mu held).
func (m *mailbox) waiting() int {
	switch q := m.q.(type) {
	case nil:
		return 0
	case *spill:
		return len(q.q) - q.head
	}
	return 1
}

// PostUserMessage queues msg and schedules a run unless one is scheduled
// or the mailbox is suspended.
func (m *mailbox) PostUserMessage(msg any) {
	if msg == nil {
		msg = nilMessage{}
	}
	m.mu.Lock()
	switch q := m.q.(type) {
	case nil:
		m.q = msg
	case *spill:
		q.q = append(q.q, msg)
	default:
		m.q = spillOf(q, msg)
	}
	run := m.wake()
	m.mu.Unlock()
	if run {
		m.schedule()
	}
}

// PostSystemMessage queues msg after the system messages already waiting,
// before every user message, and schedules a run unless one is scheduled.
func (m *mailbox) PostSystemMessage(msg any) {
	if msg == nil {
		msg = nilMessage{}
	}
	m.mu.Lock()
	switch q := m.q.(type) {
	case nil:
		m.q = msg
	case *spill:
		q.q = slices.Insert(q.q, q.head+int(m.nsys), msg)
	default:
		if m.nsys > 0 { // the one waiting is a system message
			m.q = spillOf(q, msg)
		} else {
			m.q = spillOf(msg, q)
		}
	}
	m.nsys++
	run := m.wake()
	m.mu.Unlock()
	if run {
		m.schedule()
	}
}

// RegisterHandlers sets what runs the messages and where the runs go.
func (m *mailbox) RegisterHandlers(invoker actor.MessageInvoker, dispatcher actor.Dispatcher) {
	m.invoker, m.dispatch = invoker, dispatcher
}

// Start implements actor.Mailbox; there is nothing to start.
func (m *mailbox) Start() {}

// UserMessageCount returns the number of user messages waiting.
func (m *mailbox) UserMessageCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.waiting() - int(m.nsys)
}

// runnable reports whether a message can run: a system message, or a user
// message while the mailbox is not suspended (m.mu held).
func (m *mailbox) runnable() bool {
	return m.nsys > 0 || (!m.suspended && m.waiting() > 0)
}

// wake marks the mailbox scheduled if it is not and a message can run, and
// reports whether the caller is to schedule that run (m.mu held).
func (m *mailbox) wake() bool {
	if m.scheduled || !m.runnable() {
		return false
	}
	m.scheduled = true
	return true
}

// schedule hands a run to the dispatcher: to the worker pool as a job,
// without a closure, or to any other dispatcher as a func.
func (m *mailbox) schedule() {
	if w, ok := m.dispatch.(*workers); ok {
		w.submit(m)
		return
	}
	m.dispatch.Schedule(m.run)
}

// next takes the message to run next, system messages first, and applies
// the suspend and resume messages itself. When nothing can run it ends the
// run: it returns ok false and the mailbox is no longer scheduled.
func (m *mailbox) next() (msg any, system, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for m.nsys > 0 {
		msg = m.take()
		m.nsys--
		switch msg.(type) {
		case *actor.SuspendMailbox:
			m.suspended = true
		case *actor.ResumeMailbox:
			m.suspended = false
		default:
			return msg, true, true
		}
	}
	if !m.runnable() {
		m.scheduled = false
		return nil, false, false
	}
	return m.take(), false, true
}

// take removes the oldest waiting message (m.mu held, one waiting). The
// spill is dropped once it is empty, so an idle mailbox holds none; a
// mailbox that never empties moves its messages down once the taken ones
// are the larger half, so its buffer stays within twice its longest queue.
func (m *mailbox) take() (msg any) {
	if sp, ok := m.q.(*spill); ok {
		msg = sp.q[sp.head]
		sp.q[sp.head] = nil
		sp.head++
		switch h := sp.head; {
		case h == len(sp.q):
			m.q = nil
		case h >= 32 && 2*h >= len(sp.q):
			n := copy(sp.q, sp.q[h:])
			clear(sp.q[n:])
			sp.q, sp.head = sp.q[:n], 0
		}
	} else {
		msg, m.q = m.q, nil
	}
	if _, ok := msg.(nilMessage); ok {
		return nil
	}
	return msg
}

// run is one run of the mailbox: it runs messages until none can run.
func (m *mailbox) run() {
	var msg any
	defer func() {
		if r := recover(); r != nil {
			m.invoker.EscalateFailure(r, msg)
			m.rerun()
		}
	}()
	for i, t := 0, m.dispatch.Throughput(); ; i++ {
		if i == t {
			i = 0
			runtime.Gosched()
		}
		var system, ok bool
		if msg, system, ok = m.next(); !ok {
			return
		}
		if system {
			m.invoker.InvokeSystemMessage(msg)
		} else {
			m.invoker.InvokeUserMessage(msg)
		}
	}
}

// rerun ends a run that a panic cut short, and schedules another if a
// message can run (EscalateFailure has just posted the suspension).
func (m *mailbox) rerun() {
	m.mu.Lock()
	m.scheduled = false
	run := m.wake()
	m.mu.Unlock()
	if run {
		m.schedule()
	}
}
