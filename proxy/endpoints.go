package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/metrics"
)

// post answers 405 to anything but POST, and bounds the body.
func (g *Gateway) post(h http.HandlerFunc) http.Handler { return g.only(http.MethodPost, h) }

// only answers 405 to anything but method, and bounds the body.
func (g *Gateway) only(method string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method {
			w.Header().Set("Allow", method)
			writeError(w, http.StatusMethodNotAllowed, errMethodNotAllowed, "use "+method)
			return
		}
		// A declared body over the limit is refused before anything is
		// read: /auth/refresh never reads its body, /auth/logout reads
		// its scope only once the token is verified, and
		// login would wait for a body it must refuse anyway, holding the
		// connection of a client that declares 1 GiB and sends nothing
		// (found by the adversarial suite).
		if r.ContentLength > g.cfg.MaxAuthBodyBytes {
			g.fail(w, schemeNone, &http.MaxBytesError{Limit: g.cfg.MaxAuthBodyBytes})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, g.cfg.MaxAuthBodyBytes)
		h(w, r)
	})
}

func (g *Gateway) handleJWKS() http.Handler {
	body := g.deps.Keys.JWKS()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, errMethodNotAllowed, "use GET")
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "public, max-age=300")
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
}

// tokenResponse is the body of a successful login or refresh.
type tokenResponse struct {
	AccessToken      string `json:"access_token,omitempty"`
	TokenType        string `json:"token_type"`
	ExpiresIn        int64  `json:"expires_in"`
	RefreshExpiresIn int64  `json:"refresh_expires_in"`
}

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

func (g *Gateway) handleLogin(w http.ResponseWriter, r *http.Request) {
	// Where the answer sets the token cookie, a login from another site is
	// login CSRF: a foreign page posting the attacker's credentials would
	// sign the victim's browser in as the attacker, silently. It is refused
	// before the body is read, so it costs no bcrypt and counts as no
	// failure. Bearer delivery sets no cookie: a login from anywhere only
	// returns a token to whoever asked (TestLoginOrigin).
	if g.cfg.Delivery != DeliveryBearer {
		if reason := g.originCheck(r); reason != "" {
			writeError(w, http.StatusForbidden, errForbidden, reason)
			return
		}
	}
	// Before the password: a login that cannot be bound costs no bcrypt.
	jkt, err := g.loginBinding(r)
	if err != nil {
		g.fail(w, schemeNone, err)
		return
	}
	body, err := g.readBody(w, r)
	if err != nil {
		g.fail(w, schemeNone, err)
		return
	}
	ct := r.Header.Get("Content-Type")
	creds, ok := parseCredentials(ct, body)
	if !ok {
		writeError(w, http.StatusBadRequest, errInvalidRequest, "username and password required, as JSON or a form")
		return
	}
	addr := clientIP(g.cfg.TrustedProxies, r)
	// The attempt counts before the password is checked, so that attempts
	// in flight at once cannot all pass a limit that only their outcomes
	// would reach (adversarial.TestLoginLimit).
	var attempt *auth.Reservation
	if g.deps.Limiter != nil {
		var wait time.Duration
		if attempt, wait, ok = g.deps.Limiter.Reserve(creds.Username, addr); !ok {
			g.m.Logins.WithLabelValues(metrics.LoginRateLimited).Inc()
			g.log.Warn("login rate limited", "event", EventRateLimited, "username", creds.Username, "client", addr,
				"request_id", r.Header.Get(HeaderRequestID))
			w.Header().Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
			writeError(w, http.StatusTooManyRequests, errTooManyRequests, "too many failed logins; retry later")
			return
		}
	}
	creds.ContentType = ct
	creds.Body = body
	id, err := g.deps.Login.Authenticate(r.Context(), creds)
	if err != nil {
		var rej *auth.UpstreamRejected
		if err = g.loginRefused(r, attempt, creds.Username, addr, err); errors.As(err, &rej) {
			relay(w, rej)
			return
		}
		g.fail(w, schemeNone, err)
		return
	}
	attempt.Release()

	client := g.client(r)
	client.JKT = jkt
	grant, err := g.deps.Sessions.Login(r.Context(), id, client)
	if err != nil && !errors.Is(err, auth.ErrMint) {
		g.fail(w, schemeNone, err)
		return
	}
	g.loggedIn(w, r, &grant)
	if err != nil {
		g.fail(w, schemeNone, err)
		return
	}
	g.answerToken(w, &grant)
}

