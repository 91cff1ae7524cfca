package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// ErrBadInput is returned for benchmark output that cannot be read.
var ErrBadInput = errors.New("benchtable: bad benchmark output")

// Result is one benchmark's figures, merged over the runs of -count: the
// median of each metric.
type Result struct {
	// Name is the full benchmark name without the -GOMAXPROCS suffix, e.g.
	// "BenchmarkAppend/batch=100/appenders=8".
	Name string
	// Pkg is the import path from the "pkg:" line above it.
	Pkg string
	// Command is the "command:" line of the file it came from, if any.
	Command string
	// Metrics maps a unit ("ns/op", "events/s", ...) to its value.
	Metrics map[string]float64
	// Runs is how many result lines were merged.
	Runs int

	samples map[string][]float64
}

// Input is everything read from the benchmark output.
type Input struct {
	// Results by name, in the order first seen.
	Results []*Result
	// Loads are the `uptime` lines found in the input (the make target
	// writes one before each run).
	Loads []string
}

// Get returns the result of the named benchmark, or nil.
func (in *Input) Get(name string) *Result {
	for _, r := range in.Results {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// Metric returns the named benchmark's figure in unit.
func (in *Input) Metric(name, unit string) (float64, bool) {
	r := in.Get(name)
	if r == nil {
		return 0, false
	}
	v, ok := r.Metrics[unit]
	return v, ok
}

var procsSuffix = regexp.MustCompile(`-\d+$`)

// Parse reads `go test -bench` output from r (source names it in errors)
// into in. Lines that are not results (PASS, ok, logs) are skipped; a
// "command: ..." or "# command: ..." line sets the command of the results
// that follow it in this input, and "pkg:" lines their package.
func (in *Input) Parse(r io.Reader, source string) error {
	var pkg, command string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(text, "pkg: "):
			pkg = strings.TrimSpace(strings.TrimPrefix(text, "pkg: "))
			continue
		case strings.HasPrefix(text, "command:"), strings.HasPrefix(text, "# command:"):
			command = strings.TrimSpace(text[strings.Index(text, "command:")+len("command:"):])
			continue
		case strings.Contains(text, "load average:"):
			in.Loads = append(in.Loads, text)
			continue
		case !strings.HasPrefix(text, "Benchmark"):
			continue
		}
		fields := strings.Fields(text)
		// name, iterations, then value-unit pairs; anything else (a log
		// line starting with "Benchmark") is not a result.
		if len(fields) < 4 || len(fields)%2 != 0 {
			continue
		}
		if _, err := strconv.ParseInt(fields[1], 10, 64); err != nil {
			continue
		}
		vals := map[string]float64{}
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				return fmt.Errorf("%w: %s line %d: value %q of %s is not a number (is this `go test -bench` output?)", ErrBadInput, source, line, fields[i], fields[i+1])
			}
			vals[fields[i+1]] = v
		}
		name := procsSuffix.ReplaceAllString(fields[0], "")
		res := in.Get(name)
		if res == nil {
			res = &Result{Name: name, Pkg: pkg, Command: command, Metrics: map[string]float64{}, samples: map[string][]float64{}}
			in.Results = append(in.Results, res)
		}
		res.Runs++
		for u, v := range vals {
			res.samples[u] = append(res.samples[u], v)
			res.Metrics[u] = median(res.samples[u])
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%w: reading %s: %w", ErrBadInput, source, err)
	}
	return nil
}

func median(vs []float64) float64 {
	s := append([]float64(nil), vs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
