package rotation_test

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/rotation"
)

// member returns proxy i of a test pool (credentials in its URL, as real
// members have).
func member(i int, source, scheme string, tags ...string) rotation.Member {
	host := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
	return rotation.Member{
		ID:     fmt.Sprintf("p%06d", i),
		URL:    &url.URL{Scheme: scheme, User: url.UserPassword("user", "s3cret"), Host: host + ":3128"},
		Scheme: scheme,
		Host:   host,
		Port:   3128,
		Source: source,
		Tags:   tags,
	}
}

func healthy() rotation.Status {
	return rotation.Status{State: rotation.StateHealthy, LatencyEWMA: 100 * time.Millisecond, SuccessRate: 1, Checks: 10, LastSuccess: 1}
}

func status(s rotation.State) rotation.Status {
	st := healthy()
	st.State = s
	return st
}

func newPool(tb testing.TB, opt rotation.Options) *rotation.Pool {
	tb.Helper()
	p, err := rotation.NewPool(opt)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// opts returns the defaults with panic mode off unless thr > 0, and
// statistics refreshed at every Publish.
func opts(thr float64) rotation.Options {
	o := rotation.DefaultOptions()
	o.PanicThreshold = thr
	o.StatsRefresh = 0
	return o
}

// counts picks req n times and counts the IDs picked; it fails on an error.
func counts(tb testing.TB, p *rotation.Pool, req rotation.Request, n int) map[string]int {
	tb.Helper()
	c := map[string]int{}
	for range n {
		pk, err := p.Pick(req)
		if err != nil {
			tb.Fatalf("Pick(%+v): %v", req, err)
		}
		c[pk.ID]++
	}
	return c
}

func keys(m map[string]int) map[string]bool {
	k := map[string]bool{}
	for id := range m {
		k[id] = true
	}
	return k
}

func set(ids ...string) map[string]bool {
	k := map[string]bool{}
	for _, id := range ids {
		k[id] = true
	}
	return k
}

func sameSet(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func id(i int) string { return fmt.Sprintf("p%06d", i) }

var picks = []rotation.Request{
	{Strategy: rotation.RoundRobin},
	{Strategy: rotation.Random},
	{Strategy: rotation.LeastLatency},
	{Strategy: rotation.Weighted},
	{Strategy: rotation.Sticky, Key: "k"},
}
