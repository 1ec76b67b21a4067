package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/auth/authtest"
)

const (
	testHTU     = "https://app.example.com/api/orders"
	testNonceKy = "0123456789abcdef0123456789abcdef-nonce-key"
)

// dpopFixture is a verifier on a test clock with nonces, and two keys of
// each proof algorithm.
type dpopFixture struct {
	clock    *testClock
	verifier *DPoPVerifier
	nonces   *DPoPNonces
	replay   *MemoryDPoPReplay
	ec, ec2  *ecdsa.PrivateKey
	ed, ed2  ed25519.PrivateKey
	jtis     atomic.Int64
}

func newDPoPFixture(tb testing.TB, replayEntries int) *dpopFixture {
	tb.Helper()
	f := &dpopFixture{clock: newTestClock()}
	var err error
	if f.nonces, err = NewDPoPNonces(DPoPNonceConfig{Key: []byte(testNonceKy), Now: f.clock.Now}); err != nil {
		tb.Fatal(err)
	}
	f.replay = NewMemoryDPoPReplay(replayEntries, f.clock.Now)
	f.verifier, err = NewDPoPVerifier(DPoPConfig{Now: f.clock.Now, Replay: f.replay, Nonces: f.nonces})
	if err != nil {
		tb.Fatal(err)
	}
	f.ec, f.ec2 = testECKey(tb, 0), testECKey(tb, 1)
	f.ed, f.ed2 = testEdKey(tb, 0), testEdKey(tb, 1)
	return f
}

// testECKey and testEdKey are the private keys of testKey's n-th ES256
// and EdDSA keys, as proof keys.
func testECKey(tb testing.TB, n int) *ecdsa.PrivateKey {
	return testKey(tb, ES256, n).private.(*ecdsa.PrivateKey)
}

func testEdKey(tb testing.TB, n int) ed25519.PrivateKey {
	return testKey(tb, EdDSA, n).private.(ed25519.PrivateKey)
}

// jwkOf is the public JWK of pub as a header value.
func jwkOf(tb testing.TB, pub crypto.PublicKey) map[string]any {
	tb.Helper()
	members, err := publicJWK(pub)
	if err != nil {
		tb.Fatal(err)
	}
	m := make(map[string]any, len(members))
	for k, v := range members {
		m[k] = v
	}
	return m
}

func jktOf(tb testing.TB, pub crypto.PublicKey) string {
	tb.Helper()
	members, err := publicJWK(pub)
	if err != nil {
		tb.Fatal(err)
	}
	return thumbprint(members)
}

// algOf is the proof alg of a private key.
func algOf(key crypto.Signer) string {
	if _, ok := key.(ed25519.PrivateKey); ok {
		return EdDSA
	}
	return ES256
}

func (f *dpopFixture) header(tb testing.TB, key crypto.Signer) map[string]any {
	return map[string]any{"typ": "dpop+jwt", "alg": algOf(key), "jwk": jwkOf(tb, key.Public())}
}

func (f *dpopFixture) claims() map[string]any {
	return map[string]any{
		"jti": fmt.Sprintf("jti-%d", f.jtis.Add(1)),
		"htm": "GET",
		"htu": testHTU,
		"iat": f.clock.Now().Unix(),
	}
}

// sign makes a proof of header and claims signed by key with its own alg.
func sign(tb testing.TB, key crypto.Signer, header, claims map[string]any) string {
	tb.Helper()
	return authtest.Forge(tb, header, claims, authtest.SignAs(algOf(key), key))
}

func (f *dpopFixture) proof(tb testing.TB, key crypto.Signer, kv ...any) string {
	tb.Helper()
	return sign(tb, key, f.header(tb, key), authtest.With(f.claims(), kv...))
}

func getRequest() DPoPRequest { return DPoPRequest{Method: "GET", URL: testHTU} }