// endDisplaced ends the sessions a login revoked past the per-user limit.
// A token that could not be minted leaves the session stored, and the
// sessions it displaced revoked: their WebSockets close all the same.
func (g *Gateway) endDisplaced(r *http.Request, grant *auth.Grant) {
	for _, id := range grant.Revoked {
		g.EndSession(id, auth.ReasonSessionLimit) // its WebSockets on this replica
	}
	if len(grant.Revoked) > 0 {
		g.m.SessionsRevoked.WithLabelValues(auth.ReasonSessionLimit).Add(float64(len(grant.Revoked)))
		g.log.Info("sessions revoked", "event", EventSessionRevoked, "reason", auth.ReasonSessionLimit, "subject", grant.Subject,
			"sessions", grant.Revoked, "request_id", r.Header.Get(HeaderRequestID))
	}
}

// loggedIn reports a login's new session, whichever login source made it
// (a password here, the OpenID Provider in oidc.go), even when its token
// could not be minted: it ends the sessions the login displaced
// (endDisplaced), counts a successful login, notes the subject for the
// access log, and counts the session by binding with the security event a
// "new sign-in" notice is made from. The user agent is the one the session
// records (bounded by auth); the token is never logged.
func (g *Gateway) loggedIn(w http.ResponseWriter, r *http.Request, grant *auth.Grant) {
	g.endDisplaced(r, grant)
	g.m.Logins.WithLabelValues(metrics.LoginSuccess).Inc()
	noteSubject(w, grant.Subject)
	bound := metrics.BoundFalse
	if grant.Bound {
		bound = metrics.BoundTrue
	}
	g.m.SessionsCreated.WithLabelValues(bound).Inc()
	// The message stays "login", as before the event existed.
	g.log.Info("login", "event", EventSessionCreated, "subject", grant.Subject, "session", grant.SessionID,
		"user_agent", grant.Client.UserAgent, "client", grant.Client.Address, "bound", grant.Bound,
		"request_id", r.Header.Get(HeaderRequestID))
}

// loginRefused counts a login whose credentials were not accepted, and
// returns the error to answer with: a refusal of the login source
// (*auth.UpstreamRejected, relayed), auth.ErrBadCredentials, or one wrapping
// errLoginSource when the password could not be checked.
func (g *Gateway) loginRefused(r *http.Request, attempt *auth.Reservation, username, addr string, err error) error {
	var rej *auth.UpstreamRejected
	switch {
	case errors.As(err, &rej) && rej.Status >= 500:
		// The login source failed, not the password.
		attempt.Release()
		g.m.Logins.WithLabelValues(metrics.LoginFailure).Inc()
		return err
	case errors.As(err, &rej), errors.Is(err, auth.ErrBadCredentials):
		g.loginFailed(r, username, addr)
		return err
	}
	// The password could not be checked. Only the login source's own
	// failure gives the attempt back: a client that gave up (ctx's error)
	// keeps it counted, since an upstream may have checked its password
	// already.
	if errors.Is(err, auth.ErrUpstreamUnavailable) {
		attempt.Release()
	}
	g.m.Logins.WithLabelValues(metrics.LoginFailure).Inc()
	return fmt.Errorf("%w: %w", errLoginSource, err)
}

