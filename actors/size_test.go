package actors

import (
	"testing"
	"unsafe"
)

// TestProxyActorFitsInHalfAKilobyte: there is one proxyActor per proxy, so
// its size class is paid 100,000 times in a large pool; the next class up
// (576 bytes) would cost 6.4 MB more there, the one it had before its
// state was packed (704 bytes) 19 MB.
func TestProxyActorFitsInHalfAKilobyte(t *testing.T) {
	if n := unsafe.Sizeof(proxyActor{}); n > 512 {
		t.Fatalf("proxyActor is %d bytes, past the 512-byte size class: keep its state packed and its flags together", n)
	}
}
