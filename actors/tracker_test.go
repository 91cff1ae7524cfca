package actors

import (
	"context"
	"sync"
	"testing"
	"time"
)

// recTracker records what a proxy actor reports through its Tracker.
type recTracker struct {
	mu       sync.Mutex
	checking bool
	next     time.Time
	starts   int // checks started
	holders  int // Track calls not released
	released int
}

func (r *recTracker) SetChecking(on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if on && !r.checking {
		r.starts++
	}
	r.checking = on
}

func (r *recTracker) SetNextCheck(due time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next = due
}

func (r *recTracker) Release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.holders--
	r.released++
}

func (r *recTracker) get() (checking bool, next time.Time, starts, holders, released int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.checking, r.next, r.starts, r.holders, r.released
}

// TestActorReportsThroughItsTracker: the actor takes its Tracker when it
// starts, reports each check's start and end and each next due time
// through it, releases it when it restarts (and takes it again) and when
// it stops.
func TestActorReportsThroughItsTracker(t *testing.T) {
	rec := &recTracker{}
	var tracked []string
	var mu sync.Mutex
	h := newHarnessWith(t, nil, func(e *Env) {
		e.Track = func(id string) Tracker {
			mu.Lock()
			tracked = append(tracked, id)
			mu.Unlock()
			rec.mu.Lock()
			rec.holders++
			rec.mu.Unlock()
			return rec
		}
	})
	gate := make(chan struct{})
	s := &script{}
	pid := h.spawn("p1", noJitter(), s)
	st := h.idle(pid)
	if _, next, _, holders, _ := rec.get(); !next.Equal(st.NextCheckAt) || holders != 1 {
		t.Fatalf("after start: next %v (actor says %v), holders %d", next, st.NextCheckAt, holders)
	}

	s.hook = func(ctx context.Context, n int64) {
		if n == 1 {
			<-gate
		}
	}
	h.clk.Set(st.NextCheckAt)
	poll(t, "check in flight reported", func() bool { c, _, _, _, _ := rec.get(); return c })
	close(gate)
	st = h.idle(pid)
	checking, next, starts, _, _ := rec.get()
	if checking || starts != 1 || !next.Equal(st.NextCheckAt) || st.NextCheckAt.IsZero() {
		t.Fatalf("after the check: checking %v, starts %d, next %v (actor says %v)", checking, starts, next, st.NextCheckAt)
	}

	// A panicking probe restarts the actor: it releases and tracks again.
	s.hook = func(_ context.Context, n int64) {
		if n == 2 {
			panic("probe exploded")
		}
	}
	h.clk.Set(st.NextCheckAt)
	poll(t, "restart", func() bool { _, _, _, holders, released := rec.get(); return released == 1 && holders == 1 })
	h.step(pid)
	if checking, _, _, holders, released := rec.get(); checking || holders != 1 || released != 1 {
		t.Fatalf("after the restart: checking %v, holders %d, released %d", checking, holders, released)
	}

	if r := h.request(pid, &Remove{Reason: "test"}).(*Reply); r.Err != nil {
		t.Fatal(r.Err)
	}
	poll(t, "tracker released at stop", func() bool { _, _, _, holders, _ := rec.get(); return holders == 0 })
	mu.Lock()
	defer mu.Unlock()
	if len(tracked) != 2 || tracked[0] != "p1" || tracked[1] != "p1" {
		t.Fatalf("tracked %v", tracked)
	}
}