// readBody reads the login body within AuthBodyTimeout of now, whatever
// server.read_timeout says (none by default): a client trickling its body a
// byte a minute (slow POST) would otherwise hold a connection and a
// goroutine for ever. The deadline is lifted once the body is read, so that
// a slow login source is not cut by it. Its error wraps errReadBody.
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	rc := http.NewResponseController(w)
	bounded := rc.SetReadDeadline(time.Now().Add(g.cfg.AuthBodyTimeout)) == nil // not for a writer without deadlines (tests)
	body, err := io.ReadAll(r.Body)
	if bounded {
		rc.SetReadDeadline(time.Time{})
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errReadBody, err)
	}
	return body, nil
}

// loginFailed reports a wrong password; its attempt stays counted by the
// limiter until it leaves the window.
func (g *Gateway) loginFailed(r *http.Request, username, addr string) {
	g.m.Logins.WithLabelValues(metrics.LoginFailure).Inc()
	// The username is logged: it is not a secret, and operators need it to
	// see a password-guessing attack. The password never is.
	g.log.Warn("login failed", "event", EventLoginFailed, "username", username, "client", addr,
		"request_id", r.Header.Get(HeaderRequestID))
}

// relay passes a legacy login endpoint's refusal to the client unchanged.
func relay(w http.ResponseWriter, rej *auth.UpstreamRejected) {
	for _, k := range []string{"Content-Type", "Www-Authenticate", "Retry-After"} {
		if v := rej.Header.Values(k); len(v) > 0 {
			w.Header()[k] = v
		}
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(rej.Body)))
	w.WriteHeader(rej.Status)
	w.Write(rej.Body)
}

// parseCredentials reads {"username","password"} from JSON or a form.
func parseCredentials(contentType string, body []byte) (auth.Credentials, bool) {
	mt, _, _ := mime.ParseMediaType(contentType)
	var c auth.Credentials
	switch mt {
	case "application/json":
		var lr loginRequest
		if err := json.Unmarshal(body, &lr); err != nil {
			return c, false
		}
		c.Username, c.Password = lr.Username, lr.Password
	case "application/x-www-form-urlencoded":
		v, err := url.ParseQuery(string(body))
		if err != nil {
			return c, false
		}
		c.Username, c.Password = v.Get("username"), v.Get("password")
	default:
		return c, false
	}
	return c, c.Username != "" && c.Password != ""
}

// tokenCheck is how requestToken checks a request's token.
type tokenCheck struct {
	// expired accepts a token past its exp (VerifyExpired, not Verify):
	// /auth/refresh and /auth/logout, where a token is only exchanged or
	// ended.
	expired bool
	// verifyFirst verifies the token before the cookie's CSRF and origin
	// rules, as a proxied request does; the gateway's own endpoints apply
	// the rules first.
	verifyFirst bool
	// upgrade: the request is a WebSocket handshake, whose cookie token is
	// held to the origin rule (see cookieRule).
	upgrade bool
	// issuers, if not nil, verifies instead of Deps.Verifier: a route
	// that accepts external issuers. The gateway's own endpoints never
	// set it, so an external token never refreshes, logs out or lists
	// sessions: it fails there as an issuer mismatch.
	issuers *auth.Issuers
}

// requestToken reads the request's token (extractToken) and verifies it
// as c says: signature and claims, the cookie's CSRF and origin rules
// (cookieRule), and its binding (checkBinding). scheme is how the token
// was presented, for fail's challenge. The error is for fail: a
// badCredential or a crossSite reason, errTokenMissing (no token at all,
// an SPA's interceptor firing on a 401 say, which is counted apart from a
// bad token and stays out of the failure alert), or the verifier's or the
// binding's.
func (g *Gateway) requestToken(w http.ResponseWriter, r *http.Request, c tokenCheck) (tok *auth.Token, scheme authScheme, err error) {
	raw, fromCookie, scheme, bad := g.extractToken(r)
	switch {
	case bad != "":
		return nil, scheme, badCredential(bad)
	case raw == "":
		return nil, scheme, errTokenMissing
	}
	if fromCookie && !c.verifyFirst {
		if reason := g.cookieRule(r, c.upgrade); reason != "" {
			return nil, scheme, crossSite(reason)
		}
	}
	switch {
	case c.expired:
		tok, err = g.deps.Verifier.VerifyExpired(raw)
	case c.issuers != nil:
		tok, err = c.issuers.Verify(r.Context(), raw)
	default:
		tok, err = g.deps.Verifier.Verify(raw)
	}
	if err != nil {
		return nil, scheme, err
	}
	if fromCookie && c.verifyFirst {
		if reason := g.cookieRule(r, c.upgrade); reason != "" {
			return nil, scheme, crossSite(reason)
		}
	}
	// Per request, after Verify whatever its cache said: a cache hit
	// skips the token's signature, never its proof.
	if err := g.checkBinding(w, r, tok, fromCookie, scheme); err != nil {
		return nil, scheme, err
	}
	return tok, scheme, nil
}

