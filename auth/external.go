package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ExternalAlgorithms are the algs an external issuer's tokens may use:
// asymmetric ones only. HS* would make the issuer's public keys secrets,
// and "none" is no signature at all.
var ExternalAlgorithms = []string{
	"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512", EdDSA,
}

// ExternalConfig configures an ExternalVerifier. Name, Issuer, Audience
// and Algorithms are required; the durations and sizes have defaults.
type ExternalConfig struct {
	// Name identifies the issuer in routes' accept lists, metrics and logs.
	Name string
	// Issuer must equal the token's "iss" exactly; it also selects this
	// verifier among a route's (see Issuers).
	Issuer string
	// JWKSURL is where the issuer publishes its keys. Empty means
	// discovery: the jwks_uri of Issuer's
	// /.well-known/openid-configuration. Either must pass CheckFetchURL.
	JWKSURL string
	// Audience must be the token's "aud", or one of its elements.
	Audience string
	// Algorithms are the accepted algs, among ExternalAlgorithms.
	Algorithms []string
	// SubjectClaim names the claim that becomes Token.Subject (a
	// non-empty string); empty means "sub".
	SubjectClaim string
	// RolesClaim names the claim that becomes Token.Roles: an array of
	// strings, or one string of space-separated values (OAuth's "scope").
	// Dots walk into objects ("realm_access.roles" for Keycloak). Empty
	// means no roles.
	RolesClaim string
	// Leeway is the clock skew allowed on exp, nbf and iat.
	Leeway time.Duration
	// MinRefetchInterval is the least time between two fetches of the
	// JWKS, whatever triggers them; zero means 30s.
	MinRefetchInterval time.Duration
	// RefreshInterval is how old a set may get before it is fetched again
	// (a shorter Cache-Control max-age brings that forward, but not below
	// MinRefetchInterval); zero means 1h.
	RefreshInterval time.Duration
	// MaxStale is how long after its fetch a set is still used while the
	// issuer cannot be reached; past it, tokens of the issuer get
	// ErrKeysUnavailable. Zero means 24h.
	MaxStale time.Duration
	// FetchTimeout bounds one fetch (discovery included); zero means 5s.
	FetchTimeout time.Duration
	// MaxJWKSBytes bounds a fetched body; zero means 1 MiB.
	MaxJWKSBytes int64
	// Client fetches the set; nil means a client of its own, which
	// follows no redirect.
	Client *http.Client
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// OnFetch, if not nil, is told the result of every fetch (nil for
	// success), for metrics. It must be cheap and safe for concurrent use.
	OnFetch func(error)
}

// ExternalVerifier checks the tokens of one external issuer against its
// JWKS, which it fetches and caches (see jwksCache for the rules). It is
// validate-only: such tokens name no session of the gateway, so they are
// never refreshed, never end or list sessions, and are not subject to the
// every_request revocation check. It is safe for concurrent use.
type ExternalVerifier struct {
	name string
	v    *Verifier
	jwks *jwksCache[kidKeys]
}

// NewExternalVerifier returns the verifier of cfg, or an error listing
// every problem of cfg. It fetches nothing: the first token (or Prefetch)
// does.
func NewExternalVerifier(cfg ExternalConfig) (*ExternalVerifier, error) {
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("external issuer %q: %w", cfg.Name, err)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	subjectClaim := valueOr(cfg.SubjectClaim, "sub")
	v := &Verifier{
		alg:      cfg.Algorithms[0],
		algs:     slices.Clone(cfg.Algorithms),
		issuer:   cfg.Issuer,
		audience: cfg.Audience,
		leeway:   cfg.Leeway,
		now:      now,
		parser: jwt.NewParser(
			jwt.WithValidMethods(cfg.Algorithms),
			jwt.WithStrictDecoding(),
			jwt.WithoutClaimsValidation(),
		),
		external:     cfg.Name,
		subjectClaim: subjectClaim,
		rolesClaim:   cfg.RolesClaim,
	}
	return &ExternalVerifier{name: cfg.Name, v: v, jwks: &jwksCache[kidKeys]{
		issuer:      cfg.Issuer,
		url:         cfg.JWKSURL,
		client:      client,
		now:         now,
		minInterval: valueOr(cfg.MinRefetchInterval, 30*time.Second),
		refresh:     valueOr(cfg.RefreshInterval, time.Hour),
		maxStale:    valueOr(cfg.MaxStale, 24*time.Hour),
		timeout:     valueOr(cfg.FetchTimeout, 5*time.Second),
		maxBytes:    valueOr(cfg.MaxJWKSBytes, 1<<20),
		onFetch:     cfg.OnFetch,
		parse:       parseKeySet,
	}}, nil
}

func (cfg *ExternalConfig) check() error {
	var errs []error
	if cfg.Name == "" {
		errs = append(errs, errors.New("empty name"))
	}
	if cfg.Issuer == "" {
		errs = append(errs, errors.New("empty issuer"))
	}
	if cfg.Audience == "" {
		errs = append(errs, errors.New("empty audience"))
	}
	if cfg.JWKSURL == "" {
		if err := CheckFetchURL(cfg.Issuer); err != nil {
			errs = append(errs, fmt.Errorf("issuer for discovery: %w", err))
		}
	} else if err := CheckFetchURL(cfg.JWKSURL); err != nil {
		errs = append(errs, fmt.Errorf("jwks url: %w", err))
	}
	if len(cfg.Algorithms) == 0 {
		errs = append(errs, errors.New("no algorithms"))
	}
	for _, a := range cfg.Algorithms {
		if !slices.Contains(ExternalAlgorithms, a) {
			errs = append(errs, fmt.Errorf("algorithm %q is not one of %s", a, strings.Join(ExternalAlgorithms, ", ")))
		}
	}
	for _, d := range []time.Duration{cfg.Leeway, cfg.MinRefetchInterval, cfg.RefreshInterval, cfg.MaxStale, cfg.FetchTimeout} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("negative duration %v", d))
		}
	}
	return errors.Join(errs...)
}

