package fakeproxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	src7 = netip.MustParseAddr("127.0.0.7")
	src8 = netip.MustParseAddr("127.0.0.8")
)

// checkFrom makes one check (an absolute-form HEAD) of addr from the local
// address src and reads the whole answer: the farm counted it by then (it
// counts at accept, before it serves).
func checkFrom(t testing.TB, src netip.Addr, addr string) {
	t.Helper()
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %v: %v", addr, src, err)
	}
	if got := rawHTTP(t, c, "HEAD http://x/ HTTP/1.1\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 200") {
		t.Fatalf("check of %s from %v: %q", addr, src, got)
	}
}

// wantSources compares a proxy's per-source counts with want (address →
// checks) and checks each entry's times.
func wantSources(t *testing.T, what string, got []SourceStats, want map[netip.Addr]uint64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: sources %+v, want %v", what, got, want)
	}
	for k, s := range got {
		if s.Checks != want[s.IP] || s.First.IsZero() || s.Last.Before(s.First) {
			t.Errorf("%s: source %+v, want %d checks and First <= Last", what, s, want[s.IP])
		}
		if k > 0 && got[k-1].IP.Compare(s.IP) >= 0 {
			t.Errorf("%s: sources not ordered by address: %+v", what, got)
		}
	}
}

// TestChecksPerSource: the farm counts each proxy's checks per source
// address (Stats.Sources, Stats.From, ChecksFrom) and the whole farm's
// (Sources); ResetStats clears them.
func TestChecksPerSource(t *testing.T) {
	f := startFarm(t, 2)
	for _, c := range []struct {
		src netip.Addr
		i   int
	}{{src8, 0}, {src7, 0}, {src7, 0}, {src7, 0}, {src8, 1}, {src8, 1}} {
		checkFrom(t, c.src, f.Addr(c.i))
	}
	st := f.Stats(0)
	if st.Checks != 4 {
		t.Errorf("proxy 0: %d checks, want 4", st.Checks)
	}
	wantSources(t, "proxy 0", st.Sources, map[netip.Addr]uint64{src7: 3, src8: 1})
	wantSources(t, "proxy 1", f.Stats(1).Sources, map[netip.Addr]uint64{src8: 2})
	if got := st.From(src7); got.Checks != 3 || got.IP != src7 {
		t.Errorf("Stats(0).From(%v) = %+v, want 3 checks", src7, got)
	}
	if got := st.From(netip.MustParseAddr("::ffff:127.0.0.8")); got.Checks != 1 {
		t.Errorf("Stats(0).From(::ffff:127.0.0.8) = %+v, want 127.0.0.8's 1 check", got)
	}
	if got := f.Stats(1).From(src7); got.Checks != 0 || !got.First.IsZero() {
		t.Errorf("Stats(1).From(%v) = %+v, want none", src7, got)
	}
	if a, b, c := f.ChecksFrom(0, src7), f.ChecksFrom(0, src8), f.ChecksFrom(1, src7); a != 3 || b != 1 || c != 0 {
		t.Errorf("ChecksFrom: proxy 0 %d from .7 and %d from .8, proxy 1 %d from .7; want 3, 1, 0", a, b, c)
	}
	all := f.Sources()
	wantSources(t, "farm", all, map[netip.Addr]uint64{src7: 3, src8: 3})
	if p0, p1 := f.Stats(0).From(src8), f.Stats(1).From(src8); !all[1].First.Equal(p0.First) || !all[1].Last.Equal(p1.Last) {
		t.Errorf("farm's .8: %+v, want First of proxy 0's (%v) and Last of proxy 1's (%v)", all[1], p0.First, p1.Last)
	}
	// Stats returns a copy: changing it changes nothing in the farm.
	st.Sources[0].Checks = 99
	if f.ChecksFrom(0, st.Sources[0].IP) == 99 {
		t.Error("Stats(0).Sources aliases the farm's counts")
	}
	f.ResetStats()
	if st := f.Stats(0); st.Checks != 0 || len(st.Sources) != 0 || len(f.Sources()) != 0 {
		t.Errorf("after ResetStats: %+v, farm %+v", st, f.Sources())
	}
	checkFrom(t, src8, f.Addr(0))
	wantSources(t, "proxy 0 after ResetStats", f.Stats(0).Sources, map[netip.Addr]uint64{src8: 1})
}

