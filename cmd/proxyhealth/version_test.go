package main

import (
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		r := runBin(t, args...)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "proxyhealth test-build (go") {
			t.Errorf("%v: %d %q %q", args, r.code, r.stdout, r.stderr)
		}
	}
}
