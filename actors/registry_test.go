package actors

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// TestCompactRegistry: the compacted registry keeps what was registered
// before (the dead letter and event stream processes), and actors spawned
// after it are found, answer and are gone once stopped.
func TestCompactRegistry(t *testing.T) {
	sys := quietSystem()
	defer sys.Shutdown()
	if n := len(sys.ProcessRegistry.LocalPIDs.LocalPIDs); n != registryBuckets {
		t.Fatalf("the registry has %d concurrent maps, want %d", n, registryBuckets)
	}
	for _, id := range []string{"deadletter", "eventstream"} {
		if _, ok := sys.ProcessRegistry.GetLocal(id); !ok {
			t.Fatalf("%s is not registered after CompactRegistry", id)
		}
	}
	props := actor.PropsFromFunc(func(c actor.Context) {
		if s, ok := c.Message().(string); ok {
			c.Respond("re:" + s)
		}
	})
	const n = 2000
	pids := make([]*actor.PID, n)
	for i := range pids {
		pid, err := sys.Root.SpawnNamed(props, fmt.Sprintf("p%d", i))
		if err != nil {
			t.Fatal(err)
		}
		pids[i] = pid
	}
	if _, err := sys.Root.SpawnNamed(props, "p7"); err == nil {
		t.Fatal("a second actor named p7 was spawned")
	}
	for i, pid := range pids {
		r, err := sys.Root.RequestFuture(pid, fmt.Sprint(i), 5*time.Second).Result()
		if err != nil || r != fmt.Sprintf("re:%d", i) {
			t.Fatalf("actor %d answered %v (%v)", i, r, err)
		}
		if _, ok := sys.ProcessRegistry.GetLocal(pid.Id); !ok {
			t.Fatalf("actor %s is not in the registry", pid.Id)
		}
	}
	for _, pid := range pids {
		if err := sys.Root.StopFuture(pid).Wait(); err != nil {
			t.Fatal(err)
		}
		if _, ok := sys.ProcessRegistry.GetLocal(pid.Id); ok {
			t.Fatalf("actor %s is still registered after it stopped", pid.Id)
		}
	}
}

// BenchmarkRegistryBytesPerActor reports the heap a registry entry costs
// (registry-B/actor; the ID and the process are the actor's, not counted)
// with 10,000 actors registered, in protoactor's registry and in the
// compacted one, and an empty actor system with each (system-MiB).
func BenchmarkRegistryBytesPerActor(b *testing.B) {
	const actors = 10000
	for _, compact := range []bool{false, true} {
		b.Run(fmt.Sprintf("compact=%v", compact), func(b *testing.B) {
			ids, procs := make([]string, actors), make([]*actor.ActorProcess, actors)
			for i := range ids {
				ids[i], procs[i] = fmt.Sprintf("source-a/http://127.0.0.1:%d", 10000+i), &actor.ActorProcess{}
			}
			for range b.N {
				before := heapInUse()
				sys := quietSystem()
				if !compact {
					sys.ProcessRegistry.LocalPIDs = actor.NewProcessRegistry(sys).LocalPIDs // protoactor's own
				}
				empty := heapInUse()
				for i, id := range ids {
					sys.ProcessRegistry.Add(procs[i], id)
				}
				full := heapInUse()
				b.ReportMetric(float64(empty-before)/(1<<20), "system-MiB")
				b.ReportMetric(float64(full-empty)/actors, "registry-B/actor")
				runtime.KeepAlive(sys)
				sys.Shutdown()
			}
		})
	}
}

// heapInUse is the heap in use after a GC.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
