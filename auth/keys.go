package auth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
)

// MinRSABits is the smallest RSA modulus LoadKey and LoadPublicKey accept.
const MinRSABits = 2048

// MinSecretBytes is the shortest HS256 secret LoadKey accepts.
const MinSecretBytes = 32

// maxKeyFileBytes bounds how much of a key file is read: a key is a few
// kilobytes, so anything larger is a wrong path, not a key.
const maxKeyFileBytes = 1 << 20

// rsaGenerateBits is the modulus size GenerateKey uses for RS256.
const rsaGenerateBits = 2048

// Key is one signing or verification key: its algorithm, its kid, its public
// part and, unless it came from LoadPublicKey, its private part (or, for
// HS256, the shared secret, which is both). The zero Key is not usable; make
// one with LoadKey, LoadPublicKey or GenerateKey. A Key is immutable and safe
// for concurrent use.
type Key struct {
	alg string
	kid string
	// private is ed25519.PrivateKey, *ecdsa.PrivateKey or *rsa.PrivateKey,
	// the concrete types golang-jwt signs with; nil for a verification-only
	// key and for HS256.
	private crypto.Signer
	// public is ed25519.PublicKey, *ecdsa.PublicKey or *rsa.PublicKey; nil
	// for HS256.
	public crypto.PublicKey
	// secret is the HS256 secret; nil otherwise.
	secret []byte
	// jwk is the public JWK (with kid, alg, use) for the JWKS document; nil
	// for HS256.
	jwk map[string]string
}

// Algorithm returns the key's algorithm: EdDSA, ES256, RS256 or HS256.
func (k *Key) Algorithm() string { return k.alg }

// ID returns the key's kid, its RFC 7638 JWK thumbprint (base64url of
// SHA-256). For HS256 it is the thumbprint of the oct JWK, which reveals no
// more about the secret than any token signed with it.
func (k *Key) ID() string { return k.kid }

// canSign reports whether the key holds private material.
func (k *Key) canSign() bool { return k.private != nil || k.secret != nil }

// signingKey returns what golang-jwt's SigningMethod.Sign expects.
func (k *Key) signingKey() any {
	if k.alg == HS256 {
		return k.secret
	}
	return k.private
}

// verificationKey returns what golang-jwt's SigningMethod.Verify expects.
// The concrete types differ per algorithm, so a key can never verify a
// token of another algorithm even if the alg check were bypassed.
func (k *Key) verificationKey() any {
	if k.alg == HS256 {
		return k.secret
	}
	return k.public
}

// LoadKey reads a signing key for alg from path.
//
// For EdDSA, ES256 (P-256 only) and RS256 (at least MinRSABits) the file is
// PEM: PKCS#8 "PRIVATE KEY", SEC1 "EC PRIVATE KEY" (an "EC PARAMETERS" block
// before it, as openssl ecparam writes, is skipped) or PKCS#1 "RSA PRIVATE
// KEY". Encrypted keys are not supported. A key of another type than alg
// needs is an error naming both.
//
// For HS256 the file's content, with trailing spaces, tabs, CR and LF
// removed, is the secret; it must be at least MinSecretBytes long and must
// not be PEM (a public key used as an HMAC secret is a secret everybody
// knows).
//
// Errors name the path, never the key material.
func LoadKey(alg, path string) (*Key, error) {
	secret, block, err := readKey(alg, path)
	if secret != nil || err != nil {
		return secret, err
	}
	priv, err := parsePrivateBlock(path, block)
	if err != nil {
		return nil, err
	}
	return newPrivateKey(alg, priv, path)
}

