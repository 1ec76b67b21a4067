// Package auth holds the gateway's keys, mints and verifies its access tokens,
// checks login credentials (a bcrypt users file, or a legacy upstream login
// endpoint), and owns the session rules: Sessions decides a login, a
// refresh, a logout, a revocation and whether a session is live, over a
// sessionstore.Store that applies the atomic part of each rule. The HTTP
// layer (package proxy) calls Sessions and never the store.
//
// Verification is deliberately narrow: one configured algorithm, keys the
// gateway already holds (a token header's kid only selects among them; jku,
// x5u, jwk and x5c are never followed), required iss, aud and exp. The only
// relaxation that exists, Verifier.VerifyExpired for /auth/refresh and
// /auth/logout, skips the exp check and nothing else.
package auth

import (
	"errors"
	"time"
)

// Algorithms the gateway signs and verifies with.
const (
	EdDSA = "EdDSA"
	ES256 = "ES256"
	RS256 = "RS256"
	HS256 = "HS256"
)

// MaxTokenBytes is the longest token Verify will parse; longer ones are
// refused before any decoding.
const MaxTokenBytes = 8 << 10

// Verification errors. Each carries an RFC 6750 error_description through
// its message; match them with errors.Is.
var (
	// ErrTokenExpired means the token verified but its exp has passed
	// (beyond the leeway).
	ErrTokenExpired = errors.New("token expired")
	// ErrTokenInvalid is the parent of every other verification failure:
	// malformed, bad signature, wrong alg, issuer, audience, nbf or iat.
	// The wrapping error's message says which.
	ErrTokenInvalid = errors.New("invalid token")
	// ErrKeysUnavailable means the token names an external issuer whose
	// keys the gateway does not have: its JWKS was never fetched, or not
	// for longer than ExternalConfig.MaxStale. It says nothing of the token
	// and is not an ErrTokenInvalid: the failure is the gateway's, and
	// passes when the issuer answers again (the proxy answers 503).
	ErrKeysUnavailable = errors.New("issuer keys unavailable")
)

// Token is a verified access token. Its fields are read-only; a Token may be
// shared between goroutines (and cached) once returned.
type Token struct {
	// Raw is the compact serialisation the token was verified from.
	Raw       string
	Subject   string
	SessionID string // the "sid" claim; empty for tokens not minted by a session
	ID        string // the "jti" claim
	Roles     []string
	IssuedAt  time.Time // zero if absent
	ExpiresAt time.Time
	// JKT is the "cnf" claim's "jkt" (RFC 9449 section 6.1): the RFC 7638
	// thumbprint of the DPoP key the token is bound to, which every request
	// presenting it must prove. Empty for an unbound (bearer) token.
	JKT string
	// Claims holds every claim of the payload as decoded JSON (string,
	// json.Number, bool, nil, []any, map[string]any; numbers are always
	// json.Number, so 1700000000 prints as such and not as 1.7e+09), for
	// injecting [headers.claims]. Never modify it.
	Claims map[string]any
	// External is the name of the external issuer ([[tokens.external]])
	// that signed the token, "" for the gateway's own tokens. An external
	// token names no session: its SessionID is always "", so it can
	// never be refreshed, end a session or list sessions.
	External string
}

// MintClaims is what Minter.Mint puts in a token, besides iss and aud which
// come from the Minter's configuration.
type MintClaims struct {
	Subject   string
	SessionID string
	ID        string // jti
	Roles     []string
	IssuedAt  time.Time
	ExpiresAt time.Time
	// JKT, when not empty, binds the token to a DPoP key: it becomes
	// cnf.jkt. Empty mints an unbound token, without cnf.
	JKT string
}
