package sqlview_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections/sqlview"
)

// TestWithoutADriverTheViewSaysWhatToImport: a program that asks for the
// view without registering a SQLite driver gets ErrNoDriver, which names the
// import, and no file is created.
func TestWithoutADriverTheViewSaysWhatToImport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "view.db")
	j := journal.NewMem()
	defer j.Close()
	_, err := sqlview.OpenView(context.Background(), path, j, sqlview.Options{Driver: "no-such-driver"})
	if !errors.Is(err, sqlview.ErrNoDriver) || !strings.Contains(err.Error(), "github.com/mattn/go-sqlite3") {
		t.Fatalf("OpenView without a driver: %v, want ErrNoDriver naming the import", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a view file was created without a driver: %v", err)
	}
	if err := sqlview.RebuildFile(context.Background(), path, j, sqlview.Options{Driver: "no-such-driver"}); !errors.Is(err, sqlview.ErrNoDriver) {
		t.Fatalf("RebuildFile without a driver: %v, want ErrNoDriver", err)
	}
}

// TestThePackageNeedsNoCgo: the view speaks database/sql only; the SQLite
// driver (cgo) is the program's choice.
func TestThePackageNeedsNoCgo(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "go-sqlite3") {
		t.Fatal("package sqlview depends on github.com/mattn/go-sqlite3; it must use database/sql only")
	}
}

// TestEveryConnectionGetsTheViewsPragmas: the pragmas the view relies on
// (WAL, a 64 MiB checkpoint interval, the busy timeout) are set on each
// connection by the view's connector, whatever the driver's DSN syntax.
func TestEveryConnectionGetsTheViewsPragmas(t *testing.T) {
	db, err := sqlview.OpenViewDB(filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(2)
	ctx := context.Background()
	// Two connections at once, so both went through the connector.
	c1, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c2, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	for i, c := range []*sql.Conn{c1, c2} {
		for pragma, want := range map[string]string{"journal_mode": "wal", "wal_autocheckpoint": "16384", "busy_timeout": "5000", "synchronous": "1", "cache_size": "-4096"} {
			var got string
			if err := c.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&got); err != nil || got != want {
				t.Errorf("connection %d: PRAGMA %s = %q (%v), want %q", i, pragma, got, err, want)
			}
		}
	}
}
