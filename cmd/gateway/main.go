// Command gateway is a JWT authentication gateway: a reverse proxy in front of
// legacy backends that logs users in, mints short-lived access tokens naming
// server-side sessions, verifies them on every request and injects identity
// headers. Run "gateway help" for its commands; gateway.example.toml at the
// repository root documents its configuration.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
