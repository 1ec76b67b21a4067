package proxy

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/spa-gateway/gateway/auth"
)

// routes builds the main listener's whole surface but /auth/verify, which
// New adds to the own endpoints (verify.go uses routes' path checks, so it
// comes before this file). ServeHTTP looks a
// request's checked path (checkPath) up in this order:
//
//  1. the gateway's own endpoints, before any route (a route "/auth/"
//     never receives /auth/refresh): by exact path, or, for a key ending
//     in "/" (sessionsPrefix), by that key and one more path segment
//     (ownHandler);
//  2. the configured routes: the longest prefix that the path starts with
//     wins, whatever their order in the configuration;
//  3. neither: 404.
func (g *Gateway) routes() error {
	g.own = make(map[string]http.Handler, 6)
	if g.deps.Login != nil {
		// Without a login source /auth/login is no endpoint of the
		// gateway's: it is left to the routes, as any other path.
		g.own["/auth/login"] = g.post(g.handleLogin)
	}
	if g.deps.OIDC != nil {
		g.own[oidcLoginPath] = g.only(http.MethodGet, g.handleOIDCLogin)
		g.own[oidcCallbackPath] = g.only(http.MethodGet, g.handleOIDCCallback)
		g.own[backchannelLogoutPath] = g.post(g.handleBackchannelLogout)
	}
	g.own["/auth/refresh"] = g.post(g.handleRefresh)
	g.own["/auth/logout"] = g.post(g.handleLogout)
	g.own["/auth/sessions"] = g.only(http.MethodGet, g.handleOwnSessions)
	g.own[sessionsPrefix] = g.only(http.MethodDelete, g.handleEndOwnSession) // DELETE /auth/sessions/{id}
	g.own["/.well-known/jwks.json"] = g.handleJWKS()

	for _, r := range g.cfg.Routes {
		rt, err := g.newRoute(r)
		if err != nil {
			return err
		}
		g.table = append(g.table, rt)
	}
	sortRoutes(g.table) // so that match's first hit is the longest prefix
	return nil
}

// ownHandler is the gateway's own endpoint for the routing path, or nil:
// own[path], or, where path is a key ending in "/" followed by one path
// segment, that key's ("/auth/sessions/ID" is own["/auth/sessions/"], and
// "/auth/sessions/ID/x" is no endpoint of the gateway's). Exact keys never
// end in "/", so the second lookup only ever finds such a key. It costs two
// map lookups and allocates nothing: it is on every proxied request's path.
func ownHandler(own map[string]http.Handler, path string) http.Handler {
	if h := own[path]; h != nil {
		return h
	}
	if i := strings.LastIndexByte(path, '/'); i > 0 && i < len(path)-1 {
		return own[path[:i+1]]
	}
	return nil
}

// newRoute prepares r: its role set, its ReverseProxy over deps.Transport
// (or a transport of its own) and, with MaxInFlight, its limit.
func (g *Gateway) newRoute(r Route) (*route, error) {
	if r.Upstream == nil || r.Upstream.Host == "" {
		return nil, fmt.Errorf("proxy: route %q has no upstream", r.Prefix)
	}
	rt := &route{Route: r}
	if err := g.prepareAccept(rt); err != nil {
		return nil, err
	}
	if len(r.RequireRoles) > 0 {
		rt.roleSet = make(map[string]struct{}, len(r.RequireRoles))
		for _, x := range r.RequireRoles {
			rt.roleSet[x] = struct{}{}
		}
	}
	tr := g.deps.Transport
	if tr == nil {
		tr = NewTransport(r.Timeout)
	}
	rt.proxy = g.newReverseProxy(rt, tr)
	if r.MaxInFlight > 0 {
		rt.proxy = g.limitInFlight(rt, rt.proxy)
	}
	return rt, nil
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

// checkRedecoded refuses a routing path (from checkPath) that, decoded once
// more or twice more, would select another route than it does, or one of the
// gateway's own endpoints: "/%2561pi/x" routes as "/%61pi/x" (through a
// public "/", say), but a backend that decodes twice serves "/api/x" without
// the token /api/ requires. "%2F" decodes too: with allowEncodedSlash,
// "/api%2Fx" routes through "/" and nginx, among others, serves it as
// "/api/x". Decoding further leaves the route alone for every path the
// gateway accepts, so that checkPath's single decoding is, as far as the
// route goes, every backend's.
//
// Only a routing path holding '%' (the request held "%25", or "%2F" with
// allowEncodedSlash) can decode further; the others cost one IndexByte.
func checkRedecoded(routes []*route, own map[string]http.Handler, routePath string) string {
	if strings.IndexByte(routePath, '%') < 0 {
		return ""
	}
	rt := match(routes, routePath)
	p := routePath
	for range maxDecodeDepth {
		d, err := url.PathUnescape(p)
		if err != nil {
			return "malformed percent-encoding in path"
		}
		if ownHandler(own, d) != nil || match(routes, d) != rt {
			return "path decodes again to another route"
		}
		if strings.IndexByte(d, '%') < 0 {
			break
		}
		p = d
	}
	return ""
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

// prepareAccept gives rt its Issuers when it accepts an external issuer.
// A route of the gateway's own tokens alone keeps Deps.Verifier, so that
// its requests pay for no look at the token's iss.
func (g *Gateway) prepareAccept(rt *route) error {
	if rt.Accept == nil || slices.Equal(rt.Accept, []string{AcceptGateway}) {
		return nil
	}
	var gateway *auth.Verifier
	var external []*auth.ExternalVerifier
	for _, name := range rt.Accept {
		if name == AcceptGateway {
			gateway = g.deps.Verifier
			continue
		}
		e := g.deps.External[name]
		if e == nil {
			return fmt.Errorf("proxy: route %q accepts %q, which is no external issuer", rt.Prefix, name)
		}
		external = append(external, e)
	}
	is, err := auth.NewIssuers(gateway, external...)
	if err != nil {
		return fmt.Errorf("proxy: route %q: %w", rt.Prefix, err)
	}
	rt.issuers = is
	return nil
}
