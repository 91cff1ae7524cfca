package journal

import (
	"syscall"
	"unsafe"

	bolt "go.etcd.io/bbolt"
)

// releaseMapped drops the journal file's pages from this process's page
// tables; they stay in the kernel's page cache, and the next read faults
// them back in. bbolt reads through a shared read-only mmap, so every page
// that commits, subscribers, recovery or retention ever read stays
// mapped, and counted in the process's resident set, until the kernel
// needs the memory: at 10,000 proxies, a commit every 100 ms, that grew by
// about 3 MiB a minute (see noteScattered for when it is called). It runs
// inside a read transaction, which holds bbolt's mmap lock, so the mapping
// cannot move meanwhile.
func (b *Bolt) releaseMapped() error {
	return b.view(func(tx *bolt.Tx) error {
		size := tx.Size()
		if size <= 0 {
			return nil
		}
		// The mapping is outside the Go heap: its address, which bbolt
		// gives as a uintptr, is reinterpreted as a pointer.
		base := b.db.Info().Data
		data := unsafe.Slice(*(**byte)(unsafe.Pointer(&base)), size)
		return syscall.Madvise(data, syscall.MADV_DONTNEED)
	})
}
