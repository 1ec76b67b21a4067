package auth

import (
	"context"
	"errors"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
)

// IdPChecker rechecks a session at its identity provider: *OIDC.
//
// Recheck refreshes with the session's sealed refresh token and returns the
// sealed successor (the same value when the provider rotated nothing). The
// error wraps ErrIdPRefused when the provider refused the token, and
// ErrIdPUnavailable when it could not be asked.
type IdPChecker interface {
	Recheck(ctx context.Context, sealedRefreshToken string) (string, error)
}

// recheck is Refresh's provider step, under SessionsConfig.IdP: for the
// current token of a live session with a provider refresh token, it
// refreshes at the provider and returns the sealed successor for Rotate
// to store. Any other token (within the grace, reused, of an ended
// session, or of a session without a provider refresh token) is left to
// the store's rules without asking the provider: a stolen old token never
// makes the gateway spend the provider's refresh token.
//
// The provider's refusal revokes the session (ReasonIdPRefused) and is
// ErrSessionRevoked with that reason; an unreachable provider is an error
// wrapping ErrIdPUnavailable, and nothing changed.
func (s *Sessions) recheck(ctx context.Context, tok *Token) (string, error) {
	if s.cfg.IdP == nil {
		return "", nil
	}
	sess, err := s.get(ctx, tok.SessionID)
	if err != nil {
		return "", storeError(err)
	}
	if !sess.Live(s.now()) || sess.JTI != tok.ID || sess.IdPRefreshToken == "" {
		return "", nil
	}
	next, err := s.cfg.IdP.Recheck(ctx, sess.IdPRefreshToken)
	if err == nil || !errors.Is(err, ErrIdPRefused) {
		return next, err
	}
	// A refresh of the same session in another tab may have rotated the
	// provider's token meanwhile: the refusal is then of the token it
	// replaced, and the rotation's own rules (grace, reuse) decide.
	if again, err := s.get(ctx, tok.SessionID); err == nil && again.IdPRefreshToken != sess.IdPRefreshToken {
		return "", nil
	}
	if _, err := s.Revoke(ctx, tok.SessionID, ReasonIdPRefused); err != nil && !errors.Is(err, ErrSessionUnknown) {
		return "", err
	}
	return "", &endedError{ErrSessionRevoked, ReasonIdPRefused}
}

// IdP returns what session id keeps of its identity provider, revoked or
// not, for the provider's logout: its Issuer, SessionID and IDToken (never
// its refresh token); the zero IdPLogin for a session of another login.
// The error is ErrSessionUnknown, or wraps ErrStoreUnavailable.
func (s *Sessions) IdP(ctx context.Context, id string) (IdPLogin, error) {
	sess, err := s.get(ctx, id)
	if err != nil {
		return IdPLogin{}, storeError(err)
	}
	return IdPLogin{Issuer: sess.Issuer, SessionID: sess.IdPSessionID, IDToken: sess.IDToken}, nil
}

// get reads session id, bounded by StoreTimeout, and observes it.
func (s *Sessions) get(ctx context.Context, id string) (sess sessionstore.Session, err error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	start := time.Now()
	sess, err = s.store.Get(ctx, id)
	s.observe("get", start)
	return sess, err
}
