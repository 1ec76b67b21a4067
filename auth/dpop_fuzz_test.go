package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/spa-gateway/gateway/auth/authtest"
)

// FuzzDPoPVerify feeds Verify arbitrary proofs and requests. With sign
// set, header and claims are the fuzzer's JSON signed by the fixture's key
// of the header's alg, so that every rule is explored behind a valid
// signature; otherwise proof is used as it is. Verify must not panic;
// every refusal is the proof's fault (the cache never fills here); an
// accepted proof satisfies every rule, checked independently of the
// verifier's code; and it is refused when presented again.
func FuzzDPoPVerify(f *testing.F) {
	fx := newDPoPFixture(f, 0)
	js := func(v any) string {
		b, _ := json.Marshal(v)
		return string(b)
	}
	tok := "the.access.token"
	ecH, edH := js(fx.header(f, fx.ec)), js(fx.header(f, fx.ed))
	c := fx.claims()
	f.Add(fx.proof(f, fx.ec), "", "", false, "GET", testHTU, "", false)
	f.Add(fx.proof(f, fx.ed, "ath", AccessTokenHash(tok)), "", "", false, "GET", testHTU, tok, false)
	f.Add(fx.proof(f, fx.ec, "nonce", fx.nonces.Nonce()), "", "", false, "GET", testHTU, "", true)
	f.Add(authtest.Forge(f, authtest.With(fx.header(f, fx.ec), "alg", "none"), c, nil), "", "", false, "GET", testHTU, "", false)
	f.Add("", ecH, js(c), true, "GET", testHTU, "", false)
	f.Add("", edH, js(authtest.With(c, "ath", AccessTokenHash(tok))), true, "GET", testHTU+"?q", tok, false)
	f.Add("", edH, js(authtest.With(c, "htu", "HTTPS://APP.example.com:443/api/x/../orders")), true, "GET", testHTU, "", false)
	f.Add("", ecH, js(authtest.With(c, "nonce", fx.nonces.Nonce())), true, "GET", testHTU, "", true)
	f.Add("", js(authtest.With(fx.header(f, fx.ec), "typ", "JWT")), js(c), true, "GET", testHTU, "", false)
	f.Add("e30.e30.", "", "", false, "GET", testHTU, "", false)
	f.Add("", js(authtest.With(fx.header(f, fx.ed), "alg", Ed25519)), js(c), true, "GET", testHTU, "", false)
	f.Add("", js(authtest.With(fx.header(f, fx.ec), "alg", Ed25519)), js(c), true, "GET", testHTU, "", false)
	f.Fuzz(func(t *testing.T, proof, header, claims string, signIt bool, method, url, token string, requireNonce bool) {
		if signIt {
			proof = fuzzSign(fx, header, claims)
		}
		// A fresh cache each time, so that an input run twice behaves the
		// same, on the fixture's fixed clock.
		replay := NewMemoryDPoPReplay(dpopReplayShards*4, fx.clock.Now)
		v, err := NewDPoPVerifier(DPoPConfig{Now: fx.clock.Now, Replay: replay, Nonces: fx.nonces})
		if err != nil {
			t.Fatal(err)
		}
		req := DPoPRequest{Method: method, URL: url, AccessToken: token, RequireNonce: requireNonce}
		got, err := v.Verify(t.Context(), []string{proof}, req)
		if err != nil {
			if DPoPErrorCode(err) == "" {
				t.Fatalf("Verify = %v, neither ErrDPoPProofInvalid nor ErrDPoPNonceRequired", err)
			}
			return
		}
		checkAcceptedProof(t, fx, proof, req, got)
		if _, err := v.Verify(t.Context(), []string{proof}, req); !errors.Is(err, ErrDPoPProofInvalid) {
			t.Fatalf("Verify(again) = %v, want a replay", err)
		}
	})
}

// fuzzSign signs header.claims with the fixture's key of the header's alg
// (ES256 unless it says EdDSA or Ed25519).
func fuzzSign(fx *dpopFixture, header, claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	input := enc([]byte(header)) + "." + enc([]byte(claims))
	var h map[string]any
	_ = json.Unmarshal([]byte(header), &h)
	var sig []byte
	if h["alg"] == EdDSA || h["alg"] == Ed25519 {
		sig, _ = jwt.SigningMethodEdDSA.Sign(input, fx.ed)
	} else {
		sig, _ = jwt.SigningMethodES256.Sign(input, fx.ec)
	}
	return input + "." + enc(sig)
}

