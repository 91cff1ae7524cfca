package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

// clusterData are the data directories of two members written by two
// real engines running at once (so their events interleave in time):
// member a checks healthy and moving (a URL with credentials), member b
// checks dead (refusing); then moving is handed over: a removes it, b adds
// it and checks it until it is healthy there too.
type clusterData struct {
	a, b                  string
	healthy, moving, dead string // URLs
}

func makeCluster(t *testing.T) clusterData {
	t.Helper()
	ctx := t.Context()
	farm, err := fakeproxy.Start(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer farm.Close()
	if err := farm.Set(2, fakeproxy.Refuse()); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	cd := clusterData{a: filepath.Join(root, "member-a"), b: filepath.Join(root, "member-b"),
		healthy: farm.URL(0), moving: farm.URLWith(1, "socks5h", "user", "pw"), dead: farm.URL(2)}
	h := proxyhealth.DefaultHealthConfig()
	h.Interval, h.SuspectInterval, h.UnhealthyThreshold, h.RecoveryCooldown = 100*time.Millisecond, 100*time.Millisecond, 2, time.Hour
	pc := proxyhealth.ProbeConfig{TargetURL: testTarget, Timeout: time.Second}
	open := func(dir string, proxies ...string) *proxyhealth.Engine {
		eng, err := proxyhealth.Open(ctx, proxyhealth.Config{DataDir: dir, Sources: []proxyhealth.SourceConfig{{Name: "pool", Health: h, Probe: pc, Proxies: proxies}}})
		if err != nil {
			t.Fatal(err)
		}
		return eng
	}
	a, b := open(cd.a, cd.healthy, cd.moving), open(cd.b, cd.dead)
	state := func(eng *proxyhealth.Engine, url string) (health string, checks uint64) {
		st, err := eng.Proxy(ctx, id(url))
		if err != nil {
			t.Fatal(err)
		}
		return st.State.Health.String(), st.State.TotalChecks
	}
	testutil.Eventually(t, 20*time.Second, "moving healthy at a, dead unhealthy at b", func() bool {
		hm, n := state(a, cd.moving)
		hd, _ := state(b, cd.dead)
		return hm == "HEALTH_STATE_HEALTHY" && n >= 3 && hd == "HEALTH_STATE_UNHEALTHY"
	})
	if err := a.RemoveProxy(ctx, id(cd.moving)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.AddProxy(ctx, "pool", cd.moving); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, "moving healthy at b", func() bool {
		hm, n := state(b, cd.moving)
		return hm == "HEALTH_STATE_HEALTHY" && n >= 3
	})
	for _, eng := range []*proxyhealth.Engine{a, b} {
		if err := eng.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return cd
}

// decodeLines decodes JSON lines into values of type T.
func decodeLines[T any](t *testing.T, s string) []T {
	t.Helper()
	var out []T
	for line := range strings.SplitSeq(strings.TrimSpace(s), "\n") {
		if line == "" {
			continue
		}
		var v T
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("%v: %q", err, line)
		}
		out = append(out, v)
	}
	return out
}

func mustSucceed(t *testing.T, r result, what string) string {
	t.Helper()
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("%s: exit %d, stderr %q", what, r.code, r.stderr)
	}
	return r.stdout
}

