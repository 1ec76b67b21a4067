package auth

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/spa-gateway/gateway/auth/oidctest"
)

// countingTransport counts the requests for the OP's JWKS.
type countingTransport struct{ keys atomic.Int64 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/keys") {
		c.keys.Add(1)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestOIDCForgedTokensFetchNoKeys: the back-channel logout endpoint is
// public, and a forged logout token (our iss and aud, which anyone can
// read, signed by another key, under the provider's kid or another) must
// not make the gateway fetch the provider's JWKS each time: go-oidc's
// RemoteKeySet did, for every token its keys did not verify, so that a
// flood of them became a flood of requests at the provider, each holding
// its request until the fetch ended. A fetch is at most once per
// oidcMinRefetch; past it, a new key of the provider is found.
func TestOIDCForgedTokensFetchNoKeys(t *testing.T) {
	op := oidctest.Start(t, internalCallback)
	ct := &countingTransport{}
	var mu sync.Mutex
	offset := time.Duration(0)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return time.Now().Add(offset) }
	o := discovered(t, op, func(c *OIDCConfig) {
		c.HTTPClient = &http.Client{Transport: ct, Timeout: 5 * time.Second}
		c.Now = now
	})
	claims := func() jwt.MapClaims {
		c := op.LogoutClaims(oidctest.ClientID, oidctest.Alice.ID, "")
		c["iat"] = now().Unix()
		c["exp"] = now().Add(time.Minute).Unix()
		return c
	}
	if _, err := o.VerifyLogout(t.Context(), op.SignLogout(t, claims())); err != nil {
		t.Fatalf("good token: %v", err)
	}
	if got := ct.keys.Load(); got != 1 {
		t.Fatalf("JWKS fetches after the first token = %d, want 1", got)
	}

	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	forge := func(kid string) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims())
		tok.Header["kid"] = kid
		tok.Header["typ"] = "logout+jwt"
		s, err := tok.SignedString(other)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for i := range 50 {
		kid := oidctest.KeyID
		if i%2 == 1 {
			kid = rand.Text()
		}
		if _, err := o.VerifyLogout(t.Context(), forge(kid)); !errors.Is(err, ErrLogoutToken) {
			t.Fatalf("forged token %d: %v, want ErrLogoutToken", i, err)
		}
	}
	if got := ct.keys.Load(); got != 1 {
		t.Fatalf("JWKS fetches after 50 forged tokens = %d, want still 1", got)
	}
	if _, err := o.VerifyLogout(t.Context(), op.SignLogout(t, claims())); err != nil {
		t.Fatalf("good token after the forged ones: %v", err)
	}

	// Past the interval, a token no key verifies (a new key of the
	// provider's, perhaps) fetches once more.
	mu.Lock()
	offset += oidcMinRefetch + time.Second
	mu.Unlock()
	for range 5 {
		if _, err := o.VerifyLogout(t.Context(), forge(rand.Text())); !errors.Is(err, ErrLogoutToken) {
			t.Fatalf("forged token: %v, want ErrLogoutToken", err)
		}
	}
	if got := ct.keys.Load(); got != 2 {
		t.Fatalf("JWKS fetches past the interval = %d, want 2", got)
	}
}

// TestOIDCKeysUnreachable: a logout token that cannot be checked because
// the provider's keys cannot be had is the provider's outage (503, which
// the provider may retry), not a refused token (400, which tells it the
// token was bad, so the user's logout is lost), as the README says.
func TestOIDCKeysUnreachable(t *testing.T) {
	op := oidctest.Start(t, internalCallback)
	o := discovered(t, op, nil)
	op.Stop()
	good := op.SignLogout(t, op.LogoutClaims(oidctest.ClientID, oidctest.Alice.ID, ""))
	_, err := o.VerifyLogout(t.Context(), good)
	if !errors.Is(err, ErrIdPUnavailable) || errors.Is(err, ErrLogoutToken) {
		t.Fatalf("logout token with the provider's keys unreachable: %v, want ErrIdPUnavailable only", err)
	}
}