func TestDPoPVerifyAccepts(t *testing.T) {
	f := newDPoPFixture(t, 0)
	tests := []struct {
		name  string
		key   crypto.Signer
		proof func() string
		req   DPoPRequest
	}{
		{name: "ES256", key: f.ec, proof: func() string { return f.proof(t, f.ec) }, req: getRequest()},
		{name: "EdDSA", key: f.ed, proof: func() string { return f.proof(t, f.ed) }, req: getRequest()},
		{name: "typ with application/ and in capitals", key: f.ec, proof: func() string {
			return sign(t, f.ec, authtest.With(f.header(t, f.ec), "typ", "application/DPoP+JWT"), f.claims())
		}, req: getRequest()},
		{name: "equivalent htu", key: f.ec, proof: func() string {
			return f.proof(t, f.ec, "htu", "HTTPS://App.Example.COM:443/api/./x/../%6Frders")
		}, req: DPoPRequest{Method: "GET", URL: "https://app.example.com/api/orders?page=2#top"}},
		{name: "empty path is /", key: f.ec, proof: func() string { return f.proof(t, f.ec, "htu", "http://app.example.com") },
			req: DPoPRequest{Method: "GET", URL: "http://app.example.com:80/"}},
		{name: "with token, ath and expected jkt", key: f.ed, proof: func() string {
			return f.proof(t, f.ed, "ath", AccessTokenHash("the.access.token"))
		}, req: DPoPRequest{Method: "GET", URL: testHTU, AccessToken: "the.access.token", JKT: jktOf(t, f.ed.Public())}},
		{name: "current nonce", key: f.ec, proof: func() string { return f.proof(t, f.ec, "nonce", f.nonces.Nonce()) },
			req: DPoPRequest{Method: "GET", URL: testHTU, RequireNonce: true}},
		{name: "previous period's nonce", key: f.ec, proof: func() string {
			return f.proof(t, f.ec, "nonce", f.nonces.make(f.nonces.epoch(f.clock.Now())-1))
		}, req: DPoPRequest{Method: "GET", URL: testHTU, RequireNonce: true}},
		{name: "iat at the edges of the window", key: f.ec, proof: func() string {
			return f.proof(t, f.ec, "iat", f.clock.Now().Add(-DefaultDPoPMaxAge).Unix())
		}, req: getRequest()},
		{name: "iat at the future edge", key: f.ec, proof: func() string {
			return f.proof(t, f.ec, "iat", f.clock.Now().Add(DefaultDPoPMaxFutureSkew).Unix())
		}, req: getRequest()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := tt.proof()
			got, err := f.verifier.Verify(t.Context(), []string{raw}, tt.req)
			if err != nil {
				t.Fatalf("Verify = %v (%q), want nil", err, DescribeDPoP(err))
			}
			claims := authtest.Claims(t, raw)
			if want := jktOf(t, tt.key.Public()); got.JKT != want {
				t.Errorf("JKT = %q, want %q", got.JKT, want)
			}
			if got.ID != claims["jti"] || got.Algorithm != algOf(tt.key) {
				t.Errorf("ID, Algorithm = %q, %q, want %q, %q", got.ID, got.Algorithm, claims["jti"], algOf(tt.key))
			}
			if want := int64(claims["iat"].(float64)); got.IssuedAt.Unix() != want {
				t.Errorf("IssuedAt = %v, want %v", got.IssuedAt.Unix(), want)
			}
		})
	}
}

// dpopRefusal is one proof Verify must refuse: wantErr is the sentinel,
// wantDesc the description.
type dpopRefusal struct {
	name     string
	proofs   func(t *testing.T, f *dpopFixture) []string
	req      func(t *testing.T, f *dpopFixture) DPoPRequest
	wantErr  error
	wantDesc string
}

func oneProof(p string) []string { return []string{p} }