// checkAcceptedProof checks every rule of RFC 9449 section 4.3 on an
// accepted proof, from its text, without the verifier's code.
func checkAcceptedProof(t *testing.T, fx *dpopFixture, proof string, req DPoPRequest, got DPoPProof) {
	t.Helper()
	if len(proof) > MaxDPoPProofBytes || strings.Count(proof, ".") != 2 {
		t.Fatalf("accepted a proof of %d bytes and %d dots", len(proof), strings.Count(proof, "."))
	}
	parts := strings.Split(proof, ".")
	var h, c map[string]any
	hb, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	cb, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	dec := json.NewDecoder(strings.NewReader(string(cb)))
	dec.UseNumber()
	if err1 != nil || err2 != nil || err3 != nil || json.Unmarshal(hb, &h) != nil || dec.Decode(&c) != nil {
		t.Fatalf("accepted an undecodable proof %q", proof)
	}
	typ, _ := h["typ"].(string)
	alg, _ := h["alg"].(string)
	if t2 := strings.ToLower(typ); t2 != "dpop+jwt" && t2 != "application/dpop+jwt" {
		t.Errorf("accepted typ %q", typ)
	}
	if alg != ES256 && alg != EdDSA && alg != Ed25519 || alg != got.Algorithm {
		t.Errorf("accepted alg %q (reported %q)", alg, got.Algorithm)
	}
	jwk, _ := h["jwk"].(map[string]any)
	if _, private := jwk["d"]; private {
		t.Errorf("accepted a jwk with d")
	}
	// The signature verifies with the key the thumbprint names.
	var key any
	members := map[string]string{}
	for _, name := range []string{"kty", "crv", "x", "y"} {
		if s, ok := jwk[name].(string); ok {
			members[name] = s
		}
	}
	switch alg {
	case EdDSA, Ed25519:
		x, _ := base64.RawURLEncoding.DecodeString(members["x"])
		if len(x) != ed25519.PublicKeySize || members["kty"] != "OKP" || members["crv"] != "Ed25519" {
			t.Fatalf("accepted EdDSA with jwk %v", jwk)
		}
		key = ed25519.PublicKey(x)
	case ES256:
		x, _ := base64.RawURLEncoding.DecodeString(members["x"])
		y, _ := base64.RawURLEncoding.DecodeString(members["y"])
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil || members["kty"] != "EC" || members["crv"] != "P-256" {
			t.Fatalf("accepted ES256 with jwk %v", jwk)
		}
		key = pub
	}
	if err := authtest.Method(alg).Verify(parts[0]+"."+parts[1], sig, key); err != nil {
		t.Errorf("accepted a proof whose signature does not verify with its jwk: %v", err)
	}
	sum := sha256.Sum256([]byte(mustJSON(t, members)))
	if want := base64.RawURLEncoding.EncodeToString(sum[:]); got.JKT != want {
		t.Errorf("JKT = %q, want the thumbprint %q", got.JKT, want)
	}
	if c["htm"] != req.Method {
		t.Errorf("accepted htm %v for method %q", c["htm"], req.Method)
	}
	htu, _ := c["htu"].(string)
	if strings.ContainsAny(htu, "?#") || !strings.HasPrefix(strings.ToLower(htu), "http") {
		t.Errorf("accepted htu %q", htu)
	}
	iat, err := c["iat"].(json.Number).Float64()
	now := float64(fx.clock.Now().Unix())
	if err != nil || iat < now-DefaultDPoPMaxAge.Seconds() || iat > now+DefaultDPoPMaxFutureSkew.Seconds() {
		t.Errorf("accepted iat %v at %v", c["iat"], now)
	}
	if jti, _ := c["jti"].(string); jti == "" || jti != got.ID {
		t.Errorf("accepted jti %v (reported %q)", c["jti"], got.ID)
	}
	if req.AccessToken != "" && c["ath"] != AccessTokenHash(req.AccessToken) {
		t.Errorf("accepted ath %v for the token", c["ath"])
	}
	if nonce, _ := c["nonce"].(string); req.RequireNonce && nonce != fx.nonces.Nonce() {
		// The fixture's clock is fixed, so the only current nonce is the
		// present one or the previous period's.
		prev := fx.nonces.make(fx.nonces.epoch(fx.clock.Now()) - 1)
		if nonce != prev {
			t.Errorf("accepted nonce %q", nonce)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
