// Package props_test checks properties of the pure health state machine
// (package events) over random command sequences with gopter. Black-box:
// only the exported API is used.
//
// Runs are reproducible: every property logs its seed; replay a failure with
//
//	go test ./props_test/ -run '^TestName$' -props.seed=SEED -v
//
// -props.seed=0 picks a fresh time-based seed; -props.count sets the minimum
// number of successful tests per property (default 500).
package props_test

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

var (
	seedFlag  = flag.Int64("props.seed", 20250304, "gopter seed for every property; 0 picks a time-based seed (logged)")
	countFlag = flag.Int("props.count", 500, "minimum successful tests per property")
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" { // the engine child of TestEngineProps
		code := runEngineChild(dir)
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "engine child:", err)
			code = 1
		}
		os.Exit(code)
	}
	goleak.VerifyTestMain(m)
}
