// Package proxy is the gateway's main listener: it checks the path, matches a
// route, verifies the token, cleans the headers and forwards the request
// through an httputil.ReverseProxy; and it serves the gateway's own
// endpoints (/auth/login, /auth/refresh, /auth/logout, the JWKS).
//
// proxy knows the session store only through sessionstore.Store, and the
// keys only through package auth.
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
	"github.com/spa-gateway/gateway/sessionstore"
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

	AccessTTL           time.Duration
	IdleTimeout         time.Duration
	AbsoluteTimeout     time.Duration
	RefreshGrace        time.Duration
	RefreshBeforeExpiry time.Duration

	// MaxAuthBodyBytes bounds the body of /auth/ requests; zero means 64 KiB.
	// A larger body, declared or sent, is answered 413.
	MaxAuthBodyBytes int64
	// AuthBodyTimeout bounds the time to receive the body of /auth/login;
	// past it the answer is 408. Zero means 10s.
	AuthBodyTimeout time.Duration

	// StoreTimeout bounds each session store write of login, refresh and
	// logout (store.write_timeout): a write not done within it answers 503
	// and never applies afterwards (see sessionstore.Store). Zero means
	// only the request's own context bounds it.
	StoreTimeout time.Duration
	// MaxSessionsPerUser caps a user's live sessions
	// (login.max_sessions_per_user): the login past it revokes the user's
	// least recently refreshed sessions (reason session_limit). Zero means
	// no cap.
	MaxSessionsPerUser int
}

// Deps are the parts the gateway works with. Verifier, Minter, KeySet and
// Store are required; Login may be nil (then /auth/login answers 404).
type Deps struct {
	Verifier *auth.Verifier
	Minter   *auth.Minter
	Keys     *auth.KeySet
	Store    sessionstore.Store
	Login    auth.Authenticator
	// Limiter limits login attempts, each counted before its password is
	// checked; nil means no limit.
	Limiter *auth.FailureLimiter
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	// Now is the clock of every time rule; nil means time.Now.
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
	routes  []*route
	own     map[string]http.Handler
	prefix  string // identity prefix, lower case, '-' for '_'
	claims  []claimHeader
	origins map[string]bool
	buffers *bufferPool
	tunnels tunnels // the open upgraded connections (tunnels.go)
}

// New builds the gateway's handler. It returns an error for a Config that
// Validate would have refused (a route without upstream, a claim header
// outside the identity prefix).
func New(cfg Config, deps Deps) (*Gateway, error) {
	if deps.Verifier == nil || deps.Minter == nil || deps.Keys == nil || deps.Store == nil || deps.Metrics == nil {
		return nil, errors.New("proxy: Verifier, Minter, Keys, Store and Metrics are required")
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
	for _, r := range cfg.Routes {
		if r.Upstream == nil || r.Upstream.Host == "" {
			return nil, fmt.Errorf("proxy: route %q has no upstream", r.Prefix)
		}
		rt := &route{Route: r}
		if len(r.RequireRoles) > 0 {
			rt.roleSet = make(map[string]struct{}, len(r.RequireRoles))
			for _, x := range r.RequireRoles {
				rt.roleSet[x] = struct{}{}
			}
		}
		tr := deps.Transport
		if tr == nil {
			tr = NewTransport(r.Timeout)
		}
		rt.proxy = g.newReverseProxy(rt, tr)
		if r.MaxInFlight > 0 {
			rt.proxy = g.limitInFlight(rt, rt.proxy)
		}
		g.routes = append(g.routes, rt)
	}
	sortRoutes(g.routes)
	g.own = g.ownEndpoints()
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
		reason = checkRedecoded(g.routes, g.own, path)
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
	rt := match(g.routes, path)
	if rt == nil {
		writeError(sw, http.StatusNotFound, errNotFound, "no route for this path")
		return
	}
	label = rt.Prefix
	g.serveRoute(sw, r, rt)
}

// forward is what the Rewrite hook needs to know about a request that passed
// the checks.
type forward struct {
	route  *route
	token  *auth.Token // nil: anonymous
	bearer bool        // the Authorization header held a bearer token
}

type forwardKey struct{}

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
			g.m.TokenValidations.WithLabelValues(metrics.ValidationMissing).Inc()
			writeChallenge(w, http.StatusUnauthorized, "", "token missing")
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
		result := metrics.ValidationInvalid
		if errors.Is(err, auth.ErrTokenExpired) {
			result = metrics.ValidationExpired
		}
		g.m.TokenValidations.WithLabelValues(result).Inc()
		writeChallenge(w, http.StatusUnauthorized, errInvalidToken, auth.Describe(err))
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
		// cross-site WebSocket hijacking: refused as any other CSRF (found
		// by the adversarial suite).
		if reason := g.originCheck(r); reason != "" {
			writeError(w, http.StatusForbidden, errForbidden, reason)
			return nil, false
		}
	}
	if g.cfg.Revocation == RevocationEveryRequest {
		start := time.Now()
		s, err := g.deps.Store.Get(r.Context(), tok.SessionID)
		g.m.StoreOperationLength.WithLabelValues("get").Observe(time.Since(start).Seconds())
		var desc string
		switch {
		case errors.Is(err, sessionstore.ErrNotFound):
			desc = "session revoked"
		case err != nil:
			g.log.Error("session store read", "op", "get", "err", err)
			writeError(w, http.StatusServiceUnavailable, errUnavailable, "session store unavailable")
			return nil, false
		case s.Revoked():
			desc = "session revoked"
		case !s.Live(g.now()):
			desc = "session expired"
		}
		if desc != "" {
			g.EndSession(tok.SessionID, endReason(s, err, g.now()))
			g.m.TokenValidations.WithLabelValues(metrics.ValidationRevoked).Inc()
			writeChallenge(w, http.StatusUnauthorized, errInvalidToken, desc)
			return nil, false
		}
	}
	g.m.TokenValidations.WithLabelValues(metrics.ValidationValid).Inc()
	return tok, true
}

