package main

import (
	"database/sql"
	"github.com/proxyhealth/proxyhealth"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRebuild(t *testing.T) {
	td := makeData(t)
	view := filepath.Join(td.dir, proxyhealth.SQLiteViewFile)
	writeFile(t, td.dir, proxyhealth.SQLiteViewFile, "garbage: not a SQLite file")
	r := runBin(t, "rebuild", "--data", td.dir)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "rebuilt "+view+" from ") {
		t.Fatalf("rebuild: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r.stderr != "" {
		t.Errorf("progress bar drawn without a terminal: %q", r.stderr)
	}
	db, err := sql.Open("sqlite3", "file:"+view+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n, unhealthy int
	if err := db.QueryRow("SELECT COUNT(*), SUM(state = 'unhealthy') FROM proxies").Scan(&n, &unhealthy); err != nil {
		t.Fatal(err)
	}
	if n != 3 || unhealthy != 1 {
		t.Errorf("view.db has %d proxies, %d unhealthy; want 3, 1", n, unhealthy)
	}
	if _, err := os.Stat(view + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("the temporary file is left: %v", err)
	}
	if r := runBin(t, "rebuild", "--data", t.TempDir()); r.code != 1 || !strings.Contains(r.stderr, "no journal at") {
		t.Errorf("rebuild without a journal: %d %q", r.code, r.stderr)
	}
}

func TestProgressBar(t *testing.T) {
	var b strings.Builder
	p := newProgress(&b, true)
	p.update(0, 10)
	p.update(10, 10)
	p.done()
	if !strings.Contains(b.String(), "100.0%") || !strings.HasSuffix(b.String(), "\n") {
		t.Errorf("progress output %q", b.String())
	}
}
