package main

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const module = "github.com/proxyhealth/proxyhealth"

func parseSample(t *testing.T) *Input {
	t.Helper()
	f, err := os.Open("testdata/sample.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	in := &Input{}
	if err := in.Parse(f, "testdata/sample.txt"); err != nil {
		t.Fatal(err)
	}
	return in
}

func TestParseReadsResultsPackagesCommandsAndMedians(t *testing.T) {
	in := parseSample(t)
	app := in.Get("BenchmarkAppend/batch=100/appenders=8")
	if app == nil {
		t.Fatal("BenchmarkAppend/batch=100/appenders=8 (reported as ...-2) not parsed")
	}
	if app.Runs != 3 || app.Metrics["events/s"] != 1_200_000 {
		t.Errorf("append: %d runs, %v events/s; want 3 runs and the median 1,200,000", app.Runs, app.Metrics["events/s"])
	}
	if app.Pkg != module+"/journal" || !strings.Contains(app.Command, "-benchtime=2s") {
		t.Errorf("append: pkg %q, command %q", app.Pkg, app.Command)
	}
	if v, ok := in.Metric("BenchmarkDetection", "detect-p99-s"); !ok || v != 41.2 {
		t.Errorf("detect-p99-s = %v, %v; want 41.2", v, ok)
	}
	if d := in.Get("BenchmarkDaemon/proxies=10000"); d == nil || d.Pkg != module+"/cmd/proxyhealth" {
		t.Errorf("daemon result %+v", d)
	}
	if in.Get("BenchmarkDetection-2") != nil || len(in.Results) != 11 {
		t.Errorf("%d results (want 11, names without -GOMAXPROCS): %v", len(in.Results), names(in))
	}
	if len(in.Loads) != 1 || !strings.Contains(in.Loads[0], "load average: 1.50") {
		t.Errorf("loads %q", in.Loads)
	}
}

func names(in *Input) []string {
	var s []string
	for _, r := range in.Results {
		s = append(s, r.Name)
	}
	return s
}

func TestParseMergesFilesAndRejectsNonNumbers(t *testing.T) {
	in := &Input{}
	for _, v := range []string{"1000000", "3000000"} {
		if err := in.Parse(strings.NewReader("pkg: x/journal\nBenchmarkReplay-8 10 5 ns/op "+v+" events/s\n"), "f"); err != nil {
			t.Fatal(err)
		}
	}
	if v, _ := in.Metric("BenchmarkReplay", "events/s"); v != 2_000_000 {
		t.Errorf("replay over two files = %v; want the median 2,000,000", v)
	}
	err := in.Parse(strings.NewReader("header\nBenchmarkReplay-8 10 fast events/s\n"), "bad.txt")
	if !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), "bad.txt line 2") {
		t.Errorf("err = %v; want ErrBadInput naming bad.txt line 2", err)
	}
}

