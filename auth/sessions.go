package auth

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
)

// Session errors, as Sessions' methods return them. Match them with
// errors.Is; EndReason says, for those that end a session, why.
var (
	// ErrNoSession means the token carries no "sid" claim: it was not minted
	// by a login, so there is no session to refresh or end.
	ErrNoSession = errors.New("token names no session")
	// ErrTokenNotExpired means a refresh came earlier than
	// SessionsConfig.RefreshBeforeExpiry before the token's exp.
	ErrTokenNotExpired = errors.New("token not expired")
	// ErrSessionUnknown means the store holds no session of that ID: it
	// never existed, or it ended and was swept.
	ErrSessionUnknown = errors.New("session unknown")
	// ErrSessionRevoked means the session was revoked (logout, reuse,
	// session limit, an administrator).
	ErrSessionRevoked = errors.New("session revoked")
	// ErrSessionExpired means the session is past its idle or absolute
	// deadline.
	ErrSessionExpired = errors.New("session expired")
	// ErrTokenReused means a token of the session that had already been
	// rotated was presented after the refresh grace: the store has revoked
	// the whole session (ReasonReuseDetected) before this was returned.
	ErrTokenReused = errors.New("token reuse detected")
	// ErrBindingMismatch means a refreshed token's cnf.jkt is not its
	// session's DPoP binding (one bound, the other not, or two keys): the
	// token was not minted for that session as it is, and gets nothing.
	ErrBindingMismatch = errors.New("token binding does not match its session")
	// ErrMint means the session's token could not be minted (a signing
	// failure, or more roles than fit in MaxTokenBytes); what the store did
	// stays done.
	ErrMint = errors.New("token not minted")
)

// ErrStoreUnavailable is wrapped by every error that comes from the session
// store itself rather than from a rule (disk full, connection refused, the
// write timeout): the store changed nothing, now or later, so the caller may
// answer 503 and the client retry. It is sessionstore.ErrUnavailable, so that
// a store's own wrapping matches it too.
var ErrStoreUnavailable = sessionstore.ErrUnavailable

// Revocation reasons, as recorded with a revoked session, returned by
// EndReason and used as the "reason" label of
// gateway_sessions_revoked_total.
const (
	ReasonLogout        = sessionstore.ReasonLogout
	ReasonReuseDetected = sessionstore.ReasonReuseDetected
	ReasonAdmin         = sessionstore.ReasonAdmin
	ReasonSessionLimit  = sessionstore.ReasonSessionLimit
	ReasonIdPRefused    = sessionstore.ReasonIdPRefused
	ReasonIdPLogout     = sessionstore.ReasonIdPLogout
)

// Reasons EndReason gives for a session that is over without a recorded
// revocation reason.
const (
	// EndExpired: the session passed its idle or absolute deadline.
	EndExpired = "expired"
	// EndRevoked: the session is revoked, with no reason recorded (or one
	// the store's Rotate does not report).
	EndRevoked = "revoked"
	// EndUnknownSession: the store no longer holds the session.
	EndUnknownSession = "unknown_session"
)

// endedError is a session error that ends the session, with the reason
// EndReason reports.
type endedError struct {
	err    error // ErrSessionUnknown, ErrSessionRevoked, ErrSessionExpired or ErrTokenReused
	reason string
}

func (e *endedError) Error() string { return e.err.Error() }
func (e *endedError) Unwrap() error { return e.err }

// The ended errors without a recorded reason, made once: a refused request
// allocates nothing for them.
var (
	errUnknown = &endedError{ErrSessionUnknown, EndUnknownSession}
	errRevoked = &endedError{ErrSessionRevoked, EndRevoked}
	errExpired = &endedError{ErrSessionExpired, EndExpired}
	errReused  = &endedError{ErrTokenReused, ReasonReuseDetected}
)

// EndReason says why the session an error of Sessions is about is over: its
// revocation reason (ReasonLogout, ...), EndRevoked, EndExpired or
// EndUnknownSession. It is "" for nil and for every error that does not
// end a session (ErrStoreUnavailable, ErrTokenNotExpired, ...).
func EndReason(err error) string {
	var e *endedError
	if errors.As(err, &e) {
		return e.reason
	}
	return ""
}

