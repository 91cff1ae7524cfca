// Package etcdtest runs Debian's etcd binary (package etcd-server) on free
// loopback ports with a temporary data directory, for tests and examples
// of the cluster membership (package membership).
//
// The server runs with a short raft timing (--heartbeat-interval 50
// --election-timeout 500): at etcd 3.4's default timing the server grants
// no lease shorter than about 2 s and takes over a second to elect itself
// after a restart; with the short timing a restart is answered within
// about half a second. Its log goes to a file, printed when a test that
// started it fails.
package etcdtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

// Binary is the name of the etcd server program looked up on PATH.
const Binary = "etcd"

// StartTimeout bounds how long a start (or restart) waits for the server
// to report itself healthy.
const StartTimeout = 20 * time.Second

// stopTimeout is how long Stop waits after SIGTERM before it kills.
const stopTimeout = 10 * time.Second

var (
	// ErrNotInstalled is returned when no etcd binary is on PATH.
	ErrNotInstalled = errors.New("etcdtest: etcd is not installed (apt-get install etcd-server)")
	// ErrNotHealthy is returned when the started server did not report
	// itself healthy in time, or exited.
	ErrNotHealthy = errors.New("etcdtest: etcd did not become healthy")
	// ErrClosed is returned by Restart after Close.
	ErrClosed = errors.New("etcdtest: etcd was closed")
)

// Etcd is one etcd server process on loopback. Its methods are safe for
// concurrent use.
type Etcd struct {
	bin        string
	workDir    string // holds the log (and the data dir unless one was given)
	ownWorkDir bool
	dataDir    string
	logPath    string
	clientPort int
	peerPort   int

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited (nil: not running)
	closed bool
}

// Start starts an etcd server for tb and stops it (and removes its files)
// in tb.Cleanup; when the test failed, the server's log is printed. With
// no etcd installed the test ends through testutil.Unavailable (a skip, or
// a failure under PROXYHEALTH_REQUIRE_ALL=1).
func Start(tb testing.TB) *Etcd {
	tb.Helper()
	bin, err := exec.LookPath(Binary)
	if err != nil {
		testutil.Unavailable(tb, "%s is not installed (apt-get install etcd-server): the cluster membership is not checked", Binary)
		return nil
	}
	work := tb.TempDir()
	e := newEtcd(bin, work, false, filepath.Join(work, "data"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*StartTimeout)
	defer cancel()
	if err := e.startFresh(ctx); err != nil {
		tb.Fatalf("%v\n%s", err, e.Log())
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("etcd log (%s):\n%s", e.logPath, e.Log())
		}
		if err := e.Close(); err != nil {
			tb.Errorf("stop etcd: %v", err)
		}
	})
	return e
}

// StartProcess starts an etcd server for a program (an example, a
// benchmark): its data in dataDir ("" = a new temporary directory), its
// log in a temporary directory that Close removes along with a temporary
// data directory. It returns ErrNotInstalled without etcd on PATH.
func StartProcess(ctx context.Context, dataDir string) (*Etcd, error) {
	bin, err := exec.LookPath(Binary)
	if err != nil {
		return nil, ErrNotInstalled
	}
	work, err := os.MkdirTemp("", "etcdtest-")
	if err != nil {
		return nil, fmt.Errorf("etcdtest: make a work directory: %w", err)
	}
	if dataDir == "" {
		dataDir = filepath.Join(work, "data")
	}
	e := newEtcd(bin, work, true, dataDir)
	if err := e.startFresh(ctx); err != nil {
		log := e.Log()
		_ = e.Close()
		return nil, fmt.Errorf("%w\n%s", err, log)
	}
	return e, nil
}

func newEtcd(bin, work string, own bool, dataDir string) *Etcd {
	return &Etcd{
		bin: bin, workDir: work, ownWorkDir: own, dataDir: dataDir,
		logPath: filepath.Join(work, "etcd.log"),
	}
}

