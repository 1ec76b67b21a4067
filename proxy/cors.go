package proxy

import (
	"net/http"
	"strings"
)

// CORS (the Fetch standard's CORS protocol) for single-page applications
// served from another origin: on the gateway's own /auth/ endpoints and on
// routes with Route.CORS, a request whose Origin is exactly one of
// Config.AllowedOrigins gets Access-Control-Allow-Origin echoing it, with
// credentials (so that the token cookie travels), never "*". Any other
// origin, "null" included, gets no CORS header at all, and its browser
// withholds the answer from the page.
//
// A preflight (OPTIONS with Origin and Access-Control-Request-Method) is
// answered by the gateway, 204, and never forwarded: it carries no
// credential, and a protected upstream must not see unauthenticated
// requests. The CSRF rule (credentials.go) stays as it is: granting
// X-Requested-With to an allowed origin is what lets its page pass it.

// The answers' CORS headers, fixed.
const (
	corsAllowMethods  = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
	corsAllowHeaders  = "Authorization, DPoP, Content-Type, X-Requested-With, X-Request-Id"
	corsExposeHeaders = "WWW-Authenticate, DPoP-Nonce, X-Request-Id"
	corsMaxAge        = "600"
)

// corsOrigin is r's Origin when it is exactly an allowed one, or "". The
// comparison is exact: AllowedOrigins are validated lower case, without a
// default port or a trailing dot, as browsers serialise an origin, so a
// look-alike ("https://app.example.com.evil", "HTTPS://APP.EXAMPLE.COM",
// "https://app.example.com.") is another string and not allowed.
func (g *Gateway) corsOrigin(r *http.Request) string {
	o := r.Header["Origin"]
	if len(o) != 1 || o[0] == "" || strings.EqualFold(o[0], "null") || strings.ToLower(o[0]) != o[0] || !g.origins[o[0]] {
		return ""
	}
	return o[0]
}

// isPreflight reports whether r is a CORS preflight.
func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && len(r.Header["Origin"]) > 0 &&
		len(r.Header["Access-Control-Request-Method"]) > 0
}

// serveCORS sets the CORS headers of r's answer on w, and answers a
// preflight itself; it reports whether it did (then the request is done).
// Vary: Origin is set whatever the origin, so that a cache keeps apart the
// answers to different origins.
func (g *Gateway) serveCORS(w http.ResponseWriter, r *http.Request) (answered bool) {
	h := w.Header()
	h.Add("Vary", "Origin")
	origin := g.corsOrigin(r)
	if origin != "" {
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if !isPreflight(r) {
		if origin != "" {
			h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
		}
		return false
	}
	if origin != "" {
		h.Set("Access-Control-Allow-Methods", corsAllowMethods)
		h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
		h.Set("Access-Control-Max-Age", corsMaxAge)
		h.Add("Vary", "Access-Control-Request-Method, Access-Control-Request-Headers")
	}
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
	return true
}

// dropUpstreamCORS removes an upstream's own CORS headers from its answer
// on a CORS route: the gateway's are the only ones, so that an upstream's
// "Access-Control-Allow-Origin: *" cannot widen them.
func dropUpstreamCORS(h http.Header) {
	for k := range h {
		if len(k) > len("Access-Control-") && strings.EqualFold(k[:len("Access-Control-")], "Access-Control-") {
			delete(h, k)
		}
	}
}
