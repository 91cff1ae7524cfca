package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/proxyhealth/proxyhealth/httpapi"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

// bin is the proxyhealth binary built once for the tests that run it.
var bin string

func TestMain(m *testing.M) {
	if code, ok := benchChild(); ok { // a child process of BenchmarkDaemon
		os.Exit(code)
	}
	dir, err := os.MkdirTemp("", "proxyhealth-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "proxyhealth")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if p, err := exec.LookPath("go"); err == nil {
		gobin = p
	}
	build := exec.Command(gobin, "build", "-ldflags", "-X main.version=test-build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building proxyhealth: %v\n%s", err, out)
		os.Exit(1)
	}
	// On disk, as an installed binary is: the daemon's release of its
	// executable's pages (releaseBinaryPages) leaves page cache that is
	// still dirty alone, and the benchmarks would measure a daemon that
	// keeps more of its binary than one started from an installed file.
	if err := syncPath(bin); err != nil {
		fmt.Fprintf(os.Stderr, "sync %s: %v\n", bin, err)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { os.RemoveAll(dir) }))
}

// result is a finished run of the binary.
type result struct {
	code           int
	stdout, stderr string
}

// runBin runs the binary to completion (at most 60 s).
func runBin(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append(os.Environ(), "PROXYHEALTH_TOKEN=")
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// syncBuffer is a goroutine-safe buffer (a log sink, a running process's
// output).
type syncBuffer = testutil.SyncBuffer

// proc is a running binary.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{}
	code   int
}

// startBin starts the binary; the test's cleanup kills it if still running.
func startBin(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	p := &proc{t: t, cmd: cmd, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	cmd.Env = append(append(os.Environ(), "PROXYHEALTH_TOKEN="), env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := cmd.Wait()
		if ee, ok := err.(*exec.ExitError); ok {
			p.code = ee.ExitCode()
		} else if err != nil {
			p.code = -1
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// signal sends sig to the process.
func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(d time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(d):
		p.t.Fatalf("process still running after %v\nstdout:\n%s\nstderr:\n%s", d, p.stdout, p.stderr)
		return -1
	}
}

// waitOutput polls the process's output until match finds something.
func (p *proc) waitOutput(what string, stderr bool, match func(string) (string, bool)) string {
	p.t.Helper()
	var v string
	testutil.EventuallyExplain(p.t, 30*time.Second, func() bool {
		buf := p.stdout
		if stderr {
			buf = p.stderr
		}
		var ok bool
		if v, ok = match(buf.String()); ok {
			return true
		}
		select {
		case <-p.done:
			p.t.Fatalf("process exited (%d) before %s\nstdout:\n%s\nstderr:\n%s", p.code, what, p.stdout, p.stderr)
		default:
		}
		return false
	}, func() string { return fmt.Sprintf("%s\nstdout:\n%s\nstderr:\n%s", what, p.stdout, p.stderr) })
	return v
}

// apiURL waits for the daemon's JSON start log line and returns its API URL.
func (p *proc) apiURL() string {
	return p.waitOutput("start-up log line", true, func(s string) (string, bool) {
		for line := range strings.SplitSeq(s, "\n") {
			var rec struct {
				Msg string `json:"msg"`
				API string `json:"api"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "proxyhealth started" {
				return strings.TrimSuffix(rec.API, "/"), true
			}
		}
		return "", false
	})
}

// getPool fetches GET /v1/pool.
func getPool(t *testing.T, base string) httpapi.Pool {
	t.Helper()
	var p httpapi.Pool
	getJSON(t, base+"/v1/pool", &p)
	return p
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// waitPool polls /v1/pool until ok.
func waitPool(t *testing.T, base, what string, ok func(httpapi.Pool) bool) httpapi.Pool {
	t.Helper()
	var p httpapi.Pool
	testutil.EventuallyExplain(t, 30*time.Second, func() bool {
		p = getPool(t, base)
		return ok(p)
	}, func() string { return fmt.Sprintf("the pool to be %s: %+v", what, p) })
	return p
}

// writeFile writes a file in dir and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// oneLine checks that s is exactly one non-empty line.
func oneLine(t *testing.T, what, s string) {
	t.Helper()
	if s = strings.TrimSuffix(s, "\n"); s == "" || strings.Contains(s, "\n") {
		t.Errorf("%s: want one line, got %q", what, s)
	}
}

// syncPath writes path's dirty pages to disk.
func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
