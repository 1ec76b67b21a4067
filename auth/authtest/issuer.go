package authtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// Issuer is an external token issuer for tests: an httptest server on
// 127.0.0.1 that publishes a JWKS at /jwks (and a discovery document at
// /.well-known/openid-configuration), whose keys, answers and availability
// the test controls, and that counts the requests for the set.
type Issuer struct {
	Server *httptest.Server
	// Fetches counts the requests for /jwks.
	Fetches atomic.Int64

	mu           sync.Mutex
	keys         map[string]IssuerKey // by kid: what is signed with
	published    []string             // the kids in the JWKS
	down         bool                 // answer 503
	body         []byte               // if not nil, answered instead of the set
	cacheControl string
}

// IssuerKey is a signing key of an Issuer.
type IssuerKey struct {
	Alg     string
	Private crypto.Signer
}

// NewIssuer starts an Issuer, closed at the end of the test.
func NewIssuer(tb testing.TB) *Issuer {
	tb.Helper()
	is := &Issuer{keys: map[string]IssuerKey{}}
	is.Server = httptest.NewServer(http.HandlerFunc(is.serve))
	tb.Cleanup(is.Server.Close)
	return is
}

// URL is the issuer ("iss") and base URL, http://127.0.0.1:PORT.
func (is *Issuer) URL() string { return is.Server.URL }

// JWKSURL is where the set is published.
func (is *Issuer) JWKSURL() string { return is.Server.URL + "/jwks" }

// AddKey generates a key for alg (RS*/PS*: RSA 2048; ES256/384/512: the
// matching curve; EdDSA: Ed25519) under kid, and publishes it.
func (is *Issuer) AddKey(tb testing.TB, kid, alg string) IssuerKey {
	tb.Helper()
	var priv crypto.Signer
	var err error
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ES512":
		priv, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		tb.Fatalf("AddKey: alg %q", alg)
	}
	if err != nil {
		tb.Fatal(err)
	}
	k := IssuerKey{Alg: alg, Private: priv}
	is.mu.Lock()
	defer is.mu.Unlock()
	is.keys[kid] = k
	is.published = append(is.published, kid)
	return k
}

// Unpublish removes kid from the set; tokens can still be signed with it.
func (is *Issuer) Unpublish(kid string) {
	is.mu.Lock()
	defer is.mu.Unlock()
	for i, k := range is.published {
		if k == kid {
			is.published = append(is.published[:i], is.published[i+1:]...)
			return
		}
	}
}

// SetDown makes /jwks answer 503 (true) or the set again (false).
func (is *Issuer) SetDown(down bool) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.down = down
}

// SetBody makes /jwks answer body instead of the set; nil restores the set.
func (is *Issuer) SetBody(body []byte) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.body = body
}

// SetCacheControl sets the Cache-Control header of the set's answers.
func (is *Issuer) SetCacheControl(v string) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.cacheControl = v
}

// Sign returns a token of claims signed with kid's key and alg (its own
// if alg is ""), with kid in the header.
func (is *Issuer) Sign(tb testing.TB, kid, alg string, claims map[string]any) string {
	tb.Helper()
	is.mu.Lock()
	k, ok := is.keys[kid]
	is.mu.Unlock()
	if !ok {
		tb.Fatalf("Sign: no key %q", kid)
	}
	if alg == "" {
		alg = k.Alg
	}
	return Forge(tb, map[string]any{"alg": alg, "typ": "JWT", "kid": kid}, claims, SignAs(alg, k.Private))
}

func (is *Issuer) serve(w http.ResponseWriter, r *http.Request) {
	is.mu.Lock()
	defer is.mu.Unlock()
	switch r.URL.Path {
	case "/.well-known/openid-configuration":
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"issuer": is.Server.URL, "jwks_uri": is.Server.URL + "/jwks"})
	case "/jwks":
		is.Fetches.Add(1)
		if is.down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if is.cacheControl != "" {
			w.Header().Set("Cache-Control", is.cacheControl)
		}
		w.Header().Set("Content-Type", "application/json")
		if is.body != nil {
			w.Write(is.body)
			return
		}
		var set jose.JSONWebKeySet
		for _, kid := range is.published {
			k := is.keys[kid]
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Private.Public(), KeyID: kid, Algorithm: k.Alg, Use: "sig"})
		}
		json.NewEncoder(w).Encode(set)
	default:
		http.NotFound(w, r)
	}
}
