package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/metrics"
)

// New builds the gateway's handler. It returns an error for a Config that
// Validate would have refused (a route without upstream, a claim header
// outside the identity prefix).
func New(cfg Config, deps Deps) (*Gateway, error) {
	if deps.Verifier == nil || deps.Keys == nil || deps.Sessions == nil || deps.Metrics == nil {
		return nil, errors.New("proxy: Verifier, Keys, Sessions and Metrics are required")
	}
	if cfg.IdentityPrefix == "" {
		cfg.IdentityPrefix = "X-Auth-"
	}
	if cfg.Delivery == "" {
		cfg.Delivery = DeliveryBearer // the handlers compare with it
	}
	if deps.OIDC != nil && cfg.Delivery == DeliveryBearer {
		return nil, errOIDCBearer
	}
	if cfg.CookieName == "" {
		cfg.CookieName = "__Host-gateway"
	}
	if cfg.MaxAuthBodyBytes == 0 {
		cfg.MaxAuthBodyBytes = 64 << 10
	}
	if cfg.AuthBodyTimeout == 0 {
		cfg.AuthBodyTimeout = 10 * time.Second
	}
	g := &Gateway{
		cfg:     cfg,
		deps:    deps,
		now:     deps.Now,
		log:     deps.Logger,
		m:       deps.Metrics,
		prefix:  strings.ToLower(strings.ReplaceAll(cfg.IdentityPrefix, "_", "-")),
		origins: make(map[string]bool),
		buffers: &bufferPool{},
		tunnels: &tunnels{},
	}
	if deps.Tunnels != nil {
		g.tunnels = &deps.Tunnels.reg
	}
	if g.now == nil {
		g.now = time.Now
	}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if err := g.prepareDPoP(); err != nil {
		return nil, err
	}
	for _, o := range cfg.AllowedOrigins {
		g.origins[strings.ToLower(o)] = true
	}
	for h, c := range cfg.Claims {
		if !isIdentityHeader(h, g.prefix) {
			return nil, fmt.Errorf("proxy: claim header %q is not under the identity prefix %q", h, cfg.IdentityPrefix)
		}
		g.claims = append(g.claims, claimHeader{header: http.CanonicalHeaderKey(h), claim: c})
	}
	if err := g.routes(); err != nil {
		return nil, err
	}
	// Forward-auth (verify.go), among the own endpoints; here rather than
	// in routes, which verify.go's path checks use.
	g.own[verifyPath] = http.HandlerFunc(g.handleVerify)
	return g, nil
}

// ServeHTTP checks the path, then serves the gateway's own endpoint or the
// matching route.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := requestID(r.Header)
	w.Header().Set(HeaderRequestID, id)
	sw := &statusWriter{ResponseWriter: w, g: g, id: id}
	label := metrics.RouteUnmatched
	defer func() {
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		d := time.Since(start)
		g.m.HTTPRequests.WithLabelValues(label, statusText(sw.status)).Inc()
		g.m.HTTPRequestDuration.WithLabelValues(label).Observe(d.Seconds())
		g.accessLog(r, sw, label, id, d)
	}()

	path, reason := checkPath(r.URL.EscapedPath(), g.cfg.AllowEncodedSlash)
	if reason == "" {
		reason = checkRedecoded(g.table, g.own, path)
	}
	if reason != "" {
		writeError(sw, http.StatusBadRequest, errInvalidRequest, reason)
		return
	}
	if h := ownHandler(g.own, path); h != nil {
		label = metrics.RouteAuth
		if strings.HasPrefix(path, "/auth/") && path != verifyPath && g.serveCORS(sw, r) {
			return // a preflight of /auth/
		}
		h.ServeHTTP(sw, r)
		return
	}
	rt := match(g.table, path)
	if rt == nil {
		writeError(sw, http.StatusNotFound, errNotFound, "no route for this path")
		return
	}
	label = rt.Prefix
	if rt.CORS && g.serveCORS(sw, r) {
		return // a preflight: never forwarded (cors.go)
	}
	g.serveRoute(sw, r, rt)
}

func (g *Gateway) serveRoute(w *statusWriter, r *http.Request, rt *route) {
	if g.spoofRefused(w, r, rt) {
		return
	}
	upgrade := false
	if up := r.Header.Get("Upgrade"); up != "" {
		upgrade = rt.WebSocket && strings.EqualFold(up, "websocket")
		if !upgrade {
			// Never forwarded: without an Upgrade header ReverseProxy treats
			// the request as a plain one (h2c smuggling, RFC 7230 upgrades).
			r.Header.Del("Upgrade")
		}
	}

	fw := &forward{route: rt}
	var live auth.Liveness // the session, where authorize read it
	if rt.Auth == AuthNone {
		// Not verified here, but a bearer token is still never handed to an
		// upstream unless forward_token says so: a public route's backend
		// has no business holding the user's credential.
		for _, a := range r.Header["Authorization"] {
			if _, scheme := authorization(a); scheme != schemeNone {
				fw.scheme = scheme
			}
		}
	} else {
		tok, l, scheme, err := g.authorizeWith(w, r, rt.issuers, upgrade)
		fw.scheme = scheme
		if errors.Is(err, errTokenMissing) && rt.Auth == AuthOptional && len(rt.RequireRoles) == 0 {
			err = nil // anonymous
		} else if err == nil {
			w.subject = tok.Subject
			if !rt.allowed(tok.Roles) {
				err = errRoleRequired
			}
		}
		if err != nil {
			if p := g.fail(w, scheme, err); p.validation != "" {
				g.m.TokenValidations.WithLabelValues(p.validation).Inc()
			}
			return
		}
		fw.token, live = tok, l
	}
	if upgrade {
		g.serveTunnel(w, r, fw, live)
		return
	}
	rt.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), forwardKey{}, fw)))
}

// authorize reads and verifies the token of a proxied request
// (requestToken: signature and claims first, then the cookie's CSRF rule,
// and the origin rule on an upgrade, then the token's binding), and under
// every_request checks its session (live: zero under refresh, where it is
// not read). A valid token is counted; an error is for fail, and counted by
// the caller.
func (g *Gateway) authorize(w http.ResponseWriter, r *http.Request, upgrade bool) (
	tok *auth.Token, live auth.Liveness, scheme authScheme, err error) {
	return g.authorizeWith(w, r, nil, upgrade)
}

// authorizeWith is authorize with the route's issuers (nil: the gateway's
// own tokens only, with Deps.Verifier).
func (g *Gateway) authorizeWith(w http.ResponseWriter, r *http.Request, issuers *auth.Issuers, upgrade bool) (
	tok *auth.Token, live auth.Liveness, scheme authScheme, err error) {
	tok, scheme, err = g.requestToken(w, r, tokenCheck{verifyFirst: true, upgrade: upgrade, issuers: issuers})
	if err != nil {
		return nil, live, scheme, err
	}
	// An external token names no session of ours: there is nothing to
	// revoke it in, so every_request does not apply to it.
	if g.cfg.Revocation == RevocationEveryRequest && tok.External == "" {
		if live, err = g.deps.Sessions.Check(r.Context(), tok.SessionID); err != nil {
			g.endedWith(tok.SessionID, err)
			return nil, live, scheme, err
		}
	}
	g.m.TokenValidations.WithLabelValues(metrics.ValidationValid).Inc()
	return tok, live, scheme, nil
}