// SessionsConfig is the session rules of a Sessions. Its zero value is not
// useful: AccessTTL, IdleTimeout and AbsoluteTimeout are required.
type SessionsConfig struct {
	// AccessTTL is the lifetime of a minted token (tokens.access_ttl); its
	// exp is never after the session's absolute end.
	AccessTTL time.Duration
	// IdleTimeout ends a session that has not refreshed for this long;
	// AbsoluteTimeout ends it this long after its login.
	IdleTimeout     time.Duration
	AbsoluteTimeout time.Duration
	// RefreshGrace is how long after a rotation the token rotated away from
	// still gets its successor again instead of counting as reuse (two tabs
	// refreshing at once). Zero means no grace.
	RefreshGrace time.Duration
	// RefreshBeforeExpiry lets a token refresh this long before its exp;
	// zero means only once it has expired.
	RefreshBeforeExpiry time.Duration
	// MaxSessionsPerUser caps a subject's live sessions: the login past it
	// revokes the subject's least recently refreshed ones
	// (ReasonSessionLimit). Zero means no cap.
	MaxSessionsPerUser int
	// StoreTimeout (store.write_timeout) bounds every store call but
	// Check's read, which is on every_request's hot path: each write (a
	// write not done within it is ErrStoreUnavailable and never applies
	// afterwards; see sessionstore.Store), CheckTunnel's read, and the
	// lists of List and the own-session methods. Zero means only the
	// caller's ctx bounds them.
	StoreTimeout time.Duration
	// Now is the clock of every rule; nil means time.Now.
	Now func() time.Time
	// ObserveStore, if not nil, is told the duration of every store call by
	// its operation: "create", "rotate", "revoke", "get", "list". It runs on the
	// request's goroutine, on every_request's hot path too, so it must be
	// cheap.
	ObserveStore func(op string, d time.Duration)
	// IdP, if not nil, rechecks each refresh of a session logged in with
	// OpenID Connect at its provider (login.oidc.recheck = "refresh"; see
	// recheck); nil never asks the provider.
	IdP IdPChecker
	// LogoutReplay remembers the back-channel logout tokens EndIdPLogout
	// accepted (their issuer and jti, hashed); nil means a memory cache of
	// this process (DefaultLogoutReplayEntries). Replicas pass the one
	// they share, so that a token accepted at one is a replay at another.
	LogoutReplay DPoPReplayCache
}

// Sessions owns the rules of the gateway's server-side sessions: it builds a
// session at login, decides a refresh, ends a session at logout or by an
// administrator, and says whether a session is live, over a
// sessionstore.Store that applies the atomic part of each rule. It mints the
// session's tokens with a Minter. A Sessions is safe for concurrent use.
//
// Errors are this package's: ErrNoSession, ErrTokenNotExpired,
// ErrSessionUnknown, ErrSessionRevoked, ErrSessionExpired, ErrTokenReused,
// ErrMint, and errors wrapping ErrStoreUnavailable; a method documents which
// it returns.
type Sessions struct {
	store  sessionstore.Store
	minter *Minter
	cfg    SessionsConfig
	now    func() time.Time
}

// NewSessions returns the sessions service over store, minting with minter.
// store and minter must not be nil.
func NewSessions(store sessionstore.Store, minter *Minter, cfg SessionsConfig) *Sessions {
	s := &Sessions{store: store, minter: minter, cfg: cfg, now: cfg.Now}
	if s.now == nil {
		s.now = time.Now
	}
	if s.cfg.LogoutReplay == nil {
		s.cfg.LogoutReplay = NewMemoryDPoPReplay(DefaultLogoutReplayEntries, s.now)
	}
	return s
}