func TestDPoPVerifyRefuses(t *testing.T) {
	tests := []dpopRefusal{
		{name: "no proof", proofs: func(*testing.T, *dpopFixture) []string { return nil }, wantDesc: "missing DPoP proof"},
		{name: "two proofs", proofs: func(t *testing.T, f *dpopFixture) []string {
			return []string{f.proof(t, f.ec), f.proof(t, f.ec)}
		}, wantDesc: "more than one DPoP proof"},
		{name: "two proofs in one field", proofs: func(t *testing.T, f *dpopFixture) []string {
			return oneProof(f.proof(t, f.ec) + ", " + f.proof(t, f.ec))
		}, wantDesc: "malformed DPoP proof"},
		{name: "too large", proofs: func(t *testing.T, f *dpopFixture) []string {
			return oneProof(f.proof(t, f.ec, "pad", strings.Repeat("p", MaxDPoPProofBytes)))
		}, wantDesc: "DPoP proof too large"},
		{name: "not a JWS", proofs: func(*testing.T, *dpopFixture) []string { return oneProof("e30.e30") }, wantDesc: "malformed DPoP proof"},
		{name: "empty", proofs: func(*testing.T, *dpopFixture) []string { return oneProof("") }, wantDesc: "malformed DPoP proof"},
		{name: "wrong htm", proofs: proofWith("htm", "POST"), wantDesc: "htm mismatch"},
		{name: "htm in lower case", proofs: proofWith("htm", "get"), wantDesc: "htm mismatch"},
		{name: "htm missing", proofs: proofWith("htm", nil), wantDesc: "htm mismatch"},
		{name: "htu of another host", proofs: proofWith("htu", "https://evil.example.com/api/orders"), wantDesc: "htu mismatch"},
		{name: "htu of another path", proofs: proofWith("htu", "https://app.example.com/api/admin"), wantDesc: "htu mismatch"},
		{name: "htu with a query", proofs: proofWith("htu", testHTU+"?x=1"), wantDesc: "htu mismatch"},
		{name: "htu with a fragment", proofs: proofWith("htu", testHTU+"#f"), wantDesc: "htu mismatch"},
		{name: "htu of another scheme", proofs: proofWith("htu", "http://app.example.com/api/orders"), wantDesc: "htu mismatch"},
		{name: "htu of another port", proofs: proofWith("htu", "https://app.example.com:8443/api/orders"), wantDesc: "htu mismatch"},
		{name: "htu with userinfo", proofs: proofWith("htu", "https://u@app.example.com/api/orders"), wantDesc: "htu mismatch"},
		{name: "htu encoding a slash", proofs: proofWith("htu", "https://app.example.com/api%2Forders"), wantDesc: "htu mismatch"},
		{name: "htu relative", proofs: proofWith("htu", "/api/orders"), wantDesc: "htu mismatch"},
		{name: "htu not a string", proofs: proofWith("htu", 7), wantDesc: "htu mismatch"},
		{name: "iat too old", proofs: func(t *testing.T, f *dpopFixture) []string {
			return oneProof(f.proof(t, f.ec, "iat", f.clock.Now().Add(-DefaultDPoPMaxAge-time.Second).Unix()))
		}, wantDesc: "DPoP proof too old"},
		{name: "iat in the future", proofs: func(t *testing.T, f *dpopFixture) []string {
			return oneProof(f.proof(t, f.ec, "iat", f.clock.Now().Add(DefaultDPoPMaxFutureSkew+time.Second).Unix()))
		}, wantDesc: "DPoP proof issued in the future"},
		{name: "iat missing", proofs: proofWith("iat", nil), wantDesc: "missing iat claim"},
		{name: "iat a string", proofs: proofWith("iat", "now"), wantDesc: "invalid iat claim"},
		{name: "jti missing", proofs: proofWith("jti", nil), wantDesc: "missing or invalid jti claim"},
		{name: "jti empty", proofs: proofWith("jti", ""), wantDesc: "missing or invalid jti claim"},
		{name: "jti too long", proofs: proofWith("jti", strings.Repeat("j", maxJTIBytes+1)), wantDesc: "missing or invalid jti claim"},
		{name: "typ JWT", proofs: headerWith("typ", "JWT"), wantDesc: "wrong DPoP proof type"},
		{name: "typ missing", proofs: headerWith("typ", nil), wantDesc: "wrong DPoP proof type"},
		{name: "crit header", proofs: headerWith("crit", []string{"exp"}), wantDesc: "unsupported critical header"},
		{name: "jwk missing", proofs: headerWith("jwk", nil), wantDesc: "missing jwk header"},
		{name: "jwk a string", proofs: headerWith("jwk", "key"), wantDesc: "invalid jwk header"},
		{name: "jwk with the private part", proofs: func(t *testing.T, f *dpopFixture) []string {
			jwk := authtest.With(jwkOf(t, f.ec.Public()), "d", authtest.Encode(f.ec.D.FillBytes(make([]byte, 32))))
			return oneProof(sign(t, f.ec, authtest.With(f.header(t, f.ec), "jwk", jwk), f.claims()))
		}, wantDesc: "jwk holds a private key"},
		{name: "OKP jwk with the private part", proofs: func(t *testing.T, f *dpopFixture) []string {
			jwk := authtest.With(jwkOf(t, f.ed.Public()), "d", authtest.Encode(f.ed.Seed()))
			return oneProof(sign(t, f.ed, authtest.With(f.header(t, f.ed), "jwk", jwk), f.claims()))
		}, wantDesc: "jwk holds a private key"},
		{name: "jwk of another type than alg", proofs: func(t *testing.T, f *dpopFixture) []string {
			return oneProof(sign(t, f.ec, authtest.With(f.header(t, f.ec), "jwk", jwkOf(t, f.ed.Public())), f.claims()))
		}, wantDesc: "jwk does not match alg"},
		{name: "jwk alg differs", proofs: func(t *testing.T, f *dpopFixture) []string {
			jwk := authtest.With(jwkOf(t, f.ec.Public()), "alg", "ES384")
			return oneProof(sign(t, f.ec, authtest.With(f.header(t, f.ec), "jwk", jwk), f.claims()))
		}, wantDesc: "jwk alg mismatch"},
		{name: "jwk point off the curve", proofs: func(t *testing.T, f *dpopFixture) []string {
			jwk := authtest.With(jwkOf(t, f.ec.Public()), "y", authtest.Encode(make([]byte, 32)))
			return oneProof(sign(t, f.ec, authtest.With(f.header(t, f.ec), "jwk", jwk), f.claims()))
		}, wantDesc: "invalid jwk header"},
		{name: "jwk coordinate padded", proofs: func(t *testing.T, f *dpopFixture) []string {
			jwk := jwkOf(t, f.ed.Public())
			jwk["x"] = jwk["x"].(string) + "="
			return oneProof(sign(t, f.ed, authtest.With(f.header(t, f.ed), "jwk", jwk), f.claims()))
		}, wantDesc: "invalid jwk header"},
		{name: "signed by another key than the jwk's", proofs: func(t *testing.T, f *dpopFixture) []string {
			return oneProof(sign(t, f.ec2, f.header(t, f.ec), f.claims()))
		}, wantDesc: "DPoP proof signature invalid"},
		{name: "EdDSA signed by another key than the jwk's", proofs: func(t *testing.T, f *dpopFixture) []string {
			return oneProof(sign(t, f.ed2, f.header(t, f.ed), f.claims()))
		}, wantDesc: "DPoP proof signature invalid"},
		{name: "signature of other claims", proofs: func(t *testing.T, f *dpopFixture) []string {
			a, b := f.proof(t, f.ec), f.proof(t, f.ec, "htm", "POST")
			pa, pb := strings.Split(a, "."), strings.Split(b, ".")
			return oneProof(pb[0] + "." + pb[1] + "." + pa[2])
		}, wantDesc: "DPoP proof signature invalid"},
		{name: "another key than the session's", proofs: func(t *testing.T, f *dpopFixture) []string {
			return oneProof(f.proof(t, f.ec2))
		}, req: func(t *testing.T, f *dpopFixture) DPoPRequest {
			return DPoPRequest{Method: "GET", URL: testHTU, JKT: jktOf(t, f.ec.Public())}
		}, wantDesc: "DPoP key mismatch"},
		{name: "alg none", proofs: func(t *testing.T, f *dpopFixture) []string {
			return oneProof(authtest.Forge(t, authtest.With(f.header(t, f.ec), "alg", "none"), f.claims(), nil))
		}, wantDesc: "unsupported DPoP proof algorithm"},
		{name: "HS256 with the jwk as secret", proofs: func(t *testing.T, f *dpopFixture) []string {
			h := authtest.With(f.header(t, f.ec), "alg", "HS256")
			secret := []byte(authtest.EncodeJSON(t, h["jwk"]))
			return oneProof(authtest.Forge(t, h, f.claims(), authtest.SignAs("HS256", secret)))
		}, wantDesc: "unsupported DPoP proof algorithm"},
		{name: "HS256 with an RSA public key as secret", proofs: func(t *testing.T, f *dpopFixture) []string {
			pub := testRSAKey(t).Public()
			der, _ := x509.MarshalPKIXPublicKey(pub)
			secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
			h := map[string]any{"typ": "dpop+jwt", "alg": "HS256", "jwk": jwkOf(t, pub)}
			return oneProof(authtest.Forge(t, h, f.claims(), authtest.SignAs("HS256", secret)))
		}, wantDesc: "unsupported DPoP proof algorithm"},
		{name: "RS256 with a real RSA key", proofs: func(t *testing.T, f *dpopFixture) []string {
			k := testRSAKey(t)
			h := map[string]any{"typ": "dpop+jwt", "alg": "RS256", "jwk": jwkOf(t, k.Public())}
			return oneProof(authtest.Forge(t, h, f.claims(), authtest.SignAs("RS256", k)))
		}, wantDesc: "unsupported DPoP proof algorithm"},
		{name: "token without ath", proofs: func(t *testing.T, f *dpopFixture) []string { return oneProof(f.proof(t, f.ec)) },
			req: withToken("the.access.token"), wantDesc: "ath mismatch"},
		{name: "ath of another token", proofs: func(t *testing.T, f *dpopFixture) []string {
			return oneProof(f.proof(t, f.ec, "ath", AccessTokenHash("another.access.token")))
		}, req: withToken("the.access.token"), wantDesc: "ath mismatch"},
		{name: "ath not a hash", proofs: proofWith("ath", "the.access.token"), req: withToken("the.access.token"), wantDesc: "ath mismatch"},
		{name: "nonce missing", proofs: func(t *testing.T, f *dpopFixture) []string { return oneProof(f.proof(t, f.ec)) },
			req: withNonce, wantErr: ErrDPoPNonceRequired, wantDesc: "DPoP nonce required"},
		{name: "nonce stale", proofs: func(t *testing.T, f *dpopFixture) []string {
			return oneProof(f.proof(t, f.ec, "nonce", f.nonces.make(f.nonces.epoch(f.clock.Now())-2)))
		}, req: withNonce, wantErr: ErrDPoPNonceRequired, wantDesc: "DPoP nonce stale"},
		{name: "nonce of the next period", proofs: func(t *testing.T, f *dpopFixture) []string {
			return oneProof(f.proof(t, f.ec, "nonce", f.nonces.make(f.nonces.epoch(f.clock.Now())+1)))
		}, req: withNonce, wantErr: ErrDPoPNonceRequired, wantDesc: "DPoP nonce stale"},
		{name: "nonce of another key", proofs: func(t *testing.T, f *dpopFixture) []string {
			other, _ := NewDPoPNonces(DPoPNonceConfig{Key: []byte(strings.Repeat("k", 32)), Now: f.clock.Now})
			return oneProof(f.proof(t, f.ec, "nonce", other.Nonce()))
		}, req: withNonce, wantErr: ErrDPoPNonceRequired, wantDesc: "DPoP nonce stale"},
		{name: "nonce not a string", proofs: proofWith("nonce", 1), req: withNonce, wantErr: ErrDPoPNonceRequired, wantDesc: "DPoP nonce required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newDPoPFixture(t, 0)
			req := getRequest()
			if tt.req != nil {
				req = tt.req(t, f)
			}
			checkDPoPRefused(t, f, tt.proofs(t, f), req, tt.wantErr, tt.wantDesc)
			if f.replay.Len() != 0 {
				t.Errorf("replay cache holds %d entries after a dpopRefusal, want 0", f.replay.Len())
			}
		})
	}
}

