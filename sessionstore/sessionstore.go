// Package sessionstore defines the gateway's server-side sessions: the Session
// type, the errors a store reports, and the Store interface that both backends
// implement: package boltstore, one bbolt file locked by one gateway process,
// and package redisstore, a Redis (standalone, Sentinel or Cluster) shared by
// several gateways. The contract test suite in package storetest runs against
// both (redisstore's also on a Redis Cluster), and storetest holds the store
// benchmarks both run.
//
// A session is created at login and names the one access token (by its jti)
// that may currently be exchanged for a successor at /auth/refresh. Every rule
// of the refresh protocol is decided inside the store, in one atomic step, so
// that two gateways or two goroutines can never both rotate the same token.
package sessionstore

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Revocation reasons, as recorded in Session.RevokeReason and used as the
// "reason" label of gateway_sessions_revoked_total.
const (
	ReasonLogout        = "logout"
	ReasonReuseDetected = "reuse_detected"
	ReasonAdmin         = "admin"
	// ReasonSessionLimit is a session revoked by CreateLimited because its
	// subject logged in once more than the limit allows
	// (login.max_sessions_per_user).
	ReasonSessionLimit = "session_limit"
	// ReasonIdPRefused is a session logged in with OpenID Connect whose
	// identity provider refused its refresh token when the gateway
	// rechecked it at a refresh (login.oidc.recheck = "refresh"): the user
	// was disabled, or signed out, at the provider.
	ReasonIdPRefused = "idp_refused"
	// ReasonIdPLogout is a session logged in with OpenID Connect that its
	// identity provider ended by a back-channel logout: the user signed
	// out there, or was signed out.
	ReasonIdPLogout = "idp_logout"
)

// Errors returned by Rotate, in the order the refresh rules are checked.
var (
	// ErrNotFound means no session has the given ID: it never existed, or it
	// ended and was swept.
	ErrNotFound = errors.New("session not found")
	// ErrRevoked means the session was revoked (logout, reuse detection, or
	// an administrator) and can no longer be refreshed.
	ErrRevoked = errors.New("session revoked")
	// ErrExpired means the session is past its idle or its absolute deadline.
	ErrExpired = errors.New("session expired")
	// ErrReuseDetected means a token of the session that had already been
	// rotated was presented after the grace period. Rotate has revoked the
	// whole session (reason ReasonReuseDetected) in the same transaction
	// before returning it.
	ErrReuseDetected = errors.New("token reuse detected")
)

// Errors returned by Create.
var (
	// ErrExists means a session with the same ID is already stored.
	ErrExists = errors.New("session already exists")
)

// ErrUnavailable wraps every error that comes from the storage medium itself
// (disk full, I/O error, connection refused) rather than from a rule. Callers
// answer 503 for it and nothing has changed. Backends wrap their underlying
// errors so that errors.Is(err, ErrUnavailable) holds.
var ErrUnavailable = errors.New("session store unavailable")

// WrapUnavailable is how backends report failures: it returns err unchanged
// when it is nil, one of the rule errors above, or already ErrUnavailable,
// and otherwise wraps it as "backend: op: session store unavailable: err", so
// that errors.Is(err, ErrUnavailable) holds and the original stays reachable.
func WrapUnavailable(backend, op string, err error) error {
	switch {
	case err == nil,
		errors.Is(err, ErrUnavailable),
		errors.Is(err, ErrNotFound),
		errors.Is(err, ErrRevoked),
		errors.Is(err, ErrExpired),
		errors.Is(err, ErrReuseDetected),
		errors.Is(err, ErrExists):
		return err
	}
	return fmt.Errorf("%s: %s: %w: %w", backend, op, ErrUnavailable, err)
}

// IdPSessionHash is the key of the PutIdPSession entry of the identity
// provider issuer's session sid: SHA-256 over a label, issuer and sid, so
// that the stores never hold a provider's session ID, and the entries of
// two issuers never collide.
func IdPSessionHash(issuer, sid string) [sha256.Size]byte {
	return sha256.Sum256([]byte("idp session\x00" + issuer + "\x00" + sid))
}

