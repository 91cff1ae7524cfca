package testutil

import "runtime"

// HeapInUse returns the bytes of live heap objects after two full
// collections (the second frees what finalizers of the first released):
// what the memory benchmarks compare before and after building a
// structure.
func HeapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
