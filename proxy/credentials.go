package proxy

import (
	"net/http"
	"strings"

	"github.com/spa-gateway/gateway/auth"
)

// A request's credential is its access token, from Authorization: Bearer or,
// where delivery allows it, the token cookie. A cookie travels with every
// request the browser makes to the gateway, whoever asks it to, so a
// cookie-authenticated request that changes state, a WebSocket handshake,
// and a login that sets the cookie must also show that the page that sent
// it is the gateway's own, or an allowed one: the CSRF and origin rules
// below.

// authScheme is how a request's Authorization header presents its token.
type authScheme uint8

const (
	// schemeNone: no token in the header (none, another scheme, or the
	// cookie's token).
	schemeNone authScheme = iota
	// schemeBearer: Authorization: Bearer TOKEN (RFC 6750).
	schemeBearer
	// schemeDPoP: Authorization: DPoP TOKEN (RFC 9449 section 7.1): the
	// scheme says the token is bound, which checkBinding holds it to, and
	// its refusals are DPoP challenges.
	schemeDPoP
)

// extractToken finds the request's token: from its one Authorization
// header (Bearer or DPoP, scheme says which), or the cookie where delivery
// allows it (fromCookie). bad is a reason for 400 invalid_request: two
// Authorization headers, or a header and a cookie token that differ.
func (g *Gateway) extractToken(r *http.Request) (raw string, fromCookie bool, scheme authScheme, bad string) {
	authz := r.Header["Authorization"]
	if len(authz) > 1 {
		return "", false, schemeNone, "more than one Authorization header"
	}
	if len(authz) == 1 {
		raw, scheme = authorization(authz[0])
	}
	if g.cfg.Delivery == DeliveryBearer {
		return raw, false, scheme, ""
	}
	c, n, conflict := cookieValues(r.Header, g.cfg.CookieName)
	switch {
	case conflict:
		return "", false, schemeNone, "conflicting token cookies"
	case n == 0:
		return raw, false, scheme, ""
	case scheme == schemeBearer && c != raw:
		return "", false, schemeNone, "bearer token and cookie token differ"
	case scheme == schemeDPoP && c != raw:
		return "", false, schemeNone, "DPoP token and cookie token differ"
	case scheme != schemeNone:
		return raw, false, scheme, ""
	}
	return c, true, schemeNone, ""
}

// authorization parses an Authorization header value, "Bearer TOKEN" or
// "DPoP TOKEN" (the scheme without case, RFC 7235), into its token,
// trimmed; any other value is schemeNone.
func authorization(v string) (string, authScheme) {
	name, token, ok := strings.Cut(v, " ")
	switch {
	case !ok || token == "":
		return "", schemeNone
	case strings.EqualFold(name, "bearer"):
		return strings.TrimSpace(token), schemeBearer
	case strings.EqualFold(name, "dpop"):
		return strings.TrimSpace(token), schemeDPoP
	}
	return "", schemeNone
}

// client is what a session records of the request's client: its
// User-Agent and clientIP. auth.Sessions bounds their length.
func (g *Gateway) client(r *http.Request) auth.Client {
	return auth.Client{UserAgent: r.Header.Get("User-Agent"), Address: clientIP(g.cfg.TrustedProxies, r)}
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// cookieRule is the reason, if any, to refuse a request whose token came
// from the cookie: on a state-changing method the CSRF rule (csrfCheck);
// on a WebSocket handshake (upgrade), a GET, the origin rule. A WebSocket
// handshake cannot carry X-Requested-With (the browser's WebSocket API
// cannot set it), but browsers always send Origin on it; a
// cookie-authenticated upgrade from another origin is cross-site
// WebSocket hijacking, refused as any other CSRF (adversarial
// TestAttacks/headers, "cookie WebSocket upgrade from a foreign Origin").
func (g *Gateway) cookieRule(r *http.Request, upgrade bool) string {
	switch {
	case !safeMethod(r.Method):
		return g.csrfCheck(r)
	case upgrade:
		return g.originCheck(r)
	}
	return ""
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
	scheme, host := g.requestOrigin(r)
	oScheme, oHost, ok := strings.Cut(origin, "://")
	return ok && strings.EqualFold(oScheme, scheme) &&
		strings.EqualFold(withoutDefaultPort(oHost, scheme), withoutDefaultPort(host, scheme))
}

// requestOrigin is the scheme ("http" or "https") and host the client used
// for r, as ownOrigin explains: from a peer in TrustedProxies, the first
// X-Forwarded-Proto and X-Forwarded-Host where present; otherwise r.TLS and
// Host. A DPoP proof's htu is compared with the URL they make.
func (g *Gateway) requestOrigin(r *http.Request) (scheme, host string) {
	scheme, host = "http", r.Host
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
	return scheme, host
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

// spoofRefused handles a request to rt that carries a header under the
// identity prefix, which only the gateway sets: it counts and logs it and,
// under SpoofReject, answers 400 and reports true (the request is done).
// Under SpoofStrip the headers are left for the request's header rules to
// remove. A proxied request (serveRoute) and a forward-auth decision
// (decide) share it, so that both treat a spoofed header alike.
func (g *Gateway) spoofRefused(w http.ResponseWriter, r *http.Request, rt *route) bool {
	if !hasIdentityHeader(r.Header, g.prefix) {
		return false
	}
	g.m.SpoofedHeaders.WithLabelValues(rt.Prefix).Inc()
	g.log.Warn("spoofed identity header", "event", EventSpoofedHeader, "route", rt.Prefix,
		"client", clientIP(g.cfg.TrustedProxies, r), "request_id", r.Header.Get(HeaderRequestID), "action", g.cfg.OnSpoof.String())
	if g.cfg.OnSpoof != SpoofReject {
		return false
	}
	writeError(w, http.StatusBadRequest, errInvalidRequest, "identity header not allowed")
	return true
}
