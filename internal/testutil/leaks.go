package testutil

import "go.uber.org/goleak"

// ProtoactorLeaks are the goroutines protoactor-go leaves behind after a
// graceful cluster shutdown (../shared/notes/protoactor-go.md §5):
// throttles that end by themselves after their interval (1 s for dead
// letters, 60 s for gossip, not configurable). The names differ with
// inlining (-l). For the tests of packages that run protoactor's cluster
// and remote (goleak.VerifyTestMain(m, testutil.ProtoactorLeaks()...)).
func ProtoactorLeaks() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"),
		goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/cluster.(*Gossiper).StartGossiping.NewThrottle.func3.1"),
		goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/cluster.NewGossipActor.NewThrottleWithLogger.func2.1"),
		goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewThrottle.func1.1"),
		goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewThrottleWithLogger.func1.1"),
	}
}
