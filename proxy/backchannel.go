package proxy

import (
	"mime"
	"net/http"
	"net/url"

	"github.com/spa-gateway/gateway/auth"
)

// backchannelLogoutPath is where the provider posts its logout tokens
// (OpenID Connect Back-Channel Logout 1.0): the backchannel_logout_uri
// registered for our client.
const backchannelLogoutPath = "/auth/oidc/backchannel-logout"

// EventIdPLogoutRefused: a back-channel logout token was refused (its
// "error" says why; never the token).
const EventIdPLogoutRefused = "idp_logout_refused"

// handleBackchannelLogout is the provider's back-channel logout: POST
// application/x-www-form-urlencoded with logout_token, the body bounded
// by only. auth verifies the token (OIDC.VerifyLogout) and ends its
// sessions (Sessions.EndIdPLogout); their WebSockets on this replica close
// now, those on other replicas at their next check. It answers 200 with
// Cache-Control: no-store (section 2.8), 400 invalid_request for a token
// refused or a request without one, 501 when back-channel logout is not
// offered (subject_claim), 503 when the provider's keys or the store
// cannot be reached: never a 5xx for a bad token.
func (g *Gateway) handleBackchannelLogout(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	raw, err := g.logoutTokenOf(w, r)
	if err != nil {
		g.fail(w, schemeNone, err)
		return
	}
	tok, err := g.deps.OIDC.VerifyLogout(r.Context(), raw)
	if err == nil {
		var revoked []string
		revoked, err = g.deps.Sessions.EndIdPLogout(r.Context(), tok)
		g.endIdPSessions(r, tok, revoked)
	}
	if err != nil {
		g.log.Warn("back-channel logout refused", "event", EventIdPLogoutRefused, "error", err.Error(),
			"client", clientIP(g.cfg.TrustedProxies, r), "request_id", r.Header.Get(HeaderRequestID))
		g.fail(w, schemeNone, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// logoutTokenOf is the request's logout_token form parameter, read as a
// login body is (readBody: bounded in size and time). The body is the
// only place it may come from (section 2.5): a query parameter is
// ignored.
func (g *Gateway) logoutTokenOf(w http.ResponseWriter, r *http.Request) (string, error) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		return "", badCredential("logout_token must be posted as application/x-www-form-urlencoded")
	}
	body, err := g.readBody(w, r)
	if err != nil {
		return "", err
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return "", badCredential("unreadable form")
	}
	raw := form.Get("logout_token")
	if raw == "" {
		return "", badCredential("logout_token missing")
	}
	return raw, nil
}

// endIdPSessions closes the WebSockets of the sessions a back-channel
// logout revoked, on this replica, and reports them.
func (g *Gateway) endIdPSessions(r *http.Request, tok auth.LogoutToken, revoked []string) {
	for _, id := range revoked {
		g.EndSession(id, auth.ReasonIdPLogout)
	}
	if len(revoked) == 0 {
		return
	}
	g.m.SessionsRevoked.WithLabelValues(auth.ReasonIdPLogout).Add(float64(len(revoked)))
	g.log.Info("sessions revoked", "event", EventSessionRevoked, "reason", auth.ReasonIdPLogout, "subject", tok.Subject,
		"sessions", revoked, "issuer", tok.Issuer, "request_id", r.Header.Get(HeaderRequestID))
}
