package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version is the gateway's version, set at build time with
// -ldflags "-X main.version=v1.2.3". "dev" means not set: the module
// version from the build info is used when there is one (a go install of
// a tagged module, or a go build in a git checkout, which Go stamps with a
// pseudo-version such as v0.0.0-20260101120000-abcdef123456).
var version = "dev"

// buildVersion describes the running binary: its version (see version),
// the Go version it was built with, and, for a build from a VCS checkout,
// the revision and whether the tree had uncommitted changes. revision is
// empty when the build recorded none (go test, -buildvcs=false).
type buildVersion struct {
	version, goVersion, revision string
	modified                     bool
}

// readBuildVersion reads the build info the Go toolchain embedded.
func readBuildVersion() buildVersion {
	b := buildVersion{version: version, goVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	b.goVersion = bi.GoVersion
	if b.version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		b.version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.revision = s.Value
		case "vcs.modified":
			b.modified = s.Value == "true"
		}
	}
	return b
}

// String is "gateway VERSION (GOVERSION, OS/ARCH[, revision REV[, modified]])".
func (b buildVersion) String() string {
	s := fmt.Sprintf("gateway %s (%s, %s/%s", b.version, b.goVersion, runtime.GOOS, runtime.GOARCH)
	if b.revision != "" {
		s += ", revision " + b.revision
		if b.modified {
			s += ", modified"
		}
	}
	return s + ")"
}

// versionString is readBuildVersion's String.
func versionString() string { return readBuildVersion().String() }

func versionCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", "version", "Prints the gateway's version and the Go version it was built with\n"+
		"(also: gateway --version).", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, versionString())
	return nil
}
