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

// releaseBinary releases the executable's pages (releaseBinaryPages)
// unless keepBinaryPagesEnv is set, and logs what it did at debug level:
// nothing an operator must act on, either way. The daemon calls it once
// it has started: most of what the start ran does not run again, and
// released before, the start's code would be read back a page at a time
// (a restart at 10,000 proxies took 0.3–0.5 s longer to open with a
// release before it).
func releaseBinary(log *slog.Logger) {
	if v := os.Getenv(keepBinaryPagesEnv); v != "" {
		keep, err := strconv.ParseBool(v)
		if err != nil {
			log.Warn("the executable's pages stay resident: "+keepBinaryPagesEnv+" is not true or false", slog.String("value", v))
		}
		if keep || err != nil {
			return
		}
	}
	start := time.Now()
	n, err := releaseBinaryPages()
	if err != nil {
		log.Debug("the executable's pages stay resident", slog.Any("error", err))
		return
	}
	log.Debug("released the executable's pages", slog.Int64("bytes", n), slog.Duration("took", time.Since(start)))
}
