package proxyhealth_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go/parser"
	"go/token"
)

const module = "github.com/proxyhealth/proxyhealth"

// moduleImports returns the packages of this module that the non-test Go
// files of dir import.
func moduleImports(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
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
			if p == module || strings.HasPrefix(p, module+"/") {
				seen[p] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// TestTheFacadeIsTheOneDoor: the daemon, the CLI, the HTTP API and the
// examples use the engine through the root package only (plus the event
// vocabulary in proto; the daemon also wires the API and, for the demo,
// the fake proxy farm). The transport and the rotating endpoint are below
// the door: they see the pool's types (rotation; the transport also the
// probe's SOCKS reply texts), and the root hands them out (NewTransport,
// NewEndpoint). Test files may use the layers below for fakes.
func TestTheFacadeIsTheOneDoor(t *testing.T) {
	proto := module + "/proto/proxyhealth/v1"
	allowed := map[string][]string{
		"cmd/proxyhealth":    {module, proto, module + "/httpapi", module + "/internal/fakeproxy"},
		"httpapi":            {module, proto},
		"examples/embed":     {module, proto},
		"examples/transport": {module},
		"examples/replay":    {module, proto},
		"examples/cluster":   {module, module + "/internal/etcdtest", module + "/internal/fakeproxy"},
		"membership":         {},
		// Below the door.
		"transport": {module + "/rotation", module + "/probe"},
		"endpoint":  {module + "/rotation", module + "/transport"},
	}
	for dir, ok := range allowed {
		for _, imp := range moduleImports(t, dir) {
			if !slices.Contains(ok, imp) {
				t.Errorf("%s imports %s; it may import only %v (the rest goes through the root package)", dir, imp, ok)
			}
		}
	}
}

// TestTheEngineNeedsNoCgo: the root package links no cgo (the SQLite view
// speaks database/sql; the program that keeps one registers the driver), so
// an embedding program builds with CGO_ENABLED=0.
func TestTheEngineNeedsNoCgo(t *testing.T) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(goBin, "list", "-deps", "-f", "{{.ImportPath}} {{len .CgoFiles}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		path, n, _ := strings.Cut(line, " ")
		if strings.Contains(path, "sqlite") || (n != "0" && path != "runtime/cgo" && !strings.HasPrefix(path, "net") && path != "os/user") {
			t.Errorf("the root package depends on %s (%s cgo files)", path, n)
		}
	}
	cmd := exec.Command(goBin, "build", "-o", os.DevNull, "./examples/embed")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build ./examples/embed: %v\n%s", err, out)
	}
}
