package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// VerifierConfig configures a Verifier. Keys, Algorithm, Issuer and
// Audience are required.
type VerifierConfig struct {
	// Keys are the keys tokens may be signed with; a token's kid selects
	// among them, and a token without kid is checked with the signing key.
	Keys *KeySet
	// Algorithm is the only alg accepted; it must be Keys' algorithm.
	Algorithm string
	// Issuer must equal the token's "iss".
	Issuer string
	// Audience must be the token's "aud", or one of its elements.
	Audience string
	// Leeway is the clock skew allowed on exp, nbf and iat; zero allows
	// none. It must not be negative.
	Leeway time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// CacheSize bounds a cache of verified tokens: Verify remembers up to
	// this many tokens it accepted, keyed by their exact text, and accepts
	// the same text again without checking its signature and claims again,
	// checking only exp (and nbf, iat) against Now, so an entry ends at the
	// token's exp. Failures are never cached, and VerifyExpired never uses
	// the cache. Zero (or negative) disables it. An entry (the Token and
	// its text) takes about 1.5 KiB.
	CacheSize int
}

// Verifier checks the gateway's access tokens. It is safe for concurrent
// use.
type Verifier struct {
	keys     *KeySet
	alg      string
	issuer   string
	audience string
	leeway   time.Duration
	now      func() time.Time
	parser   *jwt.Parser
	cache    *tokenCache // nil: no cache
	// keyFn is v.keyFunc, made once: a method value built per call would
	// allocate on every verification.
	keyFn func(*jwt.Token) (any, error)
	// algs are the accepted algs ([alg] for the gateway's own tokens).
	algs []string
	// external is the name of the external issuer whose tokens these are
	// (ExternalVerifier), "" for the gateway's own. An external token's
	// subject and roles come from subjectClaim and rolesClaim, and its
	// sid is never read: it names no session of ours.
	external     string
	subjectClaim string
	rolesClaim   string
}

// NewVerifier returns a Verifier for cfg, or an error listing every problem
// of cfg.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	var errs []error
	switch cfg.Algorithm {
	case EdDSA, ES256, RS256, HS256:
	default:
		errs = append(errs, unsupportedAlg(cfg.Algorithm))
	}
	if cfg.Keys == nil {
		errs = append(errs, errors.New("no keys"))
	} else if cfg.Keys.alg != cfg.Algorithm {
		errs = append(errs, fmt.Errorf("keys are %s, algorithm is %q", cfg.Keys.alg, cfg.Algorithm))
	}
	if cfg.Issuer == "" {
		errs = append(errs, errors.New("empty issuer"))
	}
	if cfg.Audience == "" {
		errs = append(errs, errors.New("empty audience"))
	}
	if cfg.Leeway < 0 {
		errs = append(errs, fmt.Errorf("negative leeway %v", cfg.Leeway))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("verifier: %w", errors.Join(errs...))
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	var cache *tokenCache
	if cfg.CacheSize > 0 {
		cache = newTokenCache(cfg.CacheSize)
	}
	v := &Verifier{
		cache:    cache,
		keys:     cfg.Keys,
		alg:      cfg.Algorithm,
		issuer:   cfg.Issuer,
		audience: cfg.Audience,
		leeway:   cfg.Leeway,
		now:      now,
		// Claims are checked by verify itself: golang-jwt joins its
		// validation errors, so "accept if the only error is expiry"
		// cannot be expressed safely with its validator.
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{cfg.Algorithm}),
			jwt.WithStrictDecoding(),
			jwt.WithoutClaimsValidation(),
		),
		algs:         []string{cfg.Algorithm},
		subjectClaim: "sub",
		rolesClaim:   "roles",
	}
	v.keyFn = v.keyFunc
	return v, nil
}

// Verify checks raw completely and returns the token it holds. Errors
// match ErrTokenExpired when the token is otherwise valid but its exp has
// passed (beyond the leeway), and ErrTokenInvalid for anything else;
// Describe gives their RFC 6750 error_description.
//
// With VerifierConfig.CacheSize, a token accepted before is accepted again
// from the cache while its exp has not passed, and the same *Token is
// returned to every caller that presents it: callers must not modify it.
func (v *Verifier) Verify(raw string) (*Token, error) {
	if v.cache == nil {
		return v.verify(raw, v.keyFn, true)
	}
	if tok := v.cache.get(raw, v.now(), v.leeway); tok != nil {
		return tok, nil
	}
	tok, err := v.verify(raw, v.keyFn, true)
	if err == nil {
		v.cache.put(tok)
	}
	return tok, err
}

// VerifyExpired is Verify without the exp deadline, for /auth/refresh and
// /auth/logout: exp must still be present and well-formed, and everything
// else (size, alg, kid, signature, iss, aud, sub, nbf, iat) is checked
// exactly as by Verify. Callers decide themselves what an unexpired token
// means to them, from Token.ExpiresAt.
func (v *Verifier) VerifyExpired(raw string) (*Token, error) {
	return v.verify(raw, v.keyFn, false)
}

