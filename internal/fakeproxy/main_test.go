package fakeproxy

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(controlChildEnv); spec != "" {
		os.Exit(runControlChild(spec)) // TestServeControlInChild's farm
	}
	goleak.VerifyTestMain(m)
}