// checkMergedReplay checks a merged replay against each member's own
// replay: every member's records appear once, in their own order; when
// a record is printed, the next record of every other member is not
// earlier (by time, then the members' order), which is the merge by time
// (a member's own records keep their order even where their times do
// not). It returns how often the member changes from one record to the
// next.
func checkMergedReplay(t *testing.T, what string, merged []proxyhealth.MemberRecord, members []string, own map[string][]proxyhealth.Record) (switches int) {
	t.Helper()
	type key struct {
		at     time.Time
		member int
	}
	keys := make([]key, len(merged))
	got := map[string][]proxyhealth.Record{}
	for i, r := range merged {
		m := slices.Index(members, r.Member)
		if m < 0 {
			t.Fatalf("%s: record %d names member %q", what, i, r.Member)
		}
		got[r.Member] = append(got[r.Member], r.Record)
		at, err := time.Parse(time.RFC3339Nano, r.At)
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = key{at, m}
		if i > 0 && m != keys[i-1].member {
			switches++
		}
	}
	for i, k := range keys {
		for m := range members {
			if m == k.member {
				continue
			}
			j := slices.IndexFunc(keys[i+1:], func(o key) bool { return o.member == m })
			if j < 0 {
				continue
			}
			if o := keys[i+1+j]; o.at.Before(k.at) || (o.at.Equal(k.at) && m < k.member) {
				t.Errorf("%s: record %d (%s at %s) printed before record %d (%s at %s)", what, i, members[k.member], k.at.Format(time.RFC3339Nano), i+1+j, members[m], o.at.Format(time.RFC3339Nano))
			}
		}
	}
	for _, m := range members {
		if g, o := marshal(t, got[m]), marshal(t, own[m]); g != o {
			t.Errorf("%s: member %s's records in the merge (%d) differ from its own replay (%d)", what, m, len(got[m]), len(own[m]))
		}
		for i := 1; i < len(own[m]); i++ {
			if own[m][i].At < own[m][i-1].At { // same layout and zone: text order is time order
				t.Logf("%s: in %s, seq %d (%s) at %s comes after seq %d (%s) at %s", what, m, own[m][i].Seq, own[m][i].Type, own[m][i].At, own[m][i-1].Seq, own[m][i-1].Type, own[m][i-1].At)
			}
		}
	}
	return switches
}

