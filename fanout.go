package proxyhealth

import (
	"context"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/proxyhealth/proxyhealth/actors"
)

// request is one message to one proxy actor in a fan-out.
type request struct {
	id  string // proxy ID
	pid *actor.PID
	msg any
}

// fanOut is a process (in protoactor's sense: it has a PID, but no mailbox
// or goroutine) that gathers the replies of many proxy actors. Asking 10,000
// proxies through one fanOut costs one process registry entry, where a
// future per proxy cost 10,000 entries, timers and wake-ups (and grew the
// registry's maps for good).
type fanOut struct {
	replies chan *actors.Reply
}

// SendUserMessage implements actor.Process: a proxy's Reply, or the notice
// that a request went to dead letters (protoactor does not say which: an
// anonymous Reply makes requestAll look for proxies whose actor is gone).
func (f *fanOut) SendUserMessage(_ *actor.PID, message any) {
	_, msg, _ := actor.UnwrapEnvelope(message)
	var r *actors.Reply
	switch m := msg.(type) {
	case *actors.Reply:
		r = m
	case *actor.DeadLetterResponse:
		r = &actors.Reply{}
	default:
		return
	}
	select {
	case f.replies <- r:
	default: // more replies than requests: not ours to wait for
	}
}

// SendSystemMessage implements actor.Process.
func (f *fanOut) SendSystemMessage(*actor.PID, any) {}

// Stop implements actor.Process.
func (f *fanOut) Stop(*actor.PID) {}

// requestAll sends every request with one fanOut as the sender and waits
// for the replies, or ctx, or the request timeout. It returns the error of
// each proxy that failed or did not answer.
func (e *Engine) requestAll(ctx context.Context, reqs []request) map[string]error {
	if len(reqs) == 0 {
		return nil
	}
	f := &fanOut{replies: make(chan *actors.Reply, len(reqs))}
	pending := make(map[string]*actor.PID, len(reqs))
	for _, r := range reqs {
		pending[r.id] = r.pid
	}
	reg := e.sys.ProcessRegistry
	self, _ := reg.Add(f, "fanout"+reg.NextId())
	defer reg.Remove(self)
	for _, r := range reqs {
		e.sys.Root.RequestWithCustomSender(r.pid, r.msg, self)
	}
	// Without a deadline in ctx, requests time out like futures do.
	var expired <-chan time.Time
	timeout := requestTimeout(ctx)
	if _, ok := ctx.Deadline(); !ok {
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		expired = timer.C
	}
	errs := make(map[string]error)
	for len(pending) > 0 {
		select {
		case r := <-f.replies:
			if r.Proxy == "" { // a dead letter
				for id, pid := range pending {
					if _, alive := reg.GetLocal(pid.GetId()); !alive {
						delete(pending, id)
						errs[id] = fmt.Errorf("%w: proxy %s: its actor is not running", ErrUnknownProxy, id)
					}
				}
				continue
			}
			if _, ok := pending[r.Proxy]; !ok {
				continue
			}
			delete(pending, r.Proxy)
			if r.Err != nil {
				errs[r.Proxy] = r.Err
			}
		case <-ctx.Done():
			for id := range pending {
				errs[id] = fmt.Errorf("%w: proxy %s: %w", ErrOutcomeUnknown, id, ctx.Err())
			}
			return errs
		case <-expired:
			for id := range pending {
				errs[id] = fmt.Errorf("%w: no answer from proxy %s within %v", ErrOutcomeUnknown, id, timeout)
			}
			return errs
		}
	}
	return errs
}