func checkDPoPRefused(t *testing.T, f *dpopFixture, proofs []string, req DPoPRequest, wantErr error, wantDesc string) {
	t.Helper()
	if wantErr == nil {
		wantErr = ErrDPoPProofInvalid
	}
	_, err := f.verifier.Verify(t.Context(), proofs, req)
	if !errors.Is(err, wantErr) {
		t.Fatalf("Verify = %v, want %v", err, wantErr)
	}
	if got := DescribeDPoP(err); got != wantDesc {
		t.Errorf("DescribeDPoP = %q, want %q", got, wantDesc)
	}
	wantCode := DPoPErrorInvalidProof
	if wantErr == ErrDPoPNonceRequired {
		wantCode = DPoPErrorUseNonce
	}
	if got := DPoPErrorCode(err); got != wantCode {
		t.Errorf("DPoPErrorCode = %q, want %q", got, wantCode)
	}
}

func proofWith(kv ...any) func(*testing.T, *dpopFixture) []string {
	return func(t *testing.T, f *dpopFixture) []string { return oneProof(f.proof(t, f.ec, kv...)) }
}

func headerWith(kv ...any) func(*testing.T, *dpopFixture) []string {
	return func(t *testing.T, f *dpopFixture) []string {
		return oneProof(sign(t, f.ec, authtest.With(f.header(t, f.ec), kv...), f.claims()))
	}
}

