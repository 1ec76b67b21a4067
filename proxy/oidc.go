package proxy

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/metrics"
)

// The OpenID Connect login's endpoints and its login-state cookie. The
// cookie is scoped to the endpoints' path (so it never travels with any
// other request), lives as long as a login may take, and holds the state,
// nonce, PKCE verifier and return path sealed by auth (AES-GCM): the
// browser can neither read nor forge it.
const (
	oidcLoginPath    = "/auth/oidc/login"
	oidcCallbackPath = "/auth/oidc/callback"
	oidcCookiePath   = "/auth/oidc/"
	oidcCookieName   = "gateway_oidc_login"
	oidcCookieMaxAge = 600 // seconds: auth's default LoginTTL
	maxReturnTo      = 2048
)

// errOIDCBearer: an OpenID Connect login ends in a browser redirect, which
// can only deliver the token as a cookie.
var errOIDCBearer = errors.New("proxy: the OpenID Connect login needs cookie delivery (cookie or both)")

// handleOIDCLogin sends the browser to the provider: GET
// /auth/oidc/login?return_to=/path. It sets the sealed login state and
// answers 302 to the provider's authorization endpoint, or 503 while the
// provider is not discovered.
func (g *Gateway) handleOIDCLogin(w http.ResponseWriter, r *http.Request) {
	authURL, sealed, err := g.deps.OIDC.Begin(safeReturnTo(r.URL.Query().Get("return_to")))
	if err != nil {
		g.fail(w, schemeNone, err)
		return
	}
	http.SetCookie(w, g.oidcCookie(r, sealed, oidcCookieMaxAge))
	redirect(w, authURL)
}

// handleOIDCCallback is the provider's answer: GET
// /auth/oidc/callback?code=...&state=... (or error=...). Whatever it holds,
// the login state is cleared: a state is good for one callback. On success
// the session is ours, its token set as the cookie, and the browser sent
// to the login's return path.
func (g *Gateway) handleOIDCCallback(w http.ResponseWriter, r *http.Request) {
	var sealed string
	if c, err := r.Cookie(oidcCookieName); err == nil {
		sealed = c.Value
	}
	http.SetCookie(w, g.oidcCookie(r, "", -1))
	q := r.URL.Query()
	if q.Get("error") != "" {
		// The provider's own refusal (access_denied, login_required, ...):
		// its code is named, its description is not echoed.
		g.oidcFailed(w, r, metrics.OIDCRefused, auth.ErrIdPRefused)
		return
	}
	login, err := g.deps.OIDC.Finish(r.Context(), sealed, q.Get("state"), q.Get("code"))
	if err != nil {
		g.oidcFailed(w, r, oidcResult(err), err)
		return
	}
	grant, err := g.deps.Sessions.Login(r.Context(), login.Identity, g.client(r))
	if err != nil && !errors.Is(err, auth.ErrMint) {
		g.oidcFailed(w, r, metrics.OIDCUnavailable, err)
		return
	}
	g.m.OIDCLogins.WithLabelValues(metrics.OIDCSuccess).Inc()
	g.loggedIn(w, r, &grant)
	if err != nil {
		g.fail(w, schemeNone, err)
		return
	}
	g.setTokenCookie(w, &grant)
	redirect(w, safeReturnTo(login.ReturnTo))
}

// oidcResult is the metric label of a failed callback.
func oidcResult(err error) string {
	switch {
	case errors.Is(err, auth.ErrLoginState):
		return metrics.OIDCInvalidState
	case errors.Is(err, auth.ErrIDToken):
		return metrics.OIDCInvalidIDToken
	case errors.Is(err, auth.ErrIdPRefused):
		return metrics.OIDCRefused
	}
	return metrics.OIDCUnavailable
}

// oidcFailed counts a callback that created nothing (in
// gateway_oidc_logins_total only: gateway_logins_total's failures are
// passwords refused, which an alert watches for guessing), logs why (the
// error names no token: auth's errors never hold one), and answers.
func (g *Gateway) oidcFailed(w http.ResponseWriter, r *http.Request, result string, err error) {
	g.m.OIDCLogins.WithLabelValues(result).Inc()
	g.log.Warn("oidc login failed", "event", EventOIDCLoginFailed, "result", result, "error", err.Error(),
		"client", clientIP(g.cfg.TrustedProxies, r), "request_id", r.Header.Get(HeaderRequestID))
	g.fail(w, schemeNone, err)
}

// oidcCookie is the login-state cookie: HttpOnly, SameSite=Lax (the
// provider's redirect back is a cross-site top-level GET, which Lax lets
// through and Strict would not), Secure when the request came over HTTPS.
// maxAge -1 clears it.
func (g *Gateway) oidcCookie(r *http.Request, value string, maxAge int) *http.Cookie {
	scheme, _ := g.requestOrigin(r)
	return &http.Cookie{
		Name: oidcCookieName, Value: value, Path: oidcCookiePath, MaxAge: maxAge,
		HttpOnly: true, Secure: scheme == "https", SameSite: http.SameSiteLaxMode,
	}
}

// redirect answers 302 to location, which the caller built or checked,
// without http.Redirect's rewriting of relative paths.
func redirect(w http.ResponseWriter, location string) {
	h := w.Header()
	h.Set("Location", location)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusFound)
}

// safeReturnTo is s if it is a path on the gateway's own origin, else "/":
// it starts with exactly one '/' (not "//evil" nor "/\evil", which browsers
// read as another host), holds no backslash and no control character (a
// tab or newline that a browser strips would turn "/\t/evil" into
// "//evil"), and parses with neither scheme nor host. A return path is
// never an open redirect.
func safeReturnTo(s string) string {
	if s == "" || s[0] != '/' || len(s) > maxReturnTo {
		return "/"
	}
	if len(s) > 1 && (s[1] == '/' || s[1] == '\\') {
		return "/"
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return "/"
		}
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "/"
	}
	return s
}

// logoutBody is the answer of /auth/logout for a session of the
// configured OpenID Provider: the provider's end-session URL for the
// client to follow (RP-initiated logout).
type logoutBody struct {
	EndSessionURL string `json:"end_session_url"`
}

// endSessionURL is the provider's end-session URL for session id, or ""
// for a session of another login (or when it cannot be read: the logout
// itself has succeeded, and only the provider's part is missing).
func (g *Gateway) endSessionURL(r *http.Request, id string) string {
	if g.deps.OIDC == nil {
		return ""
	}
	idp, err := g.deps.Sessions.IdP(r.Context(), id)
	if err != nil || idp.Issuer != g.deps.OIDC.Issuer() {
		return ""
	}
	return g.deps.OIDC.EndSessionURL(idp.IDToken)
}

// answerLogout answers a logout of the caller's own session: 204, or, for
// an OpenID Connect session, 200 with the provider's end-session URL.
func answerLogout(w http.ResponseWriter, endSession string) {
	if endSession == "" {
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, http.StatusOK, logoutBody{EndSessionURL: endSession})
}
