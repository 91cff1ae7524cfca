package membership

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childMember())
	}
	goleak.VerifyTestMain(m, testutil.ProtoactorLeaks()...)
}
