package membership

import (
	"fmt"
	"hash/fnv"
	"slices"
	"testing"
)

// reference computes the score with the standard library's FNV-1a and a
// separately written splitmix64 finalizer.
func reference(member, key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(member))
	h.Write([]byte{0})
	h.Write([]byte(key))
	z := h.Sum64()
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func TestScoreIsFNV1aThenSplitmix64(t *testing.T) {
	for _, m := range []string{"", "127.0.0.1:7001", "node-b.example:9000"} {
		for _, k := range []string{"", "a", "proxy-1", "0123456789abcdef"} {
			if got, want := score(m, k), reference(m, k); got != want {
				t.Errorf("score(%q, %q) = %#x, reference %#x", m, k, got, want)
			}
		}
	}
}

// Golden values (cross-checked by TestScoreIsFNV1aThenSplitmix64 against
// the standard library's FNV-1a): the placement must never change between builds,
// platforms or Go versions, or members of different builds would disagree
// on who owns a proxy.
func TestPlacementGolden(t *testing.T) {
	golden := []struct {
		member, key string
		score       uint64
	}{
		{"127.0.0.1:7001", "proxy-1", 0xa5e03d58fd34b71c},
		{"127.0.0.1:7002", "proxy-1", 0xbec1cba34344eb51},
		{"127.0.0.1:7003", "proxy-1", 0x8103806d026e8be4},
	}
	for _, g := range golden {
		if got := score(g.member, g.key); got != g.score {
			t.Errorf("score(%q, %q) = %#x, golden %#x", g.member, g.key, got, g.score)
		}
	}
	members := []string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"}
	owners := map[string]string{
		"proxy-1": "127.0.0.1:7002", "proxy-2": "127.0.0.1:7002",
		"proxy-3": "127.0.0.1:7003", "0f3a9c1d2e4b5a60": "127.0.0.1:7001",
	}
	for key, want := range owners {
		if got := Owner(key, members); got != want {
			t.Errorf("Owner(%q) = %s, golden %s", key, got, want)
		}
	}
}

var three = []string{"10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"}

func keys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%016x", uint64(i)*0x9e3779b97f4a7c15)
	}
	return out
}

func TestOwnerBalancesWithinThreePercent(t *testing.T) {
	const n = 100_000
	count := map[string]int{}
	for _, k := range keys(n) {
		count[Owner(k, three)]++
	}
	for _, m := range three {
		share := float64(count[m]) / n
		if share < 1.0/3*0.97 || share > 1.0/3*1.03 {
			t.Errorf("%s owns %d of %d keys (%.4f), want 1/3 ± 3 %%", m, count[m], n, share)
		}
		t.Logf("%s owns %d", m, count[m])
	}
}

func TestAddingAMemberMovesAQuarterOfTheKeysAllToIt(t *testing.T) {
	four := append(slices.Clone(three), "10.0.0.4:7000")
	moved := 0
	all := keys(100_000)
	for _, k := range all {
		before, after := Owner(k, three), Owner(k, four)
		if before != after {
			moved++
			if after != four[3] {
				t.Fatalf("key %s moved from %s to %s, not to the new member", k, before, after)
			}
		}
	}
	frac := float64(moved) / float64(len(all))
	t.Logf("adding a 4th member moved %d of %d keys (%.4f)", moved, len(all), frac)
	if frac < 0.25*0.97 || frac > 0.25*1.03 {
		t.Errorf("moved %.4f of the keys, want 1/4 ± 3 %%", frac)
	}
}

func TestRemovingAMemberMovesOnlyItsKeys(t *testing.T) {
	two := []string{three[0], three[2]}
	for _, k := range keys(100_000) {
		before, after := Owner(k, three), Owner(k, two)
		if before != three[1] && before != after {
			t.Fatalf("key %s moved from %s to %s though its owner stayed", k, before, after)
		}
		if before == three[1] && after != Ranked(k, three)[1] {
			t.Fatalf("key %s of the removed member went to %s, not to its second choice", k, after)
		}
	}
}

func TestOrderOfTheListDoesNotMatter(t *testing.T) {
	rev := []string{three[2], three[0], three[1]}
	for _, k := range keys(10_000) {
		if Owner(k, three) != Owner(k, rev) {
			t.Fatalf("key %s: owner depends on the order of the list", k)
		}
		if !slices.Equal(Ranked(k, three), Ranked(k, rev)) {
			t.Fatalf("key %s: ranking depends on the order of the list", k)
		}
	}
}

func TestRankedStartsWithTheOwnerAndHoldsEveryMember(t *testing.T) {
	for _, k := range keys(1000) {
		r := Ranked(k, three)
		if r[0] != Owner(k, three) {
			t.Fatalf("Ranked(%s)[0] = %s, Owner %s", k, r[0], Owner(k, three))
		}
		s := slices.Clone(r)
		slices.Sort(s)
		want := slices.Clone(three)
		slices.Sort(want)
		if !slices.Equal(s, want) {
			t.Fatalf("Ranked(%s) = %v, not a permutation of %v", k, r, three)
		}
	}
}

func TestEmptyList(t *testing.T) {
	if got := Owner("proxy-1", nil); got != "" {
		t.Errorf("Owner over no members = %q, want \"\"", got)
	}
	if got := Ranked("proxy-1", nil); len(got) != 0 {
		t.Errorf("Ranked over no members = %v, want empty", got)
	}
	if got := Owner("proxy-1", three[:1]); got != three[0] {
		t.Errorf("Owner over one member = %q, want %q", got, three[0])
	}
}

func TestOwnerDoesNotAllocate(t *testing.T) {
	k := "0f3a9c1d2e4b5a60"
	if n := testing.AllocsPerRun(1000, func() { _ = Owner(k, three) }); n != 0 {
		t.Errorf("Owner allocates %v times per call", n)
	}
}

func BenchmarkOwner100kOver3(b *testing.B) {
	all := keys(100_000)
	b.ReportAllocs()
	for b.Loop() {
		for _, k := range all {
			_ = Owner(k, three)
		}
	}
}
