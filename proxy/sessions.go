package proxy

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/metrics"
	"github.com/spa-gateway/gateway/sessionstore"
)

// ownEndpoints is the gateway's own surface on the main listener. It is
// matched before the routes, on the checked path.
func (g *Gateway) ownEndpoints() map[string]http.Handler {
	m := map[string]http.Handler{
		"/auth/refresh":          g.post(g.handleRefresh),
		"/auth/logout":           g.post(g.handleLogout),
		"/.well-known/jwks.json": g.handleJWKS(),
	}
	if g.deps.Login != nil {
		m["/auth/login"] = g.post(g.handleLogin)
	}
	return m
}

// post answers 405 to anything but POST, and bounds the body.
func (g *Gateway) post(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeError(w, http.StatusMethodNotAllowed, errMethodNotAllowed, "use POST")
			return
		}
		// A declared body over the limit is refused before anything is
		// read: /auth/refresh and /auth/logout never read theirs, and
		// login would wait for a body it must refuse anyway, holding the
		// connection of a client that declares 1 GiB and sends nothing
		// (found by the adversarial suite).
		if r.ContentLength > g.cfg.MaxAuthBodyBytes {
			writeError(w, http.StatusRequestEntityTooLarge, errTooLarge, "body too large")
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
	body, err := g.readBody(w, r)
	if err != nil {
		var mbe *http.MaxBytesError
		var ne net.Error
		switch {
		case errors.As(err, &mbe):
			writeError(w, http.StatusRequestEntityTooLarge, errTooLarge, "body too large")
			return
		case errors.As(err, &ne) && ne.Timeout():
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusRequestTimeout, errRequestTimeout, "body not received in time")
			return
		}
		writeError(w, http.StatusBadRequest, errInvalidRequest, "unreadable body")
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
		switch {
		case errors.As(err, &rej):
			if rej.Status < 500 {
				g.loginFailed(r, creds.Username, addr)
			} else {
				// The login source failed, not the password.
				attempt.Release()
				g.m.Logins.WithLabelValues(metrics.LoginFailure).Inc()
			}
			relay(w, rej)
		case errors.Is(err, auth.ErrBadCredentials):
			g.loginFailed(r, creds.Username, addr)
			writeError(w, http.StatusUnauthorized, errInvalidGrant, "invalid username or password")
		default:
			// The password could not be checked. Only the login source's
			// own failure gives the attempt back: a client that gave up
			// (ctx's error) keeps it counted, since an upstream may have
			// checked its password already.
			if errors.Is(err, auth.ErrUpstreamUnavailable) {
				attempt.Release()
			}
			g.m.Logins.WithLabelValues(metrics.LoginFailure).Inc()
			g.log.Error("login source", "err", err)
			writeError(w, http.StatusBadGateway, errBadGateway, "login service unavailable")
		}
		return
	}
	attempt.Release()

	now := g.now()
	s := sessionstore.Session{
		ID:          rand.Text(),
		Subject:     id.Subject,
		Roles:       id.Roles,
		JTI:         rand.Text(),
		IssuedAt:    now,
		CreatedAt:   now,
		RefreshedAt: now,
		// Deadlines are stored at the precision every backend keeps.
		IdleExpiresAt: now.Add(g.cfg.IdleTimeout),
		ExpiresAt:     now.Add(g.cfg.AbsoluteTimeout),
	}
	var limited []string
	err = g.storeOp(r.Context(), "create", func(ctx context.Context) (err error) {
		limited, err = g.deps.Store.CreateLimited(ctx, s, g.cfg.MaxSessionsPerUser)
		return err
	})
	if err != nil {
		g.log.Error("session store write", "op", "create", "err", err)
		writeError(w, http.StatusServiceUnavailable, errUnavailable, "session store unavailable")
		return
	}
	for _, id := range limited {
		g.EndSession(id, sessionstore.ReasonSessionLimit) // its WebSockets on this replica
	}
	if len(limited) > 0 {
		g.m.SessionsRevoked.WithLabelValues(sessionstore.ReasonSessionLimit).Add(float64(len(limited)))
		g.log.Info("sessions revoked", "event", EventSessionRevoked, "reason", sessionstore.ReasonSessionLimit, "subject", s.Subject,
			"sessions", limited, "limit", g.cfg.MaxSessionsPerUser, "request_id", r.Header.Get(HeaderRequestID))
	}
	g.m.Logins.WithLabelValues(metrics.LoginSuccess).Inc()
	noteSubject(w, s.Subject)
	g.log.Info("login", "subject", s.Subject, "session", s.ID, "client", addr, "request_id", r.Header.Get(HeaderRequestID))
	g.answerToken(w, &s, now)
}