// Grant is a token the service issued, and what the client is told of its
// session.
type Grant struct {
	// Token is the minted access token; "" with ErrMint.
	Token string
	// ExpiresAt is the token's exp: the token's iat plus AccessTTL, or the
	// session's absolute end if that is sooner.
	ExpiresAt time.Time
	// RefreshDeadline is when the session ends if it is not refreshed: the
	// nearer of its idle and absolute deadlines.
	RefreshDeadline time.Time
	// SessionEnd is the session's absolute end.
	SessionEnd time.Time
	SessionID  string
	Subject    string
	// Now is the instant the rules were applied at, by the service's clock:
	// the answer's expires_in counts from it.
	Now time.Time
	// Grace (Refresh only) reports a re-issue within RefreshGrace: nothing
	// rotated, and Token is the successor handed out before.
	Grace bool
	// Bound reports a session bound to a DPoP key (its tokens carry
	// cnf.jkt); false for an unbound one.
	Bound bool
	// Client (Login only) is what the session recorded of its client:
	// Login's argument, bounded.
	Client Client
	// Revoked (Login only) holds the IDs of the subject's sessions the
	// login revoked past MaxSessionsPerUser (ReasonSessionLimit), least
	// recently refreshed first; nil when none.
	Revoked []string
}

// Login starts a session for id, from the client c, with random session ID
// and jti, idle and absolute deadlines from now, and, past
// MaxSessionsPerUser, the subject's least recently refreshed sessions
// revoked in the same store step. The session records c, bounded (see
// Client), as its login's and its last refresh's. It returns the session's
// first token.
//
// An OpenID Connect login whose ID token carries a sid first records that
// provider session's subject (putIdPSession), for back-channel logout.
//
// The error wraps ErrStoreUnavailable when nothing was stored, or ErrMint
// when the session was stored (and sessions revoked: see Grant.Revoked)
// but its token could not be minted.
func (s *Sessions) Login(ctx context.Context, id Identity, c Client) (Grant, error) {
	now := s.now()
	c = c.bounded()
	sess := sessionstore.Session{
		ID:               rand.Text(),
		Subject:          id.Subject,
		Roles:            id.Roles,
		JTI:              rand.Text(),
		IssuedAt:         now,
		CreatedAt:        now,
		RefreshedAt:      now,
		IdleExpiresAt:    now.Add(s.cfg.IdleTimeout),
		ExpiresAt:        now.Add(s.cfg.AbsoluteTimeout),
		LoginUserAgent:   c.UserAgent,
		LoginClient:      c.Address,
		RefreshUserAgent: c.UserAgent,
		RefreshClient:    c.Address,
		JKT:              c.JKT,
		Issuer:           id.IdP.Issuer,
		IdPSessionID:     id.IdP.SessionID,
		IdPRefreshToken:  id.IdP.RefreshToken,
		IDToken:          id.IdP.IDToken,
	}
	if err := s.putIdPSession(ctx, &sess); err != nil {
		return Grant{}, err
	}
	var limited []string
	err := s.write(ctx, "create", func(ctx context.Context) (err error) {
		limited, err = s.store.CreateLimited(ctx, sess, s.cfg.MaxSessionsPerUser)
		return err
	})
	if err != nil {
		return Grant{}, storeError(err)
	}
	g, err := s.grant(&sess, now)
	g.Revoked = limited
	g.Client = c
	return g, err
}

