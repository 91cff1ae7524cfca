package main

import (
	"log/slog"
	"os"
	"strconv"
	"time"
)

// keepBinaryPagesEnv names the environment variable that, set to true (1,
// true; strconv.ParseBool), keeps the executable's pages resident as the
// kernel maps them: the daemon does not release them
// (releaseBinaryPages). A value that is not a boolean keeps them too,
// with a warning.
const keepBinaryPagesEnv = "PROXYHEALTH_KEEP_BINARY_PAGES"

// binaryRelease releases the executable's pages (releaseBinaryPages) when
// the daemon asks, unless keepBinaryPagesEnv is set, and logs what it did
// at debug level: nothing an operator must act on, either way.
//
// The daemon asks twice. Before the engine opens ("starting"): the kernel
// maps nearly all of the executable at exec (24 MiB here), and the start
// then adds the engine's memory on top of it, which made the start the
// daemon's high-water mark at 10,000 proxies. And once it has started
// ("started"): most of what the start ran does not run again. What the
// start runs after the first release is read back a page at a time: a
// restart at 10,000 proxies opened in 0.37–0.64 s (24 runs) instead of
// 0.33–0.45 (three), and the restarted daemon peaked at 52–58 MiB instead
// of 67 (BenchmarkDaemon, 2026-12-07).
type binaryRelease struct {
	log  *slog.Logger
	keep bool
}

// newBinaryRelease reads keepBinaryPagesEnv (once: a value that is not a
// boolean is warned about once).
func newBinaryRelease(log *slog.Logger) binaryRelease {
	r := binaryRelease{log: log}
	if v := os.Getenv(keepBinaryPagesEnv); v != "" {
		keep, err := strconv.ParseBool(v)
		if err != nil {
			log.Warn("the executable's pages stay resident: "+keepBinaryPagesEnv+" is not true or false", slog.String("value", v))
		}
		r.keep = keep || err != nil
	}
	return r
}

// release releases the executable's pages now, unless they are kept;
// phase names the point of the daemon's life ("starting", "started").
func (r binaryRelease) release(phase string) {
	if r.keep {
		return
	}
	start := time.Now()
	n, err := releaseBinaryPages()
	if err != nil {
		r.log.Debug("the executable's pages stay resident", slog.String("phase", phase), slog.Any("error", err))
		return
	}
	r.log.Debug("released the executable's pages", slog.String("phase", phase), slog.Int64("bytes", n), slog.Duration("took", time.Since(start)))
}
