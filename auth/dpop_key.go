package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/base64"
)

// jwkPrivateMembers are the JWK members that hold private key material
// (RFC 7518 sections 6.2.2, 6.3.2 and 6.4, RFC 8037 section 2): a proof's
// jwk holding any of them is refused (RFC 9449 section 4.3, check 7),
// whatever its kty, since a client that publishes its private key has no
// key to prove possession of.
var jwkPrivateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// proofKey is the checked public key of a DPoP proof's header: what the
// header segment's exact bytes mean, cached by them (keyCache). It is
// immutable once made, and shared by the goroutines verifying proofs of
// one client.
type proofKey struct {
	header string // the base64url header segment, the cache key
	alg    string
	jkt    string
	pub    any // *ecdsa.PublicKey or ed25519.PublicKey
}

// checkHeader checks a proof's decoded header (crit, typ, jwk), whose alg
// the caller has already allowed, and returns the jwk's public key, of the
// type alg needs. verify also asserts the key's Go type, so an EdDSA
// signature can never be checked against an EC key, but checking kty and
// crv here gives the client a clear error.
func checkHeader(h map[string]any) (*proofKey, error) {
	if _, ok := h["crit"]; ok {
		// RFC 7515 section 4.1.11: we understand no extension.
		return nil, dpopInvalid("unsupported critical header")
	}
	if typ, ok := h["typ"].(string); !ok || !isDPoPType(typ) {
		return nil, dpopInvalid("wrong DPoP proof type")
	}
	raw, ok := h["jwk"]
	if !ok {
		return nil, dpopInvalid("missing jwk header")
	}
	jwk, ok := raw.(map[string]any)
	if !ok {
		return nil, dpopInvalid("invalid jwk header")
	}
	for _, name := range jwkPrivateMembers {
		if _, ok := jwk[name]; ok {
			return nil, dpopInvalid("jwk holds a private key")
		}
	}
	alg, _ := h["alg"].(string)
	if a, ok := jwk["alg"]; ok && a != alg {
		return nil, dpopInvalid("jwk alg mismatch")
	}
	pub, err := publicKeyOfJWK(alg, jwk)
	if err != nil {
		return nil, err
	}
	members, err := publicJWK(pub)
	if err != nil {
		return nil, dpopInvalid("invalid jwk header")
	}
	// The thumbprint is of the members re-encoded from the parsed key, so
	// it depends on the key alone, never on how the client spelled it.
	return &proofKey{alg: alg, jkt: thumbprint(members), pub: pub}, nil
}

// publicKeyOfJWK parses jwk as the public key alg needs: EC P-256 (x, y)
// for ES256, OKP Ed25519 (x) for EdDSA and Ed25519.
func publicKeyOfJWK(alg string, jwk map[string]any) (any, error) {
	kty, _ := jwk["kty"].(string)
	crv, _ := jwk["crv"].(string)
	switch {
	case alg == ES256 && kty == "EC" && crv == "P-256":
		x, okX := jwkCoordinate(jwk, "x", 32)
		y, okY := jwkCoordinate(jwk, "y", 32)
		if !okX || !okY {
			return nil, dpopInvalid("invalid jwk header")
		}
		point := make([]byte, 0, 65)
		point = append(append(append(point, 4), x...), y...)
		// ParseUncompressedPublicKey refuses points off the curve and the
		// point at infinity.
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
		if err != nil {
			return nil, dpopInvalid("invalid jwk header")
		}
		return pub, nil
	case (alg == EdDSA || alg == Ed25519) && kty == "OKP" && crv == "Ed25519":
		x, ok := jwkCoordinate(jwk, "x", ed25519.PublicKeySize)
		if !ok {
			return nil, dpopInvalid("invalid jwk header")
		}
		return ed25519.PublicKey(x), nil
	default:
		return nil, dpopInvalid("jwk does not match alg")
	}
}

// jwkCoordinate decodes the base64url member name of jwk, which must be
// exactly size bytes (RFC 7518 section 6.2.1.2 fixes the length of EC
// coordinates; RFC 8037 that of an Ed25519 key). Strict decoding refuses
// non-zero padding bits, so each key has one spelling.
func jwkCoordinate(jwk map[string]any, name string, size int) ([]byte, bool) {
	s, ok := jwk[name].(string)
	if !ok || len(s) != base64.RawURLEncoding.EncodedLen(size) {
		return nil, false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(b) != size {
		return nil, false
	}
	return b, true
}
