package actors

import (
	"runtime"
	"slices"
	"sync"

	"github.com/asynkron/protoactor-go/actor"
)

// proxyMailbox makes the proxy actors' mailboxes.
func proxyMailbox() actor.Mailbox { return new(mailbox) }

// mailbox is the proxy actors' mailbox: one slice of queued messages under
// a mutex. A proxy's mailbox is empty nearly all the time, and there is one
// per proxy, so it is built to cost little when empty and nothing per
// message. An empty one is 80 bytes and holds no buffer. protoactor's
// lock-free mailbox takes about 170 bytes (two queues, each with a node
// left over), allocates a node for every message, and a closure for every
// run it schedules. This one allocates a one-message buffer when a message
// finds it empty, and its runs go to the engine's worker pool as jobs of
// their own (workers.submit).
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
	// q[head:] are the waiting messages: nsys system messages first, then
	// the user messages. q is nil while nothing waits.
	q         []any
	head      int32
	nsys      int32
	scheduled bool // a run is scheduled or running
	suspended bool // user messages wait for ResumeMailbox
	invoker   actor.MessageInvoker
	dispatch  actor.Dispatcher
}

// PostUserMessage queues msg and schedules a run unless one is scheduled
// or the mailbox is suspended.
func (m *mailbox) PostUserMessage(msg any) {
	m.mu.Lock()
	m.q = append(m.q, msg)
	run := m.wake()
	m.mu.Unlock()
	if run {
		m.schedule()
	}
}

// PostSystemMessage queues msg after the system messages already waiting,
// before every user message, and schedules a run unless one is scheduled.
func (m *mailbox) PostSystemMessage(msg any) {
	m.mu.Lock()
	m.q = slices.Insert(m.q, int(m.head+m.nsys), msg)
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
	return len(m.q) - int(m.head) - int(m.nsys)
}

// runnable reports whether a message can run: a system message, or a user
// message while the mailbox is not suspended (m.mu held).
func (m *mailbox) runnable() bool {
	return m.nsys > 0 || (!m.suspended && int(m.head) < len(m.q))
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
// buffer is dropped once it is empty, so an idle mailbox holds none; a
// mailbox that never empties moves its messages down once the taken ones
// are the larger half, so its buffer stays within twice its longest queue.
func (m *mailbox) take() any {
	msg := m.q[m.head]
	m.q[m.head] = nil
	m.head++
	switch h := int(m.head); {
	case h == len(m.q):
		m.q, m.head = nil, 0
	case h >= 32 && 2*h >= len(m.q):
		n := copy(m.q, m.q[h:])
		clear(m.q[n:])
		m.q, m.head = m.q[:n], 0
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