// noteSessionSubject records tok's subject for the access log, unless the
// sessions service refused tok for naming no session (err).
func noteSessionSubject(w http.ResponseWriter, tok *auth.Token, err error) {
	if !errors.Is(err, auth.ErrNoSession) {
		noteSubject(w, tok.Subject)
	}
}

func (g *Gateway) handleRefresh(w http.ResponseWriter, r *http.Request) {
	tok, scheme, err := g.requestToken(w, r, tokenCheck{expired: true})
	if err != nil {
		if p := g.fail(w, scheme, err); p.refresh != "" {
			g.m.Refreshes.WithLabelValues(p.refresh).Inc()
		}
		return
	}
	grant, err := g.deps.Sessions.Refresh(r.Context(), tok, g.client(r))
	noteSessionSubject(w, tok, err)
	if err == nil || errors.Is(err, auth.ErrMint) {
		// The session rotated, whether or not its successor was minted.
		result := metrics.RefreshSuccess
		if grant.Grace {
			result = metrics.RefreshGrace
		}
		g.m.Refreshes.WithLabelValues(result).Inc()
	}
	if g.endedWith(tok.SessionID, err) {
		if errors.Is(err, auth.ErrTokenReused) {
			g.m.SessionsRevoked.WithLabelValues(auth.ReasonReuseDetected).Inc()
			g.log.Warn("token reuse detected; session revoked", "event", EventReuseDetected, "subject", tok.Subject, "session", tok.SessionID,
				"client", clientIP(g.cfg.TrustedProxies, r), "request_id", r.Header.Get(HeaderRequestID))
		}
		if auth.EndReason(err) == auth.ReasonIdPRefused {
			g.m.SessionsRevoked.WithLabelValues(auth.ReasonIdPRefused).Inc()
			g.log.Info("session revoked", "event", EventSessionRevoked, "reason", auth.ReasonIdPRefused, "subject", tok.Subject,
				"session", tok.SessionID, "request_id", r.Header.Get(HeaderRequestID))
		}
		g.clearCookie(w)
	}
	if err != nil {
		if p := g.fail(w, scheme, err); p.refresh != "" {
			g.m.Refreshes.WithLabelValues(p.refresh).Inc()
		}
		return
	}
	g.answerToken(w, &grant)
}

// logoutRequest is the optional body of /auth/logout: no body, {} or no
// scope ends the token's own session; auth.ScopeOthers or auth.ScopeAll
// the caller's other sessions, or all of them.
type logoutRequest struct {
	Scope *string `json:"scope"`
}

func (g *Gateway) handleLogout(w http.ResponseWriter, r *http.Request) {
	tok, scheme, err := g.requestToken(w, r, tokenCheck{expired: true})
	if err != nil {
		g.fail(w, scheme, err)
		return
	}
	// The body is read only once the token is verified: a request that
	// would be refused anyway costs no read.
	body, err := g.readBody(w, r)
	if err != nil {
		g.fail(w, scheme, err)
		return
	}
	var req logoutRequest
	if len(bytes.TrimSpace(body)) > 0 && json.Unmarshal(body, &req) != nil {
		writeError(w, http.StatusBadRequest, errInvalidRequest, `body must be JSON {"scope":"others"} or {"scope":"all"}, or none`)
		return
	}
	if req.Scope != nil {
		g.logoutScope(w, r, tok, scheme, *req.Scope)
		return
	}
	revoked, err := g.deps.Sessions.Logout(r.Context(), tok)
	noteSessionSubject(w, tok, err)
	if err != nil {
		g.fail(w, scheme, err)
		return
	}
	g.m.Logouts.Inc()
	g.EndSession(tok.SessionID, auth.ReasonLogout)
	if revoked {
		g.m.SessionsRevoked.WithLabelValues(auth.ReasonLogout).Inc()
		g.log.Info("session revoked", "event", EventSessionRevoked, "reason", auth.ReasonLogout, "subject", tok.Subject,
			"session", tok.SessionID, "request_id", r.Header.Get(HeaderRequestID))
	}
	g.clearCookie(w)
	answerLogout(w, g.endSessionURL(r, tok.SessionID))
}

