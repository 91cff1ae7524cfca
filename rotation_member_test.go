package proxyhealth

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/proxyhealth/proxyhealth/projections"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// TestSameTags checks that sameTags(tags, b) is slices.Equal(tags,
// memberTags(b)) for random briefs and tag lists built from other briefs
// (the rotator keeps a member only when they are equal).
func TestSameTags(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	words := []string{"", "a", "b", "eu", "anonymity:elite", "exit_ip:192.0.2.1", "x,y"}
	anons := []pb.Anonymity{0, 1, 2, 3, 42}
	exits := []string{"", "192.0.2.1", "2001:db8::1"}
	brief := func() projections.Brief {
		var tags []string
		for range r.IntN(4) {
			tags = append(tags, words[r.IntN(len(words))])
		}
		return projections.Brief{Tags: strings.Join(tags, ","), Anonymity: anons[r.IntN(len(anons))], ExitIP: exits[r.IntN(len(exits))]}
	}
	equal := 0
	for range 20_000 {
		b, o := brief(), brief()
		if !sameTags(memberTags(b), b) {
			t.Fatalf("sameTags(memberTags(b), b) = false for %+v", b)
		}
		tags := memberTags(o)
		if r.IntN(4) == 0 && len(tags) > 0 {
			tags = tags[:len(tags)-1] // a prefix
		}
		want := slices.Equal(tags, memberTags(b))
		if want {
			equal++
		}
		if got := sameTags(tags, b); got != want {
			t.Fatalf("sameTags(%q, %+v) = %v, want %v (memberTags %q)", tags, b, got, want, memberTags(b))
		}
	}
	if equal == 0 {
		t.Fatal("no equal pair drawn: the test compares nothing but differences")
	}
}