// TestJournalReplayMerged: replay --data A --data B merges two real
// members' journals by time: each member's records exactly once and in
// its own order, the whole in time order, interleaved; text lines are the
// single-journal lines with the member after the time; filters apply to
// each member (--proxy gives the moved proxy's story: a's part, then
// b's); nothing carries the credentials.
func TestJournalReplayMerged(t *testing.T) {
	cd := makeCluster(t)
	members := []string{cd.a, cd.b}
	for _, filter := range [][]string{nil, {"--proxy", cd.moving}, {"--type", "state_changed,proxy_added,proxy_removed"}, {"--source", "pool", "--since", "1h"}} {
		own := map[string][]proxyhealth.Record{}
		ownText := map[string][]string{}
		for _, m := range members {
			own[m] = decodeLines[proxyhealth.Record](t, mustSucceed(t, cli(t, append([]string{"journal", "replay", "--format", "json", "--data", m}, filter...)...), "replay "+m))
			ownText[m] = strings.Split(strings.TrimSuffix(mustSucceed(t, cli(t, append([]string{"journal", "replay", "--data", m}, filter...)...), "replay "+m), "\n"), "\n")
		}
		args := append([]string{"journal", "replay", "--data", cd.a, "--data", cd.b}, filter...)
		out := mustSucceed(t, cli(t, append(args, "--format", "json")...), fmt.Sprint(args))
		merged := decodeLines[proxyhealth.MemberRecord](t, out)
		switches := checkMergedReplay(t, fmt.Sprint(filter), merged, members, own)
		if strings.Contains(out, "pw") || strings.Contains(out, "user") {
			t.Errorf("%v: credentials in the merged replay", filter)
		}
		if !strings.HasPrefix(out, `{"member":`) {
			t.Errorf("%v: the member is not the first field: %.80s", filter, out)
		}

		// Text: the same records, each the member's own line with the
		// member after the time.
		text := strings.Split(strings.TrimSuffix(mustSucceed(t, cli(t, args...), fmt.Sprint(args)), "\n"), "\n")
		if len(text) != len(merged) {
			t.Fatalf("%v: %d text lines, %d JSON records", filter, len(text), len(merged))
		}
		next := map[string]int{}
		width := max(len(cd.a), len(cd.b))
		for i, r := range merged {
			ownLine := ownText[r.Member][next[r.Member]]
			next[r.Member]++
			want := r.At + "  " + r.Member + strings.Repeat(" ", width-len(r.Member)) + strings.TrimPrefix(ownLine, r.At)
			if !strings.HasPrefix(ownLine, r.At+"  ") || text[i] != want {
				t.Errorf("%v: text line %d %q, want %q", filter, i, text[i], want)
			}
		}

		switch {
		case filter == nil:
			if switches < 4 {
				t.Errorf("the members' events do not interleave: %d switches in %d records", switches, len(merged))
			}
		case filter[0] == "--proxy":
			// One story: a added it and removed it, then b added it.
			i := slices.IndexFunc(merged, func(r proxyhealth.MemberRecord) bool { return r.Member == cd.b })
			if i <= 0 || slices.ContainsFunc(merged[i:], func(r proxyhealth.MemberRecord) bool { return r.Member == cd.a }) ||
				merged[0].Type != "proxy_added" || merged[i-1].Type != "proxy_removed" || merged[i].Type != "proxy_added" {
				t.Errorf("the moved proxy's story: %+v", merged)
			}
		}
	}

	// The order of the flags is the order of the members (ties) and the
	// output names them as given.
	out := mustSucceed(t, cli(t, "journal", "replay", "--data", cd.b, "--data", cd.a, "--format", "json", "--type", "proxy_added"), "b then a")
	var names []string
	for _, r := range decodeLines[proxyhealth.MemberRecord](t, out) {
		names = append(names, r.Member)
	}
	if len(names) != 4 || names[0] != cd.a || names[len(names)-1] != cd.b {
		t.Errorf("proxy_added in b then a: %v", names)
	}

	// A member that cannot be read: nothing printed, it is named, exit 1.
	missing := filepath.Join(t.TempDir(), "member-c")
	r := cli(t, "journal", "replay", "--data", cd.a, "--data", missing, "--data", cd.b)
	if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "member "+missing+": no journal at "+journalPath(missing)) || !strings.Contains(r.stderr, "Nothing was printed") {
		t.Errorf("a missing member: %+v", r)
	}
	// The same member twice, stats over two, a bad URL: usage errors.
	for _, args := range [][]string{
		{"journal", "replay", "--data", cd.a, "--data", cd.a + "/"},
		{"journal", "stats", "--data", cd.a, "--data", cd.b},
		{"journal", "replay", "--data", cd.a, "--server", "ftp://x"},
	} {
		if r := cli(t, args...); r.code != exitUsage || r.stdout != "" {
			t.Errorf("%v: %+v", args, r)
		} else {
			oneLine(t, fmt.Sprint(args), r.stderr)
		}
	}
}

