package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
)

// The package layout of docs/ARCHITECTURE.md, held against the code: which
// project packages each package may import, and the size limits that keep
// every file and function readable in one sitting.

const module = "github.com/spa-gateway/gateway"

// allowedImports is, for each package of the project, the project packages
// it may import (tests aside); a package missing from it fails the test, so
// that a new package is placed on purpose. The arrows only point down:
// cmd → proxy → auth → sessionstore, with metrics and the test-support
// packages beside them.
var allowedImports = map[string][]string{
	"cmd/gateway": {"auth", "client", "metrics", "proxy", "sessionstore", "sessionstore/boltstore", "sessionstore/redisstore"},
	"cmd/bench":   {"auth", "sessionstore", "sessionstore/boltstore"},
	"proxy":       {"auth", "metrics"},
	"auth":        {"sessionstore"},
	"metrics":     {},
	"adversarial": {}, // tests only (its one file is the package doc)
	"client":      {},

	"sessionstore":                      {},
	"sessionstore/boltstore":            {"sessionstore"},
	"sessionstore/redisstore":           {"sessionstore"},
	"sessionstore/storetest":            {"sessionstore"},
	"sessionstore/redisstore/redistest": {"proctest"},
	"proxy/fronttest":                   {"proctest"},
	"proxy/upstreamtest":                {},
	"auth/authtest":                     {},
	"auth/oidctest":                     {"proctest"},
	"logtest":                           {},
	"proctest":                          {"logtest"},
}

// listedPackage is what go list -json says of a package that these tests
// read.
type listedPackage struct {
	ImportPath string
	Dir        string
	GoFiles    []string // non-test files
	Imports    []string // of the non-test files
}

// goList is go list -json of every package of the module, run once for
// all the tests that read it.
func goList(t *testing.T) []listedPackage {
	t.Helper()
	pkgs, err := listPackages()
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

var listPackages = sync.OnceValues(func() ([]listedPackage, error) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(goBin, "list", "-json", "./...")
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w", err)
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p listedPackage
		if err := dec.Decode(&p); err != nil {
			return nil, fmt.Errorf("go list: %w", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs, nil
})

// TestPackageArrows holds every package's imports of the project against
// allowedImports.
func TestPackageArrows(t *testing.T) {
	for _, p := range goList(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		allowed, known := allowedImports[rel]
		if !known {
			t.Errorf("package %s is not in the layout (allowedImports, docs/ARCHITECTURE.md)", rel)
			continue
		}
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module+"/") {
				continue
			}
			dep := strings.TrimPrefix(imp, module+"/")
			if !slices.Contains(allowed, dep) {
				t.Errorf("%s imports %s, which the layout does not allow", rel, dep)
			}
		}
	}
}

// TestAuthOwnsTheSessionRules: the session rules live in auth, so auth
// reaches the store and proxy does not.
func TestAuthOwnsTheSessionRules(t *testing.T) {
	imports := map[string][]string{}
	for _, p := range goList(t) {
		imports[strings.TrimPrefix(p.ImportPath, module+"/")] = p.Imports
	}
	if !slices.Contains(imports["auth"], module+"/sessionstore") {
		t.Errorf("auth does not import sessionstore: the session rules should live in auth")
	}
	for _, imp := range imports["proxy"] {
		if strings.HasPrefix(imp, module+"/sessionstore") {
			t.Errorf("proxy imports %s: the HTTP layer must reach sessions through auth", imp)
		}
	}
}

// TestSizes: no non-test Go file over 600 lines, no function over 80.
func TestSizes(t *testing.T) {
	const maxFile, maxFunc = 600, 80
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range goList(t) {
		for _, f := range p.GoFiles {
			name := filepath.Join(p.Dir, f)
			fset := token.NewFileSet()
			file, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			rel, err := filepath.Rel(root, name)
			if err != nil {
				t.Fatal(err)
			}
			if n := fset.File(file.Pos()).LineCount(); n > maxFile {
				t.Errorf("%s has %d lines, want at most %d", rel, n, maxFile)
			}
			ast.Inspect(file, func(n ast.Node) bool {
				var body *ast.BlockStmt
				what := "a function literal"
				switch fn := n.(type) {
				case *ast.FuncDecl:
					body, what = fn.Body, fn.Name.Name
				case *ast.FuncLit:
					body = fn.Body
				}
				if body != nil {
					start, end := fset.Position(n.Pos()).Line, fset.Position(body.End()).Line
					if lines := end - start + 1; lines > maxFunc {
						t.Errorf("%s:%d: %s has %d lines, want at most %d", rel, start, what, lines, maxFunc)
					}
				}
				return true
			})
		}
	}
}