// TestOverlaps: with an overlap window, checks that alternate between two
// sources are overlaps, in one run as long as they keep coming within the
// window; a hand-over (one switch) is one overlap and a run of length
// zero; a switch after more than the window is none; without a window
// nothing is counted.
func TestOverlaps(t *testing.T) {
	long := startFarm(t, 3, WithOverlapWindow(time.Hour))
	none := startFarm(t, 1)
	for _, f := range []*Farm{long, none} {
		for _, src := range []netip.Addr{src7, src7, src8, src7, src8} {
			checkFrom(t, src, f.Addr(0))
		}
	}
	first := long.Stats(0).From(src8).First // the first overlapping check
	last := long.Stats(0).Last
	st := long.Stats(0)
	if st.Overlaps != 3 || !st.LastOverlap.Equal(last) || st.MaxOverlap != last.Sub(first) || st.MaxOverlap <= 0 {
		t.Errorf("alternating .7 .7 .8 .7 .8: overlaps %d, max %v, last %v; want 3, %v, %v", st.Overlaps, st.MaxOverlap, st.LastOverlap, last.Sub(first), last)
	}
	if st := none.Stats(0); st.Overlaps != 0 || st.MaxOverlap != 0 || !st.LastOverlap.IsZero() {
		t.Errorf("without a window: %+v, want no overlaps", st)
	}
	// A hand-over: .7 three times, then .8 three times.
	for _, src := range []netip.Addr{src7, src7, src7, src8, src8, src8} {
		checkFrom(t, src, long.Addr(1))
	}
	if st := long.Stats(1); st.Overlaps != 1 || st.MaxOverlap != 0 || !st.LastOverlap.Equal(st.From(src8).First) {
		t.Errorf("hand-over .7 → .8: %+v, want one overlap at .8's first check, a run of 0", st)
	}
	// A switch after more than the window: no overlap. The window is
	// short; the sleep makes sure that more than it passed (a lower bound:
	// a slow machine only makes the gap longer).
	short := startFarm(t, 1, WithOverlapWindow(20*time.Millisecond))
	checkFrom(t, src7, short.Addr(0))
	time.Sleep(30 * time.Millisecond)
	checkFrom(t, src8, short.Addr(0))
	if st := short.Stats(0); st.Overlaps != 0 {
		t.Errorf("a switch 30 ms after the last check, window 20 ms: %d overlaps, want 0", st.Overlaps)
	}
	long.ResetStats()
	if st := long.Stats(0); st.Overlaps != 0 || st.MaxOverlap != 0 || !st.LastOverlap.IsZero() {
		t.Errorf("after ResetStats: %+v", st)
	}
	checkFrom(t, src8, long.Addr(0)) // the previous source was forgotten too
	if st := long.Stats(0); st.Overlaps != 0 {
		t.Errorf("first check after ResetStats: %d overlaps, want 0", st.Overlaps)
	}
}

