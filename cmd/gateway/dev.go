package main

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/client"
	"github.com/spa-gateway/gateway/proxy"
	"github.com/spa-gateway/gateway/sessionstore"
)

// devConfig is the configuration of serve --dev: the defaults, a store in a
// new temporary directory (the caller removes it), one-minute tokens (or
// accessTTL, when not zero, with no refresh grace) in both the body and a
// cookie, text logs, and the admin API on with a new token in the same
// directory (dir/admin-token, mode 0600), for gateway sessions to try.
func devConfig(accessTTL time.Duration) (Config, error) {
	cfg := Default()
	dir, err := os.MkdirTemp("", "gateway-dev-")
	if err != nil {
		return cfg, err
	}
	cfg.Store.Path = filepath.Join(dir, "gateway.db")
	cfg.Admin.TokenFile = filepath.Join(dir, "admin-token")
	if err := writeSecretFile(cfg.Admin.TokenFile, []byte(rand.Text()+"\n"), false); err != nil {
		os.RemoveAll(dir)
		return cfg, fmt.Errorf("dev admin token: %w", err)
	}
	cfg.Tokens.Delivery = proxy.DeliveryBoth
	// A one-minute token, so that trying a refresh takes a minute, not 15.
	cfg.Tokens.AccessTTL = Duration(time.Minute)
	if accessTTL > 0 {
		// --dev-access-ttl, for tests: the browser tests use two seconds.
		// No refresh grace, so that any second use of a rotated token is
		// reuse: two tabs refreshing one token would show at once.
		cfg.Tokens.AccessTTL = Duration(accessTTL)
		cfg.Tokens.RefreshGrace = 0
	}
	cfg.Log.Format = "text"
	return cfg, nil
}

// demoFiles is the demo page of --dev. The client module it uses is
// client.Module, the file published to npm.
//
//go:embed demo/index.html demo/demo.js demo/demo.css
var demoFiles embed.FS

// devHandler serves the demo page at "/" and its files under "/client/",
// and everything else with the gateway. Only these exact paths are taken:
// the gateway keeps its own path checks for everything else.
func devHandler(gw http.Handler) (http.Handler, error) {
	type file struct {
		body        []byte
		contentType string
	}
	files := map[string]file{
		"/":                         {contentType: "text/html; charset=utf-8"},
		"/client/demo.js":           {contentType: "text/javascript; charset=utf-8"},
		"/client/demo.css":          {contentType: "text/css; charset=utf-8"},
		"/client/gateway-client.js": {client.Module, "text/javascript; charset=utf-8"},
	}
	for urlPath, name := range map[string]string{"/": "demo/index.html", "/client/demo.js": "demo/demo.js", "/client/demo.css": "demo/demo.css"} {
		b, err := demoFiles.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("dev demo page: %w", err)
		}
		files[urlPath] = file{b, files[urlPath].contentType}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := files[r.URL.Path]
		if !ok || r.URL.RawPath != "" || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
			gw.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", f.contentType)
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
		h.Set("Content-Length", strconv.Itoa(len(f.body)))
		if r.Method == http.MethodHead {
			return
		}
		w.Write(f.body)
	}), nil
}

// devUsers is the users file of --dev: demo / demo with the role "demo".
func devUsers() (*auth.UsersFile, error) {
	hash, err := auth.HashPassword([]byte("demo"))
	if err != nil {
		return nil, err
	}
	return auth.ParseUsers(strings.NewReader("demo:"+hash+"\n"), map[string][]string{"demo": {"demo"}})
}

// startEcho starts the --dev upstream on a free loopback port and returns the
// route to it.
func (m *Main) startEcho() ([]proxy.Route, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("dev echo upstream: %w", err)
	}
	m.echo = &http.Server{Handler: http.HandlerFunc(echo), ReadHeaderTimeout: 10 * time.Second}
	go m.echo.Serve(ln)
	u := &url.URL{Scheme: "http", Host: ln.Addr().String()}
	return []proxy.Route{{Prefix: "/api/", Upstream: u, Auth: proxy.AuthRequired}}, nil
}

// echo answers with the request it received, headers sorted, so that the
// injected identity is visible.
func echo(w http.ResponseWriter, r *http.Request) {
	names := make([]string, 0, len(r.Header))
	for k := range r.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	headers := make(map[string]string, len(names))
	for _, k := range names {
		headers[k] = strings.Join(r.Header.Values(k), ", ")
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(map[string]any{
		"method":  r.Method,
		"path":    r.URL.Path,
		"query":   r.URL.RawQuery,
		"headers": headers,
	})
}

// printDevTour creates a session for demo and prints a ready token and the
// curl lines to try the gateway. Printing a token is acceptable only here:
// the key is ephemeral and dies with the process.
func (m *Main) printDevTour(ctx context.Context, w io.Writer) error {
	now := m.now()
	t := m.cfg.Tokens
	s := sessionstore.Session{
		ID: rand.Text(), Subject: "demo", Roles: []string{"demo"}, JTI: rand.Text(),
		IssuedAt: now, CreatedAt: now, RefreshedAt: now,
		IdleExpiresAt: now.Add(time.Duration(t.IdleTimeout)), ExpiresAt: now.Add(time.Duration(t.AbsoluteTimeout)),
	}
	if err := m.store.Create(ctx, s); err != nil {
		return fmt.Errorf("dev session: %w", err)
	}
	tok, err := m.minter.Mint(auth.MintClaims{Subject: s.Subject, SessionID: s.ID, ID: s.JTI, Roles: s.Roles,
		IssuedAt: now, ExpiresAt: now.Add(time.Duration(t.AccessTTL))})
	if err != nil {
		return err
	}
	base := "http://" + m.MainAddr()
	fmt.Fprintf(w, `gateway (dev mode) on %[1]s, admin on http://%[2]s
  an ephemeral %[3]s key; sessions in %[4]s (removed at exit); user demo / password demo

  open %[1]s/ in a browser for the demo page (log in as demo / demo)

  TOKEN=%[5]s

  # call the echo upstream: it answers with the headers it received (X-Auth-Subject: demo)
  curl -s %[1]s/api/hello -H "Authorization: Bearer $TOKEN"
  # without a token: 401
  curl -si %[1]s/api/hello
  # log in
  curl -s %[1]s/auth/login -H 'Content-Type: application/json' -d '{"username":"demo","password":"demo"}'
  # after the token expires (%[6]s): exchange it once for a new one
  curl -s -X POST %[1]s/auth/refresh -H "Authorization: Bearer $TOKEN"
  # log out
  curl -si -X POST %[1]s/auth/logout -H "Authorization: Bearer $TOKEN"
  # the counters on the admin listener
  curl -s http://%[2]s/metrics | grep -E '^gateway_(logins|refreshes)_total'
  # demo's sessions through the admin API, whose token --dev wrote (from a checkout: go run ./cmd/gateway sessions ...)
  gateway sessions list --subject demo --admin http://%[2]s --token-file %[7]s
`, base, m.AdminAddr(), t.Algorithm, filepath.Dir(m.cfg.Store.Path), tok, t.AccessTTL, m.cfg.Admin.TokenFile)
	return nil
}
