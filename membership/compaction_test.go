package membership

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/proxyhealth/proxyhealth/internal/etcdtest"
	"google.golang.org/protobuf/encoding/protojson"
)

// cutter is a loopback TCP relay to etcd whose traffic the test can cut
// (every connection closed, new ones refused) and heal.
type cutter struct {
	l      net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newCutter(t *testing.T, target string) *cutter {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{l: l, target: target, conns: map[net.Conn]struct{}{}}
	c.wg.Add(1)
	go c.accept()
	t.Cleanup(c.close)
	return c
}

func (c *cutter) url() string { return "http://" + c.l.Addr().String() }

func (c *cutter) accept() {
	defer c.wg.Done()
	for {
		in, err := c.l.Accept()
		if err != nil {
			return
		}
		c.mu.Lock()
		if c.cut {
			c.mu.Unlock()
			in.Close()
			continue
		}
		out, err := net.Dial("tcp", c.target)
		if err != nil {
			c.mu.Unlock()
			in.Close()
			continue
		}
		c.conns[in], c.conns[out] = struct{}{}, struct{}{}
		c.wg.Add(2)
		c.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			defer c.wg.Done()
			_, _ = io.Copy(dst, src)
			dst.Close()
			src.Close()
		}
		go pipe(in, out)
		go pipe(out, in)
	}
}

func (c *cutter) setCut(cut bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut = cut
	if cut {
		for conn := range c.conns {
			conn.Close()
		}
		clear(c.conns)
	}
}

func (c *cutter) close() {
	c.l.Close()
	c.setCut(true)
	c.wg.Wait()
}

// A member whose watch cannot resume (etcd compacted the history it
// missed while cut off) reloads the member list and sees the change it
// missed.
func TestWatchReloadsAfterACompaction(t *testing.T) {
	e := etcdtest.Start(t)
	relay := newCutter(t, e.ClientURL()[len("http://"):])
	cfg := testConfig(e, "compact")
	cfg.Endpoints = []string{relay.url()}
	rec := &recorder{}
	cfg.Logger = slog.New(rec)
	a := join(t, e, cfg)
	allSee(t, []*Member{a}, []string{a.Self()}, 5*time.Second)

	c := etcdClient(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fake, err := protojson.Marshal(&cluster.Member{Host: "127.0.0.1", Port: 1, Id: "fake"})
	if err != nil {
		t.Fatal(err)
	}
	// Cut off for well under the TTL: the lease lives on.
	relay.setCut(true)
	if _, err := c.Put(ctx, DefaultPrefix+"compact/fake", string(fake)); err != nil {
		t.Fatal(err)
	}
	// One revision more, and compact it all: the revision of the put
	// above, where the member's watch resumes, is gone.
	put, err := c.Put(ctx, "/unrelated", "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Compact(ctx, put.Header.Revision); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the scenario: the cut lasts 300 ms
	relay.setCut(false)

	allSee(t, []*Member{a}, selves2(a.Self(), "127.0.0.1:1"), 5*time.Second)
	if _, err := c.Delete(ctx, DefaultPrefix+"compact/fake"); err != nil {
		t.Fatal(err)
	}
	allSee(t, []*Member{a}, []string{a.Self()}, 5*time.Second)
	select {
	case <-a.Lost():
		t.Fatalf("the member was lost: %v", a.Err())
	default:
	}
	if n := rec.count(slog.LevelDebug, "watch ended; reloading", ""); n == 0 {
		t.Error("the watch did not end with an error: the test did not exercise the reload")
	}
}