// TestReportRoundTrip: a report written by WriteReport parses back into
// the farm's figures.
func TestReportRoundTrip(t *testing.T) {
	f := startFarm(t, 2, WithOverlapWindow(time.Hour))
	for _, src := range []netip.Addr{src7, src8, src7} {
		checkFrom(t, src, f.Addr(1))
	}
	var b strings.Builder
	if err := f.WriteReport(&b); err != nil {
		t.Fatal(err)
	}
	line := b.String()
	if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") {
		t.Fatalf("WriteReport wrote %q, want one line", line)
	}
	r, err := ParseReport([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if r.TotalChecks != 3 || len(r.Proxies) != 2 || r.Addrs[1] != f.Addr(1) || r.Proxies[0].Checks != 0 {
		t.Fatalf("report %+v", r)
	}
	want := f.Stats(1)
	got := r.Proxies[1]
	if got.Checks != want.Checks || got.Overlaps != 2 || got.MaxOverlap != want.MaxOverlap || !got.LastOverlap.Equal(want.LastOverlap) {
		t.Errorf("proxy 1 in the report: %+v, want %+v", got, want)
	}
	wantSources(t, "report proxy 1", got.Sources, map[netip.Addr]uint64{src7: 2, src8: 1})
	for k := range got.Sources {
		if !got.Sources[k].First.Equal(want.Sources[k].First) || !got.Sources[k].Last.Equal(want.Sources[k].Last) {
			t.Errorf("source %d: %+v, want %+v", k, got.Sources[k], want.Sources[k])
		}
	}
	wantSources(t, "report sources", r.Sources(), map[netip.Addr]uint64{src7: 2, src8: 1})
	for _, bad := range []string{"", "count\n", `{"Addrs":["a"],"Proxies":[]}`} {
		if _, err := ParseReport([]byte(bad)); !errors.Is(err, ErrBadReport) {
			t.Errorf("ParseReport(%q) = %v, want ErrBadReport", bad, err)
		}
	}
}

// controlChildEnv makes the test binary a farm child: "N" proxies served
// through ServeControl on stdin and stdout (see TestMain).
const controlChildEnv = "FAKEPROXY_TEST_CONTROL_CHILD"

// runControlChild is the child of TestServeControlInChild: it starts a
// farm, prints its addresses and READY, then serves commands until its
// stdin closes.
func runControlChild(spec string) int {
	n, err := strconv.Atoi(spec)
	if err != nil {
		fmt.Printf("ERR %s=%q: want a number of proxies\n", controlChildEnv, spec)
		return 2
	}
	f, err := Start(context.Background(), n, WithOverlapWindow(time.Hour))
	if err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	defer f.Close()
	for i := range n {
		fmt.Println(f.Addr(i))
	}
	fmt.Println("READY")
	if err := f.ServeControl(context.Background(), os.Stdin, os.Stdout); err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	return 0
}

// TestServeControlInChild drives a farm in a child process, as an
// integration test of several checker processes would: checks from two
// source addresses, then "count", "report" (parsed with ParseReport),
// "reset" and an unknown command over the child's stdin and stdout.
func TestServeControlInChild(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), controlChildEnv+"=3")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		in.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("the farm child still runs 10 s after its stdin closed; killing it")
			_ = cmd.Process.Kill()
			<-done
		}
	})
	out := bufio.NewScanner(outPipe)
	out.Buffer(make([]byte, 0, 64<<10), 16<<20)
	var addrs []string
	for out.Scan() && out.Text() != "READY" {
		if strings.HasPrefix(out.Text(), "ERR") {
			t.Fatalf("farm child: %s", out.Text())
		}
		addrs = append(addrs, out.Text())
	}
	if len(addrs) != 3 {
		t.Fatalf("farm child printed %d addresses before READY, want 3 (%v)", len(addrs), out.Err())
	}
	ask := func(req string) string {
		t.Helper()
		if _, err := io.WriteString(in, req+"\n"); err != nil {
			t.Fatal(err)
		}
		if !out.Scan() {
			t.Fatalf("no answer to %q: %v", req, out.Err())
		}
		return out.Text()
	}
	for _, c := range []struct {
		src netip.Addr
		i   int
	}{{src7, 0}, {src8, 0}, {src7, 2}} {
		checkFrom(t, c.src, addrs[c.i])
	}
	if got := ask("count"); got != "3" {
		t.Errorf("count: %q, want 3", got)
	}
	r, err := ParseReport([]byte(ask("report")))
	if err != nil {
		t.Fatal(err)
	}
	wantSources(t, "child proxy 0", r.Proxies[0].Sources, map[netip.Addr]uint64{src7: 1, src8: 1})
	wantSources(t, "child proxy 1", r.Proxies[1].Sources, map[netip.Addr]uint64{})
	wantSources(t, "child proxy 2", r.Proxies[2].Sources, map[netip.Addr]uint64{src7: 1})
	if r.Proxies[0].Overlaps != 1 || r.Addrs[2] != addrs[2] {
		t.Errorf("child report: %+v, want one overlap on proxy 0 and the printed addresses", r)
	}
	if got := ask("reset"); got != "ok" {
		t.Errorf("reset: %q, want ok", got)
	}
	if r, err := ParseReport([]byte(ask("report"))); err != nil || len(r.Sources()) != 0 {
		t.Errorf("report after reset: %+v, %v; want no sources", r, err)
	}
	if got := ask("bogus"); !strings.HasPrefix(got, "ERR unknown command \"bogus\"") {
		t.Errorf("bogus: %q, want an ERR naming it", got)
	}
}

// TestServeControlContext: ServeControl returns ctx's error when ctx is
// done while it waits for a command, closing its reader.
func TestServeControlContext(t *testing.T) {
	f := startFarm(t, 1)
	r, w := io.Pipe()
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- f.ServeControl(ctx, r, io.Discard) }()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("ServeControl after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeControl did not return within 10 s of its context's end")
	}
}