// Name returns the issuer's configured name.
func (e *ExternalVerifier) Name() string { return e.name }

// Issuer returns the "iss" its tokens carry.
func (e *ExternalVerifier) Issuer() string { return e.v.issuer }

// Verify checks raw completely against the issuer's keys, fetching its
// JWKS if need be (ctx bounds the wait for that fetch, not the fetch
// itself, which other requests may share). Errors are those of
// Verifier.Verify, and ErrKeysUnavailable when the issuer's keys are not
// to be had. The token's kid must name a key of the set, its alg must be
// one of the configured ones and fit that key (and the key's own "alg",
// if it has one). Tokens are not cached: a key removed from the set stops
// verifying at the next fetch of the set.
func (e *ExternalVerifier) Verify(ctx context.Context, raw string) (*Token, error) {
	return e.v.verify(raw, func(t *jwt.Token) (any, error) { return e.key(ctx, t) }, true)
}

// Prefetch fetches the JWKS now unless it was fetched (or tried) within
// the minimum interval, so that the first tokens do not wait for it. Its
// failure only delays that to the first token.
func (e *ExternalVerifier) Prefetch(ctx context.Context) {
	e.jwks.fetch(ctx, true)
}

// key is the jwt.Keyfunc of Verify. The parser has already refused an alg
// not in the configured list.
func (e *ExternalVerifier) key(ctx context.Context, t *jwt.Token) (any, error) {
	if _, ok := t.Header["crit"]; ok {
		return nil, invalid("unsupported critical header")
	}
	kid, ok := t.Header["kid"].(string)
	if !ok || kid == "" {
		return nil, invalid("missing key id")
	}
	k, err := jwksLookup(ctx, e.jwks, kid)
	if err != nil {
		return nil, err
	}
	alg := t.Method.Alg()
	if (k.alg != "" && k.alg != alg) || !keyFits(alg, k.key) {
		return nil, invalid("key does not match algorithm")
	}
	return k.key, nil
}

// keyFits reports whether key is of the type, and curve, alg needs: an
// RSA key signs only RS* and PS*, a P-256 key only ES256, and so on.
func keyFits(alg string, key any) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return k.Curve == elliptic.P256()
		case "ES384":
			return k.Curve == elliptic.P384()
		case "ES512":
			return k.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == EdDSA
	}
	return false
}

// Issuers is what one route accepts: the gateway's own tokens (if Gateway
// is set) and those of some external issuers, picked by the token's iss.
type Issuers struct {
	gateway  *Verifier
	external map[string]*ExternalVerifier // by Issuer
}

// NewIssuers returns the Issuers of gateway (nil: the gateway's own tokens
// are refused) and external. Two external verifiers of one issuer, or one
// of the gateway's issuer, are an error: the iss would not say which.
func NewIssuers(gateway *Verifier, external ...*ExternalVerifier) (*Issuers, error) {
	is := &Issuers{gateway: gateway, external: make(map[string]*ExternalVerifier, len(external))}
	for _, e := range external {
		if gateway != nil && e.Issuer() == gateway.issuer {
			return nil, fmt.Errorf("external issuer %q has the gateway's own issuer %q", e.name, e.Issuer())
		}
		if _, dup := is.external[e.Issuer()]; dup {
			return nil, fmt.Errorf("two external issuers have the issuer %q", e.Issuer())
		}
		is.external[e.Issuer()] = e
	}
	return is, nil
}

// Verify checks raw with the verifier its iss names, read unverified
// first only to choose (the chosen verifier checks iss again, and all the
// rest). A token of an issuer not accepted is refused as an issuer
// mismatch. Errors are those of Verifier.Verify and ExternalVerifier.Verify.
func (is *Issuers) Verify(ctx context.Context, raw string) (*Token, error) {
	if len(is.external) > 0 {
		if e := is.external[peekIssuer(raw)]; e != nil {
			return e.Verify(ctx, raw)
		}
	}
	if is.gateway == nil {
		return nil, invalid("issuer not accepted")
	}
	return is.gateway.Verify(raw)
}

// peekIssuer returns the unverified "iss" of a compact JWS, or "".
func peekIssuer(raw string) string {
	if len(raw) > MaxTokenBytes {
		return ""
	}
	_, rest, ok := strings.Cut(raw, ".")
	payload, _, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return ""
	}
	var claims struct {
		Iss any `json:"iss"`
	}
	if json.Unmarshal(b, &claims) != nil {
		return ""
	}
	s, _ := claims.Iss.(string)
	return s
}

// externalRoles reads the roles claim name (dots walk into objects): an
// array of strings, or a string of space-separated values.
func externalRoles(m map[string]any, name string) ([]string, error) {
	var v any = m
	for part := range strings.SplitSeq(name, ".") {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, nil
		}
		if v, ok = obj[part]; !ok {
			return nil, nil
		}
	}
	switch r := v.(type) {
	case string:
		return strings.Fields(r), nil
	case []any:
		out := make([]string, 0, len(r))
		for _, e := range r {
			s, ok := e.(string)
			if !ok {
				return nil, invalid("invalid " + name + " claim")
			}
			out = append(out, s)
		}
		return out, nil
	default:
		return nil, invalid("invalid " + name + " claim")
	}
}

// valueOr returns v, or def if v is the zero value.
func valueOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