// readBody reads the login body within AuthBodyTimeout of now, whatever
// server.read_timeout says (none by default): a client trickling its body a
// byte a minute (slow POST) would otherwise hold a connection and a
// goroutine for ever. The deadline is lifted once the body is read, so that
// a slow login source is not cut by it.
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Now().Add(g.cfg.AuthBodyTimeout)); err != nil {
		return io.ReadAll(r.Body) // a writer without deadlines (tests): no bound
	}
	body, err := io.ReadAll(r.Body)
	rc.SetReadDeadline(time.Time{})
	return body, err
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

// sessionToken reads and verifies the token of an /auth/refresh or
// /auth/logout request. Only exp is relaxed (VerifyExpired); the cookie's
// CSRF rule applies as to any state-changing request.
func (g *Gateway) sessionToken(w http.ResponseWriter, r *http.Request) (*auth.Token, bool) {
	raw, fromCookie, _, bad := g.extractToken(r)
	if bad != "" {
		writeError(w, http.StatusBadRequest, errInvalidRequest, bad)
		return nil, false
	}
	if raw == "" {
		writeChallenge(w, http.StatusUnauthorized, "", "token missing")
		return nil, false
	}
	if fromCookie {
		if reason := g.csrfCheck(r); reason != "" {
			writeError(w, http.StatusForbidden, errForbidden, reason)
			return nil, false
		}
	}
	tok, err := g.deps.Verifier.VerifyExpired(raw)
	if err == nil && tok.SessionID == "" {
		err = errNoSession
	}
	if err != nil {
		writeChallenge(w, http.StatusUnauthorized, errInvalidToken, describe(err))
		return nil, false
	}
	noteSubject(w, tok.Subject)
	return tok, true
}

var errNoSession = errors.New("token names no session")

func describe(err error) string {
	if errors.Is(err, errNoSession) {
		return "token names no session"
	}
	return auth.Describe(err)
}

func (g *Gateway) handleRefresh(w http.ResponseWriter, r *http.Request) {
	tok, ok := g.sessionToken(w, r)
	if !ok {
		// No token at all (an SPA's interceptor firing on a 401) is not a
		// bad token: counted apart, it stays out of the failure alert.
		result := metrics.RefreshInvalidToken
		if raw, _, _, bad := g.extractToken(r); raw == "" && bad == "" {
			result = metrics.RefreshMissing
		}
		g.m.Refreshes.WithLabelValues(result).Inc()
		return
	}
	now := g.now()
	if now.Before(tok.ExpiresAt.Add(-g.cfg.RefreshBeforeExpiry)) {
		g.m.Refreshes.WithLabelValues(metrics.RefreshNotExpired).Inc()
		writeChallenge(w, http.StatusUnauthorized, errInvalidToken, "token not expired")
		return
	}
	var res sessionstore.RotateResult
	err := g.storeOp(r.Context(), "rotate", func(ctx context.Context) (err error) {
		res, err = g.deps.Store.Rotate(ctx, sessionstore.RotateRequest{
			SessionID:   tok.SessionID,
			JTI:         tok.ID,
			NewJTI:      rand.Text(),
			Now:         now,
			IdleTimeout: g.cfg.IdleTimeout,
			Grace:       g.cfg.RefreshGrace,
		})
		return err
	})
	var result, desc string
	switch {
	case err == nil && res.Grace:
		result = metrics.RefreshGrace
	case err == nil:
		result = metrics.RefreshSuccess
	case errors.Is(err, sessionstore.ErrNotFound):
		result, desc = metrics.RefreshUnknownSession, "session revoked"
	case errors.Is(err, sessionstore.ErrRevoked):
		result, desc = metrics.RefreshRevoked, "session revoked"
	case errors.Is(err, sessionstore.ErrExpired):
		result, desc = metrics.RefreshExpired, "session expired"
	case errors.Is(err, sessionstore.ErrReuseDetected):
		result, desc = metrics.RefreshReuseDetected, "token reuse detected"
		g.m.SessionsRevoked.WithLabelValues(sessionstore.ReasonReuseDetected).Inc()
		g.log.Warn("token reuse detected; session revoked", "event", EventReuseDetected, "subject", tok.Subject, "session", tok.SessionID,
			"client", clientIP(g.cfg.TrustedProxies, r), "request_id", r.Header.Get(HeaderRequestID))
	default:
		g.log.Error("session store write", "op", "rotate", "err", err)
		writeError(w, http.StatusServiceUnavailable, errUnavailable, "session store unavailable")
		return
	}
	g.m.Refreshes.WithLabelValues(result).Inc()
	if desc != "" {
		g.EndSession(tok.SessionID, endReason(res.Session, err, now))
		g.clearCookie(w)
		writeChallenge(w, http.StatusUnauthorized, errInvalidToken, desc)
		return
	}
	g.answerToken(w, &res.Session, now)
}

