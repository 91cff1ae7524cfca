package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/proxyhealth/proxyhealth/internal/etcdtest"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

// mainEnv makes the test binary run the example's main (to see its exit
// status).
const mainEnv = "PROXYHEALTH_CLUSTER_EXAMPLE_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		os.Args = append([]string{"cluster"}, strings.Fields(os.Getenv(mainEnv+"_ARGS"))...)
		main()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m, testutil.ProtoactorLeaks()...)
}

const testProxies = 150

// needEtcd ends the test through testutil.Unavailable without etcd.
func needEtcd(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath(etcdtest.Binary); err != nil {
		testutil.Unavailable(t, "%s is not installed (apt-get install etcd-server): the cluster example is not run", etcdtest.Binary)
	}
}

var (
	memberLine   = regexp.MustCompile(`(?m)^\s*\S+ (m\d): members (\d+), checks (\d+) of (\d+) configured .*\| pool: healthy (\d+), unknown (\d+), other (\d+), total (\d+) \| farm: (\d+) proxies checked`)
	takeoverLine = regexp.MustCompile(`(?m)^takeover: m3 left in \S+; m1 checks (\d+), m2 checks (\d+); (\d+) of (\d+) proxies held; (\d+) in state unknown \(at most (\d+) while taking over`)
	farmLine     = regexp.MustCompile(`(?m)^farm: (\d+) of (\d+) proxies checked again by a survivor since m3 left; checks by m3 after it left: (\d+)$`)
)

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// checkReport checks what a successful run printed: the three members
// share every proxy (each checks some, together all, each seen checking at
// the farm), and after m3 left the two others hold them all, none unknown
// at any sample, each checked again by a survivor and none by m3.
func checkReport(t *testing.T, out string) {
	t.Helper()
	phases := strings.SplitN(out, "-- m3 leaves", 2)
	if len(phases) != 2 {
		t.Fatalf("no \"-- m3 leaves\" line in the output:\n%s", out)
	}
	three := memberLine.FindAllStringSubmatch(phases[0], -1)
	if len(three) < 3 {
		t.Fatalf("fewer than three member lines before m3 leaves:\n%s", out)
	}
	sum := 0
	for i, m := range three[len(three)-3:] {
		if want := "m" + strconv.Itoa(i+1); m[1] != want {
			t.Fatalf("member lines out of order: %q, want %s:\n%s", m[0], want, out)
		}
		members, checks, configured, unknown, total, atFarm := atoi(t, m[2]), atoi(t, m[3]), atoi(t, m[4]), atoi(t, m[6]), atoi(t, m[8]), atoi(t, m[9])
		if members != 3 || configured != testProxies || checks == 0 || total != checks || unknown != 0 || atFarm == 0 {
			t.Errorf("%s before m3 leaves: %q: want 3 members, %d configured, some checked (all in its pool, none unknown, seen at the farm)", m[1], m[0], testProxies)
		}
		sum += checks
	}
	if sum != testProxies {
		t.Errorf("the three members check %d proxies together, want %d:\n%s", sum, testProxies, out)
	}
	two := memberLine.FindAllStringSubmatch(phases[1], -1)
	if len(two) < 2 {
		t.Fatalf("fewer than two member lines after m3 left:\n%s", out)
	}
	for _, m := range two {
		if m[1] == "m3" || atoi(t, m[2]) != 2 || atoi(t, m[6]) != 0 {
			t.Errorf("after m3 left: %q: want m1 or m2, seeing 2 members, none unknown", m[0])
		}
	}
	tk := takeoverLine.FindStringSubmatch(phases[1])
	if tk == nil {
		t.Fatalf("no takeover line:\n%s", out)
	}
	if c1, c2, held, of, unknown, most := atoi(t, tk[1]), atoi(t, tk[2]), atoi(t, tk[3]), atoi(t, tk[4]), atoi(t, tk[5]), atoi(t, tk[6]); c1+c2 != testProxies || held != testProxies || of != testProxies || unknown != 0 || most != 0 {
		t.Errorf("takeover: %q: want m1+m2 = %d = held, none unknown at any sample", tk[0], testProxies)
	}
	fl := farmLine.FindStringSubmatch(phases[1])
	if fl == nil {
		t.Fatalf("no farm line:\n%s", out)
	}
	if again, of, byLeaver := atoi(t, fl[1]), atoi(t, fl[2]), atoi(t, fl[3]); again != testProxies || of != testProxies || byLeaver != 0 {
		t.Errorf("farm: %q: want every proxy checked again by a survivor, none by m3", fl[0])
	}
	if !strings.Contains(out, "\n-- closing --\n") {
		t.Errorf("no closing line:\n%s", out)
	}
}

// emptyTempDir points TMPDIR at a new directory, so that the test sees
// whether the example removed everything it made there.
func emptyTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("TMPDIR", dir)
	return dir
}

func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("the example left %s behind in the temporary directory", e.Name())
	}
}

// TestTheExampleRunsAClusterWithItsOwnEtcd runs the example as it runs by
// default: it starts etcd itself, and stops and removes it at the end.
func TestTheExampleRunsAClusterWithItsOwnEtcd(t *testing.T) {
	needEtcd(t)
	tmp := emptyTempDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, options{proxies: testProxies, duration: 2 * time.Second, out: &out}); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.HasPrefix(out.String(), "etcd started at http://127.0.0.1:") {
		t.Errorf("the output does not begin with the etcd it started:\n%s", out.String())
	}
	checkReport(t, out.String())
	assertEmpty(t, tmp)
	t.Logf("output:\n%s", out.String())
}

// TestTheExampleJoinsAGivenEtcd runs the example against an etcd given
// with -etcd: it starts none of its own.
func TestTheExampleJoinsAGivenEtcd(t *testing.T) {
	e := etcdtest.Start(t)
	tmp := emptyTempDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, options{etcd: e.Endpoints(), proxies: testProxies, duration: time.Second, out: &out}); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if strings.Contains(out.String(), "etcd started") {
		t.Errorf("the example started an etcd although one was given:\n%s", out.String())
	}
	checkReport(t, out.String())
	assertEmpty(t, tmp)
}

// TestTheExampleSaysHowToInstallEtcd: without etcd on PATH and without
// -etcd, run fails with errNoEtcd before it starts anything, and main
// says how to install etcd and exits 1.
func TestTheExampleSaysHowToInstallEtcd(t *testing.T) {
	tmp := emptyTempDir(t)
	t.Setenv("PATH", t.TempDir())
	var out bytes.Buffer
	err := run(context.Background(), options{proxies: testProxies, duration: time.Second, out: &out})
	if !errors.Is(err, errNoEtcd) {
		t.Fatalf("run without etcd: %v, want errNoEtcd", err)
	}
	if out.Len() != 0 {
		t.Errorf("run printed before it failed:\n%s", out.String())
	}

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(os.Environ(), mainEnv+"=1", mainEnv+"_ARGS=-proxies 10 -duration 1s")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("main without etcd: %v, want exit status 1; stderr:\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "apt-get install etcd-server") {
		t.Errorf("main without etcd does not say how to install it:\n%s", stderr.String())
	}
	assertEmpty(t, tmp)
}
