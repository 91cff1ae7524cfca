package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Machine describes where the benchmarks ran.
type Machine struct {
	CPU       string // model name from /proc/cpuinfo
	Cores     int    // logical CPUs
	MemTotal  string // from /proc/meminfo
	GoVersion string // e.g. "go1.26.8 linux/amd64"
	Date      time.Time
	Load      string // /proc/loadavg's three load averages, as uptime shows them
}

// readMachine reads the machine's description under procRoot ("/proc" on
// Linux; elsewhere the fields it cannot read say "unknown").
func readMachine(procRoot string, now time.Time) Machine {
	m := Machine{CPU: "unknown", MemTotal: "unknown", Load: "unknown", Cores: runtime.NumCPU(),
		GoVersion: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH, Date: now.UTC()}
	if raw, err := os.ReadFile(filepath.Join(procRoot, "cpuinfo")); err == nil {
		if v, ok := field(raw, "model name"); ok {
			m.CPU = v
		}
		if n := bytes.Count(raw, []byte("\nprocessor")) + boolInt(bytes.HasPrefix(raw, []byte("processor"))); n > 0 {
			m.Cores = n
		}
	}
	if raw, err := os.ReadFile(filepath.Join(procRoot, "meminfo")); err == nil {
		if v, ok := field(raw, "MemTotal"); ok {
			if kb, err := strconv.ParseFloat(strings.TrimSuffix(v, " kB"), 64); err == nil {
				m.MemTotal = fmt.Sprintf("%.1f GiB", kb/(1<<20))
			}
		}
	}
	if raw, err := os.ReadFile(filepath.Join(procRoot, "loadavg")); err == nil {
		if f := strings.Fields(string(raw)); len(f) >= 3 {
			m.Load = strings.Join(f[:3], ", ")
		}
	}
	return m
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// field returns the value of the first "key : value" line of a /proc file.
func field(raw []byte, key string) (string, bool) {
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// writeMachine prints the machine above the table, with the loads found
// in the input (taken before each run).
func writeMachine(w io.Writer, m Machine, loads []string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Machine: %s, %d cores, %s memory; %s; %s\n\n", m.CPU, m.Cores, m.MemTotal, m.GoVersion, m.Date.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Load average (uptime) when the table was made: %s\n", m.Load)
	for _, l := range loads {
		fmt.Fprintf(&b, "- %s\n", l)
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}