// Refresh exchanges tok, a token whose signature, issuer and audience are
// verified but whose exp may have passed (Verifier.VerifyExpired), for its
// successor, for the client c: a rotation records c, bounded (see Client),
// as the session's last refresh's. The rules, in the order they are
// applied, are the ones below; the first that fails is the error. On
// success, or with ErrMint, Grant.Grace says whether the successor was
// re-issued within the grace. With SessionsConfig.IdP, an OpenID Connect
// session's refresh is also the provider's: its refusal is
// ErrSessionRevoked (EndReason ReasonIdPRefused), and a provider that
// cannot be asked an error wrapping ErrIdPUnavailable (nothing changed).
func (s *Sessions) Refresh(ctx context.Context, tok *Token, c Client) (Grant, error) {
	now := s.now()
	// 1. The token names a session: one minted without "sid" (by another
	// issuer sharing the key, say) has nothing to refresh.
	if tok.SessionID == "" {
		return Grant{}, ErrNoSession
	}
	// 2. The token has expired, or expires within RefreshBeforeExpiry: a
	// live token is not exchanged earlier, so that a client cannot keep a
	// session alive faster than its tokens expire.
	if now.Before(tok.ExpiresAt.Add(-s.cfg.RefreshBeforeExpiry)) {
		return Grant{}, ErrTokenNotExpired
	}
	// 3. With IdP, the current token of a live session logged in with
	// OpenID Connect is rechecked at its provider first (recheck): a
	// refusal revokes the session, an unreachable provider changes nothing.
	idpRT, err := s.recheck(ctx, tok)
	if err != nil {
		return Grant{}, err
	}
	// 4. The store's part, in one atomic step (sessionstore.Store.Rotate),
	// so that two gateways can never both rotate one token:
	//   - the session exists (else ErrSessionUnknown);
	//   - it is not revoked (else ErrSessionRevoked);
	//   - it is not past its idle or absolute deadline (else
	//     ErrSessionExpired);
	//   - the token is the session's current one: it rotates to a new jti,
	//     and the idle deadline moves to now + IdleTimeout;
	//   - or it is the one rotated away from, within RefreshGrace: nothing
	//     rotates and the current successor is handed out again (Grace);
	//   - any other token of the session is reuse: the store revokes the
	//     whole session (ReasonReuseDetected), ErrTokenReused.
	var res sessionstore.RotateResult
	c = c.bounded()
	err = s.write(ctx, "rotate", func(ctx context.Context) (err error) {
		res, err = s.store.Rotate(ctx, sessionstore.RotateRequest{
			SessionID:   tok.SessionID,
			JTI:         tok.ID,
			NewJTI:      rand.Text(),
			Now:         now,
			IdleTimeout: s.cfg.IdleTimeout,
			Grace:       s.cfg.RefreshGrace,
			UserAgent:   c.UserAgent,
			Client:      c.Address,

			IdPRefreshToken: idpRT,
		})
		return err
	})
	if err != nil {
		return Grant{}, storeError(err)
	}
	// 5. The token's binding is the session's: the caller checked the
	// proof against the token's cnf.jkt, and only the store says which key
	// the session was bound to at login. Refresh never changes it.
	if res.Session.JKT != tok.JKT {
		return Grant{}, ErrBindingMismatch
	}
	// 6. Mint the session's current token, its exp capped at the session's
	// absolute end (grant).
	g, err := s.grant(&res.Session, now)
	g.Grace = res.Grace
	return g, err
}

// Logout revokes tok's session (ReasonLogout). tok needs a verified
// signature, not a live exp (Verifier.VerifyExpired). revoked reports
// whether this call revoked it: a session already revoked, or no longer
// stored, is not an error, since either way it is over. The error is
// ErrNoSession, or wraps ErrStoreUnavailable (nothing changed).
func (s *Sessions) Logout(ctx context.Context, tok *Token) (revoked bool, err error) {
	if tok.SessionID == "" {
		return false, ErrNoSession
	}
	revoked, err = s.Revoke(ctx, tok.SessionID, ReasonLogout)
	if errors.Is(err, ErrSessionUnknown) {
		return false, nil
	}
	return revoked, err
}

// Liveness is a live session as Check found it.
type Liveness struct {
	Subject string
	// ExpiresAt is the session's absolute end: no token or connection of
	// it may outlive it.
	ExpiresAt time.Time
}

// Check reads session id and says whether it is live now: nil, or
// ErrSessionUnknown, ErrSessionRevoked (checked before the deadlines),
// ErrSessionExpired (EndReason says why: the recorded revocation reason
// where there is one), or an error wrapping ErrStoreUnavailable when it
// could not be read. It never writes. It is the every_request check of a
// proxied request, so only ctx bounds it: a timer per request would cost
// the hot path allocations (see CheckTunnel).
func (s *Sessions) Check(ctx context.Context, id string) (Liveness, error) {
	start := time.Now()
	sess, err := s.store.Get(ctx, id)
	s.observe("get", start)
	switch {
	case err != nil:
		return Liveness{}, storeError(err) // ErrNotFound: ErrSessionUnknown
	case sess.Revoked() && sess.RevokeReason != "":
		return Liveness{}, &endedError{ErrSessionRevoked, sess.RevokeReason}
	case sess.Revoked():
		return Liveness{}, errRevoked
	case !sess.Live(s.now()):
		return Liveness{}, errExpired
	}
	return Liveness{Subject: sess.Subject, ExpiresAt: sess.ExpiresAt}, nil
}

// CheckTunnel is Check bounded by StoreTimeout, for the checks of an
// upgraded connection (at its upgrade and while it is open), which are few
// and must not hang on a stalled store.
func (s *Sessions) CheckTunnel(ctx context.Context, id string) (Liveness, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.Check(ctx, id)
}

