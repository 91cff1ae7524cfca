package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
)

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", "Usage: proxyhealth version\n\nPrints the version and the Go version it was built with.", "  proxyhealth version", stdout, stderr)
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return fs.fail("unexpected argument %q", pos[0])
	}
	fmt.Fprintf(stdout, "proxyhealth %s (%s)\n", version, runtime.Version())
	return exitOK
}