// TestJournalExplainMerged: explain PROXY --data A --data B tells the
// moved proxy's story across both members as one: a's sentences (added,
// checks, healthy, removed) then b's (added again, checks, healthy), each
// naming its member with that member's seq; the spans count what each
// journal holds of it.
func TestJournalExplainMerged(t *testing.T) {
	cd := makeCluster(t)
	var s memberStoryJSON
	out := mustSucceed(t, cli(t, "journal", "explain", cd.moving, "--data", cd.a, "--data", cd.b, "--format", "json"), "explain json")
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, m := range []string{cd.a, cd.b} {
		counts[m] = len(decodeLines[proxyhealth.Record](t, mustSucceed(t, cli(t, "journal", "replay", "--format", "json", "--proxy", id(cd.moving), "--data", m), "replay")))
	}
	if len(s.Members) != 2 || s.Members[0].Member != cd.a || s.Members[0].Events != counts[cd.a] || s.Members[1].Member != cd.b || s.Members[1].Events != counts[cd.b] ||
		s.Events != counts[cd.a]+counts[cd.b] || s.State != "healthy" || s.Removed || s.ProxyID != id(cd.moving) {
		t.Errorf("story %+v, events per member %v", s, counts)
	}
	var texts []string
	for i, l := range s.Lines {
		if i > 0 && (l.At.Before(s.Lines[i-1].At) || (l.Member == cd.a && s.Lines[i-1].Member == cd.b)) {
			t.Errorf("line %d %+v after %+v", i, l, s.Lines[i-1])
		}
		texts = append(texts, l.Member+": "+l.Text)
	}
	story := strings.Join(texts, "\n")
	for _, want := range []string{cd.a + ": added: socks5h://~", cd.a + ": healthy since", cd.a + ": removed", cd.b + ": added again: socks5h://~", cd.b + ": healthy since"} {
		if !strings.Contains(story, want) {
			t.Errorf("the story lacks %q:\n%s", want, story)
		}
	}
	if strings.Contains(out, "pw") {
		t.Errorf("credentials in the story:\n%s", out)
	}

	text := mustSucceed(t, cli(t, "journal", "explain", id(cd.moving), "--data", cd.a, "--data", cd.b), "explain text")
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) != len(s.Lines)+2 || !strings.HasPrefix(lines[0], "proxy "+id(cd.moving)+" socks5h://~") ||
		lines[1] != fmt.Sprintf("told from %s (%d events, seq %d to %d), %s (%d events, seq %d to %d)", cd.a, s.Members[0].Events, s.Members[0].FirstSeq, s.Members[0].LastSeq, cd.b, s.Members[1].Events, s.Members[1].FirstSeq, s.Members[1].LastSeq) {
		t.Fatalf("text:\n%s", text)
	}
	for i, l := range s.Lines {
		if want := l.At.UTC().Format("2006-01-02T15:04:05Z") + "  " + fmt.Sprintf("%-*s", max(len(cd.a), len(cd.b)), l.Member) + "  " + l.Text; lines[i+2] != want {
			t.Errorf("text line %d %q, want %q", i+2, lines[i+2], want)
		}
	}

	// One member alone tells its part only, as before.
	single := mustSucceed(t, cli(t, "journal", "explain", id(cd.moving), "--data", cd.b), "explain b")
	if !strings.Contains(single, "added: socks5h://~") || strings.Contains(single, "removed") || strings.Contains(single, "told from") {
		t.Errorf("b alone:\n%s", single)
	}
	// A member that cannot be read: nothing told.
	missing := filepath.Join(t.TempDir(), "member-c")
	if r := cli(t, "journal", "explain", id(cd.moving), "--data", cd.a, "--data", missing); r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "member "+missing+": no journal at") {
		t.Errorf("a missing member: %+v", r)
	}
	// A proxy no member knows.
	if r := cli(t, "journal", "explain", "0123456789abcdef", "--data", cd.a, "--data", cd.b); r.code != 1 || !strings.Contains(r.stderr, "no journal holds an event of it (read "+cd.a+", "+cd.b) {
		t.Errorf("unknown proxy: %+v", r)
	}
}

// serveMember serves a member's journal (its records as the offline
// replay reads them) like GET /v1/journal.
func serveMember(t *testing.T, dir string) (*fakeJournalAPI, string) {
	t.Helper()
	api := &fakeJournalAPI{token: "tok", recs: decodeLines[proxyhealth.Record](t, mustSucceed(t, cli(t, "journal", "replay", "--format", "json", "--data", dir), "replay "+dir))}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return api, srv.URL
}