// ErrIdPSessionEmpty is PutIdPSession's error for an empty issuer, sid or
// subject: nothing is stored.
var ErrIdPSessionEmpty = errors.New("identity provider session entry needs an issuer, a sid and a subject")

// Session is one login's server-side state. Its zero value is not a valid
// session. Times are stored with at least millisecond precision; callers
// should not rely on more.
type Session struct {
	// ID is the session ID, carried in every token of the session as the
	// "sid" claim. It is random and at least 128 bits.
	ID string `json:"id"`
	// Subject is the user the session belongs to (the "sub" claim).
	Subject string `json:"sub"`
	// Roles is a snapshot of the user's roles at login, minted into every
	// token of the session as the "roles" claim. Nil means none.
	Roles []string `json:"roles,omitempty"`

	// JTI is the jti of the session's current token: the only one that may be
	// rotated. IssuedAt is when that token was minted (its "iat").
	JTI      string    `json:"jti"`
	IssuedAt time.Time `json:"iat"`

	// PrevJTI is the jti the session rotated away from most recently, and
	// RotatedAt when. Presented again within the grace period, PrevJTI gets
	// the current token (JTI, IssuedAt) again; after it, it is reuse.
	// Empty before the first rotation.
	PrevJTI   string    `json:"prev_jti,omitempty"`
	RotatedAt time.Time `json:"rotated_at,omitzero"`

	// CreatedAt is the login time; RefreshedAt the last successful
	// rotation (CreatedAt before the first).
	CreatedAt   time.Time `json:"created_at"`
	RefreshedAt time.Time `json:"refreshed_at"`
	// IdleExpiresAt is RefreshedAt plus the idle timeout; ExpiresAt is
	// CreatedAt plus the absolute timeout. The session is over at the nearer.
	IdleExpiresAt time.Time `json:"idle_expires_at"`
	ExpiresAt     time.Time `json:"expires_at"`

	// RevokedAt is when the session was revoked, zero while it is not, and
	// RevokeReason one of the Reason constants. A revoked session is kept
	// (so that refresh can say "session revoked") until the sweeper removes
	// it at its deadline.
	RevokedAt    time.Time `json:"revoked_at,omitzero"`
	RevokeReason string    `json:"revoke_reason,omitempty"`

	// LoginUserAgent and LoginClient are the User-Agent and the client
	// address of the login; RefreshUserAgent and RefreshClient those of the
	// last rotation (the login's until the first). They are what a user
	// recognises a session by in a list of their own, not proof of
	// anything: the client chose them. Empty means not known (a session
	// stored before they were recorded decodes so). A store keeps what it is
	// given: the caller bounds their length (auth truncates them).
	LoginUserAgent   string `json:"login_ua,omitempty"`
	LoginClient      string `json:"login_client,omitempty"`
	RefreshUserAgent string `json:"refresh_ua,omitempty"`
	RefreshClient    string `json:"refresh_client,omitempty"`

	// JKT is the RFC 7638 thumbprint of the DPoP key (RFC 9449) the session
	// is bound to, minted into its tokens as cnf.jkt; empty means unbound.
	// It is set at login and never changes.
	JKT string `json:"jkt,omitempty"`

	// The identity provider of a session logged in with OpenID Connect,
	// all empty for any other login. They stay server-side: no token and
	// no answer carries them. Issuer is the provider's issuer; IdPSessionID
	// its "sid" claim (for back-channel logout), empty when it sent none;
	// IdPRefreshToken the provider's refresh token, as the caller gives it
	// (auth seals it: the store never holds it in the clear), empty when
	// the provider issued none; IDToken the provider's ID token, the
	// id_token_hint of an RP-initiated logout. Only Rotate changes one
	// (IdPRefreshToken, when RotateRequest.IdPRefreshToken is set).
	Issuer          string `json:"idp_iss,omitempty"`
	IdPSessionID    string `json:"idp_sid,omitempty"`
	IdPRefreshToken string `json:"idp_rt,omitempty"`
	IDToken         string `json:"idp_id_token,omitempty"`
}

// Bound reports whether the session is bound to a DPoP key (JKT is set).
func (s *Session) Bound() bool { return s.JKT != "" }

