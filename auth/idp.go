package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
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

// DefaultLogoutReplayEntries is the capacity of the memory replay cache of
// a Sessions without SessionsConfig.LogoutReplay: logout tokens come at
// the pace users sign out at their provider, so a few thousand within
// their window is plenty (about 330 KiB).
const DefaultLogoutReplayEntries = 4096

// EndIdPLogout ends the sessions a verified back-channel logout token
// (OIDC.VerifyLogout) names, revoking them with ReasonIdPLogout, and
// returns their IDs (nil for none: a logout of sessions already over, or
// never ours, or of a provider session we never saw, is no error: the
// provider is answered 200, as section 2.8 asks of a logout that had
// nothing left to do). The rules, in order:
//
//  1. Its jti, with its issuer, has not been accepted before within the
//     token's window (LogoutReplay, shared by replicas): else
//     ErrLogoutReplayed. It is recorded before anything is revoked, so a
//     store failure below spends it (a retry of the same token is then
//     refused; providers send a new token per attempt, if they retry).
//  2. The subject: the token's Subject when set (its sub, which
//     VerifyLogout passes on only with subject_claim "sub"); else the
//     subject Login recorded for the token's sid (putIdPSession), and
//     none (nothing to end) when it recorded none.
//  3. Of the subject's live sessions, those of the token's issuer, and,
//     with a sid, of that provider session only, are revoked: a sid ends
//     exactly the sessions of that login at the provider, and the
//     subject's other sessions survive; a sub alone ends them all.
//
// The error wraps ErrLogoutToken or ErrStoreUnavailable (the replay cache
// or the store could not answer; the sessions revoked before the failure
// are in the result).
func (s *Sessions) EndIdPLogout(ctx context.Context, t LogoutToken) (revoked []string, err error) {
	if t.Subject == "" && t.SessionID == "" {
		return nil, fmt.Errorf("%w: neither sid nor sub", ErrLogoutToken)
	}
	h := sha256.Sum256([]byte("oidc logout\x00" + t.Issuer + "\x00" + t.ID))
	until := t.IssuedAt.Add(logoutMaxAge + oidcClockSkew)
	seen, err := s.cfg.LogoutReplay.Seen(ctx, string(h[:]), until)
	if err != nil {
		return nil, fmt.Errorf("%w: logout replay cache: %w", ErrStoreUnavailable, err)
	}
	if seen {
		return nil, ErrLogoutReplayed
	}
	subject, err := s.idpSubject(ctx, t)
	if err != nil || subject == "" {
		return nil, err
	}
	list, err := s.List(ctx, subject)
	if err != nil {
		return nil, err
	}
	for _, sess := range list {
		if sess.Issuer != t.Issuer || (t.SessionID != "" && sess.IdPSessionID != t.SessionID) {
			continue
		}
		ok, err := s.Revoke(ctx, sess.ID, ReasonIdPLogout)
		switch {
		case errors.Is(err, ErrSessionUnknown):
			// Swept since the list: over either way.
		case err != nil:
			return revoked, err
		case ok:
			revoked = append(revoked, sess.ID)
		}
	}
	return revoked, nil
}

// putIdPSession records, for a session of an OpenID Connect login whose ID
// token carried a sid, that the provider session belongs to the session's
// subject, until at least its absolute end, so that a logout token naming
// only the sid (or a sub that is not our subject: subject_claim) finds it
// (EndIdPLogout). Any other session records nothing.
//
// Login calls it before creating the session, and fails with its error
// (ErrStoreUnavailable: 503): a session whose provider session cannot be
// found would outlive a sid-only logout by up to its absolute lifetime,
// so it must not exist; and written first, a failure leaves nothing
// behind (no session no one holds a token of, no sessions the login
// revoked past MaxSessionsPerUser), while an entry whose session is then
// not created leads a logout to a subject with no session of that sid,
// which ends nothing.
func (s *Sessions) putIdPSession(ctx context.Context, sess *sessionstore.Session) error {
	if sess.Issuer == "" || sess.IdPSessionID == "" {
		return nil
	}
	err := s.write(ctx, "idp_session", func(ctx context.Context) error {
		return s.store.PutIdPSession(ctx, sess.Issuer, sess.IdPSessionID, sess.Subject, sess.ExpiresAt)
	})
	if err != nil {
		return fmt.Errorf("%w: record the identity provider session: %w", ErrStoreUnavailable, err)
	}
	return nil
}

// idpSubject is the subject whose sessions a logout token names: its sub
// when it has one (our subject: VerifyLogout leaves Subject empty under
// another subject_claim), else the subject putIdPSession recorded for its
// sid, "" when none was (a provider session that never logged in here, or
// whose entry is past its until: nothing to end).
func (s *Sessions) idpSubject(ctx context.Context, t LogoutToken) (string, error) {
	if t.Subject != "" {
		return t.Subject, nil
	}
	if t.SessionID == "" {
		return "", fmt.Errorf("%w: neither sid nor sub", ErrLogoutToken)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	start := time.Now()
	subject, err := s.store.IdPSessionSubject(ctx, t.Issuer, t.SessionID)
	s.observe("idp_session", start)
	switch {
	case errors.Is(err, sessionstore.ErrNotFound):
		return "", nil
	case err != nil:
		return "", storeError(err)
	}
	return subject, nil
}