func withToken(token string) func(*testing.T, *dpopFixture) DPoPRequest {
	return func(*testing.T, *dpopFixture) DPoPRequest {
		return DPoPRequest{Method: "GET", URL: testHTU, AccessToken: token}
	}
}

func withNonce(*testing.T, *dpopFixture) DPoPRequest {
	return DPoPRequest{Method: "GET", URL: testHTU, RequireNonce: true}
}

// testRSAKey is the private key of testKey's RS256 key.
func testRSAKey(tb testing.TB) *rsa.PrivateKey {
	return testKey(tb, RS256, 0).private.(*rsa.PrivateKey)
}

// TestDPoPReplay: a proof is accepted once; the same jti with another key
// is another proof; a refused proof does not burn its jti; and an entry
// is forgotten only once its proof's iat is out of the window.
func TestDPoPReplay(t *testing.T) {
	f := newDPoPFixture(t, 0)
	ctx := t.Context()
	p := f.proof(t, f.ec, "jti", "j1")
	if _, err := f.verifier.Verify(ctx, oneProof(p), DPoPRequest{Method: "POST", URL: testHTU}); !errors.Is(err, ErrDPoPProofInvalid) {
		t.Fatalf("Verify(wrong method) = %v, want ErrDPoPProofInvalid", err)
	}
	if _, err := f.verifier.Verify(ctx, oneProof(p), getRequest()); err != nil {
		t.Fatalf("Verify(after a dpopRefusal) = %v, want nil", err)
	}
	checkDPoPRefused(t, f, oneProof(p), getRequest(), ErrDPoPProofInvalid, "DPoP proof replayed")
	if _, err := f.verifier.Verify(ctx, oneProof(f.proof(t, f.ed, "jti", "j1")), getRequest()); err != nil {
		t.Fatalf("Verify(same jti, other key) = %v, want nil", err)
	}
	// Just inside the window the proof is still a replay; past it, it is
	// too old, and its entry may go.
	f.clock.Advance(DefaultDPoPMaxAge)
	checkDPoPRefused(t, f, oneProof(p), getRequest(), ErrDPoPProofInvalid, "DPoP proof replayed")
	f.clock.Advance(time.Second)
	checkDPoPRefused(t, f, oneProof(p), getRequest(), ErrDPoPProofInvalid, "DPoP proof too old")
	if _, err := f.verifier.Verify(ctx, oneProof(f.proof(t, f.ec, "jti", "j2")), getRequest()); err != nil {
		t.Fatal(err)
	}
	if got := f.replay.Len(); got != 1 {
		t.Errorf("replay cache holds %d entries, want 1 (the expired ones dropped)", got)
	}
}

