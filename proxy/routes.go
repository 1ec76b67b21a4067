package proxy

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Route sends every request whose path starts with Prefix to Upstream.
type Route struct {
	// Prefix is matched against the request path as the upstream will read it
	// (see checkPath); the longest matching prefix wins.
	Prefix string
	// Upstream is the backend's base URL. Its path, if any, is prepended to
	// the request path.
	Upstream *url.URL
	Auth     AuthMode
	// RequireRoles, when not empty, answers 403 unless the token's roles
	// claim holds at least one of them.
	RequireRoles []string
	// WebSocket allows Upgrade: websocket on this route, after auth and,
	// for a request with a token, only for a session the store holds live
	// (in every revocation mode); the connection is then closed when the
	// session ends (see EndSession and WatchTunnels). Other upgrades (h2c,
	// ...) are never forwarded.
	WebSocket bool
	// UpgradeMaxLifetime closes an upgraded connection this long after its
	// upgrade. Zero means no cap but the session's own end: a connection
	// upgraded with a token is closed when its session ends, whatever this
	// says, and an anonymous one (AuthOptional, AuthNone) then lives until
	// either side closes it.
	UpgradeMaxLifetime time.Duration
	// Timeout bounds the wait for the upstream's response headers; past it
	// the gateway answers 504. Zero means 30s.
	Timeout time.Duration
	// MaxInFlight bounds the requests forwarded to Upstream at once; one
	// more is answered 503 at once (never queued), so that a slow or
	// flooded backend cannot pile up the gateway's goroutines and
	// connections. Requests refused before forwarding (401, 403, 400) do
	// not count. Zero means no limit.
	MaxInFlight int
}

// route is a Route with what ServeHTTP needs prepared once.
type route struct {
	Route
	proxy   http.Handler
	roleSet map[string]struct{}
	// inFlight counts the requests being forwarded, for MaxInFlight.
	inFlight atomic.Int64
}

// sortRoutes orders routes longest prefix first, so the first match is the
// longest.
func sortRoutes(rs []*route) {
	slices.SortStableFunc(rs, func(a, b *route) int { return len(b.Prefix) - len(a.Prefix) })
}

// match returns the route for path, or nil.
func match(rs []*route, path string) *route {
	for _, r := range rs {
		if strings.HasPrefix(path, r.Prefix) {
			return r
		}
	}
	return nil
}

// allowed reports whether roles satisfy the route's RequireRoles.
func (r *route) allowed(roles []string) bool {
	if len(r.roleSet) == 0 {
		return true
	}
	for _, x := range roles {
		if _, ok := r.roleSet[x]; ok {
			return true
		}
	}
	return false
}

// limitInFlight answers 503 with Retry-After instead of forwarding more than
// rt.MaxInFlight requests at once. It never waits: a client over the limit
// is answered at once, so a flood costs the gateway no queue.
func (g *Gateway) limitInFlight(rt *route, next http.Handler) http.Handler {
	limit := int64(rt.MaxInFlight)
	retry := strconv.Itoa(1)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rt.inFlight.Add(1) > limit {
			rt.inFlight.Add(-1)
			w.Header().Set("Retry-After", retry)
			writeError(w, http.StatusServiceUnavailable, errUnavailable, "too many requests in flight to this upstream")
			return
		}
		defer rt.inFlight.Add(-1)
		next.ServeHTTP(w, r)
	})
}