// LoadPublicKey reads a verification-only key for alg from path, for
// tokens.verify_key_files: keys the gateway no longer signs with but whose
// tokens it still accepts during a rotation. The file is PEM "PUBLIC KEY"
// (PKIX), "RSA PUBLIC KEY" (PKCS#1) or any private key form LoadKey accepts,
// of which only the public part is kept. For HS256 it is the secret file, as
// for LoadKey.
func LoadPublicKey(alg, path string) (*Key, error) {
	secret, block, err := readKey(alg, path)
	if secret != nil || err != nil {
		return secret, err
	}
	var pub crypto.PublicKey
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	default:
		var priv crypto.Signer
		priv, err = parsePrivateBlock(path, block)
		if err != nil {
			return nil, err
		}
		pub = priv.Public()
	}
	if err != nil {
		return nil, fmt.Errorf("key file %s: parse %s: %w", path, block.Type, err)
	}
	if err := checkKeyType(alg, pub, path); err != nil {
		return nil, err
	}
	return newKey(alg, nil, pub)
}

// readKey reads the key file of alg at path, the part LoadKey and
// LoadPublicKey share: for HS256 it returns the secret key, for the others
// the file's first key block, still to be parsed.
func readKey(alg, path string) (*Key, *pem.Block, error) {
	data, err := readKeyFile(path)
	if err != nil {
		return nil, nil, err
	}
	switch alg {
	case HS256:
		k, err := secretKey(path, data)
		return k, nil, err
	case EdDSA, ES256, RS256:
	default:
		return nil, nil, fmt.Errorf("key file %s: %w", path, unsupportedAlg(alg))
	}
	block, err := firstKeyBlock(path, data)
	return nil, block, err
}

// GenerateKey returns a new random key for alg: an Ed25519 key, a P-256 key,
// a 2048-bit RSA key, or for HS256 a secret made of 32 random bytes encoded
// as base64url without padding (43 ASCII characters, so that PrivatePEM and
// LoadKey round-trip it unchanged).
func GenerateKey(alg string) (*Key, error) {
	var (
		priv crypto.Signer
		err  error
	)
	switch alg {
	case EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case RS256:
		priv, err = rsa.GenerateKey(rand.Reader, rsaGenerateBits)
	case HS256:
		raw := make([]byte, 32)
		if _, err := io.ReadFull(rand.Reader, raw); err != nil {
			return nil, fmt.Errorf("generate HS256 secret: %w", err)
		}
		secret := make([]byte, base64.RawURLEncoding.EncodedLen(len(raw)))
		base64.RawURLEncoding.Encode(secret, raw)
		return newSecretKey(secret), nil
	default:
		return nil, unsupportedAlg(alg)
	}
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", alg, err)
	}
	return newKey(alg, priv, priv.Public())
}

// PrivatePEM returns the key's private part as a file LoadKey reads back:
// PKCS#8 PEM ("PRIVATE KEY") for EdDSA, ES256 and RS256, and for HS256 the
// secret followed by "\n". It is an error for a verification-only key. The
// result is secret: write it with mode 0600.
func (k *Key) PrivatePEM() ([]byte, error) {
	if k.alg == HS256 {
		out := make([]byte, 0, len(k.secret)+1)
		out = append(out, k.secret...)
		return append(out, '\n'), nil
	}
	der, err := k.privateDER()
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// privateDER is the key's asymmetric private part in PKCS#8 DER. It is an
// error for a verification-only key (and for an HS256 one, whose secret is
// no private key).
func (k *Key) privateDER() ([]byte, error) {
	if k.private == nil {
		return nil, fmt.Errorf("key %s has no private part", k.kid)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k.private)
	if err != nil {
		return nil, fmt.Errorf("marshal %s key: %w", k.alg, err)
	}
	return der, nil
}

func unsupportedAlg(alg string) error {
	return fmt.Errorf("unsupported algorithm %q (want %s, %s, %s or %s)", alg, EdDSA, ES256, RS256, HS256)
}

func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read key file %s: %w", path, err)
	}
	if len(data) > maxKeyFileBytes {
		return nil, fmt.Errorf("key file %s: larger than %d bytes", path, maxKeyFileBytes)
	}
	return data, nil
}

func secretKey(path string, data []byte) (*Key, error) {
	secret := bytes.TrimRight(data, " \t\r\n")
	if bytes.HasPrefix(bytes.TrimSpace(secret), []byte("-----BEGIN")) {
		return nil, fmt.Errorf("key file %s: HS256 needs a random secret, not a PEM file", path)
	}
	if len(secret) < MinSecretBytes {
		return nil, fmt.Errorf("key file %s: HS256 secret is %d bytes, need at least %d", path, len(secret), MinSecretBytes)
	}
	return newSecretKey(bytes.Clone(secret)), nil
}

