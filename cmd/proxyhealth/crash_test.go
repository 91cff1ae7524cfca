package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/httpapi"
	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

const (
	// crashRoundsEnv sets the number of kill -9 rounds of
	// TestKillNineRounds (default 20, 3 with -short; make soak: 100).
	crashRoundsEnv = "PROXYHEALTH_CRASH_ROUNDS"
	// crashSeedEnv replays a run of TestKillNineRounds: the seed it
	// printed (the farm's behaviours, the writes, the kill delays).
	crashSeedEnv = "PROXYHEALTH_CRASH_SEED"

	crashListed  = 240 // proxies in the list file
	crashRuntime = 40  // farm proxies added and removed through the API
)

// crashArgs are the daemon's flags in TestKillNineRounds: a few hundred
// proxies checked twice a second, unhealthy after 2 failures, recovery
// probes after 1 s, so that state changes flow; the live status saved
// every second, so that starts after a kill restore it (from the round's
// run, or an earlier one's when the kill came first) and fold on.
func crashArgs(data, list string) []string {
	return []string{"run", "--data", data, "--listen", "127.0.0.1:0", "--log-format", "json",
		"--interval", "500ms", "--timeout", "1s", "--check-url", testTarget,
		"--unhealthy-threshold", "2", "--recovery-cooldown", "1s", "--checkpoint-every", "1s", "--proxies", list}
}

