package httpapi

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// encodingJSON is what writeJSON writes for v.
func encodingJSON(t testing.TB, v any) ([]byte, bool) {
	t.Helper()
	var buf bytes.Buffer
	err := json.NewEncoder(&buf).Encode(v)
	return buf.Bytes(), err == nil
}

// checkSameAsEncodingJSON fails unless appendJSON writes v (a ProxyList
// or a Pool) as encoding/json does, or leaves it to encoding/json.
func checkSameAsEncodingJSON(t *testing.T, v jsonAppender) (fast bool) {
	t.Helper()
	want, encodes := encodingJSON(t, v)
	got, ok := v.appendJSON([]byte("prefix"))
	if !ok {
		return false
	}
	if !encodes {
		t.Fatalf("appendJSON wrote %s for a %T encoding/json refuses", got, v)
	}
	if !bytes.Equal(got, append([]byte("prefix"), want...)) {
		t.Fatalf("appendJSON wrote\n%s\nencoding/json\n%s", got, want)
	}
	return true
}

func TestAppendJSONIsEncodingJSON(t *testing.T) {
	at := time.Date(2026, 12, 6, 17, 45, 1, 123456789, time.UTC)
	zone := time.FixedZone("x", 5*3600+30*60)
	base := Proxy{ID: "0123456789abcdef", URL: "http://10.0.0.1:3128", Source: "farm", State: "healthy",
		ConsecutiveFailures: 0, ConsecutiveSuccesses: 7, LastCheckAt: &at, LatencyMS: 12.345, SuccessRate1h: 1,
		Tags: []string{"eu", "fast"}, Weight: 1, ExitIP: "203.0.113.9", Anonymity: "elite"}
	for name, tc := range map[string]struct {
		list ProxyList
		fast bool
	}{
		"empty page": {ProxyList{Total: 0, Proxies: []Proxy{}}, true},
		"nil page":   {ProxyList{Total: 3}, true},
		"one":        {ProxyList{Total: 1, Proxies: []Proxy{base}}, true},
		"nil tags":   {ProxyList{Total: 1, Proxies: []Proxy{func() Proxy { p := base; p.Tags = nil; return p }()}}, true},
		"empty tags": {ProxyList{Total: 1, Proxies: []Proxy{func() Proxy { p := base; p.Tags = []string{}; return p }()}}, true},
		"every time": {ProxyList{Total: 1, Proxies: []Proxy{func() Proxy {
			p := base
			z := at.In(zone)
			p.NextCheckAt, p.EjectedUntil, p.LastSuccessAt = &at, &z, &at
			return p
		}()}}, true},
		"whole second":     {ProxyList{Total: 1, Proxies: []Proxy{func() Proxy { p := base; s := at.Truncate(time.Second); p.LastCheckAt = &s; return p }()}}, true},
		"tiny float":       {ProxyList{Total: 1, Proxies: []Proxy{func() Proxy { p := base; p.LatencyMS = 1e-7; return p }()}}, true},
		"huge float":       {ProxyList{Total: 1, Proxies: []Proxy{func() Proxy { p := base; p.Weight = 1e21; return p }()}}, true},
		"negative float":   {ProxyList{Total: 1, Proxies: []Proxy{func() Proxy { p := base; p.Weight = -2.5e-9; return p }()}}, true},
		"flags":            {ProxyList{Total: 1, Proxies: []Proxy{func() Proxy { p := base; p.Paused, p.Ejected = true, true; return p }()}}, true},
		"max counters":     {ProxyList{Total: math.MaxInt32, Proxies: []Proxy{func() Proxy { p := base; p.ConsecutiveFailures = math.MaxUint32; return p }()}}, true},
		"html in a url":    {ProxyList{Total: 1, Proxies: []Proxy{func() Proxy { p := base; p.URL = "http://a<b>&c:1"; return p }()}}, false},
		"quote in a tag":   {ProxyList{Total: 1, Proxies: []Proxy{func() Proxy { p := base; p.Tags = []string{`a"b`}; return p }()}}, false},
		"non-ASCII source": {ProxyList{Total: 1, Proxies: []Proxy{func() Proxy { p := base; p.Source = "ferme-é\u2028"; return p }()}}, false},
		"control byte":     {ProxyList{Total: 1, Proxies: []Proxy{func() Proxy { p := base; p.LastErrorClass = "a\x01"; return p }()}}, false},
		"NaN":              {ProxyList{Total: 1, Proxies: []Proxy{func() Proxy { p := base; p.SuccessRate1h = math.NaN(); return p }()}}, false},
		"infinity":         {ProxyList{Total: 1, Proxies: []Proxy{func() Proxy { p := base; p.LatencyMS = math.Inf(1); return p }()}}, false},
		"year 10000":       {ProxyList{Total: 1, Proxies: []Proxy{func() Proxy { p := base; y := at.AddDate(8000, 0, 0); p.NextCheckAt = &y; return p }()}}, false},
		"cluster answer":   {ProxyList{Total: 1, Proxies: []Proxy{base}, ClusterAnswer: &ClusterAnswer{}}, false},
	} {
		t.Run(name, func(t *testing.T) {
			if fast := checkSameAsEncodingJSON(t, tc.list); fast != tc.fast {
				t.Errorf("written by appendJSON: %v, want %v", fast, tc.fast)
			}
		})
	}
}

