package etcdtest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/testutil"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func client(t *testing.T, e *Etcd) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// The server answers on its loopback port, keeps its data across
// Stop/Restart on the same port, and refuses requests while stopped.
func TestStartStopRestartKeepsData(t *testing.T) {
	e := Start(t)
	c := client(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	url := e.ClientURL()
	e.Stop()
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := c.Get(short, "k")
	cancelShort()
	if err == nil {
		t.Fatal("a stopped etcd answered a Get")
	}
	if err := e.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if e.ClientURL() != url {
		t.Fatalf("restarted on %s, not %s", e.ClientURL(), url)
	}
	resp, err := c.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("after a restart k = %v, want v", resp.Kvs)
	}
}

// The short raft timing lets a 1 s lease be granted as 1 s.
func TestShortLeasesAreGranted(t *testing.T) {
	e := Start(t)
	c := client(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	g, err := c.Grant(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if g.TTL != 1 {
		t.Fatalf("granted TTL %d s, want 1", g.TTL)
	}
}

// StartProcess runs a server for programs; Close removes its files.
func TestStartProcessAndClose(t *testing.T) {
	if _, err := exec.LookPath(Binary); err != nil {
		testutil.Unavailable(t, "%s is not installed (apt-get install etcd-server)", Binary)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := StartProcess(ctx, "")
	if err != nil {
		if errors.Is(err, ErrNotInstalled) {
			testutil.Unavailable(t, "%v", err)
		}
		t.Fatal(err)
	}
	c := client(t, e)
	if _, err := c.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	work := e.workDir
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(work); !os.IsNotExist(err) {
		t.Fatalf("Close left %s: %v", work, err)
	}
	if err := e.Restart(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Restart after Close: %v, want ErrClosed", err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