// startFresh picks free ports and starts; a port taken between the pick
// and etcd's bind is retried with new ports.
func (e *Etcd) startFresh(ctx context.Context) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if e.clientPort, err = freePort(); err != nil {
			return err
		}
		if e.peerPort, err = freePort(); err != nil {
			return err
		}
		e.mu.Lock()
		err = e.startLocked(ctx)
		e.mu.Unlock()
		if err == nil || !bytes.Contains([]byte(e.Log()), []byte("address already in use")) {
			return err
		}
		_ = os.RemoveAll(e.dataDir)
	}
	return err
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("etcdtest: find a free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ClientURL is the server's client URL, http://127.0.0.1:PORT.
func (e *Etcd) ClientURL() string {
	return "http://127.0.0.1:" + strconv.Itoa(e.clientPort)
}

// Endpoints is what an etcd client is given: the client URL.
func (e *Etcd) Endpoints() []string { return []string{e.ClientURL()} }

// DataDir is the server's data directory.
func (e *Etcd) DataDir() string { return e.dataDir }

// Log returns the server's log so far (from all its runs).
func (e *Etcd) Log() string {
	b, err := os.ReadFile(e.logPath)
	if err != nil {
		return fmt.Sprintf("(no etcd log: %v)", err)
	}
	return string(b)
}

func (e *Etcd) startLocked(ctx context.Context) error {
	if e.closed {
		return ErrClosed
	}
	if e.exited != nil {
		return nil // running
	}
	logf, err := os.OpenFile(e.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("etcdtest: open the log %s: %w", e.logPath, err)
	}
	defer logf.Close()
	client := e.ClientURL()
	peer := "http://127.0.0.1:" + strconv.Itoa(e.peerPort)
	cmd := exec.Command(e.bin,
		"--name", "etcdtest",
		"--data-dir", e.dataDir,
		"--listen-client-urls", client,
		"--advertise-client-urls", client,
		"--listen-peer-urls", peer,
		"--initial-advertise-peer-urls", peer,
		"--initial-cluster", "etcdtest="+peer,
		"--initial-cluster-state", "new",
		"--heartbeat-interval", "50",
		"--election-timeout", "500",
		"--logger", "zap",
		"--log-outputs", "stderr",
	)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("etcdtest: start %s: %w", e.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	e.cmd, e.exited = cmd, exited
	if err := waitHealthy(ctx, client, exited); err != nil {
		e.stopLocked()
		return err
	}
	return nil
}

// waitHealthy polls etcd's /health (true once it has a leader) until it
// answers true, the process exits, or the deadline passes.
func waitHealthy(ctx context.Context, client string, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	hc := &http.Client{Timeout: time.Second}
	defer hc.CloseIdleConnections()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	last := "no answer"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, client+"/health", nil)
		if err != nil {
			return fmt.Errorf("etcdtest: %w", err)
		}
		if resp, err := hc.Do(req); err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte(`"health":"true"`)) {
				return nil
			}
			last = fmt.Sprintf("%s %s", resp.Status, body)
		} else {
			last = err.Error()
		}
		select {
		case <-exited:
			return fmt.Errorf("%w: it exited at start-up (see its log)", ErrNotHealthy)
		case <-ctx.Done():
			return fmt.Errorf("%w at %s within %v: last answer: %s", ErrNotHealthy, client, StartTimeout, last)
		case <-tick.C:
		}
	}
}

// Stop stops the server cleanly (SIGTERM, then SIGKILL after 10 s) and
// waits for it to exit. Its ports and data stay for Restart. Stopping a
// stopped server does nothing.
func (e *Etcd) Stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopLocked()
}

func (e *Etcd) stopLocked() {
	if e.exited == nil {
		return
	}
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(stopTimeout)
	defer t.Stop()
	select {
	case <-e.exited:
	case <-t.C:
		_ = e.cmd.Process.Kill()
		<-e.exited
	}
	e.cmd, e.exited = nil, nil
}

// Restart starts the server again (after Stop, or stops it first) on the
// same ports with the same data directory, and waits until it is healthy.
func (e *Etcd) Restart(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopLocked()
	return e.startLocked(ctx)
}

// Close stops the server and removes the files StartProcess created (a
// data directory it was given stays). Close is idempotent.
func (e *Etcd) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopLocked()
	if e.closed {
		return nil
	}
	e.closed = true
	if e.ownWorkDir {
		if err := os.RemoveAll(e.workDir); err != nil {
			return fmt.Errorf("etcdtest: remove %s: %w", e.workDir, err)
		}
	}
	return nil
}
