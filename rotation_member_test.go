package proxyhealth

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/actors"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
	"github.com/proxyhealth/proxyhealth/probe"
	"github.com/proxyhealth/proxyhealth/projections"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
	"github.com/proxyhealth/proxyhealth/rotation"
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

// TestBuiltFrom: the rotator keeps a pool member while builtFrom says
// memberOf would build the same one from the running proxy; any change of
// source, scheme, address or credentials makes it rebuild the member.
func TestBuiltFrom(t *testing.T) {
	rec := func(raw, source string) *proxy {
		u, err := probe.ParseProxyURL(raw)
		if err != nil {
			t.Fatal(err)
		}
		return &proxy{url: u, spec: actors.ProxySpec{Source: source}}
	}
	base := []*proxy{rec("http://127.0.0.1:8080", "a"), rec("socks5://u:p@127.0.0.1:1080", "a"), rec("http://u@127.0.0.1:8080", "a")}
	for _, p := range base {
		m := memberOf(p.url.ID(), p)
		if !builtFrom(&m, p) {
			t.Errorf("%s: a member is not built from the proxy it was built from", p.url.Redacted())
		}
		for _, q := range []*proxy{rec("http://127.0.0.1:8080", "b"), rec("https://127.0.0.1:8080", "a"), rec("http://127.0.0.1:8081", "a"),
			rec("socks5://u:q@127.0.0.1:1080", "a"), rec("socks5://v:p@127.0.0.1:1080", "a"), rec("socks5://127.0.0.1:1080", "a"), rec("http://u:p@127.0.0.1:8080", "a")} {
			want := memberOf(p.url.ID(), q)
			same := m.Source == want.Source && m.URL.String() == want.URL.String()
			if got := builtFrom(&m, q); got != same {
				t.Errorf("member of %s, proxy %s (%s): builtFrom %v, want %v", p.url.Redacted(), q.url.Redacted(), q.source(), got, same)
			}
		}
	}
}

// BenchmarkMemberHeap reports the heap the picker holds per proxy as the
// rotator feeds it: the member memberOf builds (its URL included), with
// the tags memberTags gives, Set into a pool and published. The running
// proxies themselves are built before the measure (the engine holds them
// anyway). creds: every proxy has credentials (user:pass@), as a rotating
// gateway's sessions do; none: none has; tags: no credentials, an
// anonymity tag (derived from checks) on every proxy; exit: that and its
// exit IP's tag, one of its own (checks with an echo target).
func BenchmarkMemberHeap(b *testing.B) {
	for _, kind := range []string{"none", "creds", "tags", "exit"} {
		for _, n := range []int{10_000, 100_000} {
			b.Run(fmt.Sprintf("%s/n=%d", kind, n), func(b *testing.B) {
				proxies := make([]*proxy, n)
				briefs := make([]projections.Brief, n)
				for i := range proxies {
					raw := fmt.Sprintf("http://10.%d.%d.%d:3128", i>>16&255, i>>8&255, i&255)
					if kind == "creds" {
						raw = fmt.Sprintf("http://user-%d:s3cret@10.%d.%d.%d:3128", i, i>>16&255, i>>8&255, i&255)
					}
					u, err := probe.ParseProxyURL(raw)
					if err != nil {
						b.Fatal(err)
					}
					proxies[i] = &proxy{url: u, spec: actors.ProxySpec{Source: "list"}}
					if kind == "tags" || kind == "exit" {
						briefs[i].Anonymity = pb.Anonymity_ANONYMITY_ELITE
					}
					if kind == "exit" {
						briefs[i].ExitIP = fmt.Sprintf("203.%d.%d.%d", i>>16&255, i>>8&255, i&255)
					}
				}
				st := rotation.Status{State: rotation.StateHealthy, LatencyEWMA: time.Millisecond, SuccessRate: 1, Checks: 3, LastSuccess: 1}
				for b.Loop() {
					before := testutil.HeapInUse()
					pool, err := rotation.NewPool(rotation.DefaultOptions())
					if err != nil {
						b.Fatal(err)
					}
					for i, p := range proxies {
						m := memberOf(p.url.ID(), p)
						m.Tags = memberTags(briefs[i])
						pool.Set(m, st)
					}
					pool.Publish()
					after := testutil.HeapInUse()
					runtime.KeepAlive(pool)
					b.ReportMetric(float64(after-before)/float64(n), "B/proxy")
				}
			})
		}
	}
}
