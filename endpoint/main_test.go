package endpoint

import (
	"testing"

	"go.uber.org/goleak"
)

// protoactor's dead-letter log throttle lives 1 s after a dead letter (the
// end-to-end tests run a real engine; see the root package's TestMain).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"))
}
