package auth

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/spa-gateway/gateway/sessionstore"
)

// A user's own sessions: what they see of each (the client it came from,
// when it logged in and last refreshed, whether it is bound to a key) and
// how they end one, the others, or all of them. Every method here acts for
// the subject of a verified token whose session is live, and only on that
// subject's sessions.

// Bounds on what a session records of its client: the headers are the
// client's to choose, and a store must not keep whatever length they come
// in.
const (
	// MaxUserAgentBytes is the longest User-Agent a session records; a
	// longer one is cut there (at a UTF-8 boundary).
	MaxUserAgentBytes = 256
	// MaxAddressBytes is the longest client address a session records (an
	// IPv6 address with a zone fits).
	MaxAddressBytes = 64
)

// Client is what the gateway knows of the client of a login or a refresh,
// recorded with the session so that its user can recognise it. Neither
// field proves anything: the client chose its User-Agent, and the address
// is the nearest hop outside trusted_proxies. The zero value records them
// as not known.
type Client struct {
	// UserAgent is the request's User-Agent; cut at MaxUserAgentBytes.
	UserAgent string
	// Address is the client's IP address; cut at MaxAddressBytes.
	Address string
	// JKT (Login only) is the RFC 7638 thumbprint of the DPoP key the
	// client proved at login: the new session is bound to it, and its
	// tokens carry it as cnf.jkt. Empty makes an unbound session. Refresh
	// ignores it: nothing re-binds a session.
	JKT string
}

// bounded is c cut to the recorded lengths.
func (c Client) bounded() Client {
	return Client{UserAgent: truncate(c.UserAgent, MaxUserAgentBytes), Address: truncate(c.Address, MaxAddressBytes), JKT: c.JKT}
}

// truncate cuts s to at most n bytes, never inside a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Scopes of LogoutScope.
const (
	// ScopeOthers ends every session of the caller's subject but the
	// caller's own.
	ScopeOthers = "others"
	// ScopeAll ends every session of the caller's subject, the caller's
	// own included.
	ScopeAll = "all"
)

// Errors of the own-session methods.
var (
	// ErrOtherSession means EndOwn was asked to end a session that is not
	// a live one of the caller's subject: another subject's, or one the
	// store does not hold (never existed, swept) or holds ended. All get
	// this one error, so that the answer never tells whether another
	// user's session ID exists. It wraps ErrSessionUnknown.
	ErrOtherSession = fmt.Errorf("not a session of the caller's: %w", ErrSessionUnknown)
	// ErrUnknownScope means LogoutScope was given a scope that is neither
	// ScopeOthers nor ScopeAll.
	ErrUnknownScope = errors.New("unknown logout scope")
)

// OwnSession is one live session of a subject as its user sees it.
type OwnSession struct {
	ID string
	// CreatedAt is the login; RefreshedAt the last refresh (CreatedAt
	// before the first); ExpiresAt the nearer of the session's idle and
	// absolute ends.
	CreatedAt, RefreshedAt, ExpiresAt time.Time
	// UserAgent and Client are those of the last refresh (the login's
	// before the first); LoginUserAgent and LoginClient the login's. Empty
	// means not known (a session from before they were recorded).
	UserAgent, Client           string
	LoginUserAgent, LoginClient string
	// Bound reports a session bound to a DPoP key.
	Bound bool
	// Current marks the session of the token the list was asked with.
	Current bool
}

// Own returns the live sessions of tok's subject, oldest first, marking
// tok's own as Current. tok must be verified and not expired
// (Verifier.Verify), and its session live: the error is then that of
// Check (ErrSessionRevoked, ...), or ErrNoSession for a token without
// one, or wraps ErrStoreUnavailable.
func (s *Sessions) Own(ctx context.Context, tok *Token) ([]OwnSession, error) {
	list, err := s.callerSessions(ctx, tok)
	if err != nil {
		return nil, err
	}
	out := make([]OwnSession, 0, len(list))
	for i := range list {
		sess := &list[i]
		out = append(out, OwnSession{
			ID: sess.ID, CreatedAt: sess.CreatedAt, RefreshedAt: sess.RefreshedAt, ExpiresAt: sess.Deadline(),
			UserAgent: sess.RefreshUserAgent, Client: sess.RefreshClient,
			LoginUserAgent: sess.LoginUserAgent, LoginClient: sess.LoginClient,
			Bound: sess.Bound(), Current: sess.ID == tok.SessionID,
		})
	}
	return out, nil
}