// verify is the one verification path; enforceExp is the only difference
// between Verify and VerifyExpired. keyFn picks the key (v.keyFn for the
// gateway's own keys, ExternalVerifier's for an issuer's JWKS).
func (v *Verifier) verify(raw string, keyFn jwt.Keyfunc, enforceExp bool) (*Token, error) {
	if len(raw) > MaxTokenBytes {
		return nil, invalid("token too large")
	}
	// base64url and dots only: Go's base64 decoder skips CR and LF, which
	// would let several strings carry one signature.
	if !isCompactJWS(raw) {
		return nil, invalid("malformed token")
	}
	now := v.now()
	claims := &claimSet{}
	parsed, err := v.parser.ParseWithClaims(raw, claims, keyFn)
	if err != nil {
		return nil, v.classify(parsed, err)
	}
	m := claims.m
	if m == nil {
		return nil, invalid("malformed token")
	}

	if iss, ok := m["iss"].(string); !ok || iss != v.issuer {
		return nil, invalid("issuer mismatch")
	}
	if err := v.checkAudience(m["aud"]); err != nil {
		return nil, err
	}
	tok := &Token{Raw: raw, Claims: m, External: v.external}
	if tok.Subject, err = subject(m, v.subjectClaim); err != nil {
		return nil, err
	}
	if v.external == "" {
		if tok.SessionID, err = optionalString(m, "sid"); err != nil {
			return nil, err
		}
	}
	if tok.ID, err = optionalString(m, "jti"); err != nil {
		return nil, err
	}
	if v.external == "" {
		tok.Roles, err = roles(m)
	} else if v.rolesClaim != "" {
		tok.Roles, err = externalRoles(m, v.rolesClaim)
	}
	if err != nil {
		return nil, err
	}
	if tok.JKT, err = confirmation(m); err != nil {
		return nil, err
	}

	exp, present, err := numericDate(m, "exp")
	if err != nil {
		return nil, err
	}
	if !present {
		return nil, invalid("missing exp claim")
	}
	tok.ExpiresAt = exp
	latest := now.Add(v.leeway)
	if nbf, present, err := numericDate(m, "nbf"); err != nil {
		return nil, err
	} else if present && nbf.After(latest) {
		return nil, invalid("token used before nbf")
	}
	if iat, present, err := numericDate(m, "iat"); err != nil {
		return nil, err
	} else if present {
		if iat.After(latest) {
			return nil, invalid("token issued in the future")
		}
		tok.IssuedAt = iat
	}
	// Last, so that ErrTokenExpired always means "valid but for exp".
	if enforceExp && !now.Before(exp.Add(v.leeway)) {
		return nil, &tokenError{kind: ErrTokenExpired, desc: "token expired"}
	}
	return tok, nil
}

// keyFunc chooses the verification key from the token's header, which is
// not yet verified: kid only selects among the keys of the set, and jku,
// x5u, jwk and x5c are never looked at.
func (v *Verifier) keyFunc(t *jwt.Token) (any, error) {
	// RFC 7515 section 4.1.11: a recipient that does not understand a
	// listed extension must refuse the JWS; we understand none.
	if _, ok := t.Header["crit"]; ok {
		return nil, invalid("unsupported critical header")
	}
	key := v.keys.signing
	if raw, ok := t.Header["kid"]; ok {
		kid, isString := raw.(string)
		if !isString {
			return nil, invalid("unknown key id")
		}
		if key = v.keys.lookup(kid); key == nil {
			return nil, invalid("unknown key id")
		}
	}
	return key.verificationKey(), nil
}

// classify maps a golang-jwt parse error to ours.
func (v *Verifier) classify(parsed *jwt.Token, err error) error {
	var te *tokenError
	if errors.As(err, &te) {
		return te
	}
	if errors.Is(err, ErrKeysUnavailable) {
		return ErrKeysUnavailable
	}
	if errors.Is(err, jwt.ErrTokenMalformed) {
		return invalid("malformed token")
	}
	if parsed != nil {
		if alg, _ := parsed.Header["alg"].(string); !slices.Contains(v.algs, alg) {
			return invalid("unexpected signing algorithm")
		}
	}
	if errors.Is(err, jwt.ErrTokenSignatureInvalid) {
		return invalid("signature invalid")
	}
	return invalid("malformed token")
}

func (v *Verifier) checkAudience(aud any) error {
	switch a := aud.(type) {
	case string:
		if a == v.audience {
			return nil
		}
	case []any:
		found := false
		for _, e := range a {
			s, ok := e.(string)
			if !ok {
				return invalid("invalid aud claim")
			}
			found = found || s == v.audience
		}
		if found {
			return nil
		}
	case nil:
	default:
		return invalid("invalid aud claim")
	}
	return invalid("audience mismatch")
}

