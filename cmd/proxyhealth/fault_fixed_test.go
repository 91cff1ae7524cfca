package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/httpapi"
	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

// The faults the fault matrix found, each with the test that failed before
// its fix.

// TestStopWithADeadWebhook: a webhook target that never answers must not
// change how the daemon stops. It did: SIGTERM waited the whole stop
// timeout (30 s) for the webhook's request in flight (its timeout may be up
// to 5 min), then the SQLite view's last catch-up ran on the expired
// context: the daemon exited 1 ("stopped with errors ... notifier closed
// before delivering N webhook notification(s) ... catch up the sqlite
// view: ... context deadline exceeded") and left view.db behind the
// journal. Now the view catches up first and webhooks get at most 5 s.
func TestStopWithADeadWebhook(t *testing.T) {
	const n = 20
	farm := startFaultFarm(t, n)
	for i := range n {
		if i%4 == 0 {
			if err := farm.Set(i, fakeproxy.Flaky(0.5)); err != nil {
				t.Fatal(err)
			}
		}
	}
	dir := t.TempDir()
	silent := startSilentServer(t)
	cfg := writeFile(t, dir, "hooks.yaml", "webhooks:\n  - url: http://"+silent.addr()+"/slow\n    timeout: 5m\n")
	data := filepath.Join(dir, "data")
	r := newFaultRig(t, data, runArgs(data, "--config", cfg, "--proxies", farmList(t, dir, "a.txt", farm, 0, n),
		"--recovery-cooldown", "1s", "--max-recovery-attempts", "0")...)
	waitPool(t, r.base, "a proxy down (a notification for the webhook)", func(p httpapi.Pool) bool { return p.Unhealthy > 0 })
	testutil.Eventually(t, faultWait, "the webhook's request in flight", func() bool { return silent.accepted() > 0 })
	began := time.Now()
	r.p.signal(syscall.SIGTERM)
	code := r.p.wait(faultWait)
	took := time.Since(began)
	r.stop()
	t.Logf("SIGTERM with a dead webhook: exit %d after %v", code, took.Round(time.Millisecond))
	if code != 0 {
		t.Errorf("exit %d after SIGTERM:\n%s", code, r.p.stderr)
	}
	r.viewEqualsRebuild()
}

// TestDamagedJournalRefusalNamesLastGoodSeq: issue 16 asks that a damaged
// journal be refused with an error naming the file and the last good seq.
// The refusal named the file and salvage but no seq (a writable open reads
// only the meta, branch and leaf headers, which learn no event seq); now
// the journal scans the file as salvage would and names the intact run,
// the same seqs `journal salvage` copies.
func TestDamagedJournalRefusalNamesLastGoodSeq(t *testing.T) {
	for name, damage := range map[string]func(*testing.T, string){"truncated": truncateHalf, "page overwritten": smashMiddlePages} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeJournal(t, dir, 3000)
			damage(t, journalPath(dir))
			list := writeFile(t, t.TempDir(), "pool.txt", "127.0.0.1:1\n")
			res := runBinTimeout(t, faultWait, runArgs(dir, "--proxies", list)...)
			sal := runBin(t, "journal", "salvage", "--data", dir)
			var events, first, last uint64
			if _, err := fmt.Sscanf(sal.stdout, "salvaged %d events (seq %d to %d)", &events, &first, &last); err != nil || last == 0 {
				t.Fatalf("journal salvage: exit %d (%v)\n%s%s", sal.code, err, sal.stdout, sal.stderr)
			}
			if res.code == 0 || !strings.Contains(res.stderr, journalPath(dir)) {
				t.Fatalf("the daemon on a damaged journal: exit %d\n%s", res.code, res.stderr)
			}
			if want := fmt.Sprintf("seq %d", last); !strings.Contains(res.stderr, want) {
				t.Errorf("the daemon's refusal does not name the last good seq (%q):\n%s", want, res.stderr)
			}
		})
	}
}
