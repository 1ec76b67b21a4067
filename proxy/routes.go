package proxy

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// AuthMode says what a route asks of a request's token.
type AuthMode int

const (
	// AuthRequired answers 401 without a valid token.
	AuthRequired AuthMode = iota
	// AuthOptional forwards a request without a token anonymously, and
	// answers 401 for a token that is present but not valid.
	AuthOptional
	// AuthNone never looks at a token; identity headers are still stripped.
	AuthNone
)

// ParseAuthMode maps the configuration words required, optional and none to
// an AuthMode.
func ParseAuthMode(s string) (AuthMode, bool) {
	switch s {
	case "required":
		return AuthRequired, true
	case "optional":
		return AuthOptional, true
	case "none":
		return AuthNone, true
	}
	return 0, false
}

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
	// WebSocket allows Upgrade: websocket on this route, after auth. Other
	// upgrades (h2c, ...) are never forwarded.
	WebSocket bool
	// Timeout bounds the wait for the upstream's response headers; past it
	// the gateway answers 504. Zero means 30s.
	Timeout time.Duration
}

// route is a Route with what ServeHTTP needs prepared once.
type route struct {
	Route
	proxy   http.Handler
	roleSet map[string]struct{}
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
