package main

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/httpapi"
	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

// exeRSS returns the resident bytes of this process's mappings of its
// executable, from /proc/self/smaps.
func exeRSS(t *testing.T) int64 {
	t.Helper()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	var rss int64
	mine := false
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) >= 5 && !strings.HasSuffix(f[0], ":") { // a mapping's first line
			mine = len(f) >= 6 && strings.HasSuffix(line, " "+exe)
			continue
		}
		if v, ok := strings.CutPrefix(line, "Rss:"); ok && mine {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("smaps: %q: %v", line, err)
			}
			rss += kb << 10
		}
	}
	return rss
}

// touchExecutable faults in every page of this process's read-only
// mappings of its executable (read through /proc/self/mem, which maps what
// it reads), so that what a release gives back is known whatever the
// kernel's read-ahead left resident.
func touchExecutable(t *testing.T) {
	t.Helper()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	mem, err := os.Open("/proc/self/mem")
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	page := make([]byte, os.Getpagesize())
	for line := range bytes.Lines(maps) {
		start, end, ok := executableMapping(line, exe)
		for a := start; ok && a < end; a += uintptr(len(page)) {
			if _, err := mem.ReadAt(page[:1], int64(a)); err != nil {
				t.Fatalf("read the executable's mapping at %#x: %v", a, err)
			}
		}
	}
}

// The test binary releases its own pages: what its read-only mappings
// hold falls to what it touches afterwards, and it keeps running.
func TestReleaseBinaryPages(t *testing.T) {
	// As installed: `go test` runs a binary it has just written, and the
	// kernel neither reclaims nor unmaps page cache that is still dirty.
	if err := syncPath("/proc/self/exe"); err != nil {
		t.Fatal(err)
	}
	touchExecutable(t)
	before := exeRSS(t)
	covered, err := releaseBinaryPages()
	if err != nil {
		t.Fatal(err)
	}
	after := exeRSS(t)
	t.Logf("executable resident: %.1f MiB before, %.1f MiB after (%.1f MiB of mappings covered)", float64(before)/(1<<20), float64(after)/(1<<20), float64(covered)/(1<<20))
	if covered < before/2 {
		t.Errorf("covered %d bytes of mappings, less than half of the %d resident before", covered, before)
	}
	if after > before/2 {
		t.Errorf("%d bytes of the executable resident after the release, %d before: want at most half", after, before)
	}
	// Code released is read again when it runs.
	if got := strings.Repeat("ab", 3); got != "ababab" {
		t.Fatal(got)
	}
}

func TestExecutableMapping(t *testing.T) {
	const exe = "/opt/proxy health/bin/proxyhealth"
	for _, c := range []struct {
		line       string
		start, end uintptr
		ok         bool
	}{
		{"00400000-00b2d000 r-xp 00000000 fd:01 1234 /opt/proxy health/bin/proxyhealth", 0x400000, 0xb2d000, true},
		{"00f2d000-01b18000 r--p 00b2d000 fd:01 1234 /opt/proxy health/bin/proxyhealth\n", 0xf2d000, 0x1b18000, true},
		{"01b18000-01bb3000 rw-p 01718000 fd:01 1234 /opt/proxy health/bin/proxyhealth", 0, 0, false}, // the data segment
		{"7f00000-7f01000 r--p 00000000 fd:01 99 /usr/lib/libc.so.6", 0, 0, false},                    // another file
		{"7f00000-7f01000 r--p 00000000 fd:01 99 /opt/proxy health/bin/proxyhealth (deleted)", 0, 0, false},
		{"7f00000-7f01000 rw-p 00000000 00:00 0", 0, 0, false}, // anonymous
		{"7f00000-7f01000 r-xp 00000000 00:00 0 [vdso]", 0, 0, false},
		{"zz-7f01000 r-xp 00000000 fd:01 1234 /opt/proxy health/bin/proxyhealth", 0, 0, false},
		{"7f01000-7f00000 r-xp 00000000 fd:01 1234 /opt/proxy health/bin/proxyhealth", 0, 0, false},
	} {
		start, end, ok := executableMapping([]byte(c.line), exe)
		if start != c.start || end != c.end || ok != c.ok {
			t.Errorf("%q: %#x-%#x %v, want %#x-%#x %v", c.line, start, end, ok, c.start, c.end, c.ok)
		}
	}
}

// The daemon releases its executable's pages once it has started (logged
// at debug level), unless PROXYHEALTH_KEEP_BINARY_PAGES is set.
func TestRunReleasesItsBinaryPages(t *testing.T) {
	farm, err := fakeproxy.Start(t.Context(), 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(farm.Close)
	dir := t.TempDir()
	list := writeFile(t, dir, "list.txt", farm.URL(0)+"\n"+farm.URL(1)+"\n")
	for _, value := range []string{"", "0", "1", "yes"} {
		keep := value == "1" || value == "yes"
		env := []string{keepBinaryPagesEnv + "=" + value}
		data := filepath.Join(dir, "data-"+value)
		p := startBin(t, env, runArgs(data, "--proxies", list, "--log-level", "debug")...)
		base := p.apiURL()
		waitPool(t, base, "both proxies checked", func(pl httpapi.Pool) bool { return pl.Total == 2 && pl.Unknown == 0 })
		if !keep {
			// Released twice (see below).
			testutil.EventuallyExplain(t, 10*time.Second, func() bool {
				return len(logRecords(t, p.stderr.String(), "released the executable's pages")) == 2
			}, func() string { return p.stderr.String() })
		}
		p.signal(syscall.SIGTERM)
		if code := p.wait(30 * time.Second); code != 0 {
			t.Fatalf("exit %d\n%s", code, p.stderr)
		}
		released := logRecords(t, p.stderr.String(), "released the executable's pages")
		if failed := logRecords(t, p.stderr.String(), "the executable's pages stay resident"); len(failed) > 0 {
			t.Fatalf("the release failed: %v", failed)
		}
		warned := logRecords(t, p.stderr.String(), "the executable's pages stay resident: "+keepBinaryPagesEnv+" is not true or false")
		if want := value == "yes"; (len(warned) == 1) != want {
			t.Errorf("%s=%s: warnings %v, want one: %v", keepBinaryPagesEnv, value, warned, want)
		}
		if keep {
			if len(released) != 0 {
				t.Fatalf("%s=%s, yet: %v", keepBinaryPagesEnv, value, released)
			}
			continue
		}
		// Before the engine opens, and once it has started, in that
		// order around the started line.
		lines := strings.Split(p.stderr.String(), "\n")
		at := func(msg, phase string) int {
			for i, l := range lines {
				if strings.Contains(l, `"msg":"`+msg+`"`) && (phase == "" || strings.Contains(l, `"phase":"`+phase+`"`)) {
					return i
				}
			}
			return -1
		}
		first, started, second := at("released the executable's pages", "starting"), at("proxyhealth started", ""), at("released the executable's pages", "started")
		if len(released) != 2 || first < 0 || second < 0 || !(first < started && started < second) {
			t.Fatalf("releases %v at lines %d and %d, the started line at %d: want one before it (phase starting) and one after (started)\n%s", released, first, second, started, p.stderr)
		}
		for _, r := range released {
			if b, _ := r["bytes"].(float64); b < 1<<20 {
				t.Errorf("released %v bytes of mappings (%v): the executable's code alone is larger", r["bytes"], r)
			}
		}
	}
}
