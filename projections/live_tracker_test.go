package projections_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/projections"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// TestLiveTrackerReportsFlags: a proxy's actor reports through its Tracker
// before and after the proxy's ProxyAdded is applied, through a removal and
// a re-add under another source while it still holds the tracker, and the
// counts always equal a recount from the proxy views.
func TestLiveTrackerReportsFlags(t *testing.T) {
	l := projections.NewLive(projections.LiveOptions{})
	tr := l.Track("p") // the actor starts before its ProxyAdded is applied
	tr.SetChecking(true)
	due := t0.Add(10 * time.Second)
	tr.SetNextCheck(due)
	if s := l.Summary(); s.Checking != 0 || s.Total != 0 {
		t.Fatalf("a proxy not added yet is counted: %+v", s.Counts)
	}
	s := newScript("p", t0).add(added("a"))
	l.Apply(s.out...)
	v, _ := l.Proxy("p")
	if !v.Checking || !v.NextCheckAt.Equal(due) {
		t.Fatalf("flags reported before the ProxyAdded: checking %v next %v", v.Checking, v.NextCheckAt)
	}
	if sum := l.Summary(); sum.Checking != 1 || sum.Sources[0].Checking != 1 {
		t.Fatalf("counts %+v", sum)
	}
	// The ID-based setters and the tracker are the same flags.
	l.SetChecking("p", false)
	if v, _ := l.Proxy("p"); v.Checking || l.Summary().Checking != 0 {
		t.Fatalf("SetChecking by ID did not reach the tracker's flag: %+v", v)
	}
	tr.SetChecking(true)
	if err := checkInvariants(l); err != nil {
		t.Fatal(err)
	}

	// Removed while checking: uncounted; a re-added proxy (its new actor
	// tracks it before the removal is applied) under another source is
	// counted there.
	tr2 := l.Track("p")
	if tr2 != tr {
		t.Fatal("two trackers for one proxy")
	}
	s.add(&pb.ProxyRemoved{Reason: "gone"})
	l.Apply(s.out...)
	if sum := l.Summary(); sum.Checking != 0 || sum.Total != 0 {
		t.Fatalf("removed proxy still counted: %+v", sum.Counts)
	}
	tr.Release() // the old actor ends; the new one still holds it
	s.add(added("b"))
	l.Apply(s.out...)
	sum := l.Summary()
	if sum.Checking != 1 {
		t.Fatalf("re-added under b: %+v", sum.Counts)
	}
	for _, src := range sum.Sources {
		if want := map[string]int{"b": 1}[src.Name]; src.Checking != want {
			t.Fatalf("re-added under b: source %s checking %d, want %d", src.Name, src.Checking, want)
		}
	}
	if err := checkInvariants(l); err != nil {
		t.Fatal(err)
	}
	tr2.SetChecking(false)
	tr2.SetNextCheck(time.Time{})
	if v, _ := l.Proxy("p"); v.Checking || !v.NextCheckAt.IsZero() || l.Summary().Checking != 0 {
		t.Fatalf("flags not cleared: %+v", v)
	}
	tr2.Release()

	// A tracker nothing holds, of a proxy without an entry, is forgotten:
	// a later ProxyAdded starts without flags.
	tq := l.Track("q")
	tq.SetNextCheck(due)
	tq.Release()
	l.Apply(newScript("q", t0).add(added("a")).out...)
	if v, _ := l.Proxy("q"); !v.NextCheckAt.IsZero() {
		t.Fatalf("a released tracker's flags outlived it: next %v", v.NextCheckAt)
	}
}

// TestLiveTrackerRacesTheFeeder: actors toggling their flags through
// trackers while the feeder adds and removes their proxies leave counts
// equal to a recount (run with -race).
func TestLiveTrackerRacesTheFeeder(t *testing.T) {
	l := projections.NewLive(projections.LiveOptions{})
	const n = 20
	ids := make([]string, n)
	trs := make([]*projections.Tracker, n)
	for i := range n {
		ids[i] = string(rune('a'+i)) + "-proxy"
		trs[i] = l.Track(ids[i])
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				select {
				case <-stop:
					trs[i].SetChecking(false)
					return
				default:
				}
				trs[i].SetChecking(k%2 == 0)
				trs[i].SetNextCheck(t0.Add(time.Duration(k) * time.Second))
			}
		}()
	}
	scripts := make([]*script, n)
	for round := range 30 {
		for i := range n {
			if scripts[i] == nil {
				scripts[i] = newScript(ids[i], t0)
			}
			if round%2 == 0 {
				scripts[i].add(added([]string{"a", "b", "c"}[(round/2+i)%3]))
			} else {
				scripts[i].add(&pb.ProxyRemoved{Reason: "gone"})
			}
			l.Apply(scripts[i].out[len(scripts[i].out)-1])
		}
		s := l.Summary()
		if s.Checking < 0 || s.Checking > s.Total {
			t.Fatalf("round %d: checking %d of %d", round, s.Checking, s.Total)
		}
	}
	close(stop)
	wg.Wait()
	if err := checkInvariants(l); err != nil {
		t.Fatal(err)
	}
	if s := l.Summary(); s.Checking != 0 {
		t.Fatalf("checking %d after every flag went off", s.Checking)
	}
	for _, tr := range trs {
		tr.Release()
	}
}

// TestLiveIDs: IDs holds exactly the proxies List shows, removed ones gone.
func TestLiveIDs(t *testing.T) {
	l := projections.NewLive(projections.LiveOptions{})
	if ids := l.IDs(); len(ids) != 0 {
		t.Fatalf("empty status: %v", ids)
	}
	s := newScript("a", t0).add(added("x"))
	s.as("b").add(added("x"))
	s.as("c").add(added("y"))
	s.as("b").add(&pb.ProxyRemoved{Reason: "gone"})
	l.Apply(s.out...)
	ids := l.IDs()
	slices.Sort(ids)
	_, views := l.List(projections.ListFilter{}, 0, 100)
	var want []string
	for _, v := range views {
		want = append(want, v.ID)
	}
	if !slices.Equal(ids, want) || len(ids) != 2 {
		t.Fatalf("IDs %v, List %v", ids, want)
	}
}