func newSecretKey(secret []byte) *Key {
	kid := thumbprint(map[string]string{
		"k":   base64.RawURLEncoding.EncodeToString(secret),
		"kty": "oct",
	})
	return &Key{alg: HS256, kid: kid, secret: secret}
}

// firstKeyBlock returns the first PEM block of data other than "EC
// PARAMETERS".
func firstKeyBlock(path string, data []byte) (*pem.Block, error) {
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("key file %s: no PEM key block", path)
		}
		if block.Type != "EC PARAMETERS" {
			return block, nil
		}
	}
}

func parsePrivateBlock(path string, block *pem.Block) (crypto.Signer, error) {
	var (
		key any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "ENCRYPTED PRIVATE KEY":
		return nil, fmt.Errorf("key file %s: encrypted private keys are not supported", path)
	default:
		return nil, fmt.Errorf("key file %s: PEM block %q is not a private key", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("key file %s: parse %s: %w", path, block.Type, err)
	}
	switch k := key.(type) {
	case ed25519.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		return k, nil
	case *rsa.PrivateKey:
		return k, nil
	default:
		return nil, fmt.Errorf("key file %s: unsupported private key type %T", path, key)
	}
}

func newPrivateKey(alg string, priv crypto.Signer, path string) (*Key, error) {
	if err := checkKeyType(alg, priv.Public(), path); err != nil {
		return nil, err
	}
	return newKey(alg, priv, priv.Public())
}

// describeKey names a public key's type for error messages.
func describeKey(pub crypto.PublicKey) string {
	switch p := pub.(type) {
	case ed25519.PublicKey:
		return "an Ed25519 key"
	case *ecdsa.PublicKey:
		return "an ECDSA " + p.Curve.Params().Name + " key"
	case *rsa.PublicKey:
		return fmt.Sprintf("a %d-bit RSA key", p.N.BitLen())
	default:
		return fmt.Sprintf("a %T key", pub)
	}
}

// checkKeyType checks that pub is the key type alg needs.
func checkKeyType(alg string, pub crypto.PublicKey, path string) error {
	ok := false
	want := ""
	switch alg {
	case EdDSA:
		_, ok = pub.(ed25519.PublicKey)
		want = "an Ed25519 key"
	case ES256:
		p, isEC := pub.(*ecdsa.PublicKey)
		ok = isEC && p.Curve == elliptic.P256()
		want = "an ECDSA P-256 key"
	case RS256:
		p, isRSA := pub.(*rsa.PublicKey)
		if isRSA && p.N.BitLen() < MinRSABits {
			return fmt.Errorf("key file %s: %d-bit RSA key, %s needs at least %d bits", path, p.N.BitLen(), alg, MinRSABits)
		}
		ok = isRSA
		want = "an RSA key"
	default:
		return fmt.Errorf("key file %s: %w", path, unsupportedAlg(alg))
	}
	if !ok {
		return fmt.Errorf("key file %s: holds %s, algorithm %s needs %s", path, describeKey(pub), alg, want)
	}
	return nil
}

// newKey builds a Key, computing its public JWK and kid.
func newKey(alg string, priv crypto.Signer, pub crypto.PublicKey) (*Key, error) {
	members, err := publicJWK(pub)
	if err != nil {
		return nil, err
	}
	kid := thumbprint(members)
	jwk := make(map[string]string, len(members)+3)
	for name, v := range members {
		jwk[name] = v
	}
	jwk["kid"] = kid
	jwk["alg"] = alg
	jwk["use"] = "sig"
	return &Key{alg: alg, kid: kid, private: priv, public: pub, jwk: jwk}, nil
}

// publicJWK returns the required members of a public key's JWK (RFC 7518
// section 6, RFC 8037 section 2), the ones its RFC 7638 thumbprint covers.
func publicJWK(pub crypto.PublicKey) (map[string]string, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	switch p := pub.(type) {
	case ed25519.PublicKey:
		return map[string]string{"kty": "OKP", "crv": "Ed25519", "x": b64(p)}, nil
	case *ecdsa.PublicKey:
		if p.Curve != elliptic.P256() {
			return nil, fmt.Errorf("unsupported curve %s", p.Curve.Params().Name)
		}
		// Uncompressed point: 0x04 || X || Y, each coordinate 32 bytes,
		// which is the fixed length RFC 7518 section 6.2.1.2 requires.
		point, err := p.Bytes()
		if err != nil {
			return nil, fmt.Errorf("encode P-256 public key: %w", err)
		}
		return map[string]string{"kty": "EC", "crv": "P-256", "x": b64(point[1:33]), "y": b64(point[33:65])}, nil
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "n": b64(p.N.Bytes()), "e": b64(big.NewInt(int64(p.E)).Bytes())}, nil
	default:
		return nil, fmt.Errorf("unsupported public key type %T", pub)
	}
}