func TestRowsShowFiguresTargetsAndCommands(t *testing.T) {
	got := map[string]row{}
	var order []string
	for _, r := range rows(parseSample(t), module) {
		got[r.figure] = r
		order = append(order, r.figure)
	}
	want := []row{
		{"10,000 proxies: CPU per 1,000 checks", "120 ms", "≤ 100 (issue 14): **missed**", "`go test -run '^$' -bench '^BenchmarkDaemon$/^proxies=10000$' -benchtime 1x -timeout 30m ./cmd/proxyhealth/`"},
		{"10,000 proxies: user CPU per check", "25 µs", "≤ 30 (issue 14): met", "`go test -run '^$' -bench '^BenchmarkDaemon$/^proxies=10000$' -benchtime 1x -timeout 30m ./cmd/proxyhealth/`"},
		{"10,000 proxies: peak RSS", "48 MiB", "≤ 64 (issue 14): met", "`go test -run '^$' -bench '^BenchmarkDaemon$/^proxies=10000$' -benchtime 1x -timeout 30m ./cmd/proxyhealth/`"},
		{"10,000 proxies: CPU per check, proxyhealth ÷ baseline", "3 ×", "—", "`go test -run '^$' -bench '^BenchmarkDaemon$/^proxies=10000$' -benchtime 1x -timeout 30m ./cmd/proxyhealth/`"},
		{"100,000 proxies: first sweep", "not run", "≤ 15 (issue 14)", "`go test -run '^$' -bench '^BenchmarkDaemon$/^proxies=100000$' -benchtime 1x -timeout 30m ./cmd/proxyhealth/`"},
		{"100,000 proxies: CPU per 1,000 checks", "not run", "≤ 120 (issue 14: no worse than at 10,000)", "`go test -run '^$' -bench '^BenchmarkDaemon$/^proxies=100000$' -benchtime 1x -timeout 30m ./cmd/proxyhealth/`"},
		{"journal append, fsync'd, 100 events per call, 8 appenders", "1,200,000 events/s", "≥ 1,000,000 (issue 14): met", "`go test -run '^$' -bench '^BenchmarkAppend$/^batch=100$/^appenders=8$' -benchtime=2s -count=3 ./journal/`"},
		{"journal append, fsync'd, 100 events per call, 64 appenders", "not run", "≥ 1,000,000 (issue 14)", "`go test -run '^$' -bench '^BenchmarkAppend$/^batch=100$/^appenders=64$' -benchtime 2s ./journal/`"},
		{"journal append, fsync'd, 1 event per call, 64 appenders", "200,000 events/s", "—", "`go test -run '^$' -bench '^BenchmarkAppend$/^batch=1$/^appenders=64$' -benchtime=2s -count=3 ./journal/`"},
		{"journal replay (read and decode from seq 1)", "2,500,000 events/s", "≥ 3,000,000 (issue 14): **missed**", "`go test -run '^$' -bench '^BenchmarkReplay$' -benchtime=2s -count=3 ./journal/`"},
		{"SQLite view rebuild from a bbolt journal", "8 s per 1M events", "≤ 10 (sqlview's own): met", "`go test -run '^$' -bench '^BenchmarkRebuild$/^bolt$' -benchtime=1x -timeout 20m ./projections/sqlview/`"},
		{"SQLite view rebuild from the in-memory journal", "5 s per 1M events", "—", "`go test -run '^$' -bench '^BenchmarkRebuild$/^mem$' -benchtime=1x -timeout 20m ./projections/sqlview/`"},
		{"SQLite view, CPU per check applied, 10,000 proxies, 30 min of history", "43 µs", "—", "`go test -run '^$' -bench '^BenchmarkSteadyState$/^proxies=10000$/^batch=1000$/^history=30m$' -benchtime=1x -count=1 -timeout 20m ./projections/sqlview/`"},
		{"detection latency p99, proxies killed mid-run (default config)", "41.2 s", "≤ 60 (spec SC-001): met", "`PROXYHEALTH_BENCH_SCALE=10 go test -run '^$' -bench '^BenchmarkDetection$' -benchtime 1x -timeout 30m .`"},
		{"detection bound of the config (events.Config.DetectionBound)", "30 s", "—", "`PROXYHEALTH_BENCH_SCALE=10 go test -run '^$' -bench '^BenchmarkDetection$' -benchtime 1x -timeout 30m .`"},
		{"false positives, proxies dropping 5 % of checks (share of proxy-time out of rotation)", "0.03 %", "< 1 (spec SC-007): met", "`PROXYHEALTH_BENCH_SCALE=10 go test -run '^$' -bench '^BenchmarkFalsePositives$' -benchtime 1x -timeout 30m .`"},
		{"false positives per 1,000 checks (transitions to unhealthy)", "0.125", "—", "`PROXYHEALTH_BENCH_SCALE=10 go test -run '^$' -bench '^BenchmarkFalsePositives$' -benchtime 1x -timeout 30m .`"},
		{"temporarily failed proxies (down 1–10 min) back to healthy, not failed", "75 %", "≥ 80 (spec SC-005): **missed**", "`PROXYHEALTH_BENCH_SCALE=10 go test -run '^$' -bench '^BenchmarkRecoveryShare$' -benchtime 1x -timeout 30m .`"},
	}
	for _, w := range want {
		if g, ok := got[w.figure]; !ok {
			t.Errorf("no row %q", w.figure)
		} else if g != w {
			t.Errorf("row %q:\n got %+v\nwant %+v", w.figure, g, w)
		}
	}
	// Figures without a target that were not run are left out, never
	// invented.
	for _, absent := range []string{
		"10,000 proxies: system CPU per check",
		"10,000 proxies: baseline peak RSS",
		"100,000 proxies: peak RSS, proxyhealth ÷ baseline",
		"detection latency p99, killed by refusing connections",
	} {
		if _, ok := got[absent]; ok {
			t.Errorf("row %q shown, but the input does not have it", absent)
		}
	}
	// Every row is one the input has, or a targeted "not run" one.
	if len(order) != 25 {
		t.Errorf("%d rows; want 25 (17 measured, 8 targets not run): %q", len(order), order)
	}
}

