package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// runIn runs the CLI in process.
func runIn(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsageErrorsOneLineExit2(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"run", "--no-such-flag"},
		{"run", "--interval", "soon"},
		{"run", "--interval", "50ms", "--proxies", "testdata/residential.txt", "--data", t.TempDir()},
		{"run", "--log-format", "xml"},
		{"run", "--concurrency", "x"},
		{"run", "stray"},
		{"demo", "--proxies", "0"},
		{"demo", "--listen", "0.0.0.0:0"},
		{"status", "--format", "yaml"},
		{"status", "--server", "ftp://x"},
		{"status", "--server", "http://127.0.0.1:1", "--data", "x"},
		{"check"},
		{"check", "ftp://10.0.0.1:21"},
		{"check", "10.0.0.1:80", "--expected-status", "abc"},
		{"check", "10.0.0.1:80", "--timeout", "-1s"},
		{"journal"},
		{"journal", "rewind"},
		{"journal", "replay", "--type", "bogus"},
		{"journal", "replay", "--since", "yesterday"},
		{"journal", "replay", "--proxy", "not a url"},
		{"journal", "verify", "extra"},
		{"rebuild", "--nope"},
		{"version", "x"},
	} {
		code, out, errs := runIn(args...)
		if code != exitUsage {
			t.Errorf("%q: exit %d, want 2 (stderr %q)", args, code, errs)
			continue
		}
		oneLine(t, strings.Join(args, " "), errs)
		if out != "" {
			t.Errorf("%q: printed %q on stdout", args, out)
		}
	}
}

func TestHelp(t *testing.T) {
	code, out, _ := runIn("--help")
	if code != 0 || !strings.Contains(out, "demo") || !strings.Contains(out, "journal") {
		t.Errorf("--help: %d %q", code, out)
	}
	for _, c := range []string{"run", "demo", "status", "check", "journal", "rebuild", "version"} {
		code, out, errs := runIn(c, "--help")
		if code != 0 || !strings.Contains(out, "Usage: proxyhealth "+c) || !strings.Contains(out, "Examples:") || errs != "" {
			t.Errorf("%s --help: exit %d, stdout %q, stderr %q", c, code, out, errs)
		}
	}
	for _, sub := range []string{"replay", "verify", "stats"} {
		if code, out, _ := runIn("journal", sub, "-h"); code != 0 || !strings.Contains(out, "--data") {
			t.Errorf("journal %s -h: %d %q", sub, code, out)
		}
	}
}

func TestBinaryUsageError(t *testing.T) {
	r := runBin(t, "run", "--bogus")
	if r.code != 2 {
		t.Fatalf("exit %d, want 2", r.code)
	}
	oneLine(t, "run --bogus", r.stderr)
	if !strings.Contains(r.stderr, "-bogus") {
		t.Errorf("stderr %q does not name the flag", r.stderr)
	}
}