// Revoke revokes session id with reason (one of the Reason constants), for
// the admin API. revoked reports whether this call revoked it (false for a
// session already revoked). The error is ErrSessionUnknown, or wraps
// ErrStoreUnavailable (nothing changed).
func (s *Sessions) Revoke(ctx context.Context, id, reason string) (revoked bool, err error) {
	err = s.write(ctx, "revoke", func(ctx context.Context) (err error) {
		revoked, err = s.store.Revoke(ctx, id, reason, s.now())
		return err
	})
	return revoked, storeError(err)
}

// RevokeSubject revokes every unrevoked session of subject with reason and
// returns how many it revoked. The error wraps ErrStoreUnavailable (nothing
// changed).
func (s *Sessions) RevokeSubject(ctx context.Context, subject, reason string) (int, error) {
	var n int
	err := s.write(ctx, "revoke", func(ctx context.Context) (err error) {
		n, err = s.store.RevokeSubject(ctx, subject, reason, s.now())
		return err
	})
	return n, storeError(err)
}

// List returns the subject's sessions that are live now, oldest first (an
// empty slice for none), for the admin API and the own-session methods,
// bounded by StoreTimeout. The error wraps ErrStoreUnavailable.
func (s *Sessions) List(ctx context.Context, subject string) ([]sessionstore.Session, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	start := time.Now()
	list, err := s.store.List(ctx, subject, s.now())
	s.observe("list", start)
	return list, storeError(err)
}

// grant mints the current token of sess, whose exp never passes the
// session's absolute end, and describes it as of now. The error wraps
// ErrMint; the grant then holds everything but Token.
func (s *Sessions) grant(sess *sessionstore.Session, now time.Time) (Grant, error) {
	exp := sess.IssuedAt.Add(s.cfg.AccessTTL)
	if exp.After(sess.ExpiresAt) {
		exp = sess.ExpiresAt
	}
	g := Grant{
		ExpiresAt:       exp,
		RefreshDeadline: sess.Deadline(),
		SessionEnd:      sess.ExpiresAt,
		SessionID:       sess.ID,
		Subject:         sess.Subject,
		Now:             now,
		Bound:           sess.Bound(),
	}
	raw, err := s.minter.Mint(MintClaims{
		Subject:   sess.Subject,
		SessionID: sess.ID,
		ID:        sess.JTI,
		Roles:     sess.Roles,
		IssuedAt:  sess.IssuedAt,
		ExpiresAt: exp,
		JKT:       sess.JKT,
	})
	if err != nil {
		return g, fmt.Errorf("%w: %w", ErrMint, err)
	}
	g.Token = raw
	return g, nil
}

// write runs one store write with ctx bounded by StoreTimeout, and observes
// its duration. The store guarantees that a write ending in an error applies
// neither now nor later, so the ErrStoreUnavailable that follows is true.
func (s *Sessions) write(ctx context.Context, op string, f func(ctx context.Context) error) error {
	start := time.Now()
	ctx, cancel := s.bound(ctx)
	defer cancel()
	err := f(ctx)
	s.observe(op, start)
	return err
}

// bound is ctx with StoreTimeout, if any.
func (s *Sessions) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.cfg.StoreTimeout > 0 {
		return context.WithTimeout(ctx, s.cfg.StoreTimeout)
	}
	return ctx, func() {}
}

func (s *Sessions) observe(op string, start time.Time) {
	if s.cfg.ObserveStore != nil {
		s.cfg.ObserveStore(op, time.Since(start))
	}
}

// storeError maps a store's error onto this package's: the rule errors to
// the session errors, and anything else (ErrExists included: a random ID
// cannot collide, so it is a broken store) to ErrStoreUnavailable.
func storeError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sessionstore.ErrNotFound):
		return errUnknown
	case errors.Is(err, sessionstore.ErrRevoked):
		return errRevoked
	case errors.Is(err, sessionstore.ErrExpired):
		return errExpired
	case errors.Is(err, sessionstore.ErrReuseDetected):
		return errReused
	case errors.Is(err, ErrStoreUnavailable):
		return err
	}
	return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
}
