package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

// Fetch rules of providerKeys (see jwksCache).
const (
	// oidcMinRefetch is the least time between two fetches of the
	// provider's JWKS: a flood of forged tokens costs the provider one
	// request per interval, and a key the provider starts signing with is
	// found within it.
	oidcMinRefetch = 10 * time.Second
	// oidcKeysRefresh is how old the set may get before a token fetches it
	// again, so that a key the provider withdrew stops verifying.
	oidcKeysRefresh = time.Hour
	// oidcMaxJWKSBytes bounds the provider's JWKS answer.
	oidcMaxJWKSBytes = 1 << 20
)

// errOIDCSignature is a token no key of the provider's set verifies.
var errOIDCSignature = errors.New("oidc: no key of the provider verifies the signature")

// providerKeys is the OpenID Provider's JWKS as go-oidc's verifiers' key
// set (oidc.KeySet), in place of go-oidc's RemoteKeySet, which fetches the
// set again for every token its cached keys do not verify, however
// recently it fetched: the back-channel logout endpoint is public, so each
// forged token would cost a request to the provider and hold its own
// request for it. Here a token that no cached key verifies (or that finds
// the set oidcKeysRefresh old) fetches the set through jwksCache's rules:
// at most once per oidcMinRefetch, one fetch at a time, the others waiting
// for it; within the interval it is refused at once. A failed fetch keeps
// the set there was, however old. As RemoteKeySet, a token's kid, if any,
// selects the keys tried, and one without a kid is tried against all.
type providerKeys struct {
	jwksCache[[]jose.JSONWebKey]
}

// newProviderKeys returns the key set fetched from url with client, each
// fetch bounded by timeout.
func newProviderKeys(url string, client *http.Client, now func() time.Time, timeout time.Duration) *providerKeys {
	return &providerKeys{jwksCache[[]jose.JSONWebKey]{
		url:         url,
		client:      client,
		now:         now,
		minInterval: oidcMinRefetch,
		refresh:     oidcKeysRefresh,
		maxStale:    math.MaxInt64,
		timeout:     timeout,
		maxBytes:    oidcMaxJWKSBytes,
		parse:       parseProviderKeys,
	}}
}

// oidcSignatureAlgs are the algs a provider's token may be parsed with;
// the verifier has already held its alg to the provider's announced ones.
var oidcSignatureAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
}

// VerifySignature is oidc.KeySet's: raw's payload if a key of the set
// verifies its signature.
func (k *providerKeys) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSigned(raw, oidcSignatureAlgs)
	if err != nil {
		return nil, fmt.Errorf("oidc: malformed jwt: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("oidc: not one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	// Due by its age alone: the provider's Cache-Control does not bring
	// the refetch forward, as it does for an external issuer's set.
	s := k.set.Load()
	if s != nil && k.now().Sub(s.fetched) < oidcKeysRefresh {
		if payload, ok := verifyWith(s.keys, jws, kid); ok {
			return payload, nil
		}
	}
	k.fetch(ctx, true)
	if s = k.set.Load(); s == nil {
		if out, ok := ctx.Value(keysOutageKey{}).(*bool); ok {
			*out = true
		}
		return nil, fmt.Errorf("%w: the provider's keys could not be fetched", ErrIdPUnavailable)
	}
	if payload, ok := verifyWith(s.keys, jws, kid); ok {
		return payload, nil
	}
	return nil, errOIDCSignature
}

// verifyWith is jws's payload if a key of keys (of kid, when not "")
// verifies it.
func verifyWith(keys []jose.JSONWebKey, jws *jose.JSONWebSignature, kid string) ([]byte, bool) {
	for i := range keys {
		if kid != "" && keys[i].KeyID != kid {
			continue
		}
		if payload, err := jws.Verify(&keys[i]); err == nil {
			return payload, true
		}
	}
	return nil, false
}

// parseProviderKeys decodes the provider's set: its signing keys (use
// "sig" or none), with or without a kid. Public members only: a private
// key published by mistake verifies as its public half, and a symmetric
// one ("oct") not at all.
func parseProviderKeys(body []byte) ([]jose.JSONWebKey, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, err
	}
	keys := set.Keys[:0]
	for _, j := range set.Keys {
		if j.Use != "" && j.Use != "sig" {
			continue
		}
		if !j.IsPublic() {
			j = j.Public()
		}
		if j.Valid() {
			keys = append(keys, j)
		}
	}
	if len(keys) == 0 {
		return nil, errNoUsableKey
	}
	return keys, nil
}

// keysOutageKey marks a context whose *bool VerifySignature sets when it
// had no keys to check with: go-oidc's verifier keeps only the text of a
// key set's error, and its caller must tell the provider's outage (503)
// from a refused token (400).
type keysOutageKey struct{}

// verifyProviderToken is v.Verify of raw, its error wrapping
// ErrIdPUnavailable when the provider's keys could not be had, else
// refused.
func verifyProviderToken(ctx context.Context, v *oidc.IDTokenVerifier, raw string, refused error) (*oidc.IDToken, error) {
	var outage bool
	idt, err := v.Verify(context.WithValue(ctx, keysOutageKey{}, &outage), raw)
	switch {
	case err == nil:
		return idt, nil
	case outage:
		return nil, fmt.Errorf("%w: %w", ErrIdPUnavailable, err)
	}
	return nil, fmt.Errorf("%w: %w", refused, err)
}
