package actors

import (
	"testing"
	"unsafe"
)

// TestProxyActorFitsItsSizeClass: there is one proxyActor per proxy, so
// its size class is paid 100,000 times in a large pool; the next class up
// (512 bytes) would cost 3.2 MB more there, the one it had before its
// state was packed (704 bytes) 22 MB.
func TestProxyActorFitsItsSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(proxyActor{}); n > 480 {
		t.Fatalf("proxyActor is %d bytes, past the 480-byte size class: keep its state packed and its flags together", n)
	}
}
