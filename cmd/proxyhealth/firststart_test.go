package main

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A daemon killed during its very first start leaves a data directory it
// starts on: no journal.db, or a complete one, never a 0-byte file that
// looks like lost history (found by TestKillNineRounds: about 1 kill in
// 100 within the first 90 ms).
func TestKillDuringFirstStartLeavesAStartableDirectory(t *testing.T) {
	rounds := 40
	if testing.Short() {
		rounds = 5
	}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("seed %d", seed)
	for i := range rounds {
		dir := filepath.Join(t.TempDir(), "data")
		p := startBin(t, nil, "run", "--data", dir, "--listen", "127.0.0.1:0", "--log-format", "json")
		// The kill's moment, drawn over the first start's critical window:
		// the scenario's schedule, not a wait for something.
		time.Sleep(time.Duration(5+rng.IntN(85)) * time.Millisecond)
		p.signal(syscall.SIGKILL)
		p.wait(10 * time.Second)
		st, err := os.Stat(filepath.Join(dir, "journal.db"))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() == 0 {
			t.Fatalf("round %d (seed %d): kill -9 during the first start left a 0-byte journal.db", i, seed)
		}
		if r := runBin(t, "journal", "verify", "--data", dir); r.code != 0 {
			t.Fatalf("round %d (seed %d): journal verify after a kill during the first start: %d\n%s%s", i, seed, r.code, r.stdout, r.stderr)
		}
	}
}
