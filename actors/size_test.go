package actors

import (
	"testing"
	"unsafe"
)

// TestProxyActorFitsItsSizeClass: there is one proxyActor per proxy, so
// its size class is paid 100,000 times in a large pool; the next class up
// (384 bytes) would cost 3.2 MB more there, the one it had before its
// times became unix ns and its ejection timer moved out (480 bytes)
// 12.8 MB, the one before its state was packed (704 bytes) 35 MB.
func TestProxyActorFitsItsSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(proxyActor{}); n > 352 {
		t.Fatalf("proxyActor is %d bytes, past the 352-byte size class: keep its state packed, its times unix ns, its rarely used state apart and its flags together", n)
	}
}

// TestDrainedQueueKeepsNoArray: once the commands queued behind an append
// are decided, the actor holds no array for them (every new proxy queues
// the engine's Sync behind its ProxyAdded).
func TestDrainedQueueKeepsNoArray(t *testing.T) {
	a := &proxyActor{spec: &ProxySpec{ID: "p1"}}
	a.queue = append(a.queue, pending{sync: true}, pending{sync: true}) // nobody waits for the replies
	a.drain(nil)
	if a.queue != nil {
		t.Fatalf("drained queue: len %d, cap %d; want no array", len(a.queue), cap(a.queue))
	}
}
