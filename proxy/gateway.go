// Package proxy is the gateway's main listener: it checks the path, matches a
// route, verifies the token, cleans the headers and forwards the request
// through an httputil.ReverseProxy; and it serves the gateway's own
// endpoints (/auth/login, /auth/refresh, /auth/logout, the caller's own
// sessions at /auth/sessions, the OpenID Connect login at /auth/oidc/, the
// JWKS, and /auth/verify, the forward-auth answer for an ingress that
// proxies requests itself).
//
// proxy speaks HTTP only: the tokens, the login sources and the session
// rules are package auth's (auth.Sessions), and every error a handler meets
// becomes its answer in one place, problemFor (errors.go).
//
// Each file uses only the files after it in this list, top to bottom:
// serve.go (New, ServeHTTP, the proxied request's checks), verify.go
// (forward-auth: /auth/verify decides for the request an ingress
// describes, with the checks of a proxied one), routes.go (the
// whole surface: the gateway's own endpoints beside the route table, and
// how a path picks one), ownsessions.go (the handlers of GET
// /auth/sessions and DELETE /auth/sessions/{id}: the caller's own
// sessions), oidc.go (the OpenID Connect login's handlers, GET
// /auth/oidc/login and /auth/oidc/callback, the return path's check, and
// the provider's end-session URL in the logout's answer), endpoints.go
// (the handlers of /auth/login, /auth/refresh,
// /auth/logout and the JWKS, and requestToken, the reading of a request's
// token that every handler shares), tunnels.go (upgraded connections and their
// sessions), dpop.go (DPoP proofs: the login's binding, the bound token's
// proof, the nonces), credentials.go (the request's token, the CSRF and origin
// rules, the spoofed identity headers, what a session records of the
// client), upstream.go (the
// ReverseProxy and its hooks), observe.go (the access log, the events, the
// status writer), errors.go (the answers), gateway.go (the types every
// file names: Config, Deps, Gateway, Route and its prepared route),
// cors.go (CORS for the allowed origins: preflights, the answers'
// headers), headers.go (the request and response header rules), cookie.go (the
// token cookie's names as backends read them), path.go (the path checks),
// tunnelregistry.go (the open tunnels by session), bufferpool.go
// (ReverseProxy's copy buffers), modes.go (the enumerated settings).
package proxy

import (
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"sync/atomic"
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
	// Delivery sets it; and the origins granted CORS, with credentials, on
	// /auth/ and the routes with Route.CORS (cors.go). "null" is never
	// allowed, even if listed.
	AllowedOrigins []string
	// Revocation is when a token's session is checked in the store:
	// RevocationEveryRequest checks it on each proxied request, not only at
	// refresh (the zero value, RevocationRefresh).
	Revocation Revocation
	// DPoP is whether a login with a DPoP proof binds its session
	// (DPoPAllowed, the zero value), must (DPoPRequired) or never does
	// (DPoPOff). Bound tokens need their proof in every mode.
	DPoP DPoPMode
	// DPoPNonce requires proofs to carry a server nonce of Deps.DPoPNonces,
	// handed out in DPoP-Nonce (RFC 9449 section 8).
	DPoPNonce bool

	// MaxAuthBodyBytes bounds the body of /auth/ requests; zero means 64 KiB.
	// A larger body, declared or sent, is answered 413.
	MaxAuthBodyBytes int64
	// AuthBodyTimeout bounds the time to receive the body of /auth/login;
	// past it the answer is 408. Zero means 10s.
	AuthBodyTimeout time.Duration
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
	// CORS answers preflights at the gateway and adds the CORS headers
	// for Config.AllowedOrigins to the answers (cors.go), the upstream's
	// own CORS headers removed. False leaves CORS to the upstream, and
	// forwards preflights as any request.
	CORS bool
	// MaxInFlight bounds the requests forwarded to Upstream at once; one
	// more is answered 503 at once (never queued), so that a slow or
	// flooded backend cannot pile up the gateway's goroutines and
	// connections. Requests refused before forwarding (401, 403, 400) do
	// not count. Zero means no limit.
	MaxInFlight int
	// Accept names the issuers whose tokens the route takes: AcceptGateway
	// for the gateway's own, and the names of Deps.External. Nil means
	// only the gateway's own. An external issuer's tokens name no
	// session: on a WebSocket route they are refused (an upgrade needs a
	// live session), and under every_request they are not checked
	// against the store.
	Accept []string
}

// AcceptGateway is the name of the gateway's own tokens in Route.Accept.
const AcceptGateway = "gateway"

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
	// OIDC is the OpenID Connect login (GET /auth/oidc/login and
	// /auth/oidc/callback, and the provider's end-session URL in the
	// answer of /auth/logout); nil means none. It needs Config.Delivery
	// to set the cookie (DeliveryCookie or DeliveryBoth).
	OIDC *auth.OIDC
	// Limiter limits login attempts, each counted before its password is
	// checked; nil means no limit.
	Limiter *auth.FailureLimiter
	// DPoP checks DPoP proofs; nil means a verifier of auth's defaults
	// (ES256 and EdDSA, a minute, a replay cache in memory) on Now, with
	// DPoPNonces.
	DPoP *auth.DPoPVerifier
	// DPoPNonces hands out the nonces Config.DPoPNonce requires (it must
	// be the one DPoP checks them with); nil is allowed only without
	// Config.DPoPNonce.
	DPoPNonces *auth.DPoPNonces
	Metrics    *metrics.Metrics
	// External are the other issuers whose tokens routes may accept
	// (Route.Accept), by name. Nil means none.
	External map[string]*auth.ExternalVerifier
	Logger   *slog.Logger
	// Now is the clock of the tunnels' deadlines; nil means time.Now. The
	// session rules take theirs from Sessions.
	Now func() time.Time
	// Tunnels is the registry of open upgraded connections; nil means a
	// new one of this Gateway's own. Pass the one of the Gateway this one
	// replaces (a configuration reload) so that its tunnels stay under
	// watch and still close when their session ends.
	Tunnels *Tunnels
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
	tunnels *tunnels // the open upgraded connections (tunnels.go), maybe Deps.Tunnels's
	dpop    *auth.DPoPVerifier
	// dpopAlgs is the algs parameter of a DPoP challenge: "ES256 EdDSA Ed25519".
	dpopAlgs string
}

// route is a Route with what ServeHTTP needs prepared once.
type route struct {
	Route
	proxy   http.Handler
	roleSet map[string]struct{}
	// issuers verifies the route's tokens when it accepts an external
	// issuer; nil means only the gateway's own, with Deps.Verifier.
	issuers *auth.Issuers
	// inFlight counts the requests being forwarded, for MaxInFlight.
	inFlight atomic.Int64
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