// TestAppendJSONRandomProxies compares appendJSON with encoding/json over
// random pages.
func TestAppendJSONRandomProxies(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	strs := []string{"", "farm", "http://10.1.2.3:8080", "socks5://~0badc0de@gw:7777", "timeout", "a b/c?d=e;f", "<", "é", "\t", `\`}
	floats := []float64{0, 1, -1, 0.5, 12.345, 1e-6, 9.99e-7, 1e20, 1e21, 123456789.125, 5e-324, math.MaxFloat64, -0.0}
	times := []*time.Time{nil}
	for range 8 {
		tm := time.Unix(r.Int64N(1<<33), r.Int64N(1e9)).In(time.FixedZone("", (r.IntN(48)-24)*1800))
		times = append(times, &tm)
	}
	pick := func(s []string) string { return s[r.IntN(len(s))] }
	fast := 0
	for range 2000 {
		var list ProxyList
		list.Total = r.IntN(1 << 20)
		if r.IntN(10) > 0 {
			list.Proxies = []Proxy{}
		}
		for range r.IntN(4) {
			p := Proxy{ID: pick(strs), URL: pick(strs), Source: pick(strs), State: pick(strs),
				ConsecutiveFailures: r.Uint32(), ConsecutiveSuccesses: r.Uint32(), LastCheckAt: times[r.IntN(len(times))],
				LastErrorClass: pick(strs), LatencyMS: floats[r.IntN(len(floats))] * r.Float64(), SuccessRate1h: floats[r.IntN(len(floats))],
				NextCheckAt: times[r.IntN(len(times))], Paused: r.IntN(2) == 0, Ejected: r.IntN(2) == 0,
				EjectedUntil: times[r.IntN(len(times))], LastSuccessAt: times[r.IntN(len(times))],
				Weight: floats[r.IntN(len(floats))], ExitIP: pick(strs), Anonymity: pick(strs)}
			if n := r.IntN(4); n > 0 {
				for range n - 1 {
					p.Tags = append(p.Tags, pick(strs))
				}
				if p.Tags == nil {
					p.Tags = []string{}
				}
			}
			list.Proxies = append(list.Proxies, p)
		}
		if checkSameAsEncodingJSON(t, list) {
			fast++
		}
	}
	if fast == 0 {
		t.Fatal("appendJSON left every random page to encoding/json")
	}
}

// TestWriteAppendedIsWriteJSON checks the whole response: status, headers
// and body, for a page appendJSON writes and for one it leaves to
// encoding/json.
func TestWriteAppendedIsWriteJSON(t *testing.T) {
	at := time.Date(2026, 12, 6, 17, 45, 1, 5, time.UTC)
	for _, url := range []string{"http://10.0.0.1:3128", "http://a<b"} {
		list := ProxyList{Total: 2, Proxies: []Proxy{{ID: "x", URL: url, LastCheckAt: &at}}}
		want, got := httptest.NewRecorder(), httptest.NewRecorder()
		writeJSON(want, http.StatusOK, list)
		writeAppended(got, http.StatusOK, list)
		if got.Code != want.Code || !bytes.Equal(got.Body.Bytes(), want.Body.Bytes()) {
			t.Errorf("writeAppended: %d %s, writeJSON: %d %s", got.Code, got.Body, want.Code, want.Body)
		}
		for _, h := range []string{"Content-Type", "Cache-Control"} {
			if got.Header().Get(h) != want.Header().Get(h) {
				t.Errorf("%s: writeAppended %q, writeJSON %q", h, got.Header().Get(h), want.Header().Get(h))
			}
		}
	}
}

// FuzzAppendJSON compares appendJSON with encoding/json over fuzzed
// strings and numbers.
func FuzzAppendJSON(f *testing.F) {
	f.Add("http://10.0.0.1:3128", "farm", 12.5, 0.75, int64(1765043101), int64(5), 3600)
	f.Add("<&>", "é", math.Inf(-1), 1e-9, int64(-62135596801), int64(0), -1)
	f.Fuzz(func(t *testing.T, url, source string, latency, rate float64, sec, nsec int64, offset int) {
		tm := time.Unix(sec, nsec).In(time.FixedZone("", offset%(24*3600)))
		list := ProxyList{Total: 1, Proxies: []Proxy{{URL: url, Source: source, Tags: []string{source}, LatencyMS: latency, SuccessRate1h: rate,
			LastCheckAt: &tm, Weight: rate * latency}}}
		checkSameAsEncodingJSON(t, list)
	})
}

func TestPoolAppendJSONIsEncodingJSON(t *testing.T) {
	at := time.Date(2026, 12, 6, 17, 45, 1, 120000000, time.UTC)
	counts := Counts{Total: 100000, Healthy: 99990, Degraded: 3, Unhealthy: 2, Recovering: 1, Failed: 4, Unknown: 0, Checking: 17,
		HealthPercentage: 99.99, Paused: 5, Ejected: 6}
	full := Pool{Counts: counts, Sources: map[string]SourceCounts{
		"farm":  {Counts: counts, AvgLatencyMS: 1.234, LastRefresh: &at, LastError: "", HeldList: false},
		"b-url": {Counts: Counts{Total: 1}, LastError: "read http://lists/x: timeout", HeldList: true},
		"a":     {},
	}, JournalSeq: 123456789, UpdatedAt: &at,
		Journal: &JournalStatus{Status: "ok", Since: nil, FailedCommits: 2, LastCommitAt: &at, Head: 123456789},
		Projections: []ProjectionStatus{{Name: "live status", State: "running", Seq: 123456789},
			{Name: "sqlite view", State: "failing", Error: "disk full", Since: &at, Seq: 120000000, Lag: 3456789}},
		PanicMode: true}
	for name, tc := range map[string]struct {
		pool Pool
		fast bool
	}{
		"zero":              {Pool{}, true},
		"empty sources":     {Pool{Sources: map[string]SourceCounts{}}, true},
		"full":              {full, true},
		"no health":         {func() Pool { p := full; p.Journal, p.Projections = nil, nil; return p }(), true},
		"empty projections": {func() Pool { p := full; p.Projections = []ProjectionStatus{}; return p }(), true},
		"failing journal": {func() Pool {
			p := full
			p.Journal = &JournalStatus{Status: "failing", Error: "fsync: EIO", Since: &at}
			return p
		}(), true},
		"ten sources": {func() Pool {
			p := full
			p.Sources = map[string]SourceCounts{}
			for i := range 10 {
				p.Sources[string(rune('j'-i))+"src"] = SourceCounts{Counts: Counts{Total: i}}
			}
			return p
		}(), true},
		"html in an error": {func() Pool { p := full; p.Journal = &JournalStatus{Status: "failing", Error: "a <b> & c"}; return p }(), false},
		"odd source name":  {func() Pool { p := full; p.Sources = map[string]SourceCounts{"é": {}}; return p }(), false},
		"NaN":              {func() Pool { p := full; p.HealthPercentage = math.NaN(); return p }(), false},
		"cluster":          {func() Pool { p := full; p.ClusterAnswer = &ClusterAnswer{}; return p }(), false},
	} {
		t.Run(name, func(t *testing.T) {
			if fast := checkSameAsEncodingJSON(t, tc.pool); fast != tc.fast {
				t.Errorf("written by appendJSON: %v, want %v", fast, tc.fast)
			}
		})
	}
}
