package actors

import (
	"testing"
	"unsafe"
)

// TestProxyActorFitsItsSizeClass: there is one proxyActor per proxy, so
// its size class is paid 100,000 times in a large pool; the next class up
// (352 bytes) would cost 3.2 MB more there, the one it had before its
// times became unix ns and its rarely used state moved out (480 bytes)
// 16 MB, the one before its state was packed (704 bytes) 38 MB.
func TestProxyActorFitsItsSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(proxyActor{}); n > 320 {
		t.Fatalf("proxyActor is %d bytes, past the 320-byte size class: keep its state packed, its times unix ns, its rarely used state apart and its flags together", n)
	}
}

// TestDrainedQueueKeepsNoArray: once the commands queued behind an append
// are decided, the actor holds no array for them (every new proxy queues
// the engine's Sync behind its ProxyAdded).
func TestDrainedQueueKeepsNoArray(t *testing.T) {
	a := &proxyActor{spec: &ProxySpec{ID: "p1"}}
	a.persisting = true
	a.submit(nil, pending{sync: true}) // nobody waits for the replies
	a.submit(nil, pending{sync: true})
	if a.queue == nil || len(a.queue.q) != 2 {
		t.Fatal("the commands did not wait behind the append")
	}
	a.persisting = false
	a.drain(nil)
	if a.queue != nil {
		t.Fatalf("drained queue kept: len %d, cap %d", len(a.queue.q), cap(a.queue.q))
	}
}
