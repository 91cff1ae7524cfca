package main

import (
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// A figure is one row of the report: a benchmark's metric, how it is
// shown, and its target if the issue or the spec sets one.
type figure struct {
	label string
	bench string // full name without the -GOMAXPROCS suffix
	unit  string // the unit the benchmark reports
	// show turns the reported value into the shown one and its unit
	// (nil: the value as it is, with unit).
	show func(v float64) (float64, string)
	// target, if set, is what the value is held to.
	target *target
	// flags are the go test flags of the figure's command when its input
	// has no "command:" line.
	flags string
}

// A target is a bound on a figure's shown value. A bound that comes from
// another figure (cpu at 100,000 no worse than at 10,000) has ref set.
type target struct {
	op    string // "<=", ">=", "<"
	value float64
	why   string // where the target comes from
	ref   *figure
}

const (
	daemon10k  = "BenchmarkDaemon/proxies=10000"
	daemon100k = "BenchmarkDaemon/proxies=100000"
	daemonArgs = "-benchtime 1x -timeout 30m"
	longArgs   = "-benchtime 1x -timeout 20m"
)

func perMillion(v float64) (float64, string) { return 1e6 / v, "s per 1M events" }

// figures are the report's rows, in order.
var figures = func() []*figure {
	le := func(v float64, why string) *target { return &target{op: "<=", value: v, why: why} }
	ge := func(v float64, why string) *target { return &target{op: ">=", value: v, why: why} }
	lt := func(v float64, why string) *target { return &target{op: "<", value: v, why: why} }
	const issue = "issue 14"
	cpu10k := &figure{label: "10,000 proxies: CPU per 1,000 checks", bench: daemon10k, unit: "cpu-ms/1k-checks", target: le(100, issue), flags: daemonArgs}
	fs := []*figure{
		cpu10k,
		{label: "10,000 proxies: user CPU per check", bench: daemon10k, unit: "user-us/check", target: le(30, issue), flags: daemonArgs},
		{label: "10,000 proxies: system CPU per check", bench: daemon10k, unit: "sys-us/check", flags: daemonArgs},
		{label: "10,000 proxies: context switches per check", bench: daemon10k, unit: "ctxsw/check", flags: daemonArgs},
		{label: "10,000 proxies: read-like system calls per check (read, pread, recv…)", bench: daemon10k, unit: "read-syscalls/check", flags: daemonArgs},
		{label: "10,000 proxies: write-like system calls per check (write, pwrite, send…)", bench: daemon10k, unit: "write-syscalls/check", flags: daemonArgs},
		{label: "10,000 proxies: Go heap allocated per check", bench: daemon10k, unit: "alloc-B/check", flags: daemonArgs},
		{label: "10,000 proxies: Go heap allocations per check", bench: daemon10k, unit: "allocs/check", flags: daemonArgs},
		{label: "10,000 proxies: the Go GC's CPU per 1,000 checks (the runtime's estimate; part of the CPU above)", bench: daemon10k, unit: "gc-cpu-ms/1k-checks", flags: daemonArgs},
		{label: "10,000 proxies: peak RSS", bench: daemon10k, unit: "peak-rss-MiB", target: le(64, issue), flags: daemonArgs},
		{label: "10,000 proxies: first sweep", bench: daemon10k, unit: "first-sweep-s", flags: daemonArgs},
		{label: "10,000 proxies: the fake proxies' CPU per 1,000 checks (the farm, on the same cores)", bench: daemon10k, unit: "farm-cpu-ms/1k-checks", flags: daemonArgs},
		{label: "10,000 proxies: checks per second", bench: daemon10k, unit: "checks/s", flags: daemonArgs},
		{label: "10,000 proxies: /v1/pool p99", bench: daemon10k, unit: "pool-p99-ms", flags: daemonArgs},
		{label: "10,000 proxies: /v1/proxies p99", bench: daemon10k, unit: "proxies-p99-ms", flags: daemonArgs},
		{label: "10,000 proxies: /v1/pool p99 of a static server in the same conditions (the machine's floor)", bench: daemon10k, unit: "pool-floor-p99-ms", flags: daemonArgs},
		{label: "10,000 proxies: /v1/proxies p99 of a static server in the same conditions (the machine's floor)", bench: daemon10k, unit: "proxies-floor-p99-ms", flags: daemonArgs},
		{label: "10,000 proxies: restart (until the first check)", bench: daemon10k, unit: "restart-s", flags: daemonArgs},
		{label: "10,000 proxies: baseline (goroutine per proxy, net/http) CPU per 1,000 checks", bench: daemon10k, unit: "baseline-cpu-ms/1k-checks", flags: daemonArgs},
		{label: "10,000 proxies: baseline checks per second", bench: daemon10k, unit: "baseline-checks/s", flags: daemonArgs},
		{label: "10,000 proxies: baseline peak RSS", bench: daemon10k, unit: "baseline-peak-rss-MiB", flags: daemonArgs},
		{label: "10,000 proxies: CPU per check, proxyhealth ÷ baseline", bench: daemon10k, unit: "cpu-ratio", flags: daemonArgs},
		{label: "10,000 proxies: peak RSS, proxyhealth ÷ baseline", bench: daemon10k, unit: "rss-ratio", flags: daemonArgs},
		{label: "10,000 proxies: HAProxy 2.6 (option httpchk, the same checks) CPU per 1,000 checks", bench: daemon10k, unit: "haproxy-cpu-ms/1k-checks", flags: daemonArgs},
		{label: "10,000 proxies: HAProxy user CPU per check", bench: daemon10k, unit: "haproxy-user-us/check", flags: daemonArgs},
		{label: "10,000 proxies: HAProxy system CPU per check", bench: daemon10k, unit: "haproxy-sys-us/check", flags: daemonArgs},
		{label: "10,000 proxies: HAProxy checks per second", bench: daemon10k, unit: "haproxy-checks/s", flags: daemonArgs},
		{label: "10,000 proxies: HAProxy peak RSS", bench: daemon10k, unit: "haproxy-peak-rss-MiB", flags: daemonArgs},
		{label: "10,000 proxies: CPU per check, proxyhealth ÷ HAProxy", bench: daemon10k, unit: "haproxy-cpu-ratio", flags: daemonArgs},
		{label: "100,000 proxies: first sweep", bench: daemon100k, unit: "first-sweep-s", target: le(15, issue), flags: daemonArgs},
		{label: "100,000 proxies: first sweep, the daemon's CPU (cores)", bench: daemon100k, unit: "first-sweep-daemon-cores", flags: daemonArgs},
		{label: "100,000 proxies: first sweep, the fake proxies' CPU (cores; the farm, on the same cores)", bench: daemon100k, unit: "first-sweep-farm-cores", flags: daemonArgs},
		{label: "100,000 proxies: CPU per 1,000 checks", bench: daemon100k, unit: "cpu-ms/1k-checks", target: &target{op: "<=", why: issue + ": no worse than at 10,000", ref: cpu10k}, flags: daemonArgs},
		{label: "100,000 proxies: user CPU per check", bench: daemon100k, unit: "user-us/check", flags: daemonArgs},
		{label: "100,000 proxies: system CPU per check", bench: daemon100k, unit: "sys-us/check", flags: daemonArgs},
		{label: "100,000 proxies: context switches per check", bench: daemon100k, unit: "ctxsw/check", flags: daemonArgs},
		{label: "100,000 proxies: read-like system calls per check (read, pread, recv…)", bench: daemon100k, unit: "read-syscalls/check", flags: daemonArgs},
		{label: "100,000 proxies: write-like system calls per check (write, pwrite, send…)", bench: daemon100k, unit: "write-syscalls/check", flags: daemonArgs},
		{label: "100,000 proxies: Go heap allocated per check", bench: daemon100k, unit: "alloc-B/check", flags: daemonArgs},
		{label: "100,000 proxies: Go heap allocations per check", bench: daemon100k, unit: "allocs/check", flags: daemonArgs},
		{label: "100,000 proxies: the Go GC's CPU per 1,000 checks (the runtime's estimate; part of the CPU above)", bench: daemon100k, unit: "gc-cpu-ms/1k-checks", flags: daemonArgs},
		{label: "100,000 proxies: peak RSS", bench: daemon100k, unit: "peak-rss-MiB", target: le(400, issue), flags: daemonArgs},
		{label: "100,000 proxies: checks per second", bench: daemon100k, unit: "checks/s", flags: daemonArgs},
		{label: "100,000 proxies: the fake proxies' CPU per 1,000 checks (the farm, on the same cores)", bench: daemon100k, unit: "farm-cpu-ms/1k-checks", flags: daemonArgs},
		{label: "100,000 proxies: /v1/pool p99 over HTTP", bench: daemon100k, unit: "pool-p99-ms", target: le(1, issue), flags: daemonArgs},
		{label: "100,000 proxies: /v1/proxies?state=healthy&limit=100 p99 over HTTP", bench: daemon100k, unit: "proxies-p99-ms", target: le(5, issue), flags: daemonArgs},
		{label: "100,000 proxies: /v1/pool p99 of a static server in the same conditions (the machine's floor)", bench: daemon100k, unit: "pool-floor-p99-ms", flags: daemonArgs},
		{label: "100,000 proxies: /v1/proxies p99 of a static server in the same conditions (the machine's floor)", bench: daemon100k, unit: "proxies-floor-p99-ms", flags: daemonArgs},
		{label: "100,000 proxies: restart (journal open, state recovered, first check done)", bench: daemon100k, unit: "restart-s", target: le(10, issue), flags: daemonArgs},
		{label: "100,000 proxies: restart until \"proxyhealth started\" (journal open, state recovered)", bench: daemon100k, unit: "restart-open-s", flags: daemonArgs},
		{label: "100,000 proxies: peak RSS of the restarted daemon", bench: daemon100k, unit: "restart-peak-rss-MiB", flags: daemonArgs},
		{label: "100,000 proxies: baseline (goroutine per proxy, net/http) CPU per 1,000 checks", bench: daemon100k, unit: "baseline-cpu-ms/1k-checks", flags: daemonArgs},
		{label: "100,000 proxies: baseline checks per second", bench: daemon100k, unit: "baseline-checks/s", flags: daemonArgs},
		{label: "100,000 proxies: baseline peak RSS", bench: daemon100k, unit: "baseline-peak-rss-MiB", flags: daemonArgs},
		{label: "100,000 proxies: CPU per check, proxyhealth ÷ baseline", bench: daemon100k, unit: "cpu-ratio", flags: daemonArgs},
		{label: "100,000 proxies: peak RSS, proxyhealth ÷ baseline", bench: daemon100k, unit: "rss-ratio", flags: daemonArgs},
	}
	for _, appenders := range []string{"1", "8", "64"} {
		label := "journal append, fsync'd, 100 events per call, " + appenders + " appenders"
		if appenders == "1" {
			label = "journal append, fsync'd, 100 events per call, 1 appender"
		}
		fs = append(fs, &figure{label: label, bench: "BenchmarkAppend/batch=100/appenders=" + appenders, unit: "events/s", target: ge(1e6, issue), flags: "-benchtime 2s"})
	}
	fs = append(fs,
		&figure{label: "journal append, fsync'd, 1 event per call, 64 appenders", bench: "BenchmarkAppend/batch=1/appenders=64", unit: "events/s", flags: "-benchtime 2s"},
		&figure{label: "journal replay (read and decode from seq 1)", bench: "BenchmarkReplay", unit: "events/s", target: ge(3e6, issue), flags: "-benchtime 2s"},
		&figure{label: "SQLite view rebuild from a bbolt journal", bench: "BenchmarkRebuild/bolt", unit: "events/s", show: perMillion, target: le(10, "sqlview's own"), flags: longArgs},
		&figure{label: "SQLite view rebuild from the in-memory journal", bench: "BenchmarkRebuild/mem", unit: "events/s", show: perMillion, flags: longArgs},
		&figure{label: "SQLite view, CPU per check applied, 10,000 proxies, a fresh view (12 s of history, as in the first minute of BenchmarkE2ESteadyState and BenchmarkDaemon)", bench: "BenchmarkSteadyState/proxies=10000/batch=1000/fresh", unit: "cpu-us/event", flags: longArgs},
		&figure{label: "SQLite view, CPU per check applied, 10,000 proxies, 30 min of history", bench: "BenchmarkSteadyState/proxies=10000/batch=1000/history=30m", unit: "cpu-us/event", flags: longArgs},
		&figure{label: "detection latency p50, proxies killed mid-run (default config)", bench: "BenchmarkDetection", unit: "detect-p50-s", flags: "-benchtime 1x"},
		&figure{label: "detection latency p99, proxies killed mid-run (default config)", bench: "BenchmarkDetection", unit: "detect-p99-s", target: le(60, "spec SC-001"), flags: "-benchtime 1x"},
		&figure{label: "detection latency p99, killed by refusing connections", bench: "BenchmarkDetection", unit: "refuse-p99-s", flags: "-benchtime 1x"},
		&figure{label: "detection latency p99, killed by never answering (blackhole)", bench: "BenchmarkDetection", unit: "blackhole-p99-s", flags: "-benchtime 1x"},
		&figure{label: "detection bound of the config (events.Config.DetectionBound)", bench: "BenchmarkDetection", unit: "detect-bound-s", flags: "-benchtime 1x"},
		&figure{label: "false positives, proxies dropping 5 % of checks (share of proxy-time out of rotation)", bench: "BenchmarkFalsePositives", unit: "false-positive-%", target: lt(1, "spec SC-007"), flags: "-benchtime 1x"},
		&figure{label: "false positives per 1,000 checks (transitions to unhealthy)", bench: "BenchmarkFalsePositives", unit: "fp/1k-checks", flags: "-benchtime 1x"},
		&figure{label: "temporarily failed proxies (down 1–10 min) back to healthy, not failed", bench: "BenchmarkRecoveryShare", unit: "recovered-%", target: ge(80, "spec SC-005"), flags: "-benchtime 1x"},
	)
	for _, c := range []struct{ size, history, what string }{
		{"10000", "1h", "10,000 proxies checked every 10 s, 1 h of history (3.6M events)"},
		{"100000", "30m", "100,000 proxies checked every 60 s, 30 min of history (3.2M events)"},
	} {
		for _, stop := range []struct{ name, what string }{
			{"clean", "after a clean stop (the live status checkpoint)"},
			{"crash", "after a crash before any checkpoint (the whole journal folded)"},
			{"crash-checkpointed", "after a crash 5 min after the running engine's last checkpoint (Config.CheckpointEvery)"},
		} {
			fs = append(fs, &figure{label: "engine restart (Open), " + c.what + ", " + stop.what,
				bench: "BenchmarkRestartAged/proxies=" + c.size + "/history=" + c.history + "/stop=" + stop.name, unit: "open-s", flags: longArgs})
		}
	}
	return fs
}()

// unitSuffix is what a unit is shown as after its value.
var unitSuffix = map[string]string{
	"cpu-ms/1k-checks":          "ms",
	"baseline-cpu-ms/1k-checks": "ms",
	"user-us/check":             "µs",
	"sys-us/check":              "µs",
	"peak-rss-MiB":              "MiB",
	"baseline-peak-rss-MiB":     "MiB",
	"first-sweep-s":             "s",
	"restart-s":                 "s",
	"restart-open-s":            "s",
	"open-s":                    "s",
	"restart-peak-rss-MiB":      "MiB",
	"baseline-checks/s":         "checks/s",
	"pool-p99-ms":               "ms",
	"proxies-p99-ms":            "ms",
	"pool-floor-p99-ms":         "ms",
	"haproxy-cpu-ms/1k-checks":  "ms",
	"haproxy-user-us/check":     "µs",
	"haproxy-sys-us/check":      "µs",
	"haproxy-checks/s":          "checks/s",
	"haproxy-peak-rss-MiB":      "MiB",
	"haproxy-cpu-ratio":         "×",
	"proxies-floor-p99-ms":      "ms",
	"checks/s":                  "checks/s",
	"events/s":                  "events/s",
	"cpu-ratio":                 "×",
	"rss-ratio":                 "×",
	"cpu-us/event":              "µs",
	"detect-p50-s":              "s",
	"detect-p99-s":              "s",
	"refuse-p99-s":              "s",
	"blackhole-p99-s":           "s",
	"detect-bound-s":            "s",
	"false-positive-%":          "%",
	"fp/1k-checks":              "",
	"recovered-%":               "%",
}

// row is a rendered line of the table.
type row struct {
	figure, value, target, command string
}

// rows builds the table from in: one row per figure found; a figure with
// a target that is missing from the input is a "not run" row, one
// without is left out. modulePath turns import paths into ./dirs.
func rows(in *Input, modulePath string) []row {
	var out []row
	for _, f := range figures {
		v, ok := in.Metric(f.bench, f.unit)
		res := in.Get(f.bench)
		if !ok {
			if f.target != nil {
				out = append(out, row{figure: f.label, value: "not run", target: f.target.text(in, nil), command: command(f, nil, modulePath)})
			}
			continue
		}
		shown, unit := shownValue(f, v)
		out = append(out, row{figure: f.label, value: formatValue(shown, unit), target: f.target.text(in, &shown), command: command(f, res, modulePath)})
	}
	return out
}

func shownValue(f *figure, v float64) (float64, string) {
	if f.show != nil {
		return f.show(v)
	}
	return v, unitSuffix[f.unit]
}

// text renders the target, and whether value meets it when known.
func (t *target) text(in *Input, value *float64) string {
	if t == nil {
		return "—"
	}
	bound := t.value
	if t.ref != nil {
		v, ok := in.Metric(t.ref.bench, t.ref.unit)
		if !ok {
			return fmt.Sprintf("%s the 10,000 figure (not run) (%s)", symbol(t.op), t.why)
		}
		bound, _ = shownValue(t.ref, v)
	}
	s := fmt.Sprintf("%s %s (%s)", symbol(t.op), formatNumber(bound), t.why)
	if value == nil {
		return s
	}
	if t.met(*value, bound) {
		return s + ": met"
	}
	return s + ": **missed**"
}

func (t *target) met(v, bound float64) bool {
	switch t.op {
	case "<=":
		return v <= bound
	case ">=":
		return v >= bound
	case "<":
		return v < bound
	}
	return false
}

func symbol(op string) string {
	switch op {
	case "<=":
		return "≤"
	case ">=":
		return "≥"
	}
	return op
}

func formatValue(v float64, unit string) string {
	if unit == "" {
		return formatNumber(v)
	}
	return formatNumber(v) + " " + unit
}

// formatNumber shows large numbers as grouped integers and small ones
// with three significant digits.
func formatNumber(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return strconv.FormatFloat(v, 'g', -1, 64)
	case math.Abs(math.Round(v)) >= 1000:
		return group(strconv.FormatFloat(math.Round(v), 'f', 0, 64))
	case math.Abs(v) >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v == math.Trunc(v):
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

func group(digits string) string {
	neg := strings.HasPrefix(digits, "-")
	digits = strings.TrimPrefix(digits, "-")
	var b strings.Builder
	for i, c := range digits {
		if i > 0 && (len(digits)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

var flagValue = regexp.MustCompile(`^-(benchtime|timeout|count|cpu)(=.*)?$`)

// command is the go test command that measures f alone: the benchmark's
// pattern anchored level by level, the flags of the command its input was
// produced by (its "command:" line: -benchtime, -timeout, -count, -cpu
// and any VAR=value before "go"), or f's default flags.
func command(f *figure, res *Result, modulePath string) string {
	levels := strings.Split(f.bench, "/")
	for i, l := range levels {
		levels[i] = "^" + regexp.QuoteMeta(l) + "$"
	}
	pkg := "."
	if res != nil && res.Pkg != "" {
		pkg = res.Pkg
	} else {
		pkg = defaultPkg(f.bench)
	}
	dir := pkg
	switch {
	case pkg == modulePath || pkg == ".":
		dir = "."
	case strings.HasPrefix(pkg, modulePath+"/"):
		dir = "./" + strings.TrimPrefix(pkg, modulePath+"/") + "/"
	case strings.HasPrefix(pkg, "./"):
		dir = pkg
	}
	var env []string
	flags := f.flags
	if res != nil && res.Command != "" {
		var kept []string
		words := strings.Fields(res.Command)
		for i := 0; i < len(words); i++ {
			w := words[i]
			if w == "go" {
				env = append([]string(nil), words[:i]...)
				continue
			}
			if m := flagValue.FindStringSubmatch(w); m != nil {
				if m[2] == "" && i+1 < len(words) {
					w += " " + words[i+1]
					i++
				}
				kept = append(kept, w)
			}
		}
		for _, e := range env {
			if !strings.Contains(e, "=") {
				env = nil
				break
			}
		}
		flags = strings.Join(kept, " ")
	}
	parts := append(env, "go test -run '^$' -bench '"+strings.Join(levels, "/")+"'")
	if flags != "" {
		parts = append(parts, flags)
	}
	parts = append(parts, dir)
	return "`" + strings.Join(parts, " ") + "`"
}

// defaultPkg is where a benchmark lives, for figures not run.
func defaultPkg(bench string) string {
	switch {
	case strings.HasPrefix(bench, "BenchmarkDaemon"):
		return "./cmd/proxyhealth/"
	case strings.HasPrefix(bench, "BenchmarkAppend"), bench == "BenchmarkReplay":
		return "./journal/"
	case strings.HasPrefix(bench, "BenchmarkRebuild"), strings.HasPrefix(bench, "BenchmarkSteadyState"):
		return "./projections/sqlview/"
	}
	return "."
}

// writeTable prints the rows as one markdown table.
func writeTable(w io.Writer, rs []row) error {
	var b strings.Builder
	b.WriteString("| figure | value | target | command |\n|---|---|---|---|\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", cell(r.figure), cell(r.value), cell(r.target), cell(r.command))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// cell escapes what would break a markdown table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