// TestDPoPReplayConcurrent: of many concurrent presentations of one proof,
// exactly one is accepted.
func TestDPoPReplayConcurrent(t *testing.T) {
	f := newDPoPFixture(t, 0)
	p := f.proof(t, f.ed)
	var accepted atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if _, err := f.verifier.Verify(context.Background(), oneProof(p), getRequest()); err == nil {
				accepted.Add(1)
			}
		})
	}
	wg.Wait()
	if got := accepted.Load(); got != 1 {
		t.Errorf("%d of 16 accepted, want 1", got)
	}
}

// TestDPoPReplayFull: a full cache no longer refuses new proofs as a
// server failure: it shrinks its window, so proofs as old as those it
// evicted are refused as the proof's fault ("DPoP proof too old"), an
// evicted proof's replay among them, while newer ones are accepted; and
// it accepts again once entries expire.
func TestDPoPReplayFull(t *testing.T) {
	f := newDPoPFixture(t, dpopReplayShards) // one entry per shard
	ctx := t.Context()
	first := f.proof(t, f.ec)
	if _, err := f.verifier.Verify(ctx, oneProof(first), getRequest()); err != nil {
		t.Fatal(err)
	}
	// The clock is fixed: every proof has first's until, so once shards
	// evict, proofs of this second are refused as too old.
	tooOld := 0
	for range 10 * dpopReplayShards {
		_, err := f.verifier.Verify(ctx, oneProof(f.proof(t, f.ec)), getRequest())
		switch {
		case DescribeDPoP(err) == "DPoP proof too old":
			tooOld++
			if DPoPErrorCode(err) != DPoPErrorInvalidProof {
				t.Errorf("too old error %v is not invalid_dpop_proof", err)
			}
		case err != nil:
			t.Fatalf("Verify = %v, want nil or too old", err)
		}
	}
	if tooOld == 0 {
		t.Fatal("a full cache never shrank its window")
	}
	// Newer proofs are accepted; the first one's replay is not, evicted
	// or not.
	f.clock.Advance(time.Second)
	if _, err := f.verifier.Verify(ctx, oneProof(f.proof(t, f.ec)), getRequest()); err != nil {
		t.Fatalf("a newer proof: Verify = %v, want nil", err)
	}
	if _, err := f.verifier.Verify(ctx, oneProof(first), getRequest()); !errors.Is(err, ErrDPoPProofInvalid) {
		t.Fatalf("replay of the first proof: Verify = %v, want refused", err)
	}
	f.clock.Advance(DefaultDPoPMaxAge + time.Second)
	if _, err := f.verifier.Verify(ctx, oneProof(f.proof(t, f.ec)), getRequest()); err != nil {
		t.Fatalf("after expiry: Verify = %v, want nil", err)
	}
	if got := f.replay.Len(); got != 1 {
		t.Errorf("after expiry the cache holds %d entries, want 1", got)
	}
}

