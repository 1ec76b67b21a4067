package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spa-gateway/gateway/auth"
)

// What check-config says about a configuration that is valid but will not
// do what its author probably expects: login switched off by omission, an
// upstream nobody answers at, a users file whose bcrypt costs differ. None
// of these is an error (an upstream may start after the gateway; a
// verify-only gateway is a real deployment), so they are printed after
// "ok" and the exit code stays 0.

// dialTimeout bounds check-config's probe of each upstream: long enough
// for a host on the same network, short enough to keep check-config quick.
const dialTimeout = time.Second

// configNotes returns check-config's notes on cfg, a configuration that
// loaded and validated, one line each, in a stable order. dial probes an
// upstream's host:port (net.Dialer's DialContext in check-config).
func configNotes(ctx context.Context, cfg Config, dial func(ctx context.Context, network, addr string) (net.Conn, error)) []string {
	var notes []string
	l := cfg.Login
	if l.UsersFile == "" && l.Upstream == "" && l.OIDC.Issuer == "" {
		notes = append(notes, "note: login is disabled (none of login.users_file, login.upstream, login.oidc is set): "+
			"the gateway mints no tokens, /auth/login is routed like any other path, and only tokens "+
			"signed with tokens.key_file elsewhere are accepted")
	}
	if l.UsersFile != "" {
		if users, err := auth.LoadUsersFile(l.UsersFile, nil); err == nil {
			if n := mixedCosts(users.Costs()); n != "" {
				notes = append(notes, fmt.Sprintf("warning: login.users_file %s mixes bcrypt costs (%s): "+
					"logins of some users take longer than others', and unknown users (checked at the most "+
					"common cost) can be told apart; hash every password at one cost (htpasswd -B -C 12, "+
					"or gateway hash-password NAME)", l.UsersFile, n))
			}
		}
	}
	return append(notes, upstreamNotes(ctx, cfg, dial)...)
}

// mixedCosts is "10: 1 user, 12: 3 users" for costs with more than one
// entry, or "".
func mixedCosts(costs map[int]int) string {
	if len(costs) < 2 {
		return ""
	}
	var parts []string
	for _, c := range slices.Sorted(func(yield func(int) bool) {
		for c := range costs {
			if !yield(c) {
				return
			}
		}
	}) {
		unit := "users"
		if costs[c] == 1 {
			unit = "user"
		}
		parts = append(parts, fmt.Sprintf("%d: %d %s", c, costs[c], unit))
	}
	return strings.Join(parts, ", ")
}

// upstreamNotes dials every upstream the configuration names (routes and
// login.upstream), at once, and notes those that do not accept a
// connection within dialTimeout.
func upstreamNotes(ctx context.Context, cfg Config, dial func(ctx context.Context, network, addr string) (net.Conn, error)) []string {
	type target struct{ key, url string }
	var targets []target
	for i, r := range cfg.Route {
		targets = append(targets, target{fmt.Sprintf("route[%d] (prefix %q): upstream", i, r.Prefix), r.Upstream})
	}
	if cfg.Login.Upstream != "" {
		targets = append(targets, target{"login.upstream", cfg.Login.Upstream})
	}
	notes := make([]string, len(targets))
	var wg sync.WaitGroup
	for i, tg := range targets {
		addr, ok := dialAddr(tg.url)
		if !ok {
			continue
		}
		wg.Go(func() {
			dctx, cancel := context.WithTimeout(ctx, dialTimeout)
			defer cancel()
			c, err := dial(dctx, "tcp", addr)
			if err != nil {
				notes[i] = fmt.Sprintf("note: %s %s is not answering (%v): requests to it will get 502 "+
					"until it does", tg.key, tg.url, err)
				return
			}
			c.Close()
		})
	}
	wg.Wait()
	return slices.DeleteFunc(notes, func(s string) bool { return s == "" })
}

// dialAddr is the host:port an http(s) URL connects to.
func dialAddr(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		return "", false
	}
	port := u.Port()
	switch {
	case port != "":
	case u.Scheme == "https":
		port = "443"
	case u.Scheme == "http":
		port = "80"
	default:
		return "", false
	}
	return net.JoinHostPort(u.Hostname(), port), true
}