// TestKillNineRounds kills the real daemon with SIGKILL at random moments
// under load (checks running, events flowing, two event-stream clients
// connected, API writes in flight), on one data directory whose history
// accumulates across rounds. After each kill: journal verify passes;
// every event a stream received (id and content) and every write answered
// 2xx (pause, resume, add, remove) is in the journal, in the order of the
// writes, and nothing else of the kind; no more passive failures are
// journaled than were reported; the view the daemon kept equals, table by
// table, a rebuild of the journal through the view's offset. After each
// restart: the daemon shows every proxy of the journal, each in its
// journaled state (or a later one of its own stream), no state change
// starts from another state than the journaled one, and a proxy paused
// at the restart is not checked. A last restart ends with SIGTERM and the
// same checks.
//
// PROXYHEALTH_CRASH_ROUNDS sets the rounds (make soak: 100);
// PROXYHEALTH_CRASH_SEED replays a seed the test printed.
func TestKillNineRounds(t *testing.T) {
	rounds := 20
	if testing.Short() {
		rounds = 3
	}
	if v := os.Getenv(crashRoundsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a number of rounds, at least 1", crashRoundsEnv, v)
		}
		rounds = n
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv(crashSeedEnv); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: want the seed the test printed (an unsigned integer)", crashSeedEnv, v)
		}
		seed = n
	}
	t.Logf("seed %d, %d rounds: replay with %s=%d %s=%d", seed, rounds, crashSeedEnv, seed, crashRoundsEnv, rounds)
	rng := rand.New(rand.NewPCG(seed, 0x6b696c6c2d39))
	ctx := t.Context()

	farm, err := fakeproxy.Start(ctx, crashListed+crashRuntime, fakeproxy.WithSeed(seed))
	if err != nil {
		t.Fatal(err)
	}
	defer farm.Close()
	var lines strings.Builder
	var pauseIDs, outcomeIDs []string
	var flippable []int
	for i := range crashListed {
		var b fakeproxy.Behavior
		switch i % 10 {
		case 0:
			b = fakeproxy.Refuse()
		case 1:
			b = fakeproxy.Flaky(0.5)
		case 2:
			b = fakeproxy.Flaky(0.2)
		default:
			b = fakeproxy.OK()
		}
		if err := farm.Set(i, b); err != nil {
			t.Fatal(err)
		}
		switch i % 10 {
		case 1, 7, 8:
			pauseIDs = append(pauseIDs, id(farm.URL(i)))
		case 5, 6:
			outcomeIDs = append(outcomeIDs, id(farm.URL(i)))
		case 3, 4, 9:
			flippable = append(flippable, i)
		}
		lines.WriteString(farm.URL(i) + "\n")
	}
	for i := crashListed; i < farm.Len(); i++ {
		if i%4 == 0 {
			if err := farm.Set(i, fakeproxy.Flaky(0.3)); err != nil {
				t.Fatal(err)
			}
		}
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	list := writeFile(t, dir, "list.txt", lines.String())

	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer hc.CloseIdleConnections()
	l := newLedger(t, data)
	var lastResumed uint64 // the last event the resuming stream received
	start := time.Now()
	for round := 1; round <= rounds+1; round++ {
		final := round == rounds+1
		if !final { // some proxies start or stop failing
			for range 12 {
				i := flippable[rng.IntN(len(flippable))]
				b := fakeproxy.OK()
				if farm.Behavior(i).String() == b.String() {
					b = fakeproxy.Reset()
				}
				if err := farm.Set(i, b); err != nil {
					t.Fatal(err)
				}
			}
		}
		rr := &roundRecord{round: round, final: final}
		p := startBin(t, nil, crashArgs(data, list)...)
		var delay time.Duration
		log := &writeLog{}
		var fresh, resumed *sseClient
		what := "SIGKILL"
		if final {
			what = "SIGTERM"
		}
		if !final && round > 1 && rng.IntN(5) == 0 {
			// A kill during start-up (recovery, the view's catch-up, the
			// first checks), before the API answers or just after. Start-up
			// journals no pause, resume, add or remove of its own.
			what = "SIGKILL during start-up"
			rr.writesFrom = l.head
			delay = time.Duration(rng.IntN(400)) * time.Millisecond
			time.Sleep(delay) // the kill's random moment
			kill9(t, p)
			l.stats.startupKills++
		} else {
			base := p.apiURL()
			want := len(l.present())
			if round == 1 {
				want = crashListed
			}
			waitPool(t, base, fmt.Sprintf("showing the %d proxies of the journal", want), func(pl httpapi.Pool) bool { return pl.Total == want })
			if round > 1 {
				var pl httpapi.ProxyList
				getJSON(t, base+"/v1/proxies?limit="+strconv.Itoa(httpapi.MaxListLimit), &pl)
				rr.resume = &resumeSnapshot{proxies: pl.Proxies, through: getPool(t, base).JournalSeq}
			}
			rr.writesFrom = getPool(t, base).JournalSeq

			sctx, scancel := context.WithCancel(ctx)
			fresh, err = startSSE(sctx, hc, base, "fresh", 0)
			if err != nil {
				t.Fatal(err)
			}
			resumed, err = startSSE(sctx, hc, base, "resumed", lastResumed)
			if err != nil {
				t.Fatal(err)
			}
			rr.sse = []*sseClient{fresh, resumed}

			if !final {
				w := &writers{hc: hc, base: base, farm: farm, log: log}
				paused := map[string]bool{}
				for _, pid := range pauseIDs {
					paused[pid] = l.states[pid].Paused
				}
				present := map[int]bool{}
				for i := crashListed; i < farm.Len(); i++ {
					s := l.states[id(farm.URL(i))]
					present[i] = s.Added && !s.Removed
				}
				seeds := [3]uint64{rng.Uint64(), rng.Uint64(), rng.Uint64()}
				delay = 150*time.Millisecond + time.Duration(rng.IntN(1200))*time.Millisecond
				wctx, wcancel := context.WithCancel(ctx)
				var wg sync.WaitGroup
				wg.Go(func() { w.pauser(wctx, rand.New(rand.NewPCG(seeds[0], 1)), paused) })
				wg.Go(func() { w.adder(wctx, rand.New(rand.NewPCG(seeds[1], 2)), present) })
				wg.Go(func() { w.reporter(wctx, rand.New(rand.NewPCG(seeds[2], 3)), outcomeIDs) })
				// The kill's random moment: the scenario's schedule, not a
				// wait for something.
				time.Sleep(delay)
				kill9(t, p)
				wcancel()
				wg.Wait()
			} else {
				testutil.Eventually(t, 30*time.Second, "the fresh stream to receive an event", func() bool {
					evs, _ := fresh.seen()
					return len(evs) > 0
				})
				p.signal(syscall.SIGTERM)
				if code := p.wait(30 * time.Second); code != 0 {
					t.Fatalf("SIGTERM: exit %d\n%s", code, p.stderr)
				}
			}
			scancel()
			<-fresh.done
			<-resumed.done
			hc.CloseIdleConnections()
			rr.writes = log.all()
			if evs, _ := resumed.seen(); len(evs) > 0 {
				lastResumed = evs[len(evs)-1].seq
			}
		}
		if strings.Contains(p.stderr.String(), "live status restored from its checkpoint") {
			l.stats.ckptRestores++
		}
		before := l.stats
		cctx, ccancel := ctxTimeout(ctx)
		l.check(cctx, rr)
		ccancel()
		if !final {
			l.stats.rounds++
		}
		t.Logf("round %d: %s after %v; journal head %d (+%d events); streams %d+%d events; writes %d (%d answered 2xx, found); view at %d, tables %d equal a rebuild; %.1fs so far",
			round, what, delay, l.head, l.stats.events-before.events,
			fresh.count(), resumed.count(), len(rr.writes), l.stats.writes2xx-before.writes2xx, l.stats.viewOffset, l.stats.viewTables-before.viewTables, time.Since(start).Seconds())
		if t.Failed() {
			t.Fatalf("round %d failed: replay with %s=%d", round, crashSeedEnv, seed)
		}
	}
	s := l.stats
	t.Logf("kill -9 rounds %d (%d during start-up; +1 SIGTERM), %.1fs: starts from a live status checkpoint %d; journal events folded %d; stream events checked %d, notifications %d; writes answered 2xx found %d, unanswered %d, outcomes accepted %d; proxies compared after restarts %d; view tables compared %d (%d rows); losses %d, mismatches %d",
		s.rounds, s.startupKills, time.Since(start).Seconds(), s.ckptRestores, s.events, s.sseEvents, s.sseNotes, s.writes2xx, s.writesUnknown, s.outcomes, s.resumed, s.viewTables, s.viewRows, s.losses, s.mismatches)
	// Only the running daemon's periodic saves leave a checkpoint behind a
	// kill: with that many rounds, some starts must have used one.
	if s.rounds >= 10 && s.ckptRestores == 0 {
		t.Errorf("no start after a kill restored the live status from a checkpoint the running daemon saved")
	}
}

// kill9 kills the daemon with SIGKILL and waits for it to be gone; a
// daemon that already exited on its own fails the test.
func kill9(t *testing.T, p *proc) {
	t.Helper()
	select {
	case <-p.done:
		t.Fatalf("the daemon exited by itself (%d) before the kill\nstderr:\n%s", p.code, p.stderr)
	default:
	}
	p.signal(syscall.SIGKILL)
	p.wait(30 * time.Second)
}