// TestJournalMergedFromServers: replay and explain with two --server
// (and a --server mixed with a --data) print what they print from the
// data directories, the members named by their URLs; a page that breaks
// off in a merge is asked again from its last event, so the merge is
// whole; one that breaks off without progress names its member, and the
// other member is still printed to its end (exit 1).
func TestJournalMergedFromServers(t *testing.T) {
	cd := makeCluster(t)
	apiA, urlA := serveMember(t, cd.a)
	_, urlB := serveMember(t, cd.b)
	defer func(n int) { journalPageSize = n }(journalPageSize)
	journalPageSize = 5
	rename := func(recs []proxyhealth.MemberRecord, names map[string]string) string {
		for i := range recs {
			recs[i].Member = names[recs[i].Member]
		}
		b, err := json.Marshal(recs)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	offline := func(filter ...string) []proxyhealth.MemberRecord {
		return decodeLines[proxyhealth.MemberRecord](t, mustSucceed(t, cli(t, append([]string{"journal", "replay", "--format", "json", "--data", cd.a, "--data", cd.b}, filter...)...), "offline"))
	}
	for _, filter := range [][]string{nil, {"--proxy", cd.moving}, {"--type", "check_failed,state_changed"}} {
		want := rename(offline(filter...), map[string]string{cd.a: "A", cd.b: "B"})
		on := decodeLines[proxyhealth.MemberRecord](t, mustSucceed(t, cli(t, append([]string{"journal", "replay", "--format", "json", "--server", urlA, "--server", urlB, "--token", "tok"}, filter...)...), "online"))
		if got := rename(on, map[string]string{urlA: "A", urlB: "B"}); got != want {
			t.Errorf("%v: --server gave\n%s\n--data gave\n%s", filter, got, want)
		}
		mixed := decodeLines[proxyhealth.MemberRecord](t, mustSucceed(t, cli(t, append([]string{"journal", "replay", "--format", "json", "--data", cd.a, "--server", urlB, "--token", "tok"}, filter...)...), "mixed"))
		if got := rename(mixed, map[string]string{cd.a: "A", urlB: "B"}); got != want {
			t.Errorf("%v: --data a --server b gave\n%s\nwant\n%s", filter, got, want)
		}
	}

	// explain over the servers tells the story told from the directories.
	var off, on memberStoryJSON
	if err := json.Unmarshal([]byte(mustSucceed(t, cli(t, "journal", "explain", cd.moving, "--data", cd.a, "--data", cd.b, "--format", "json"), "explain offline")), &off); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(mustSucceed(t, cli(t, "journal", "explain", cd.moving, "--server", urlA, "--server", urlB, "--token", "tok", "--format", "json"), "explain online")), &on); err != nil {
		t.Fatal(err)
	}
	for i := range on.Lines {
		on.Lines[i].Member = map[string]string{urlA: cd.a, urlB: cd.b}[on.Lines[i].Member]
	}
	on.Members[0].Member, on.Members[1].Member = cd.a, cd.b
	if marshal(t, on) != marshal(t, off) || len(on.Lines) < 5 {
		t.Errorf("explain --server\n%+v\n--data\n%+v", on, off)
	}

	// Pages of a that break off after 3 events: asked again from there.
	want := rename(offline(), map[string]string{cd.a: "A", cd.b: "B"})
	apiA.mu.Lock()
	apiA.cutAfter, apiA.queries = 3, nil
	apiA.mu.Unlock()
	got := decodeLines[proxyhealth.MemberRecord](t, mustSucceed(t, cli(t, "journal", "replay", "--format", "json", "--server", urlA, "--server", urlB, "--token", "tok"), "resumed"))
	if rename(got, map[string]string{urlA: "A", urlB: "B"}) != want {
		t.Errorf("with a's pages breaking off the merge differs")
	}
	apiA.mu.Lock()
	resumed := slices.ContainsFunc(apiA.queries, func(q string) bool { return strings.HasPrefix(q, "after=3&") })
	apiA.mu.Unlock()
	if !resumed {
		t.Errorf("no page asked again after seq 3: %v", apiA.queries)
	}
	// One member alone keeps today's behaviour: a broken page is an error.
	if r := cli(t, "journal", "replay", "--server", urlA, "--token", "tok"); r.code != 1 || !strings.Contains(r.stderr, "the answer broke off after 3 events (seq 3)") {
		t.Errorf("single server with a broken page: %+v", r)
	}

	// A page of a that breaks off before its first event at seq 10 every
	// time: a is named with how far it was read; b is printed to its end.
	apiA.mu.Lock()
	apiA.cutAfter, apiA.cutAt = 0, 10
	apiA.mu.Unlock()
	r := cli(t, "journal", "replay", "--format", "json", "--server", urlA, "--server", urlB, "--token", "tok")
	if r.code != 1 || !strings.Contains(r.stderr, "member "+urlA+" (after 9 of its events, up to seq 9): "+urlA+"/v1/journal") ||
		!strings.Contains(r.stderr, "the answer broke off after 0 events (seq 9)") || !strings.Contains(r.stderr, "printed to their end") {
		t.Errorf("a member failing part-way: exit %d, stderr %q", r.code, r.stderr)
	}
	recs := decodeLines[proxyhealth.MemberRecord](t, r.stdout)
	var fromA, fromB int
	for _, rec := range recs {
		if rec.Member == urlA {
			fromA++
		} else {
			fromB++
		}
	}
	if fromA != 9 || fromB != countMember(offline(), cd.b) {
		t.Errorf("a member failing part-way: %d of a's and %d of b's records printed", fromA, fromB)
	}
}