// EndOwn revokes (ReasonLogout) session id, a live session of tok's
// subject; it may be tok's own. tok must be verified and not expired, and
// its session live (else Check's error, or ErrNoSession). A session that
// is not a live one of the subject's, whatever the reason, is
// ErrOtherSession. Otherwise the error wraps ErrStoreUnavailable (nothing
// changed).
func (s *Sessions) EndOwn(ctx context.Context, tok *Token, id string) error {
	list, err := s.callerSessions(ctx, tok)
	if err != nil {
		return err
	}
	if !holds(list, id) {
		return ErrOtherSession
	}
	// Revoked in between (another tab, an administrator) is ended all the
	// same; swept in between is no longer there to end.
	if _, err := s.Revoke(ctx, id, ReasonLogout); errors.Is(err, ErrSessionUnknown) {
		return ErrOtherSession
	} else if err != nil {
		return err
	}
	return nil
}

// LogoutScope ends the sessions of tok's subject that scope names
// (ScopeOthers or ScopeAll, else ErrUnknownScope), revoking each
// (ReasonLogout), and returns the IDs it revoked, for the caller to close
// what they hold open. tok needs a verified signature, not a live exp
// (Verifier.VerifyExpired), as for Logout; but its session must be live
// (else Check's error, or ErrNoSession): the token of a session that is
// over, a stolen one that reuse detection revoked say, has no say over the
// subject's other sessions.
//
// Each session is revoked in a step of its own: a login made while the
// call runs may stay live. An error wrapping ErrStoreUnavailable comes with
// the IDs revoked before it, which stay revoked.
func (s *Sessions) LogoutScope(ctx context.Context, tok *Token, scope string) (ended []string, err error) {
	if scope != ScopeOthers && scope != ScopeAll {
		return nil, ErrUnknownScope
	}
	list, err := s.callerSessions(ctx, tok)
	if err != nil {
		return nil, err
	}
	for i := range list {
		id := list[i].ID
		if scope == ScopeOthers && id == tok.SessionID {
			continue
		}
		revoked, err := s.Revoke(ctx, id, ReasonLogout)
		switch {
		case errors.Is(err, ErrSessionUnknown):
			continue // swept since the list: over anyway
		case err != nil:
			return ended, err
		case revoked:
			ended = append(ended, id)
		}
	}
	return ended, nil
}

// callerSessions lists the live sessions of tok's subject, tok's own among
// them, in one read of the store. If tok's is not among them, the error
// says why its session is over, as ended does; it is ErrNoSession for a
// token without one.
func (s *Sessions) callerSessions(ctx context.Context, tok *Token) ([]sessionstore.Session, error) {
	if tok.SessionID == "" {
		return nil, ErrNoSession
	}
	list, err := s.List(ctx, tok.Subject)
	if err != nil {
		return nil, err
	}
	if !holds(list, tok.SessionID) {
		// The caller's own session is over: say why, as a proxied request
		// under every_request would hear.
		return nil, s.ended(ctx, tok.SessionID)
	}
	return list, nil
}

// holds reports whether list holds session id.
func holds(list []sessionstore.Session, id string) bool {
	for i := range list {
		if list[i].ID == id {
			return true
		}
	}
	return false
}

// ended is why session id, absent from its subject's live sessions, is
// over: Check's error, or ErrSessionUnknown if Check finds it live (come
// back live since, or another subject's: a token whose sid names another
// subject's session was minted by no login of ours).
func (s *Sessions) ended(ctx context.Context, id string) error {
	if _, err := s.CheckTunnel(ctx, id); err != nil {
		return err
	}
	return errUnknown
}