// extractToken finds the request's token: Authorization: Bearer, or the
// cookie where delivery allows it. bad is a reason for 400 invalid_request:
// two Authorization headers, or a bearer and a cookie token that differ.
func (g *Gateway) extractToken(r *http.Request) (raw string, fromCookie, bearer bool, bad string) {
	authz := r.Header["Authorization"]
	if len(authz) > 1 {
		return "", false, false, "more than one Authorization header"
	}
	if len(authz) == 1 {
		if t, ok := bearerToken(authz[0]); ok {
			raw, bearer = t, true
		}
	}
	if g.cfg.Delivery == DeliveryBearer {
		return raw, false, bearer, ""
	}
	c, n, conflict := cookieValues(r.Header, g.cfg.CookieName)
	switch {
	case conflict:
		return "", false, false, "conflicting token cookies"
	case n == 0:
		return raw, false, bearer, ""
	case bearer && c != raw:
		return "", false, false, "bearer token and cookie token differ"
	case bearer:
		return raw, false, true, ""
	}
	return c, true, false, ""
}

// bearerToken parses "Bearer TOKEN" (scheme without case, RFC 7235).
func bearerToken(v string) (string, bool) {
	const scheme = "bearer "
	if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", false
	}
	return strings.TrimSpace(v[len(scheme):]), true
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// csrfCheck applies the cookie rule to a state-changing
// request whose token came from the cookie: X-Requested-With must be
// present (a cross-site form cannot set it, and a cross-site fetch that sets
// it needs a CORS preflight the gateway never grants), and originCheck
// must pass (an Origin that is the request's own or an allowed one).
func (g *Gateway) csrfCheck(r *http.Request) string {
	if r.Header.Get("X-Requested-With") == "" {
		return "X-Requested-With header required"
	}
	return g.originCheck(r)
}

// originCheck refuses a request that a browser says comes from another
// site; it guards every cookie-authenticated state-changing request, the
// cookie-authenticated WebSocket handshake, and, where delivery sets the
// cookie, the login itself (login CSRF: a foreign page must not log the
// victim in as the attacker). Refused are: an Origin that is neither the
// request's own (see ownOrigin) nor in AllowedOrigins; the opaque origin
// "null", which a sandboxed iframe, a cross-origin redirect or a file: page
// sends and which names no origin, so it is never the request's own nor
// allowed, whatever AllowedOrigins says; more than one Origin header; and,
// where no Origin is sent, Sec-Fetch-Site: cross-site. A request with
// neither header (not a browser) passes.
func (g *Gateway) originCheck(r *http.Request) string {
	origins := r.Header["Origin"]
	switch {
	case len(origins) > 1:
		return "origin not allowed"
	case len(origins) == 0 || origins[0] == "":
		if strings.EqualFold(r.Header.Get("Sec-Fetch-Site"), "cross-site") {
			return "cross-site request not allowed"
		}
		return ""
	}
	origin := origins[0]
	if strings.EqualFold(origin, "null") {
		return "origin not allowed"
	}
	if g.ownOrigin(r, origin) || g.origins[strings.ToLower(origin)] {
		return ""
	}
	return "origin not allowed"
}