// thumbprint computes the RFC 7638 JWK thumbprint of a JWK's required
// members: SHA-256 over their JSON with the names in lexicographic order and
// no whitespace, base64url-encoded. encoding/json writes map keys sorted and
// without whitespace, and the members' values are base64url or fixed ASCII
// names, which it does not escape.
func thumbprint(members map[string]string) string {
	canonical, _ := json.Marshal(members) // a map of strings always marshals
	sum := sha256.Sum256(canonical)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// KeySet is the gateway's keys for one algorithm: the key it signs with and
// the keys it verifies with (the signing key's public part plus any older
// keys kept for a rotation). A KeySet is immutable and safe for concurrent
// use.
type KeySet struct {
	alg     string
	signing *Key
	byKID   map[string]*Key
	jwks    []byte
}

// NewKeySet returns the set that signs with signing and verifies with
// signing and every key of verify. signing is required and must hold its
// private part; all keys must have the signing key's algorithm. Keys with
// the same kid (the same key loaded twice) collapse into one.
func NewKeySet(signing *Key, verify ...*Key) (*KeySet, error) {
	if signing == nil {
		return nil, errors.New("key set: no signing key")
	}
	if !signing.canSign() {
		return nil, fmt.Errorf("key set: signing key %s has no private part", signing.kid)
	}
	ks := &KeySet{alg: signing.alg, signing: signing, byKID: map[string]*Key{signing.kid: signing}}
	type jwksDoc struct {
		Keys []map[string]string `json:"keys"`
	}
	doc := jwksDoc{Keys: []map[string]string{}}
	if signing.jwk != nil {
		doc.Keys = append(doc.Keys, signing.jwk)
	}
	for i, k := range verify {
		if k == nil {
			return nil, fmt.Errorf("key set: verification key %d is nil", i)
		}
		if k.alg != signing.alg {
			return nil, fmt.Errorf("key set: verification key %s is %s, signing key is %s", k.kid, k.alg, signing.alg)
		}
		if _, dup := ks.byKID[k.kid]; dup {
			continue
		}
		ks.byKID[k.kid] = k
		if k.jwk != nil {
			doc.Keys = append(doc.Keys, k.jwk)
		}
	}
	jwks, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("key set: marshal JWKS: %w", err)
	}
	ks.jwks = jwks
	return ks, nil
}

// Algorithm returns the algorithm of every key of the set.
func (ks *KeySet) Algorithm() string { return ks.alg }

// SigningKey returns the key the set signs with.
func (ks *KeySet) SigningKey() *Key { return ks.signing }

// lookup returns the key with the given kid, or nil.
func (ks *KeySet) lookup(kid string) *Key { return ks.byKID[kid] }

// JWKS returns the JSON document `{"keys":[...]}` served at
// /.well-known/jwks.json: the public JWK of every asymmetric key of the set
// (kty, crv/x/y or n/e, kid, alg, use "sig"), the signing key first. It never
// holds private material; for HS256 it is `{"keys":[]}`. The result is a
// fresh copy the caller may keep.
func (ks *KeySet) JWKS() []byte { return bytes.Clone(ks.jwks) }