func (g *Gateway) handleLogout(w http.ResponseWriter, r *http.Request) {
	tok, ok := g.sessionToken(w, r)
	if !ok {
		return
	}
	var revoked bool
	err := g.storeOp(r.Context(), "revoke", func(ctx context.Context) (err error) {
		revoked, err = g.deps.Store.Revoke(ctx, tok.SessionID, sessionstore.ReasonLogout, g.now())
		return err
	})
	if err != nil && !errors.Is(err, sessionstore.ErrNotFound) {
		g.log.Error("session store write", "op", "revoke", "err", err)
		writeError(w, http.StatusServiceUnavailable, errUnavailable, "session store unavailable")
		return
	}
	g.m.Logouts.Inc()
	g.EndSession(tok.SessionID, sessionstore.ReasonLogout)
	if revoked {
		g.m.SessionsRevoked.WithLabelValues(sessionstore.ReasonLogout).Inc()
		g.log.Info("session revoked", "event", EventSessionRevoked, "reason", sessionstore.ReasonLogout, "subject", tok.Subject,
			"session", tok.SessionID, "request_id", r.Header.Get(HeaderRequestID))
	}
	g.clearCookie(w)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// answerToken mints the session's current token and answers with it. The
// token's exp never passes the session's absolute end.
func (g *Gateway) answerToken(w http.ResponseWriter, s *sessionstore.Session, now time.Time) {
	exp := s.IssuedAt.Add(g.cfg.AccessTTL)
	if exp.After(s.ExpiresAt) {
		exp = s.ExpiresAt
	}
	raw, err := g.deps.Minter.Mint(auth.MintClaims{
		Subject:   s.Subject,
		SessionID: s.ID,
		ID:        s.JTI,
		Roles:     s.Roles,
		IssuedAt:  s.IssuedAt,
		ExpiresAt: exp,
	})
	if err != nil {
		g.log.Error("mint token", "err", err)
		writeError(w, http.StatusInternalServerError, "server_error", "could not mint a token")
		return
	}
	resp := tokenResponse{
		TokenType:        "Bearer",
		ExpiresIn:        seconds(exp.Sub(now)),
		RefreshExpiresIn: seconds(s.Deadline().Sub(now)),
	}
	if g.cfg.Delivery != DeliveryCookie {
		resp.AccessToken = raw
	}
	if g.cfg.Delivery != DeliveryBearer {
		http.SetCookie(w, &http.Cookie{
			Name:     g.cfg.CookieName,
			Value:    raw,
			Path:     "/",
			MaxAge:   max(int(seconds(s.Deadline().Sub(now))), 1),
			HttpOnly: true,
			Secure:   true,
			SameSite: http.SameSiteStrictMode,
		})
	}
	body, _ := json.Marshal(resp)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.Write(append(body, '\n'))
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

// storeOp runs one store write with ctx bounded by StoreTimeout, and
// records its duration. The store guarantees that a write ending in an
// error applies neither now nor later, so the 503 that follows is true.
func (g *Gateway) storeOp(ctx context.Context, op string, f func(ctx context.Context) error) error {
	start := time.Now()
	if g.cfg.StoreTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g.cfg.StoreTimeout)
		defer cancel()
	}
	err := f(ctx)
	g.m.StoreOperationLength.WithLabelValues(op).Observe(time.Since(start).Seconds())
	return err
}

// seconds rounds d down to whole seconds, never below zero.
func seconds(d time.Duration) int64 {
	if d < 0 {
		return 0
	}
	return int64(d / time.Second)
}
