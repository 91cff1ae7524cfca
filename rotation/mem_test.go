package rotation_test

import (
	"runtime"
	"testing"

	"github.com/proxyhealth/proxyhealth/rotation"
)

// heapInUse returns the bytes of live heap objects after a full collection.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// BenchmarkPoolBytesPerMember reports the Go heap a published pool of
// 10,000 members (4 sources, 2 schemes, no tags; healthy, then a statistics
// refresh) keeps per member, the members' own URLs and strings excluded.
func BenchmarkPoolBytesPerMember(b *testing.B) {
	const n = 10_000
	members := make([]rotation.Member, n)
	for i := range members {
		members[i] = member(i, []string{"a", "b", "c", "d"}[i%4], []string{"http", "socks5"}[i%2])
	}
	var perMember float64
	for range b.N {
		before := heapInUse()
		p, err := rotation.NewPool(rotation.DefaultOptions())
		if err != nil {
			b.Fatal(err)
		}
		for _, m := range members {
			p.Set(m, healthy())
		}
		p.Publish()
		for _, m := range members {
			p.SetStatus(m.ID, healthy())
		}
		p.Publish()
		perMember = float64(heapInUse()-before) / n
		if p.Len() != n {
			b.Fatalf("%d members", p.Len())
		}
		runtime.KeepAlive(p)
	}
	b.ReportMetric(perMember, "B/member")
}
