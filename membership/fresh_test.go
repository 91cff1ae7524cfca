package membership

import (
	"testing"
	"time"
)

// TestKeepAliveAfterLeaveDoesNotMakeFresh: a keep-alive answered while
// Leave revokes the lease (the keep-alive goroutine still runs until the
// shutdown) must not make the member fresh again. It did, now and then,
// in TestGracefulLeaveIsSeenAtOnce.
func TestKeepAliveAfterLeaveDoesNotMakeFresh(t *testing.T) {
	p := &provider{}
	p.confirm(mono() + time.Hour)
	if !p.fresh() {
		t.Fatal("a confirmed lease is not fresh")
	}
	p.revoked = true // revoke without an etcd client: as if revoked already
	if err := p.revoke(t.Context()); err != nil {
		t.Fatal(err)
	}
	if p.fresh() {
		t.Fatal("fresh right after revoke")
	}
	p.confirm(mono() + time.Hour) // the keep-alive answered meanwhile
	if p.fresh() {
		t.Error("a keep-alive answered after revoke made the member fresh again")
	}
}
