// Package proxy is the gateway's main listener: it checks the path, matches a
// route, verifies the token, cleans the headers and forwards the request
// through an httputil.ReverseProxy; and it serves the gateway's own
// endpoints (/auth/login, /auth/refresh, /auth/logout, the JWKS).
//
// proxy speaks HTTP only: the tokens, the login sources and the session
// rules are package auth's (auth.Sessions), and every error a handler meets
// becomes its answer in one place, problemFor (errors.go).
//
// Each file uses only the files after it in this list, besides the types of
// gateway.go and routes.go: gateway.go (Config, Deps, ServeHTTP, the proxied
// request's checks), routes.go (the whole surface: the gateway's own
// endpoints beside the route table, and how a path picks one), endpoints.go
// (the handlers of /auth/login, /auth/refresh, /auth/logout and the JWKS),
// tunnels.go (upgraded connections and their sessions), credentials.go (the
// request's token, the CSRF and origin rules), upstream.go (the ReverseProxy
// and its hooks), observe.go (the access log, the events, the status
// writer), path.go (the path checks), headers.go (the request and response
// header rules), cookie.go (the token cookie's names as backends read them),
// errors.go (the answers).
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/metrics"
)

// Config is the behaviour of the main listener. Its zero value is not useful:
// Routes and the token settings are required.
type Config struct {
	Routes []Route
	// AllowEncodedSlash forwards "%2F" in paths as is; false answers 400.
	AllowEncodedSlash bool
	// TrustedProxies are the peers whose Forwarded, X-Real-IP and
	// X-Forwarded-* headers are kept and extended, and whose
	// X-Forwarded-Proto and X-Forwarded-Host name the request's own origin
	// for the cookie's Origin check. Nil trusts none.
	TrustedProxies []netip.Prefix

	// IdentityPrefix: every client header under it is removed before
	// forwarding ("X-Auth-" if empty).
	IdentityPrefix string
	// OnSpoof is what a request carrying such a header gets: SpoofStrip
	// (the zero value) removes the headers, SpoofReject answers 400.
	OnSpoof SpoofAction
	// ForwardToken keeps the Authorization header and the token cookie
	// toward the upstream.
	ForwardToken bool
	// Claims maps a header to inject to the claim it is taken from. Every
	// header must be under IdentityPrefix.
	Claims map[string]string

	// Delivery is how tokens travel; the zero value means DeliveryBearer.
	Delivery   Delivery
	CookieName string
	// AllowedOrigins are the origins, besides the request's own, allowed to
	// make state-changing requests with the cookie, and to log in where
	// Delivery sets it. "null" is never allowed, even if listed.
	AllowedOrigins []string
	// Revocation is when a token's session is checked in the store:
	// RevocationEveryRequest checks it on each proxied request, not only at
	// refresh (the zero value, RevocationRefresh).
	Revocation Revocation

	// MaxAuthBodyBytes bounds the body of /auth/ requests; zero means 64 KiB.
	// A larger body, declared or sent, is answered 413.
	MaxAuthBodyBytes int64
	// AuthBodyTimeout bounds the time to receive the body of /auth/login;
	// past it the answer is 408. Zero means 10s.
	AuthBodyTimeout time.Duration
}

// Deps are the parts the gateway works with. Verifier, Keys, Sessions and
// Metrics are required; Login may be nil (then /auth/login answers 404).
type Deps struct {
	Verifier *auth.Verifier
	// Keys serve the JWKS.
	Keys *auth.KeySet
	// Sessions applies the session rules of login, refresh, logout, the
	// every_request check and the WebSocket checks.
	Sessions *auth.Sessions
	Login    auth.Authenticator
	// Limiter limits login attempts, each counted before its password is
	// checked; nil means no limit.
	Limiter *auth.FailureLimiter
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	// Now is the clock of the tunnels' deadlines; nil means time.Now. The
	// session rules take theirs from Sessions.
	Now func() time.Time
	// Transport reaches the upstreams; nil means a new tuned transport per
	// route (see NewTransport).
	Transport http.RoundTripper
}

