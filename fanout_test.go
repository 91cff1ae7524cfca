package proxyhealth

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/proxyhealth/proxyhealth/actors"
)

// TestFanOut: replies are gathered per proxy; a proxy whose actor does not
// exist fails with ErrUnknownProxy; one that never answers fails when ctx
// ends; the fan-out leaves no registry entry behind.
func TestFanOut(t *testing.T) {
	e, err := Open(context.Background(), Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := e.Close(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	answer := e.sys.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		if _, ok := c.Message().(*actors.Sync); ok {
			c.Respond(&actors.Reply{Proxy: "answers", Err: errors.New("refused")})
		}
	}))
	silent := e.sys.Root.Spawn(actor.PropsFromFunc(func(actor.Context) {}))
	defer e.sys.Root.Stop(answer)
	defer e.sys.Root.Stop(silent)
	before := registered(e.sys)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	errs := e.requestAll(ctx, []request{
		{id: "answers", pid: answer, msg: &actors.Sync{}},
		{id: "gone", pid: actor.NewPID(e.sys.Address(), "no-such-actor"), msg: &actors.Sync{}},
		{id: "silent", pid: silent, msg: &actors.Sync{}},
	})
	if err := errs["answers"]; err == nil || err.Error() != "refused" {
		t.Errorf("answers: %v, want its reply's error", err)
	}
	if err := errs["gone"]; !errors.Is(err, ErrUnknownProxy) {
		t.Errorf("gone: %v, want ErrUnknownProxy", err)
	}
	if err := errs["silent"]; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("silent: %v, want the context's error", err)
	}
	if len(errs) != 3 {
		t.Errorf("%d errors, want 3: %v", len(errs), errs)
	}
	if after := registered(e.sys); after != before {
		t.Errorf("process registry holds %d entries after the fan-out, %d before", after, before)
	}
	if errs := e.requestAll(context.Background(), nil); errs != nil {
		t.Errorf("empty fan-out: %v", errs)
	}
}

func registered(sys *actor.ActorSystem) int {
	n := 0
	for _, m := range sys.ProcessRegistry.LocalPIDs.LocalPIDs {
		n += m.Count()
	}
	return n
}
