package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoadConfig writes whatever TOML the fuzzer makes to a file and loads
// it: LoadConfig and Validate never panic, and every problem they report is
// a *ConfigError (what the CLI maps to exit code 2), with a message.
func FuzzLoadConfig(f *testing.F) {
	example, err := os.ReadFile(exampleFile)
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		string(example),
		minimalTOML,
		minimalTOML + "[server]\nmax_header_bytes = -1\n",
		minimalTOML + "[login]\nmax_body_bytes = \"big\"\nbody_timeout = 5\n",
		minimalTOML + "[[route]]\nprefix = \"/x/\"\nupstream = \"http://h\"\nmax_in_flight = -3\ntimeout = \"soon\"\n",
		"[tokens]\nleeway = \"1h\"\nalgorithm = \"none\"\n",
		"route = 5\n",
		"[[route]]\n[[route]]\nprefix = 1\n",
		"[headers.claims]\n\"X-Auth-\\u0000\" = \"sub\"\n",
		"[login.roles]\nalice = [\"a,b\", 1]\n",
		"server = { listen = \":0\" }\n[server]\n",
		"a = \"\xff\"\n",
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		path := filepath.Join(t.TempDir(), "gateway.toml")
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfig(path)
		if err != nil {
			checkConfigErrors(t, "LoadConfig", err)
			return
		}
		if err := c.Validate(); err != nil {
			checkConfigErrors(t, "Validate", err)
		}
	})
}

// checkConfigErrors requires every leaf of a (possibly joined) error to be a
// *ConfigError with a message.
func checkConfigErrors(t *testing.T, call string, err error) {
	t.Helper()
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			checkConfigErrors(t, call, e)
		}
		return
	}
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("%s error %T %q is not a *ConfigError", call, err, err)
	}
	if strings.TrimSpace(err.Error()) == "" {
		t.Fatalf("%s error %#v has no message", call, err)
	}
}
