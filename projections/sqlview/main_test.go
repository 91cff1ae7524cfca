package sqlview_test

import (
	"testing"

	_ "github.com/mattn/go-sqlite3" // the SQLite driver the view runs on (the package itself imports none)
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
