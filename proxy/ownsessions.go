package proxy

import (
	"net/http"
	"strings"
	"time"

	"github.com/spa-gateway/gateway/auth"
)

// A user's own sessions: GET /auth/sessions lists them, DELETE
// /auth/sessions/{id} ends one. Unlike /auth/refresh and /auth/logout,
// both need a token that has not expired (Verify, not VerifyExpired): they
// show and change what the user holds now, and an expired token is only
// good for being exchanged or ended. auth.Sessions decides which sessions
// are the caller's; these handlers decode, call it and encode.

// sessionsPrefix is the one own endpoint that takes a path parameter:
// DELETE /auth/sessions/{id}.
const sessionsPrefix = "/auth/sessions/"

// ownSession is one element of GET /auth/sessions. user_agent and client
// are those of the last refresh (the login's before the first); the
// login_ ones those of the login. Times are RFC 3339, in UTC.
type ownSession struct {
	SessionID      string    `json:"session_id"`
	CreatedAt      time.Time `json:"created_at"`
	RefreshedAt    time.Time `json:"refreshed_at"`
	ExpiresAt      time.Time `json:"expires_at"`
	UserAgent      string    `json:"user_agent"`
	Client         string    `json:"client"`
	LoginUserAgent string    `json:"login_user_agent"`
	LoginClient    string    `json:"login_client"`
	Bound          bool      `json:"bound"`
	Current        bool      `json:"current"`
}

func (g *Gateway) handleOwnSessions(w http.ResponseWriter, r *http.Request) {
	tok, scheme, err := g.requestToken(w, r, tokenCheck{})
	if err != nil {
		g.fail(w, scheme, err)
		return
	}
	list, err := g.deps.Sessions.Own(r.Context(), tok)
	noteSessionSubject(w, tok, err)
	if err != nil {
		g.endedWith(tok.SessionID, err)
		g.fail(w, scheme, err)
		return
	}
	out := make([]ownSession, len(list))
	for i, s := range list {
		out[i] = ownSession{
			SessionID: s.ID, CreatedAt: s.CreatedAt.UTC(), RefreshedAt: s.RefreshedAt.UTC(), ExpiresAt: s.ExpiresAt.UTC(),
			UserAgent: s.UserAgent, Client: s.Client, LoginUserAgent: s.LoginUserAgent, LoginClient: s.LoginClient,
			Bound: s.Bound, Current: s.Current,
		}
	}
	// Who logged in from where is the user's own business: no cache, shared
	// or private, keeps it (writeJSON's no-store).
	writeJSON(w, http.StatusOK, out)
}

func (g *Gateway) handleEndOwnSession(w http.ResponseWriter, r *http.Request) {
	tok, scheme, err := g.requestToken(w, r, tokenCheck{})
	if err != nil {
		g.fail(w, scheme, err)
		return
	}
	id := strings.TrimPrefix(r.URL.Path, sessionsPrefix)
	err = g.deps.Sessions.EndOwn(r.Context(), tok, id)
	noteSessionSubject(w, tok, err)
	if err != nil {
		g.endedWith(tok.SessionID, err)
		g.fail(w, scheme, err) // auth.ErrOtherSession: 404, whoever's it was
		return
	}
	g.EndSession(id, auth.ReasonLogout)
	g.m.SessionsRevoked.WithLabelValues(auth.ReasonLogout).Inc()
	g.log.Info("session revoked", "event", EventSessionRevoked, "reason", auth.ReasonLogout, "subject", tok.Subject,
		"session", id, "by_session", tok.SessionID, "request_id", r.Header.Get(HeaderRequestID))
	if id == tok.SessionID {
		g.clearCookie(w)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}
