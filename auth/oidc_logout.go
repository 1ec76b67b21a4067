package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// ErrLogoutToken means a back-channel logout token was refused: its
// signature, iss, aud, iat, exp, typ, jti, events, sid and sub, a nonce it
// must not carry, or a jti already seen (ErrLogoutReplayed). Nothing
// changed; the provider is answered 400.
var ErrLogoutToken = errors.New("logout token refused")

// ErrLogoutReplayed means a logout token's jti was already accepted
// within the token's window. It wraps ErrLogoutToken.
var ErrLogoutReplayed = fmt.Errorf("%w: jti replayed", ErrLogoutToken)

// ErrLogoutUnsupported means a logout token names only a subject (sub, no
// sid) while the subject_claim is not "sub": its sub is the provider's,
// not our sessions' subject, and only a sid leads to our sessions then
// (see Sessions.EndIdPLogout). The endpoint answers 501: the
// configuration, not the token, is what cannot be honoured.
var ErrLogoutUnsupported = errors.New("back-channel logout without sid needs subject_claim \"sub\"")

// LogoutEvent is the member of a logout token's "events" claim that makes
// it one (OpenID Connect Back-Channel Logout 1.0, section 2.4).
const LogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// logoutMaxAge is how old a logout token's iat may be. A provider sends
// the token the moment it mints it, server to server, so a couple of
// minutes covers its queue and our clocks' skew (oidcClockSkew is added
// on top); a longer window only lengthens the time a captured token could
// be replayed and the replay cache must remember its jti.
const logoutMaxAge = 2 * time.Minute

// LogoutToken is a verified back-channel logout token: what it names.
// Subject or SessionID, or both, are set.
type LogoutToken struct {
	// Issuer is the provider's issuer (the configured one).
	Issuer string
	// Subject is the token's "sub", our sessions' subject; "" when it has
	// none, and under a subject_claim other than "sub", where the sub is
	// the provider's and the sessions are found by SessionID.
	Subject string
	// SessionID is the token's "sid", the provider's session; "" when it
	// has none.
	SessionID string
	// ID is the token's jti, and IssuedAt its iat: the replay check's key
	// and window.
	ID       string
	IssuedAt time.Time
}

// logoutTypes are the typ headers a logout token may carry: the explicit
// type the specification recommends (section 2.4), and "JWT" or none,
// which providers that predate it send (Keycloak: "JWT"). An ID token
// (typ JWT) is no logout token for lack of the events claim; a token of
// another explicit type (at+jwt, dpop+jwt) is refused before anything
// else.
var logoutTypes = map[string]bool{"": true, "jwt": true, "logout+jwt": true, "application/logout+jwt": true}