func countMember(recs []proxyhealth.MemberRecord, m string) (n int) {
	for _, r := range recs {
		if r.Member == m {
			n++
		}
	}
	return n
}

func marshal(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestJournalMergedFromRealDaemons: replay --server A --server B against
// two running daemons (their own GET /v1/journal, in small pages, while
// they append): the merge is in time order and holds each member's
// events in its own order; after they stopped, each member's part is the
// beginning of its offline replay (its journal only grew).
func TestJournalMergedFromRealDaemons(t *testing.T) {
	farm, err := fakeproxy.Start(t.Context(), 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(farm.Close)
	if err := farm.Set(3, fakeproxy.Refuse()); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	type member struct {
		data, url string
		stop      func()
	}
	var members []member
	for i, proxies := range []string{farm.URL(0) + "\n" + farm.URLWith(1, "socks5h", "user", "pw") + "\n", farm.URL(2) + "\n" + farm.URL(3) + "\n"} {
		list := writeFile(t, dir, fmt.Sprintf("pool-%d.txt", i), proxies)
		data := filepath.Join(dir, fmt.Sprintf("data-%d", i))
		var logs syncBuffer
		d, stop := startTestDaemon(t, &logs, nil, "--data", data, "--proxies", list, "--interval", "100ms", "--timeout", "1s",
			"--check-url", testTarget, "--unhealthy-threshold", "2")
		testutil.Eventually(t, 20*time.Second, "some history", func() bool { return d.status.Summary().Seq > 30 })
		members = append(members, member{data: data, url: strings.TrimSuffix(d.web.url, "/"), stop: stop})
	}
	defer func(n int) { journalPageSize = n }(journalPageSize)
	journalPageSize = 7
	r := cli(t, "journal", "replay", "--format", "json", "--server", members[0].url, "--server", members[1].url)
	online := decodeLines[proxyhealth.MemberRecord](t, mustSucceed(t, r, "merged --server"))
	for _, m := range members {
		m.stop()
	}
	names := []string{members[0].url, members[1].url}
	own := map[string][]proxyhealth.Record{}
	for _, m := range members {
		off := decodeLines[proxyhealth.Record](t, mustSucceed(t, cli(t, "journal", "replay", "--format", "json", "--data", m.data), "offline"))
		n := 0
		for _, rec := range online {
			if rec.Member == m.url {
				n++
			}
		}
		if n < 30 || n > len(off) {
			t.Fatalf("member %s: %d records online, %d offline", m.url, n, len(off))
		}
		own[m.url] = off[:n]
	}
	if switches := checkMergedReplay(t, "real daemons", online, names, own); switches < 4 {
		t.Errorf("the members' events do not interleave: %d switches in %d records", switches, len(online))
	}
	if strings.Contains(r.stdout, "pw") {
		t.Error("credentials in the merged replay")
	}
}
