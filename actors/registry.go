package actors

import (
	"github.com/asynkron/protoactor-go/actor"
	cmap "github.com/orcaman/concurrent-map"
)

// registryBuckets is how many concurrent maps (of cmap.SHARD_COUNT, 32,
// shards each) CompactRegistry spreads a system's actors over: 512 Go maps,
// each behind its own lock, which is far more than the lookups of a few
// cores contend for.
const registryBuckets = 16

// CompactRegistry gives sys a smaller process registry, and moves what is
// registered in it already (the dead letter and event stream processes).
// protoactor's registry is 1,024 concurrent maps of 32 shards: 32,768 Go
// maps, about 2.7 MB with nothing in them, and while the actors are fewer
// than the maps each actor has one to itself, at 264 bytes (a map group of
// eight entries). At 10,000 proxies that is about 5 MB for 10,000 entries;
// 16 concurrent maps hold them in about 0.6 MB, lookups unchanged (a hash to
// pick the map, a hash to pick the shard, a read lock).
//
// Call it right after actor.NewActorSystem, before the system is used by
// anything else: a process registered elsewhere meanwhile would be lost.
// The engine does so for the actor system it creates; it leaves a host's
// system (Config.ActorSystem) as the host made it.
func CompactRegistry(sys *actor.ActorSystem) {
	old := sys.ProcessRegistry.LocalPIDs
	sm := &actor.SliceMap{LocalPIDs: make([]cmap.ConcurrentMap, registryBuckets)}
	for i := range sm.LocalPIDs {
		sm.LocalPIDs[i] = cmap.New()
	}
	for _, m := range old.LocalPIDs {
		if m.Count() == 0 { // Items starts goroutines: only where there is something
			continue
		}
		for id, p := range m.Items() {
			sm.GetBucket(id).Set(id, p)
		}
	}
	sys.ProcessRegistry.LocalPIDs = sm
}
