package proxy

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/spa-gateway/gateway/metrics"
)

// Forward-auth: an ingress (nginx auth_request, Caddy forward_auth,
// Traefik ForwardAuth) proxies the request itself, and asks the gateway
// first whether it may, at /auth/verify, describing the original request
// in headers. The answer is the decision a proxied request would have got:
// 200 with the identity headers to inject, or the same 400, 401, 403 or
// 404 with its JSON body and challenge. Never a redirect: an SPA's XHR
// must see "token expired" to refresh.
//
// The description is believed only from a peer in TrustedProxies: anyone
// else could name any method, host and URI, and have a DPoP proof made for
// one request accepted for another. A call from elsewhere is refused 403
// (ForwardUntrusted), never answered for /auth/verify itself: an ingress
// outside trusted_proxies is a configuration error, and a client calling
// the endpoint directly learns nothing a protected route would not tell it.

// verifyPath is the forward-auth endpoint.
const verifyPath = "/auth/verify"

// The headers in which an ingress describes the original request (besides
// X-Forwarded-Proto and X-Forwarded-Host, which requestOrigin reads).
const (
	headerForwardedMethod = "X-Forwarded-Method"
	headerForwardedURI    = "X-Forwarded-Uri" // Traefik, Caddy
	headerOriginalURI     = "X-Original-Uri"  // nginx, as the shipped configuration sets it
)

// HeaderVerifyError carries, on a refusal of /auth/verify, the JSON body of
// that refusal: nginx's auth_request keeps only the status of the answer,
// and the shipped configuration returns this header's value as the body,
// so that the client reads the same JSON as behind the gateway itself.
// It is a fixed phrase of ours, never anything the client sent.
const HeaderVerifyError = "X-Gateway-Error"

