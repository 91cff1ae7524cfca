// Command benchtable turns `go test -bench` output into the benchmark
// report of BENCHMARKS.md: the machine it ran on, then one markdown table
// of figure | value | target | command, for the figures it knows (the
// daemon at 10,000 and 100,000 proxies and its net/http baseline, the
// journal's append and replay rates, the SQLite view's rebuild time, and
// the spec's detection, false-positive and recovery criteria). Figures
// missing from the input are never invented: those with a target say "not
// run", the others are left out.
//
// Usage:
//
//	go run ./internal/benchtable [FILE ...]
//
// With no files it reads stdin. A line "command: ..." in a file (the make
// target writes one before each run) says how the results after it were
// produced; its -benchtime, -timeout, -count and -cpu flags and any
// VAR=value prefix go into each figure's command. Lines containing
// "load average:" (uptime's output) are listed as the loads before the
// runs. A benchmark run several times (-count) shows the median.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"time"
)

// defaultModule is the module path used when the build info has none.
const defaultModule = "github.com/proxyhealth/proxyhealth"

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// run reads the files (stdin when none) and writes the report to w.
func run(files []string, stdin io.Reader, w io.Writer) error {
	in := &Input{}
	if len(files) == 0 {
		if err := in.Parse(stdin, "stdin"); err != nil {
			return err
		}
	}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("benchtable: %w (pass files of `go test -bench` output, or nothing to read stdin)", err)
		}
		err = in.Parse(f, name)
		f.Close()
		if err != nil {
			return err
		}
	}
	module := defaultModule
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Path != "" && bi.Main.Path != "command-line-arguments" {
		module = bi.Main.Path
	}
	out := bufio.NewWriter(w)
	if err := report(out, in, readMachine("/proc", time.Now()), module); err != nil {
		return err
	}
	return out.Flush()
}

// report writes the machine and the table.
func report(w io.Writer, in *Input, m Machine, module string) error {
	if err := writeMachine(w, m, in.Loads); err != nil {
		return err
	}
	return writeTable(w, rows(in, module))
}
