package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// releaseBinaryPages gives back the pages of the running executable that
// its read-only mappings (code, read-only data, the runtime's tables) hold,
// and makes later faults there read only the page they need. It returns
// the bytes of mapping it covered.
//
// Why: this binary is about 24 MiB of code and tables, and the kernel maps
// much more of it than the daemon runs. With a large read-ahead and large
// folios in the page cache (Linux 6.18 with read_ahead_kb 8192 maps a
// whole folio on a fault), a daemon with no proxy at all had 24 MB of its
// executable resident, over a quarter of its peak RSS at 10,000 proxies;
// after its start it runs about 10 MB of it.
//
// How: for every mapping of the executable that is not writable,
// MADV_RANDOM (no read-ahead on later faults) and MADV_PAGEOUT (unmap and
// reclaim what only this process maps); then POSIX_FADV_DONTNEED on the
// file drops its pages that are now mapped by nobody from the page cache,
// or a fault would map a whole cached folio again. Nothing is lost: the
// pages are clean copies of the file, read again on the next touch (a
// page fault reading 4 KiB from the file, or from the page cache when
// another process keeps it there). Pages of the file not yet written
// back (a binary written moments ago) stay. MADV_PAGEOUT needs Linux 5.4;
// on an older kernel the error says so, and the pages stay.
func releaseBinaryPages() (int64, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("find the executable: %w", err)
	}
	// Read whole before the first madvise, which may merge mappings.
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	var covered int64
	for line := range bytes.Lines(maps) {
		start, end, ok := executableMapping(line, exe)
		if !ok {
			continue
		}
		for _, advice := range []uintptr{unix.MADV_RANDOM, unix.MADV_PAGEOUT} {
			if _, _, e := unix.Syscall(unix.SYS_MADVISE, start, end-start, advice); e != 0 {
				if advice == unix.MADV_PAGEOUT && e == unix.EINVAL {
					return covered, fmt.Errorf("madvise(MADV_PAGEOUT) is not supported by this kernel (Linux 5.4 or later): %w", e)
				}
				return covered, fmt.Errorf("madvise %#x-%#x: %w", start, end, e)
			}
		}
		covered += int64(end - start)
	}
	// /proc/self/exe opens the executable itself, even if its path now
	// names another file (an upgrade renamed a new binary over it).
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		return covered, err
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return covered, fmt.Errorf("fadvise %s: %w", exe, err)
	}
	return covered, nil
}

// executableMapping parses a line of /proc/self/maps ("start-end perms
// offset dev inode path") and reports the address range of a mapping of
// the file exe that is not writable. The writable one, the data segment,
// is left alone. A read-only one may hold pages this process wrote (the
// part of the data segment the loader made read-only after relocating
// it): MADV_PAGEOUT keeps those (or swaps them out), it never drops them.
func executableMapping(line []byte, exe string) (start, end uintptr, ok bool) {
	fields := bytes.Fields(line)
	if len(fields) < 6 || len(fields[1]) < 2 || fields[1][1] == 'w' {
		return 0, 0, false
	}
	// The path is the rest of the line after the inode (it may hold spaces).
	at := bytes.Index(line, fields[5])
	if at < 0 || string(bytes.TrimRight(line[at:], "\n")) != exe {
		return 0, 0, false
	}
	lo, hi, found := bytes.Cut(fields[0], []byte("-"))
	if !found {
		return 0, 0, false
	}
	s, err1 := strconv.ParseUint(string(lo), 16, 64)
	e, err2 := strconv.ParseUint(string(hi), 16, 64)
	if err := errors.Join(err1, err2); err != nil || e <= s {
		return 0, 0, false
	}
	return uintptr(s), uintptr(e), true
}