func TestReportPrintsTheMachineThenOneTable(t *testing.T) {
	m := readMachine("testdata/proc", time.Date(2026, 12, 5, 3, 4, 0, 0, time.UTC))
	if m.CPU != "AMD EPYC 7B13" || m.Cores != 2 || m.MemTotal != "23.5 GiB" || m.Load != "0.96, 1.13, 1.69" {
		t.Errorf("machine %+v", m)
	}
	var out bytes.Buffer
	if err := report(&out, parseSample(t), m, module); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{
		"Machine: AMD EPYC 7B13, 2 cores, 23.5 GiB memory; go",
		"2026-12-05 03:04 UTC",
		"Load average (uptime) when the table was made: 0.96, 1.13, 1.69",
		"- 03:10:00 up  4:53,  0 user,  load average: 1.50, 1.20, 1.00",
		"| figure | value | target | command |\n|---|---|---|---|\n| 10,000 proxies: CPU per 1,000 checks | 120 ms |",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	if n := strings.Count(text, "\n|---|---|---|---|\n"); n != 1 {
		t.Errorf("%d tables; want one", n)
	}
	if strings.Index(text, "Machine:") > strings.Index(text, "| figure |") {
		t.Error("the machine is not above the table")
	}
}

func TestRunReadsStdinOrFiles(t *testing.T) {
	var fromStdin, fromFile bytes.Buffer
	sample, err := os.ReadFile("testdata/sample.txt")
	if err != nil {
		t.Fatal(err)
	}
	if err := run(nil, bytes.NewReader(sample), &fromStdin); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"testdata/sample.txt"}, strings.NewReader(""), &fromFile); err != nil {
		t.Fatal(err)
	}
	table := func(s string) string { return s[strings.Index(s, "| figure"):] }
	if table(fromStdin.String()) != table(fromFile.String()) || !strings.Contains(fromFile.String(), "| 41.2 s |") {
		t.Errorf("stdin and file tables differ or lack the detection row:\n%s\n%s", fromStdin.String(), fromFile.String())
	}
	if err := run([]string{"testdata/missing.txt"}, nil, &fromFile); err == nil || !strings.Contains(err.Error(), "missing.txt") {
		t.Errorf("missing file: err = %v; want one naming it", err)
	}
}

func TestFormatNumber(t *testing.T) {
	for v, want := range map[float64]string{
		5634: "5,634", 999.9: "1,000", 999.4: "999", 1_000_000: "1,000,000", 138845.4: "138,845", 759.2: "759",
		48: "48", 12.41: "12.4", 0.03783: "0.0378", -2500: "-2,500",
	} {
		if got := formatNumber(v); got != want {
			t.Errorf("formatNumber(%v) = %q; want %q", v, got, want)
		}
	}
}
