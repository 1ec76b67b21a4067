package auth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/golang-jwt/jwt/v5"
)

// Minter signs the gateway's access tokens with a KeySet's signing key. A
// Minter is safe for concurrent use.
type Minter struct {
	keys     *KeySet
	method   jwt.SigningMethod
	issuer   string
	audience string
	// header is the encoded JWS header, the same for every token.
	header string
}

// mintHeader is the JWS header of every minted token, in this field order.
type mintHeader struct {
	Alg string `json:"alg"`
	Typ string `json:"typ"`
	Kid string `json:"kid"`
}

// mintPayload is the claims of a minted token, in this field order. The
// times are NumericDate whole seconds.
type mintPayload struct {
	Iss   string   `json:"iss"`
	Aud   string   `json:"aud"`
	Sub   string   `json:"sub"`
	Iat   int64    `json:"iat"`
	Exp   int64    `json:"exp"`
	Jti   string   `json:"jti"`
	Sid   string   `json:"sid,omitempty"`
	Roles []string `json:"roles,omitempty"`
	Cnf   *mintCnf `json:"cnf,omitempty"`
}

// mintCnf is the confirmation claim of a bound token (RFC 9449 section 6.1).
type mintCnf struct {
	JKT string `json:"jkt"`
}

// NewMinter returns a Minter that signs with keys' signing key and puts
// issuer in "iss" and audience (a single string) in "aud". keys must not be
// nil.
func NewMinter(keys *KeySet, issuer, audience string) *Minter {
	method := jwt.GetSigningMethod(keys.alg)
	hdr, _ := json.Marshal(mintHeader{Alg: keys.alg, Typ: "JWT", Kid: keys.signing.kid}) // a struct of strings always marshals
	return &Minter{
		keys:     keys,
		method:   method,
		issuer:   issuer,
		audience: audience,
		header:   base64.RawURLEncoding.EncodeToString(hdr),
	}
}

// Mint returns the JWS compact serialisation of a token with header alg,
// typ "JWT" and the signing key's kid, and claims iss, aud, sub, iat, exp,
// jti, sid (omitted when empty), roles (omitted when empty) and cnf.jkt
// (omitted when c.JKT is empty); iat and exp
// are truncated to whole seconds. A token longer than MaxTokenBytes (too
// many roles) is an error, since Verify would refuse it. c.Subject, c.ID, c.IssuedAt and
// c.ExpiresAt are required, and ExpiresAt must be after IssuedAt.
//
// Mint is deterministic for EdDSA, HS256 and RS256 (PKCS #1 v1.5): the same
// claims give the byte-identical token, which the refresh grace relies on
// to hand out the same successor twice. ES256 signatures are randomised, so
// with ES256 only the header and claims are identical, not the signature.
func (m *Minter) Mint(c MintClaims) (string, error) {
	var missing []error
	if c.Subject == "" {
		missing = append(missing, errors.New("empty subject"))
	}
	if c.ID == "" {
		missing = append(missing, errors.New("empty jti"))
	}
	if c.IssuedAt.IsZero() || c.ExpiresAt.IsZero() {
		missing = append(missing, errors.New("zero iat or exp"))
	} else if c.ExpiresAt.Unix() <= c.IssuedAt.Unix() {
		missing = append(missing, errors.New("exp not after iat"))
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("mint: %w", errors.Join(missing...))
	}
	var cnf *mintCnf
	if c.JKT != "" {
		cnf = &mintCnf{JKT: c.JKT}
	}
	payload, err := json.Marshal(mintPayload{
		Iss:   m.issuer,
		Aud:   m.audience,
		Sub:   c.Subject,
		Iat:   c.IssuedAt.Unix(),
		Exp:   c.ExpiresAt.Unix(),
		Jti:   c.ID,
		Sid:   c.SessionID,
		Roles: c.Roles,
		Cnf:   cnf,
	})
	if err != nil {
		return "", fmt.Errorf("mint: encode claims: %w", err)
	}
	signingInput := m.header + "." + base64.RawURLEncoding.EncodeToString(payload)
	sig, err := m.method.Sign(signingInput, m.keys.signing.signingKey())
	if err != nil {
		return "", fmt.Errorf("mint: sign: %w", err)
	}
	token := signingInput + "." + base64.RawURLEncoding.EncodeToString(sig)
	if len(token) > MaxTokenBytes {
		return "", fmt.Errorf("mint: token of %d bytes exceeds MaxTokenBytes", len(token))
	}
	return token, nil
}
