package authtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"testing"
	"time"
)

// DPoPKey is a client's DPoP key for tests: a fresh ECDSA P-256 key, as
// the browser client's WebCrypto key is, that makes ES256 proofs (RFC
// 9449 section 4).
type DPoPKey struct {
	priv *ecdsa.PrivateKey
	jwk  map[string]any
	jkt  string
}

// NewDPoPKey generates a key. An error fails the test.
func NewDPoPKey(tb testing.TB) *DPoPKey {
	tb.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	pub, err := priv.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		tb.Fatal(err)
	}
	x, y := Encode(pub[1:33]), Encode(pub[33:])
	// RFC 7638: the required members, in lexicographic order, no spaces.
	sum := sha256.Sum256([]byte(`{"crv":"P-256","kty":"EC","x":"` + x + `","y":"` + y + `"}`))
	return &DPoPKey{
		priv: priv,
		jwk:  map[string]any{"kty": "EC", "crv": "P-256", "x": x, "y": y},
		jkt:  Encode(sum[:]),
	}
}

// JKT is the key's RFC 7638 thumbprint, the cnf.jkt of tokens bound to it.
func (k *DPoPKey) JKT() string { return k.jkt }

// Proof is a proof of htm method and htu url issued at now with a random
// jti, and with ath the hash of token unless token is empty; kv are
// changes to the claims, as With takes them (a nil value deletes).
func (k *DPoPKey) Proof(tb testing.TB, method, url, token string, now time.Time, kv ...any) string {
	tb.Helper()
	claims := map[string]any{"htm": method, "htu": url, "iat": now.Unix(), "jti": rand.Text()}
	if token != "" {
		sum := sha256.Sum256([]byte(token))
		claims["ath"] = Encode(sum[:])
	}
	header := map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": k.jwk}
	return Forge(tb, header, With(claims, kv...), SignAs("ES256", k.priv))
}

// JWK is a copy of the key's public JWK, for forging proof headers.
func (k *DPoPKey) JWK() map[string]any { return With(k.jwk) }

// Signer signs ES256 with the key, for Forge.
func (k *DPoPKey) Signer() Signer { return SignAs("ES256", k.priv) }
