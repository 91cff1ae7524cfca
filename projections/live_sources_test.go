package projections

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// TestLiveShowsMetadataExitAndSourceRefreshes: tags, weight, exit IP and
// anonymity reach the proxy's view and the list filters; a source's
// refresh events reach its summary, also for a source without proxies.
func TestLiveShowsMetadataExitAndSourceRefreshes(t *testing.T) {
	l := NewLive(LiveOptions{})
	seq := uint64(0)
	env := func(id, src string, e *pb.Envelope) *pb.Envelope {
		seq++
		e.Seq, e.ProxyId, e.Source, e.AtUnixNano = seq, id, src, int64(seq)*1e9
		return e
	}
	l.Apply(
		env("p1", "gw", &pb.Envelope{Event: &pb.Envelope_ProxyAdded{ProxyAdded: &pb.ProxyAdded{UrlRedacted: "http://~1@gw:1", Source: "gw", Tags: []string{"de", "res"}, Weight: 2}}}),
		env("p2", "gw", &pb.Envelope{Event: &pb.Envelope_ProxyAdded{ProxyAdded: &pb.ProxyAdded{UrlRedacted: "http://~2@gw:1", Source: "gw", Tags: []string{"us"}}}}),
		env("p1", "gw", &pb.Envelope{Event: &pb.Envelope_ExitObserved{ExitObserved: &pb.ExitObserved{ExitIp: "203.0.113.7", Anonymity: pb.Anonymity_ANONYMITY_ELITE}}}),
		env("p2", "gw", &pb.Envelope{Event: &pb.Envelope_ProxyMetadataChanged{ProxyMetadataChanged: &pb.ProxyMetadataChanged{Tags: []string{"de"}, Weight: 0.5}}}),
		env("", "gw", &pb.Envelope{Event: &pb.Envelope_SourceRefreshed{SourceRefreshed: &pb.SourceRefreshed{Added: 2, Total: 2}}}),
		env("", "provider", &pb.Envelope{Event: &pb.Envelope_SourceRefreshFailed{SourceRefreshFailed: &pb.SourceRefreshFailed{Error: "503 Service Unavailable"}}}),
	)
	v, _ := l.Proxy("p1")
	if strings.Join(v.Tags, ",") != "de,res" || v.Weight != 2 || v.ExitIP != "203.0.113.7" || v.Anonymity != "elite" {
		t.Errorf("p1 %+v", v)
	}
	if v, _ := l.Proxy("p2"); strings.Join(v.Tags, ",") != "de" || v.Weight != 0.5 || v.ExitIP != "" {
		t.Errorf("p2 %+v", v)
	}
	if n, vs := l.List(ListFilter{Tag: "de"}, 0, 10); n != 2 || len(vs) != 2 {
		t.Errorf("tag de: %d %v", n, vs)
	}
	if n, vs := l.List(ListFilter{Tag: "res", Source: "gw"}, 0, 10); n != 1 || vs[0].ID != "p1" {
		t.Errorf("tag res: %d %v", n, vs)
	}
	if n, vs := l.List(ListFilter{Anonymity: "elite"}, 0, 10); n != 1 || vs[0].ID != "p1" {
		t.Errorf("anonymity elite: %d %v", n, vs)
	}
	if n, _ := l.List(ListFilter{Tag: "de"}, 1, 10); n != 2 {
		t.Errorf("the total ignores the offset: %d", n)
	}
	sum := l.Summary()
	got := map[string]SourceSummary{}
	for _, s := range sum.Sources {
		got[s.Name] = s
	}
	if g := got["gw"]; g.LastRefresh.IsZero() || g.LastError != "" || g.Total != 2 {
		t.Errorf("gw %+v", g)
	}
	if p := got["provider"]; p.LastError != "503 Service Unavailable" || p.LastErrorAt.IsZero() || p.Total != 0 {
		t.Errorf("a source whose first refresh failed: %+v (listed: %v)", p, len(sum.Sources))
	}
	l.Apply(env("", "provider", &pb.Envelope{Event: &pb.Envelope_SourceShrinkHeld{SourceShrinkHeld: &pb.SourceShrinkHeld{Previous: 100, Offered: 10, ShrinkGuard: 0.5, Seen: 1}}}))
	for _, s := range l.Summary().Sources {
		if s.Name == "provider" && (!s.HeldList || !strings.Contains(s.LastError, "from 100 to 10")) {
			t.Errorf("held list: %+v", s)
		}
	}
}

// TestAppendList: AppendList appends to dst exactly the page List returns,
// with the same total, for the indexed filters and for the scanned ones
// (tag, anonymity), and leaves dst's own elements alone.
func TestAppendList(t *testing.T) {
	l := NewLive(LiveOptions{})
	seq := uint64(0)
	for i, tags := range [][]string{{"de"}, {"us"}, {"de", "res"}, nil, {"de"}} {
		seq++
		l.Apply(&pb.Envelope{Seq: seq, ProxyId: fmt.Sprintf("p%d", i), Source: "gw", AtUnixNano: int64(seq) * 1e9,
			Event: &pb.Envelope_ProxyAdded{ProxyAdded: &pb.ProxyAdded{UrlRedacted: fmt.Sprintf("http://gw:%d", i), Source: "gw", Tags: tags}}})
	}
	prefix := []ProxyView{{ID: "mine"}}
	for _, c := range []struct {
		f             ListFilter
		offset, limit int
	}{
		{ListFilter{}, 0, 10}, {ListFilter{}, 1, 2}, {ListFilter{}, 9, 2}, {ListFilter{}, 0, 0},
		{ListFilter{State: "unknown"}, 2, 10}, {ListFilter{State: "healthy"}, 0, 10}, {ListFilter{State: "sick"}, 0, 10},
		{ListFilter{Tag: "de"}, 1, 1}, {ListFilter{Tag: "de", Source: "other"}, 0, 10},
	} {
		total, page := l.List(c.f, c.offset, c.limit)
		dst := slices.Clone(prefix)
		gotTotal, got := l.AppendList(dst, c.f, c.offset, c.limit)
		if gotTotal != total || len(got) != len(prefix)+len(page) || got[0].ID != "mine" || !slices.EqualFunc(got[len(prefix):], page, func(a, b ProxyView) bool { return a.ID == b.ID }) {
			t.Errorf("%+v offset %d limit %d: AppendList gave %d %v, List %d %v", c.f, c.offset, c.limit, gotTotal, got, total, page)
		}
	}
}