// ownOrigin reports whether origin ("scheme://host[:port]", as the Origin
// header carries it) is the request's own: the scheme and host the client
// used, compared without case and with the scheme's default port ignored.
// From a peer in TrustedProxies they are the first value of
// X-Forwarded-Proto and X-Forwarded-Host where present: behind nginx
// (proxy_set_header Host $host, or its default Host, the proxy_pass
// address) the Host header names the gateway, not what the browser used.
// The first value is the one the proxy nearest the client set, the only
// one that saw the browser's Host; a browser cannot add X-Forwarded-Host to
// a cross-origin request (it is not a CORS-safelisted header, and the
// gateway grants no preflight), so whatever a client wrote there is not a
// CSRF vector. From anyone else both headers are ignored: r.TLS and Host.
func (g *Gateway) ownOrigin(r *http.Request, origin string) bool {
	scheme, host := "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	if trusted(g.cfg.TrustedProxies, r.RemoteAddr) {
		if p := strings.ToLower(firstValue(r.Header["X-Forwarded-Proto"])); p == "http" || p == "https" {
			scheme = p
		}
		if h := firstValue(r.Header["X-Forwarded-Host"]); h != "" {
			host = h
		}
	}
	oScheme, oHost, ok := strings.Cut(origin, "://")
	return ok && strings.EqualFold(oScheme, scheme) &&
		strings.EqualFold(withoutDefaultPort(oHost, scheme), withoutDefaultPort(host, scheme))
}

// firstValue is the first comma-separated element of a header's first
// line, trimmed: "a.example, b.example" is "a.example".
func firstValue(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	v, _, _ := strings.Cut(vs[0], ",")
	return strings.TrimSpace(v)
}

// withoutDefaultPort drops ":443" from an https host and ":80" from an http
// one: browsers leave the default port out of Origin, while a Host header
// (or a proxy's $http_host) may carry it.
func withoutDefaultPort(host, scheme string) string {
	switch {
	case scheme == "https" && strings.HasSuffix(host, ":443"):
		return host[:len(host)-len(":443")]
	case scheme == "http" && strings.HasSuffix(host, ":80"):
		return host[:len(host)-len(":80")]
	}
	return host
}

// statusWriter records the status code and the body bytes written, for the
// metrics and the access log, and the subject of the token verified for the
// request, if any. Unwrap lets http.ResponseController (and so
// ReverseProxy's flushing and upgrades) reach the underlying writer.
//
// It also applies the response rules to informational answers (103 Early
// Hints and the like): ReverseProxy copies an upstream's 1xx headers into
// the writer's header map and writes them itself, bypassing ModifyResponse,
// then clears the map, the gateway's X-Request-Id with it.
type statusWriter struct {
	http.ResponseWriter
	status  int
	bytes   int64
	subject string // "" until a token is verified

	g       *Gateway // for the response rules of a 1xx; nil: none apply
	id      string   // the request's X-Request-Id
	sent1xx bool     // an informational answer cleared the header map
}

func (w *statusWriter) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols && w.g != nil {
		h := w.Header()
		cleanResponseHeaders(h, w.g.prefix, w.g.cfg.CookieName)
		h.Set(HeaderRequestID, w.id)
		w.sent1xx = true
		w.ResponseWriter.WriteHeader(code)
		return
	}
	if w.sent1xx && w.Header().Get(HeaderRequestID) == "" {
		w.Header().Set(HeaderRequestID, w.id)
	}
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// noteSubject records the verified subject of the request for the access
// log, when w is the gateway's statusWriter.
func noteSubject(w http.ResponseWriter, subject string) {
	if sw, ok := w.(*statusWriter); ok {
		sw.subject = subject
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// statusText is strconv.Itoa for the common codes without allocating.
func statusText(code int) string {
	switch code {
	case 200:
		return "200"
	case 204:
		return "204"
	case 400:
		return "400"
	case 401:
		return "401"
	case 403:
		return "403"
	case 404:
		return "404"
	case 502:
		return "502"
	}
	return fmt.Sprint(code)
}
