package main

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
)

func TestMain(m *testing.M) {
	// protoactor's dead-letter log throttle (../shared/notes/protoactor-go.md §5).
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"))
}

// TestTheExampleRoutesThroughTheFarm runs the example against fake proxies
// (which answer the target themselves), one of them dead.
func TestTheExampleRoutesThroughTheFarm(t *testing.T) {
	farm, err := fakeproxy.Start(context.Background(), 3)
	if err != nil {
		t.Fatal(err)
	}
	defer farm.Close()
	if err := farm.Set(2, fakeproxy.Refuse()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before := farm.Checks(0) + farm.Checks(1)
	if err := run(ctx, []string{farm.URL(0), farm.URL(1), farm.URL(2)}, proxyhealth.RoundRobin, 6, "http://example.proxyhealth.test/"); err != nil {
		t.Fatal(err)
	}
	// 6 requests plus each proxy's checks went to the two live proxies.
	if got := farm.Checks(0) + farm.Checks(1) - before; got < 6 {
		t.Errorf("%d connections reached the live proxies, want at least the 6 requests", got)
	}
}