// logoutScope ends the caller's other sessions, or all of them, closes
// their tunnels, and answers 204; the cookie is cleared only where the
// caller's own session ended. Sessions ended before a store failure stay
// ended, and are closed and counted before the 503.
func (g *Gateway) logoutScope(w http.ResponseWriter, r *http.Request, tok *auth.Token, scheme authScheme, scope string) {
	ended, err := g.deps.Sessions.LogoutScope(r.Context(), tok, scope)
	noteSessionSubject(w, tok, err)
	own := false
	for _, id := range ended {
		g.EndSession(id, auth.ReasonLogout)
		own = own || id == tok.SessionID
	}
	if len(ended) > 0 {
		g.m.SessionsRevoked.WithLabelValues(auth.ReasonLogout).Add(float64(len(ended)))
		g.log.Info("sessions revoked", "event", EventSessionRevoked, "reason", auth.ReasonLogout, "scope", scope,
			"subject", tok.Subject, "session", tok.SessionID, "sessions", ended, "request_id", r.Header.Get(HeaderRequestID))
	}
	if err != nil {
		g.fail(w, scheme, err)
		return
	}
	g.m.Logouts.Inc()
	if own {
		g.clearCookie(w)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// answerToken answers with a granted token: in the body, the cookie or
// both, as Delivery says.
func (g *Gateway) answerToken(w http.ResponseWriter, grant *auth.Grant) {
	resp := tokenResponse{
		TokenType:        "Bearer",
		ExpiresIn:        seconds(grant.ExpiresAt.Sub(grant.Now)),
		RefreshExpiresIn: seconds(grant.RefreshDeadline.Sub(grant.Now)),
	}
	if grant.Bound {
		// RFC 9449 section 5: the token is to be sent as DPoP, with a proof.
		resp.TokenType = "DPoP"
		g.offerNonce(w)
	}
	if g.cfg.Delivery != DeliveryCookie {
		resp.AccessToken = grant.Token
	}
	if g.cfg.Delivery != DeliveryBearer {
		g.setTokenCookie(w, grant)
	}
	w.Header().Set("Pragma", "no-cache") // RFC 6749 section 5.1, for HTTP/1.0 caches
	writeJSON(w, http.StatusOK, resp)
}

// setTokenCookie sets grant's token as the token cookie, for as long as
// its session may be refreshed.
func (g *Gateway) setTokenCookie(w http.ResponseWriter, grant *auth.Grant) {
	http.SetCookie(w, &http.Cookie{
		Name:     g.cfg.CookieName,
		Value:    grant.Token,
		Path:     "/",
		MaxAge:   max(int(seconds(grant.RefreshDeadline.Sub(grant.Now))), 1),
		HttpOnly: true,
		Secure:   true,
		SameSite: http.SameSiteStrictMode,
	})
}

// clearCookie expires the token cookie where cookies are in use.
func (g *Gateway) clearCookie(w http.ResponseWriter) {
	if g.cfg.Delivery == DeliveryBearer {
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: g.cfg.CookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	})
}

// seconds rounds d down to whole seconds, never below zero.
func seconds(d time.Duration) int64 {
	if d < 0 {
		return 0
	}
	return int64(d / time.Second)
}
