package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

// Fetch rules of providerKeys.
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
// the set oidcKeysRefresh old) fetches the set at most once per
// oidcMinRefetch, one fetch at a time, the others waiting for it; within
// the interval it is refused at once. A failed fetch keeps the set there
// was. As RemoteKeySet, a token's kid, if any, selects the keys tried, and
// one without a kid is tried against all.
type providerKeys struct {
	url    string
	client *http.Client
	now    func() time.Time
	// timeout bounds one fetch.
	timeout time.Duration

	set atomic.Pointer[providerKeySet] // nil until a fetch succeeded

	mu     sync.Mutex
	flight chan struct{} // closed when the fetch in progress ends; nil if none
	last   time.Time     // the start of the last fetch
}

// providerKeySet is one fetched set; never modified once stored.
type providerKeySet struct {
	keys    []jose.JSONWebKey
	fetched time.Time
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
	s := k.set.Load()
	if s != nil && k.now().Sub(s.fetched) < oidcKeysRefresh {
		if payload, ok := s.verify(jws, kid); ok {
			return payload, nil
		}
	}
	k.fetch(ctx)
	if s = k.set.Load(); s == nil {
		if out, ok := ctx.Value(keysOutageKey{}).(*bool); ok {
			*out = true
		}
		return nil, fmt.Errorf("%w: the provider's keys could not be fetched", ErrIdPUnavailable)
	}
	if payload, ok := s.verify(jws, kid); ok {
		return payload, nil
	}
	return nil, errOIDCSignature
}

// verify is jws's payload if a key of s (of kid, when not "") verifies it.
func (s *providerKeySet) verify(jws *jose.JSONWebSignature, kid string) ([]byte, bool) {
	for i := range s.keys {
		if kid != "" && s.keys[i].KeyID != kid {
			continue
		}
		if payload, err := jws.Verify(&s.keys[i]); err == nil {
			return payload, true
		}
	}
	return nil, false
}

// fetch fetches the set unless one is in progress (it then waits for that
// one, or for ctx) or the last one started less than oidcMinRefetch ago.
// The fetch runs on ctx's values but not its cancellation: others may be
// waiting for it.
func (k *providerKeys) fetch(ctx context.Context) {
	k.mu.Lock()
	if ch := k.flight; ch != nil {
		k.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		return
	}
	now := k.now()
	if !k.last.IsZero() && now.Sub(k.last) < oidcMinRefetch {
		k.mu.Unlock()
		return
	}
	k.last = now
	ch := make(chan struct{})
	k.flight = ch
	k.mu.Unlock()

	if keys, err := k.get(context.WithoutCancel(ctx)); err == nil {
		k.set.Store(&providerKeySet{keys: keys, fetched: now})
	}
	k.mu.Lock()
	k.flight = nil
	k.mu.Unlock()
	close(ch)
}

// get fetches and decodes the set: its signing keys (use "sig" or none).
func (k *providerKeys) get(ctx context.Context) ([]jose.JSONWebKey, error) {
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, oidcMaxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > oidcMaxJWKSBytes {
		return nil, errors.New("jwks: body too large")
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	// Public members only: a private key published by mistake verifies
	// as its public half, and a symmetric one ("oct") not at all.
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