// VerifyLogout verifies raw, a back-channel logout token (OpenID Connect
// Back-Channel Logout 1.0, section 2.6): the typ header; the signature by
// a key of the provider's JWKS, with an algorithm it announced (never
// none), iss and aud (go-oidc's verifier, its expiry check left to us:
// exp is optional in a logout token); then iat present, at most
// oidcClockSkew ahead and logoutMaxAge behind; exp, if present, not
// passed; jti present; the events claim an object holding LogoutEvent
// whose value is an object; sid or sub; no nonce. It does not check the
// jti for a replay: Sessions.EndIdPLogout does, in the cache replicas
// share. Under a subject_claim other than "sub", a token must carry a
// sid, and its sub is not passed on (LogoutToken.Subject); one whose
// payload shows no sid, unverified, is ErrLogoutUnsupported before any
// other check, since nothing it could say would name our sessions. The
// error is ErrLogoutUnsupported, or wraps ErrLogoutToken, or
// ErrIdPUnavailable (the provider is not discovered yet, or its keys
// could not be fetched: the provider may retry a 503, not a 400).
func (o *OIDC) VerifyLogout(ctx context.Context, raw string) (LogoutToken, error) {
	bySID := o.cfg.SubjectClaim != "sub"
	if bySID && unverifiedSID(raw) == "" {
		return LogoutToken{}, ErrLogoutUnsupported
	}
	p, err := o.provider()
	if err != nil {
		return LogoutToken{}, err
	}
	if err := logoutHeader(raw); err != nil {
		return LogoutToken{}, err
	}
	idt, err := verifyProviderToken(o.ctx(ctx), p.logout, raw, ErrLogoutToken)
	if err != nil {
		return LogoutToken{}, err
	}
	var c struct {
		IssuedAt *json.Number   `json:"iat"`
		Expiry   *json.Number   `json:"exp"`
		ID       string         `json:"jti"`
		Subject  string         `json:"sub"`
		SID      string         `json:"sid"`
		Nonce    *any           `json:"nonce"`
		Events   map[string]any `json:"events"`
	}
	if err := idt.Claims(&c); err != nil {
		return LogoutToken{}, fmt.Errorf("%w: %w", ErrLogoutToken, err)
	}
	now := o.now()
	switch {
	case c.IssuedAt == nil:
		return LogoutToken{}, fmt.Errorf("%w: no iat", ErrLogoutToken)
	case idt.IssuedAt.After(now.Add(oidcClockSkew)):
		return LogoutToken{}, fmt.Errorf("%w: issued in the future", ErrLogoutToken)
	case idt.IssuedAt.Before(now.Add(-logoutMaxAge - oidcClockSkew)):
		return LogoutToken{}, fmt.Errorf("%w: issued too long ago", ErrLogoutToken)
	case c.Expiry != nil && !now.Before(idt.Expiry):
		return LogoutToken{}, fmt.Errorf("%w: expired", ErrLogoutToken)
	case c.ID == "":
		return LogoutToken{}, fmt.Errorf("%w: no jti", ErrLogoutToken)
	case c.Nonce != nil:
		// Section 2.4: forbidden, so that an ID token, which carries a
		// nonce, can never pass for a logout token.
		return LogoutToken{}, fmt.Errorf("%w: nonce present", ErrLogoutToken)
	case c.Subject == "" && c.SID == "":
		return LogoutToken{}, fmt.Errorf("%w: neither sid nor sub", ErrLogoutToken)
	}
	if ev, ok := c.Events[LogoutEvent].(map[string]any); !ok || ev == nil {
		return LogoutToken{}, fmt.Errorf("%w: events claim without the back-channel logout event", ErrLogoutToken)
	}
	if bySID {
		if c.SID == "" {
			return LogoutToken{}, ErrLogoutUnsupported
		}
		c.Subject = "" // the provider's, not ours: found by sid
	}
	return LogoutToken{Issuer: idt.Issuer, Subject: c.Subject, SessionID: c.SID, ID: c.ID, IssuedAt: idt.IssuedAt}, nil
}

// unverifiedSID is the sid claim of raw's payload, read without verifying
// anything, "" when it has none or cannot be read: only to choose
// VerifyLogout's answer to a token that could not be honoured anyway.
func unverifiedSID(raw string) string {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		SID string `json:"sid"`
	}
	if json.Unmarshal(b, &c) != nil {
		return ""
	}
	return c.SID
}

// logoutHeader checks raw's JOSE header: a typ of logoutTypes, and an alg
// other than none (the verifier refuses none too, but says so less
// plainly).
func logoutHeader(raw string) error {
	head, _, ok := strings.Cut(raw, ".")
	if !ok {
		return fmt.Errorf("%w: not a JWT", ErrLogoutToken)
	}
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return fmt.Errorf("%w: header: %w", ErrLogoutToken, err)
	}
	var h struct {
		Alg string `json:"alg"`
		Typ string `json:"typ"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return fmt.Errorf("%w: header: %w", ErrLogoutToken, err)
	}
	if h.Alg == "" || strings.EqualFold(h.Alg, "none") {
		return fmt.Errorf("%w: alg none", ErrLogoutToken)
	}
	if !logoutTypes[strings.ToLower(h.Typ)] {
		return fmt.Errorf("%w: typ %q", ErrLogoutToken, h.Typ)
	}
	return nil
}

// logoutVerifier is go-oidc's verifier for logout tokens: the ID token
// verifier's signature, iss and aud checks, with its expiry check skipped
// (a logout token's exp is optional; VerifyLogout checks it when there).
func logoutVerifier(issuer string, keys oidc.KeySet, algs []string, clientID string, now func() time.Time) *oidc.IDTokenVerifier {
	return oidc.NewVerifier(issuer, keys, &oidc.Config{ClientID: clientID, Now: now, SkipExpiryCheck: true, SupportedSigningAlgs: algs})
}
