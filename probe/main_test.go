package probe

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(childFarmEnv) != "" {
		runChildFarm() // benchmark helper: serve a farm in this process
		return
	}
	goleak.VerifyTestMain(m)
}
