package fronttest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/spa-gateway/gateway/proctest"
)

// Caddy is one caddy process started by StartCaddy.
type Caddy struct {
	// Addr is caddy's 127.0.0.1:port.
	Addr string
	// Config is the Caddyfile it runs, for error messages.
	Config string

	proc *proctest.Proc
}

// Log is what caddy wrote so far, for a failing test's message.
func (c *Caddy) Log() string { return c.proc.Log() }

// StartCaddy starts caddy on a free loopback port with the Caddyfile that
// config returns for that address (such as deploy/caddy/Caddyfile with its
// site address replaced), its data and configuration directories inside a
// temporary one. It waits until caddy accepts connections and stops it
// when tb ends. It skips tb when caddy is missing, or fails it when CI is
// "true". It sets environment variables, so tb must not be parallel.
func StartCaddy(tb testing.TB, config func(listen string) string) *Caddy {
	tb.Helper()
	bin := proctest.Need(tb, "caddy", "apt-get install caddy")
	dir := tb.TempDir()
	// Caddy writes its autosaved configuration and its certificates'
	// storage under these; nothing of the user's.
	tb.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	tb.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	c := &Caddy{}
	file := filepath.Join(dir, "Caddyfile")
	args := func(addr string) []string {
		c.Config = config(addr)
		if err := os.WriteFile(file, []byte(c.Config), 0o600); err != nil {
			tb.Fatal(err)
		}
		return []string{"run", "--config", file, "--adapter", "caddyfile"}
	}
	p, err := proctest.Start(bin, args, accepts)
	if err != nil {
		tb.Fatalf("start caddy: %v", err)
	}
	tb.Cleanup(p.Kill)
	c.proc, c.Addr = p, p.Addr
	return c
}
