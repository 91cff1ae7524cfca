package membership

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/proxyhealth/proxyhealth/internal/etcdtest"
)

// childEnv, set to the etcd endpoint, makes the test binary a member
// process for TestPausedMemberIsNotFreshAfterSIGCONT (childMember).
const childEnv = "PROXYHEALTH_MEMBERSHIP_CHILD_ETCD"

// childMember joins the cluster "pause", prints "ready HOST:PORT", then
// reads Fresh in a loop; the first time it finds more than a second
// passed between two reads (it was stopped) it prints "gap MS fresh BOOL
// lost-already BOOL" with what Fresh said first and whether Lost had
// closed by then (the deletion of its key may reach it first); when the membership is lost it prints
// "lost ERR" and exits.
func childMember() int {
	sys := actor.NewActorSystem(ActorSystemOptions(nil)...)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m, err := Join(ctx, sys, Config{Cluster: "pause", Endpoints: []string{os.Getenv(childEnv)}, Advertise: "127.0.0.1:0", TTL: testTTL})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("ready", m.Self())
	prev, reported := mono(), false
	for {
		lost := false
		select {
		case <-m.Lost():
			lost = true
		case <-time.After(time.Millisecond):
		}
		now := mono()
		fresh := m.Fresh()
		if gap := now - prev; gap > time.Second && !reported {
			fmt.Printf("gap %d fresh %v lost-already %v\n", gap.Milliseconds(), fresh, lost)
			reported = true
		}
		prev = now
		if lost {
			fmt.Println("lost", m.Err())
			m.Crash()
			return 0
		}
	}
}

// A member process stopped (SIGSTOP) longer than the TTL reads Fresh as
// false from its first read after SIGCONT, before any round trip to etcd;
// then it finds its lease gone (Lost). The others drop it within TTL + 1 s
// of the stop.
func TestPausedMemberIsNotFreshAfterSIGCONT(t *testing.T) {
	e := etcdtest.Start(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+e.ClientURL())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	lines := make(chan string, 16)
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			lines <- s.Text()
		}
		close(lines)
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		for range lines {
		}
		<-exited
	})
	next := func(prefix string) string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok || !strings.HasPrefix(l, prefix+" ") {
				t.Fatalf("the child said %q (open %v), want %q…", l, ok, prefix)
			}
			return strings.TrimPrefix(l, prefix+" ")
		case <-time.After(20 * time.Second):
			t.Fatalf("the child did not say %q", prefix)
		}
		return ""
	}
	child := next("ready")
	other := join(t, e, testConfig(e, "pause"))
	allSee(t, []*Member{other}, selves2(other.Self(), child), 5*time.Second)

	stopped := time.Now()
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	allSee(t, []*Member{other}, []string{other.Self()}, testTTL+time.Second)
	t.Logf("the other member dropped the stopped one %v after SIGSTOP", time.Since(stopped).Round(time.Millisecond))
	// The scenario: the child stays stopped for TTL + 1 s in all.
	time.Sleep(testTTL + time.Second - time.Since(stopped))
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	gap := next("gap")
	if !strings.Contains(gap, "fresh false") {
		t.Errorf("the child's first read of Fresh after SIGCONT: %s, want false", gap)
	}
	lost := next("lost")
	if !strings.Contains(lost, ErrLeaseExpired.Error()) && !strings.Contains(lost, ErrKeyDeleted.Error()) {
		t.Errorf("the child lost its membership with %q, want a lease expiry or key deletion", lost)
	}
	t.Logf("child: gap %s; lost: %s", gap, lost)
	for range lines {
	}
	<-exited
	if waitErr != nil {
		t.Errorf("the child exited with %v", waitErr)
	}
}

func selves2(a, b string) []string {
	if b < a {
		a, b = b, a
	}
	return []string{a, b}
}