// failingReplay is a replay cache that cannot answer, as Redis down.
type failingReplay struct{}

func (failingReplay) Seen(context.Context, string, time.Time) (bool, error) {
	return false, errors.New("connection refused")
}

func TestDPoPReplayUnavailableFailsClosed(t *testing.T) {
	f := newDPoPFixture(t, 0)
	v, err := NewDPoPVerifier(DPoPConfig{Now: f.clock.Now, Replay: failingReplay{}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(t.Context(), oneProof(f.proof(t, f.ec)), getRequest())
	if err == nil || DPoPErrorCode(err) != "" {
		t.Errorf("Verify = %v, want a server-side error", err)
	}
}

func TestNewDPoPVerifierConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  DPoPConfig
		want string // in the error; "" for none
	}{
		{name: "zero", cfg: DPoPConfig{}},
		{name: "ES256 only", cfg: DPoPConfig{Algorithms: []string{ES256}}},
		{name: "none", cfg: DPoPConfig{Algorithms: []string{"none"}}, want: `unsupported proof algorithm "none"`},
		{name: "HS256", cfg: DPoPConfig{Algorithms: []string{HS256}}, want: `unsupported proof algorithm "HS256"`},
		{name: "RS256", cfg: DPoPConfig{Algorithms: []string{RS256}}, want: `unsupported proof algorithm "RS256"`},
		{name: "empty list", cfg: DPoPConfig{Algorithms: []string{}}, want: "no algorithms"},
		{name: "negative age", cfg: DPoPConfig{MaxAge: -time.Second}, want: "negative max age"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewDPoPVerifier(tt.cfg)
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("NewDPoPVerifier = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestDPoPAlgorithmsConfigured: an alg left out of the configuration is
// refused even though the verifier knows it.
func TestDPoPAlgorithmsConfigured(t *testing.T) {
	f := newDPoPFixture(t, 0)
	v, err := NewDPoPVerifier(DPoPConfig{Algorithms: []string{ES256}, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Algorithms(); len(got) != 1 || got[0] != ES256 {
		t.Errorf("Algorithms() = %v, want [ES256]", got)
	}
	_, err = v.Verify(t.Context(), oneProof(f.proof(t, f.ed)), getRequest())
	if DescribeDPoP(err) != "unsupported DPoP proof algorithm" {
		t.Errorf("Verify(EdDSA) = %v, want unsupported algorithm", err)
	}
}

func TestDPoPNonces(t *testing.T) {
	clock := newTestClock()
	if _, err := NewDPoPNonces(DPoPNonceConfig{Key: []byte("short")}); err == nil {
		t.Error("NewDPoPNonces(short key) = nil error")
	}
	n, err := NewDPoPNonces(DPoPNonceConfig{Key: []byte(testNonceKy), Period: time.Minute, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	first := n.Nonce()
	for _, c := range first {
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			t.Fatalf("nonce %q has %q, outside NQCHAR", first, c)
		}
	}
	if !n.valid(first, clock.Now()) {
		t.Fatal("current nonce not valid")
	}
	clock.Advance(time.Minute)
	if second := n.Nonce(); second == first || !n.valid(first, clock.Now()) || !n.valid(second, clock.Now()) {
		t.Errorf("after one period: new %v, old valid %v, want a new nonce and both valid", second != first, n.valid(first, clock.Now()))
	}
	clock.Advance(time.Minute)
	if n.valid(first, clock.Now()) {
		t.Error("nonce valid two periods on")
	}
	// A replica with the same key accepts the other's nonce.
	other, _ := NewDPoPNonces(DPoPNonceConfig{Key: []byte(testNonceKy), Period: time.Minute, Now: clock.Now})
	if !other.valid(n.Nonce(), clock.Now()) {
		t.Error("replica with the same key refuses the nonce")
	}
	tampered := []byte(n.Nonce())
	tampered[len(tampered)-1] ^= 1
	if n.valid(string(tampered), clock.Now()) {
		t.Error("tampered nonce valid")
	}
}

func TestHTUMatches(t *testing.T) {
	tests := []struct {
		htu, url string
		want     bool
	}{
		{"https://a.example/p", "https://a.example/p", true},
		{"https://A.EXAMPLE/p", "https://a.example/p?q", true},
		{"https://a.example:443/p", "https://a.example/p", true},
		{"http://a.example:80/p", "http://a.example/p", true},
		{"https://a.example:80/p", "https://a.example/p", false},
		{"https://a.example/%7euser", "https://a.example/~user", true},
		{"https://a.example/a%2fb", "https://a.example/a%2Fb", true},
		{"https://a.example/a%2fb", "https://a.example/a/b", false},
		{"https://a.example/a/../b", "https://a.example/b", true},
		{"https://a.example/P", "https://a.example/p", false},
		{"https://a.example/p/", "https://a.example/p", false},
		{"https://[::1]:8443/p", "https://[::1]:8443/p", true},
		{"https://[::1]:443/p", "https://[::1]/p", true},
		{"ftp://a.example/p", "ftp://a.example/p", false},
		{"https://a.example/p?", "https://a.example/p", false},
		{"https:///p", "https:///p", false},
		{"", "", false},
	}
	for _, tt := range tests {
		if got := htuMatches(tt.htu, tt.url); got != tt.want {
			t.Errorf("htuMatches(%q, %q) = %v, want %v", tt.htu, tt.url, got, tt.want)
		}
	}
}

// BenchmarkDPoPVerify is one proof's verification, replay cache included:
// proofs are made beforehand, each with its own jti.
func BenchmarkDPoPVerify(b *testing.B) {
	for _, alg := range []string{ES256, EdDSA} {
		b.Run(alg, func(b *testing.B) {
			f := newDPoPFixture(b, 1<<20)
			key := crypto.Signer(f.ec)
			if alg == EdDSA {
				key = f.ed
			}
			req := DPoPRequest{Method: "GET", URL: testHTU, AccessToken: "the.access.token", JKT: jktOf(b, key.Public())}
			proofs := make([][]string, b.N)
			for i := range proofs {
				proofs[i] = oneProof(f.proof(b, key, "ath", AccessTokenHash(req.AccessToken)))
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if _, err := f.verifier.Verify(ctx, proofs[i], req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestDPoPEd25519Name: a proof whose alg is Ed25519, RFC 9864's fully
// specified name of EdDSA over Ed25519 (what panva's dpop 2.x writes), is
// accepted with an Ed25519 jwk as EdDSA is, and refused with any other;
// the gateway's own tokens do not accept the name.
func TestDPoPEd25519Name(t *testing.T) {
	f := newDPoPFixture(t, 0)
	header := authtest.With(f.header(t, f.ed), "alg", Ed25519)
	raw := authtest.Forge(t, header, f.claims(), authtest.SignAs(Ed25519, f.ed))
	got, err := f.verifier.Verify(t.Context(), oneProof(raw), getRequest())
	if err != nil {
		t.Fatalf("Verify(Ed25519 proof) = %v (%q), want nil", err, DescribeDPoP(err))
	}
	if got.Algorithm != Ed25519 || got.JKT != jktOf(t, f.ed.Public()) {
		t.Errorf("Algorithm, JKT = %q, %q; want %q and the Ed25519 key's thumbprint", got.Algorithm, got.JKT, Ed25519)
	}
	ec := authtest.With(f.header(t, f.ec), "alg", Ed25519)
	_, err = f.verifier.Verify(t.Context(), oneProof(authtest.Forge(t, ec, f.claims(), authtest.SignAs(Ed25519, f.ed))), getRequest())
	if DescribeDPoP(err) != "jwk does not match alg" {
		t.Errorf("Verify(Ed25519 alg, EC jwk) = %v, want jwk does not match alg", err)
	}
	v, err := NewDPoPVerifier(DPoPConfig{Algorithms: []string{ES256, EdDSA}, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	raw = authtest.Forge(t, header, f.claims(), authtest.SignAs(Ed25519, f.ed))
	if _, err := v.Verify(t.Context(), oneProof(raw), getRequest()); DescribeDPoP(err) != "unsupported DPoP proof algorithm" {
		t.Errorf("Verify(Ed25519) with only ES256, EdDSA configured = %v, want unsupported algorithm", err)
	}

	tf := newFixture(t, EdDSA, 0)
	h := authtest.With(tf.header(), "alg", Ed25519)
	if _, err := tf.verifier.Verify(authtest.Forge(t, h, tf.claims(), authtest.SignAs(Ed25519, tf.key.private))); err == nil {
		t.Error("the gateway's Verify accepted a token with alg Ed25519")
	}
}
