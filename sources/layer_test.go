package sources

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestLowLayer: the package imports probe and the standard library only
// (non-test files), as ARCHITECTURE.md's table says.
func TestLowLayer(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			first, _, _ := strings.Cut(p, "/")
			if p != "github.com/proxyhealth/proxyhealth/probe" && strings.Contains(first, ".") {
				t.Errorf("%s imports %s; sources may import only probe and the standard library", f, p)
			}
		}
	}
}