// subject returns the claim name of m, which must be a non-empty string.
func subject(m map[string]any, name string) (string, error) {
	switch sub := m[name].(type) {
	case string:
		if sub != "" {
			return sub, nil
		}
	case nil:
	default:
		return "", invalid("invalid " + name + " claim")
	}
	return "", invalid("missing " + name + " claim")
}

func optionalString(m map[string]any, name string) (string, error) {
	raw, ok := m[name]
	if !ok {
		return "", nil
	}
	s, ok := raw.(string)
	if !ok {
		return "", invalid("invalid " + name + " claim")
	}
	return s, nil
}

// roles returns the "roles" claim, which must be an array of strings when
// present.
func roles(m map[string]any) ([]string, error) {
	raw, ok := m["roles"]
	if !ok {
		return nil, nil
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, invalid("invalid roles claim")
	}
	out := make([]string, 0, len(list))
	for _, e := range list {
		s, ok := e.(string)
		if !ok {
			return nil, invalid("invalid roles claim")
		}
		out = append(out, s)
	}
	return out, nil
}

// maxNumericDate is 9999-12-31T23:59:59Z: a later date is not a real one,
// and bounding it keeps the conversion to time.Time exact.
const maxNumericDate = 253402300799

// numericDate reads a NumericDate claim (RFC 7519 section 2: seconds,
// possibly fractional).
func numericDate(m map[string]any, name string) (t time.Time, present bool, err error) {
	raw, ok := m[name]
	if !ok {
		return time.Time{}, false, nil
	}
	n, ok := raw.(json.Number)
	if !ok {
		return time.Time{}, true, invalid("invalid " + name + " claim")
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, true, invalid("invalid " + name + " claim")
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true, nil
}

// isCompactJWS reports whether s holds only base64url characters and dots.
func isCompactJWS(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// claimSet receives a token's payload: a JSON object whose numbers are
// kept as json.Number. It implements jwt.Claims only because the parser
// requires it; the claims are checked by Verifier.verify.
type claimSet struct {
	m map[string]any
}

// UnmarshalJSON decodes the payload object.
func (c *claimSet) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return err
	}
	c.m = m
	return nil
}

func (c *claimSet) GetExpirationTime() (*jwt.NumericDate, error) {
	return jwt.MapClaims(c.m).GetExpirationTime()
}

func (c *claimSet) GetIssuedAt() (*jwt.NumericDate, error) {
	return jwt.MapClaims(c.m).GetIssuedAt()
}

func (c *claimSet) GetNotBefore() (*jwt.NumericDate, error) {
	return jwt.MapClaims(c.m).GetNotBefore()
}

func (c *claimSet) GetIssuer() (string, error) { return jwt.MapClaims(c.m).GetIssuer() }

func (c *claimSet) GetSubject() (string, error) { return jwt.MapClaims(c.m).GetSubject() }

func (c *claimSet) GetAudience() (jwt.ClaimStrings, error) {
	return jwt.MapClaims(c.m).GetAudience()
}

// tokenError is a verification failure: its kind (ErrTokenExpired or
// ErrTokenInvalid) and a short description safe to send to the client.
type tokenError struct {
	kind error
	desc string
}

func invalid(desc string) *tokenError { return &tokenError{kind: ErrTokenInvalid, desc: desc} }

func (e *tokenError) Error() string {
	if e.kind == ErrTokenExpired {
		return e.desc
	}
	return "invalid token: " + e.desc
}

func (e *tokenError) Unwrap() error { return e.kind }

// Describe returns the RFC 6750 error_description for an error of Verify
// or VerifyExpired ("token expired", "signature invalid", "issuer
// mismatch", ...), for the WWW-Authenticate header and the JSON error body.
// It never contains token contents, and only characters RFC 6750 section 3
// allows in error_description (printable ASCII but '"' and '\'). For nil it
// returns "", for any other error "invalid token".
func Describe(err error) string {
	if err == nil {
		return ""
	}
	var te *tokenError
	switch {
	case errors.As(err, &te):
		return sanitizeDescription(te.desc)
	case errors.Is(err, ErrTokenExpired):
		return "token expired"
	default:
		return "invalid token"
	}
}

// sanitizeDescription keeps %x20-21 / %x23-5B / %x5D-7E (RFC 6750
// section 3).
func sanitizeDescription(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return -1
		}
		return r
	}, s)
}

// confirmation returns cnf.jkt, or "" for a token without cnf. A cnf that
// is not an object holding a non-empty string jkt is refused: a token bound
// in a way the gateway cannot check (mTLS's x5t#S256, say) must not pass as
// a bearer token.
func confirmation(m map[string]any) (string, error) {
	c, present := m["cnf"]
	if !present {
		return "", nil
	}
	obj, ok := c.(map[string]any)
	if !ok {
		return "", invalid("invalid cnf claim")
	}
	jkt, ok := obj["jkt"].(string)
	if !ok || jkt == "" {
		return "", invalid("invalid cnf claim")
	}
	return jkt, nil
}