// handleVerify answers the forward-auth question for the original request
// r's headers describe. Any method: the ingress's subrequest may be a GET
// or the original method.
func (g *Gateway) handleVerify(w http.ResponseWriter, r *http.Request) {
	label, result := metrics.RouteUnmatched, metrics.ForwardAllowed
	defer func() { g.m.ForwardAuth.WithLabelValues(label, result).Inc() }()
	// Whatever the answer, never cached: it depends on the credential.
	w.Header().Set("Cache-Control", "no-store")
	vw := &verifyWriter{ResponseWriter: w}

	if !trusted(g.cfg.TrustedProxies, r.RemoteAddr) {
		result = metrics.ForwardUntrusted
		g.log.Warn("forward-auth caller not trusted", "event", EventForwardUntrusted,
			"client", clientIP(nil, r), "request_id", r.Header.Get(HeaderRequestID))
		writeError(vw, http.StatusForbidden, errForbidden, "forward-auth caller is not in server.trusted_proxies")
		return
	}
	orig, reason := originalRequest(r)
	var rt *route
	if reason == "" {
		rt, reason = g.verifyRoute(orig)
	}
	switch {
	case reason == errNotFound:
		result = metrics.ForwardBadRequest
		writeError(vw, http.StatusNotFound, errNotFound, "no route for this path")
		return
	case reason != "":
		result = metrics.ForwardBadRequest
		writeError(vw, http.StatusBadRequest, errInvalidRequest, reason)
		return
	}
	label = rt.Prefix
	if status := g.decide(vw, orig, rt); status != http.StatusOK {
		result = forwardResult(status)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// decide applies rt's rules to orig as serveRoute does (the spoofed
// identity headers, the token, its binding, the CSRF rule, the roles,
// every_request), and on success sets the identity headers on w. It
// returns the status it answered, or 200 for the caller to write.
func (g *Gateway) decide(w *verifyWriter, orig *http.Request, rt *route) int {
	if g.spoofRefused(w, orig, rt) {
		return http.StatusBadRequest
	}
	if rt.Auth == AuthNone {
		return http.StatusOK
	}
	// The same checks as a proxied request's, with the route's issuers.
	tok, _, scheme, err := g.authorizeWith(w, orig, rt.issuers, false)
	switch {
	case errors.Is(err, errTokenMissing) && rt.Auth == AuthOptional && len(rt.RequireRoles) == 0:
		return http.StatusOK // anonymous: no identity to inject
	case err == nil && !rt.allowed(tok.Roles):
		noteSubject(w.ResponseWriter, tok.Subject)
		err = errRoleRequired
	}
	if err != nil {
		p := g.fail(w, scheme, err)
		if p.validation != "" {
			g.m.TokenValidations.WithLabelValues(p.validation).Inc()
		}
		return p.status
	}
	noteSubject(w.ResponseWriter, tok.Subject)
	injectClaims(w.Header(), g.claims, tok)
	return http.StatusOK
}

// originalRequest is r as the ingress describes the original request: its
// method (X-Forwarded-Method, or r's own), and its URI (X-Forwarded-Uri,
// or X-Original-URI), in origin form as a request line carries it. The
// rest, the credential and the forwarding headers included, is r's. reason
// is why the description is refused: 400.
func originalRequest(r *http.Request) (orig *http.Request, reason string) {
	method := r.Method
	if ms := r.Header[headerForwardedMethod]; len(ms) > 0 {
		if len(ms) > 1 || !isMethod(ms[0]) {
			return nil, "X-Forwarded-Method is not one method"
		}
		method = ms[0]
	}
	// An ingress sets one of the two and passes the client's headers on:
	// the other may be the client's own, so where both are present they
	// must agree, whichever the ingress set.
	uris, other := r.Header[headerForwardedURI], r.Header[headerOriginalURI]
	if len(uris) == 0 {
		uris, other = other, nil
	}
	if len(uris) != 1 || uris[0] == "" || uris[0][0] != '/' {
		return nil, "X-Forwarded-Uri or X-Original-URI must hold the original request's path"
	}
	if len(other) > 0 && (len(other) != 1 || other[0] != uris[0]) {
		return nil, "X-Forwarded-Uri and X-Original-URI name different requests"
	}
	// As net/http parses a request line: a "//x" is a path, not a host.
	u, err := url.ParseRequestURI(uris[0])
	if err != nil {
		return nil, "malformed original URI"
	}
	orig = new(http.Request)
	*orig = *r
	orig.Method = method
	orig.URL = u
	orig.RequestURI = uris[0]
	return orig, ""
}

// verifyRoute applies the path checks of ServeHTTP to orig's path and
// returns its route. reason is a 400's, or errNotFound where no route
// matches, or where the path is one of the gateway's own endpoints: those
// the ingress must proxy to the gateway, not ask about.
func (g *Gateway) verifyRoute(orig *http.Request) (rt *route, reason string) {
	path, reason := checkPath(orig.URL.EscapedPath(), g.cfg.AllowEncodedSlash)
	if reason == "" {
		reason = checkRedecoded(g.table, g.own, path)
	}
	if reason != "" {
		return nil, reason
	}
	if ownHandler(g.own, path) != nil {
		return nil, errNotFound
	}
	if rt = match(g.table, path); rt == nil {
		return nil, errNotFound
	}
	return rt, ""
}

// isMethod reports whether m is a plausible method token: 1 to 20 upper
// case letters.
func isMethod(m string) bool {
	if m == "" || len(m) > 20 {
		return false
	}
	for i := 0; i < len(m); i++ {
		if m[i] < 'A' || m[i] > 'Z' {
			return false
		}
	}
	return true
}

// forwardResult is the decision label of a refusal's status.
func forwardResult(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return metrics.ForwardUnauthorized
	case status == http.StatusForbidden:
		return metrics.ForwardForbidden
	case status >= 500:
		return metrics.ForwardError
	}
	return metrics.ForwardBadRequest
}

// verifyWriter copies a refusal's JSON body into HeaderVerifyError as it
// is written (see there). writeError writes the whole body in one Write,
// after the header.
type verifyWriter struct {
	http.ResponseWriter
	status int
}

func (vw *verifyWriter) WriteHeader(code int) {
	vw.status = code
	// Deferred to Write, where the body is known: a header set after
	// WriteHeader would not be sent.
}

func (vw *verifyWriter) Write(b []byte) (int, error) {
	if vw.status != 0 {
		vw.Header().Set(HeaderVerifyError, strings.TrimSpace(string(b)))
		vw.ResponseWriter.WriteHeader(vw.status)
		vw.status = 0
	}
	return vw.ResponseWriter.Write(b)
}