// Gateway is the main listener's handler.
type Gateway struct {
	cfg     Config
	deps    Deps
	now     func() time.Time
	log     *slog.Logger
	m       *metrics.Metrics
	own     map[string]http.Handler // the gateway's own endpoints (routes)
	table   []*route                // the routes, longest prefix first (routes)
	prefix  string                  // identity prefix, lower case, '-' for '_'
	claims  []claimHeader
	origins map[string]bool
	buffers *bufferPool
	tunnels tunnels // the open upgraded connections (tunnels.go)
}

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
	}
	if g.now == nil {
		g.now = time.Now
	}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
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
	if h := g.own[path]; h != nil {
		label = metrics.RouteAuth
		h.ServeHTTP(sw, r)
		return
	}
	rt := match(g.table, path)
	if rt == nil {
		writeError(sw, http.StatusNotFound, errNotFound, "no route for this path")
		return
	}
	label = rt.Prefix
	g.serveRoute(sw, r, rt)
}

func (g *Gateway) serveRoute(w *statusWriter, r *http.Request, rt *route) {
	if hasIdentityHeader(r.Header, g.prefix) {
		g.m.SpoofedHeaders.WithLabelValues(rt.Prefix).Inc()
		action := "strip"
		if g.cfg.OnSpoof == SpoofReject {
			action = "reject"
		}
		g.log.Warn("spoofed identity header", "event", EventSpoofedHeader, "route", rt.Prefix,
			"client", clientIP(g.cfg.TrustedProxies, r), "request_id", r.Header.Get(HeaderRequestID), "action", action)
		if g.cfg.OnSpoof == SpoofReject {
			writeError(w, http.StatusBadRequest, errInvalidRequest, "identity header not allowed")
			return
		}
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
	if rt.Auth == AuthNone {
		// Not verified here, but a bearer token is still never handed to an
		// upstream unless forward_token says so: a public route's backend
		// has no business holding the user's credential.
		for _, a := range r.Header["Authorization"] {
			if _, ok := bearerToken(a); ok {
				fw.bearer = true
			}
		}
	} else {
		raw, fromCookie, bearer, bad := g.extractToken(r)
		fw.bearer = bearer
		if bad != "" {
			writeError(w, http.StatusBadRequest, errInvalidRequest, bad)
			return
		}
		switch {
		case raw == "" && rt.Auth == AuthOptional && len(rt.RequireRoles) == 0:
			// anonymous
		case raw == "":
			g.m.TokenValidations.WithLabelValues(g.fail(w, errTokenMissing).validation).Inc()
			return
		default:
			tok, ok := g.authorize(w, r, raw, fromCookie)
			if !ok {
				return
			}
			w.subject = tok.Subject
			if !rt.allowed(tok.Roles) {
				writeChallenge(w, http.StatusForbidden, errInsufficientScope, "role required")
				return
			}
			fw.token = tok
		}
	}
	if upgrade {
		g.serveTunnel(w, r, fw)
		return
	}
	rt.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), forwardKey{}, fw)))
}

// authorize verifies a token for a proxied request: signature and claims,
// the cookie's CSRF rule, and under every_request the session.
func (g *Gateway) authorize(w http.ResponseWriter, r *http.Request, raw string, fromCookie bool) (*auth.Token, bool) {
	tok, err := g.deps.Verifier.Verify(raw)
	if err != nil {
		g.m.TokenValidations.WithLabelValues(g.fail(w, err).validation).Inc()
		return nil, false
	}
	if fromCookie && !safeMethod(r.Method) {
		if reason := g.csrfCheck(r); reason != "" {
			writeError(w, http.StatusForbidden, errForbidden, reason)
			return nil, false
		}
	} else if fromCookie && r.Header.Get("Upgrade") != "" {
		// A WebSocket handshake is a GET, and the browser's WebSocket API
		// cannot set X-Requested-With; but browsers always send Origin on
		// it. A cookie-authenticated upgrade from another origin is
		// cross-site WebSocket hijacking: refused as any other CSRF
		// (adversarial TestAttacks/headers, "cookie WebSocket upgrade from a
		// foreign Origin").
		if reason := g.originCheck(r); reason != "" {
			writeError(w, http.StatusForbidden, errForbidden, reason)
			return nil, false
		}
	}
	if g.cfg.Revocation == RevocationEveryRequest {
		if _, err := g.deps.Sessions.Check(r.Context(), tok.SessionID); err != nil {
			if reason := auth.EndReason(err); reason != "" {
				g.EndSession(tok.SessionID, reason)
			}
			if p := g.fail(w, err); p.validation != "" {
				g.m.TokenValidations.WithLabelValues(p.validation).Inc()
			}
			return nil, false
		}
	}
	g.m.TokenValidations.WithLabelValues(metrics.ValidationValid).Inc()
	return tok, true
}