// Deadline is the moment the session ends: the nearer of its idle and
// absolute deadlines.
func (s *Session) Deadline() time.Time {
	if s.IdleExpiresAt.Before(s.ExpiresAt) {
		return s.IdleExpiresAt
	}
	return s.ExpiresAt
}

// Revoked reports whether the session has been revoked.
func (s *Session) Revoked() bool { return !s.RevokedAt.IsZero() }

// Live reports whether the session is neither revoked nor past its deadline
// at now.
func (s *Session) Live(now time.Time) bool {
	return !s.Revoked() && now.Before(s.Deadline())
}

// CompareRefreshed orders sessions from the least to the most recently
// refreshed: by RefreshedAt, then CreatedAt, then ID. It is the order in
// which Store.CreateLimited revokes sessions beyond the limit.
func CompareRefreshed(a, b Session) int {
	if c := a.RefreshedAt.Compare(b.RefreshedAt); c != 0 {
		return c
	}
	if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

// RotateRequest asks Store.Rotate to exchange the token JTI of session
// SessionID for a successor NewJTI.
type RotateRequest struct {
	SessionID string
	// JTI is the jti of the presented token, whose signature, issuer and
	// audience the caller has already verified.
	JTI string
	// NewJTI is the jti of the successor token, chosen by the caller; it is
	// used only when the session actually rotates.
	NewJTI string
	// Now is the time of the request.
	Now time.Time
	// IdleTimeout moves IdleExpiresAt to Now+IdleTimeout on rotation (never
	// beyond ExpiresAt is not required: Deadline takes the nearer).
	IdleTimeout time.Duration
	// Grace is how long after a rotation PrevJTI still gets the current
	// token instead of being treated as reuse. Zero means no grace.
	Grace time.Duration
	// UserAgent and Client become the session's RefreshUserAgent and
	// RefreshClient on rotation (not on a Grace result, which changes
	// nothing). Empty records them as not known.
	UserAgent string
	Client    string
	// IdPRefreshToken, when not empty, becomes the session's
	// IdPRefreshToken on rotation (the identity provider rotated it while
	// the gateway rechecked the session); empty keeps the one stored.
	IdPRefreshToken string
}

// RotateResult is a successful Rotate.
type RotateResult struct {
	// Session is the session after the call. Its JTI and IssuedAt name the
	// successor token the caller must mint and answer with.
	Session Session
	// Grace is true when nothing rotated because the presented jti was
	// rotated within the grace period: Session.JTI is the successor that was
	// handed out then.
	Grace bool
}

// Store holds sessions. Implementations are safe for concurrent use, and
// every method is atomic: it either happens whole or not at all, and a method
// that returned nil has been made durable (for bbolt: fsynced) first.
//
// Times are passed in by the caller so that every rule can be tested with an
// injected clock; a Store never reads the wall clock for a rule.
//
// A method called with a ctx that is already done changes nothing and returns
// an error wrapping both ErrUnavailable and ctx.Err().
//
// A write (Create, CreateLimited, Rotate, Revoke, RevokeSubject) that
// returns an error wrapping ErrUnavailable has changed nothing, and will not
// change anything later: a change the caller stopped waiting for never
// applies afterwards. A write takes effect before ctx's deadline or not at
// all; a write still queued (bbolt) or not yet run (Redis) when ctx ends is
// dropped and reported as ErrUnavailable wrapping ctx.Err(). Conversely, a
// write that did apply is reported as applied, even if ctx ended while its
// answer was on its way: the caller can answer 503 for every
// ErrUnavailable and be sure that a retry finds the state it left (issue
// 11, item 2: a refresh that answered 503 during a Redis stall rotated
// once Redis resumed, and the client's retry was taken for token theft).
// Backends document what remains of this rule (for Redis: clock skew and a
// reply delayed past a margin).
type Store interface {
	// Create stores a new session. It returns ErrExists if s.ID is taken.
	Create(ctx context.Context, s Session) error

	// CreateLimited is Create that also caps the live sessions of
	// s.Subject: in the same atomic step, it revokes (ReasonSessionLimit, at
	// s.CreatedAt) the subject's least recently refreshed sessions that are
	// live at s.CreatedAt (by RefreshedAt, then CreatedAt, then ID), so
	// that at most limit are live once s is stored. It returns the IDs of
	// the sessions it revoked, least recently refreshed first (nil when
	// none), so that the caller can count them and close what they hold
	// open. Zero or a negative limit means no limit: it is Create. Of many
	// concurrent calls for one subject, none leaves more than limit live.
	CreateLimited(ctx context.Context, s Session, limit int) (revoked []string, err error)

	// Get returns the session with the given ID, revoked or not, or
	// ErrNotFound. It never writes. It is the every_request revocation
	// check, so it must be cheap (bbolt: one read transaction).
	Get(ctx context.Context, id string) (Session, error)

	// Rotate applies the refresh rules in their order and,
	// when they hold, rotates the session to req.NewJTI in the same
	// transaction:
	//   - no session with that ID: ErrNotFound;
	//   - revoked: ErrRevoked;
	//   - req.Now at or past Deadline(): ErrExpired;
	//   - req.JTI == JTI: rotate (PrevJTI=JTI, JTI=NewJTI, IssuedAt=
	//     RefreshedAt=RotatedAt=Now, IdleExpiresAt=Now+IdleTimeout,
	//     RefreshUserAgent=UserAgent, RefreshClient=Client, and
	//     IdPRefreshToken=req.IdPRefreshToken if that is set);
	//   - req.JTI == PrevJTI and Now < RotatedAt+Grace: Grace result, no
	//     change;
	//   - any other jti (PrevJTI after the grace, or an older one): the
	//     session is revoked with ReasonReuseDetected and ErrReuseDetected
	//     is returned.
	// Of many concurrent Rotate calls with the same current JTI exactly one
	// rotates; the others see the grace (or reuse) rule.
	Rotate(ctx context.Context, req RotateRequest) (RotateResult, error)

	// Revoke revokes one session with the given reason at now. Revoking an
	// already revoked session changes nothing and returns (false, nil);
	// revoked reports whether this call revoked it. Unknown ID: ErrNotFound.
	Revoke(ctx context.Context, id, reason string, now time.Time) (revoked bool, err error)

	// RevokeSubject revokes every unrevoked session of subject and returns
	// how many it revoked.
	RevokeSubject(ctx context.Context, subject, reason string, now time.Time) (int, error)

	// List returns the subject's sessions that are live at now, oldest
	// first. No sessions is an empty slice and no error.
	List(ctx context.Context, subject string, now time.Time) ([]Session, error)

	// Count returns the number of stored sessions that are not revoked
	// (including expired ones the sweeper has not removed yet). It is O(1):
	// it reads a maintained counter, never scans.
	Count(ctx context.Context) (int, error)

	// Sweep deletes every session whose Deadline is at or before now,
	// revoked or not, with its index entries, and returns how many it
	// deleted. It also removes the PutIdPSession entries whose until is at
	// or before now (not counted; Redis expires them by itself). It costs
	// O(deleted), using a deadline index.
	Sweep(ctx context.Context, now time.Time) (int, error)

	// PutIdPSession records that the identity provider issuer's session
	// sid (an OpenID Connect login's "sid" claim) belongs to subject, until
	// at least until, so that a back-channel logout token naming only the
	// sid finds the subject's sessions. An existing entry keeps the later
	// of its until and this one (sessions of one provider session may be
	// created later, with later ends; a call never shortens an entry), and
	// takes subject. The entry is keyed by IdPSessionHash(issuer, sid): the
	// store never holds the sid itself. Empty issuer, sid or subject is an
	// error, and nothing is stored. It is a write: the rules above about
	// ErrUnavailable and ctx's deadline hold for it.
	PutIdPSession(ctx context.Context, issuer, sid, subject string, until time.Time) error

	// IdPSessionSubject returns the subject PutIdPSession recorded for the
	// provider issuer's session sid, or ErrNotFound (never recorded, or
	// removed after its until). An entry past its until may still be found
	// until it is removed (bbolt: by Sweep; Redis: by itself, ExpiryMargin
	// after its until): harmless, since every session it leads to ends by
	// then. It never writes.
	IdPSessionSubject(ctx context.Context, issuer, sid string) (string, error)

	// Close releases the store. Calls after Close return errors wrapping
	// ErrUnavailable (a draining gateway answers 503); calling Close again
	// does not panic.
	Close() error
}
