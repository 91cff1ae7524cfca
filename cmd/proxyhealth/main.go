// Command proxyhealth monitors pools of HTTP, HTTPS and SOCKS proxies.
//
// Run "proxyhealth --help" for the commands, "proxyhealth demo" to see a
// live pool of fake proxies in the browser.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	_ "github.com/mattn/go-sqlite3" // the SQLite view's driver (proxyhealth.SQLiteView); the engine itself needs no cgo

	"github.com/proxyhealth/proxyhealth"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(proxyhealth.RecommendedGCPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
