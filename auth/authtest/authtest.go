// Package authtest builds and reads tokens for tests: compact JWS from any
// header and claims, signed with any algorithm and key or with none, as an
// attacker would write them (to prove that the verifier refuses them), and
// the header and claims of a token the gateway minted (to check what it
// wrote).
//
// It does not import auth, so that auth's own tests can use it; nothing
// here checks a token, which is auth's work.
package authtest

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// Signer returns the signature of a JWS signing input (the encoded header
// and claims joined by a dot).
type Signer func(tb testing.TB, input string) []byte

// SignAs signs with golang-jwt's method alg and any key, whatever it is:
// the key need not be one the method is meant for (an RSA public key given
// to HS256 is the algorithm confusion attack). Ed25519 (RFC 9864's name,
// which golang-jwt does not know) signs as EdDSA. Signing errors fail the
// test.
func SignAs(alg string, key any) Signer {
	return func(tb testing.TB, input string) []byte {
		tb.Helper()
		sig, err := Method(alg).Sign(input, key)
		if err != nil {
			tb.Fatalf("sign %s: %v", alg, err)
		}
		return sig
	}
}

// Forge builds a compact JWS of header and claims, exactly as given (no
// field is added or checked), signed by sign; a nil sign leaves the
// signature empty.
func Forge(tb testing.TB, header, claims map[string]any, sign Signer) string {
	tb.Helper()
	input := EncodeJSON(tb, header) + "." + EncodeJSON(tb, claims)
	var sig []byte
	if sign != nil {
		sig = sign(tb, input)
	}
	return input + "." + Encode(sig)
}

// Encode is base64url without padding, the encoding of a JWS segment.
func Encode(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// EncodeJSON is the segment of v: its JSON, encoded. An error fails the
// test.
func EncodeJSON(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return Encode(b)
}

// With returns a copy of m with the given changes, name and value pairs; a
// nil value deletes the name. m itself is left as it was.
func With(m map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(m)+len(kv)/2)
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

// Header decodes the JOSE header of a compact JWT, without verifying it;
// a token that is not three segments of base64url JSON fails the test.
func Header(tb testing.TB, tok string) map[string]any {
	tb.Helper()
	return segment(tb, tok, 0)
}

// Claims decodes the claims of a compact JWT, without verifying it; a
// token that is not three segments of base64url JSON fails the test.
func Claims(tb testing.TB, tok string) map[string]any {
	tb.Helper()
	return segment(tb, tok, 1)
}

// segment decodes the i-th segment of a compact JWT.
func segment(tb testing.TB, tok string, i int) map[string]any {
	tb.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		tb.Fatalf("not a compact JWT: %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		tb.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		tb.Fatal(err)
	}
	return m
}

// Method is golang-jwt's signing method alg, EdDSA's for Ed25519, nil for
// an alg it does not know.
func Method(alg string) jwt.SigningMethod {
	if alg == "Ed25519" {
		return jwt.SigningMethodEdDSA
	}
	return jwt.GetSigningMethod(alg)
}
