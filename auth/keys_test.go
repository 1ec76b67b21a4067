package auth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"slices"
	"strings"
	"testing"
)

func TestGenerateKeyRoundTrip(t *testing.T) {
	for _, alg := range allAlgs {
		t.Run(alg, func(t *testing.T) {
			k := testKey(t, alg, 0)
			if got := k.Algorithm(); got != alg {
				t.Errorf("Algorithm() = %q, want %q", got, alg)
			}
			if got := len(k.ID()); got != 43 {
				t.Errorf("len(ID()) = %d, want 43 (base64url SHA-256)", got)
			}
			pemBytes, err := k.PrivatePEM()
			if err != nil {
				t.Fatalf("PrivatePEM() = %v", err)
			}
			if alg == HS256 {
				if len(pemBytes) != 44 || pemBytes[43] != '\n' {
					t.Errorf("HS256 PrivatePEM() = %d bytes, want 43 base64url characters and a newline", len(pemBytes))
				}
				if _, err := base64.RawURLEncoding.Strict().DecodeString(string(pemBytes[:43])); err != nil {
					t.Errorf("HS256 secret is not base64url: %v", err)
				}
			} else if block, _ := pem.Decode(pemBytes); block == nil || block.Type != "PRIVATE KEY" {
				t.Errorf("PrivatePEM() is not a PKCS#8 PEM block")
			}
			path := writeFile(t, t.TempDir(), "key.pem", pemBytes)

			loaded, err := LoadKey(alg, path)
			if err != nil {
				t.Fatalf("LoadKey(%s) = %v", alg, err)
			}
			if loaded.ID() != k.ID() || loaded.Algorithm() != alg {
				t.Errorf("LoadKey(PrivatePEM()) = kid %s alg %s, want %s %s", loaded.ID(), loaded.Algorithm(), k.ID(), alg)
			}
			again, err := loaded.PrivatePEM()
			if err != nil || !bytes.Equal(again, pemBytes) {
				t.Errorf("PrivatePEM() after LoadKey differs (err %v)", err)
			}
			pub, err := LoadPublicKey(alg, path)
			if err != nil {
				t.Fatalf("LoadPublicKey(private key file) = %v", err)
			}
			if pub.ID() != k.ID() {
				t.Errorf("LoadPublicKey kid = %s, want %s", pub.ID(), k.ID())
			}
			if alg != HS256 {
				if _, err := pub.PrivatePEM(); err == nil {
					t.Errorf("PrivatePEM() of a public key = nil error, want an error")
				}
			}
		})
	}
}

func TestGenerateKeyIsRandom(t *testing.T) {
	for _, alg := range []string{EdDSA, ES256, HS256} {
		a, b := testKey(t, alg, 0), testKey(t, alg, 1)
		if a.ID() == b.ID() {
			t.Errorf("two GenerateKey(%s) share kid %s", alg, a.ID())
		}
	}
}

func TestLoadKeyForms(t *testing.T) {
	dir := t.TempDir()
	ecKey := testKey(t, ES256, 0)
	ecPriv := ecKey.private.(*ecdsa.PrivateKey)
	rsaKey := testKey(t, RS256, 0)
	rsaPriv := rsaKey.private.(*rsa.PrivateKey)
	edKey := testKey(t, EdDSA, 0)

	sec1, err := x509.MarshalECPrivateKey(ecPriv)
	if err != nil {
		t.Fatal(err)
	}
	ecParams := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}})
	pkixOf := func(pub crypto.PublicKey) []byte {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}

	tests := []struct {
		name    string
		alg     string
		data    []byte
		public  bool // LoadPublicKey instead of LoadKey
		wantKID string
	}{
		{"SEC1 EC PRIVATE KEY", ES256, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), false, ecKey.ID()},
		{"openssl ecparam output", ES256, append(ecParams, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})...), false, ecKey.ID()},
		{"PKCS#1 RSA PRIVATE KEY", RS256, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaPriv)}), false, rsaKey.ID()},
		{"text before the PEM block", EdDSA, append([]byte("my signing key\n"), mustPEM(t, edKey)...), false, edKey.ID()},
		{"PKIX Ed25519 public key", EdDSA, pkixOf(edKey.public), true, edKey.ID()},
		{"PKIX P-256 public key", ES256, pkixOf(ecKey.public), true, ecKey.ID()},
		{"PKIX RSA public key", RS256, pkixOf(rsaKey.public), true, rsaKey.ID()},
		{"PKCS#1 RSA PUBLIC KEY", RS256, pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsaPriv.PublicKey)}), true, rsaKey.ID()},
		{"SEC1 private key as public", ES256, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), true, ecKey.ID()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, dir, strings.ReplaceAll(tt.name, " ", "_")+".pem", tt.data)
			load := LoadKey
			if tt.public {
				load = LoadPublicKey
			}
			k, err := load(tt.alg, path)
			if err != nil {
				t.Fatalf("load(%s) = %v", tt.alg, err)
			}
			if k.ID() != tt.wantKID {
				t.Errorf("kid = %s, want %s", k.ID(), tt.wantKID)
			}
			if got := k.canSign(); got == tt.public {
				t.Errorf("canSign() = %v, want %v", got, !tt.public)
			}
		})
	}
}

func mustPEM(tb testing.TB, k *Key) []byte {
	tb.Helper()
	b, err := k.PrivatePEM()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestLoadKeyErrors(t *testing.T) {
	dir := t.TempDir()
	edPEM := mustPEM(t, testKey(t, EdDSA, 0))
	ecPEM := mustPEM(t, testKey(t, ES256, 0))
	rsaPEM := mustPEM(t, testKey(t, RS256, 0))

	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384DER, _ := x509.MarshalPKCS8PrivateKey(p384)
	p384PEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p384DER})
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024PEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsa1024)})
	rsa1024PubDER, _ := x509.MarshalPKIXPublicKey(&rsa1024.PublicKey)
	rsa1024Pub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsa1024PubDER})
	edPubDER, _ := x509.MarshalPKIXPublicKey(testKey(t, EdDSA, 0).public)
	edPub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: edPubDER})
	shortSecret := []byte(strings.Repeat("s", 31) + "\n")

	tests := []struct {
		name    string
		alg     string
		data    []byte // nil: the file does not exist
		public  bool
		wantIn  []string // substrings of the error
		secrets [][]byte // must not appear in the error
	}{
		{"Ed25519 key for ES256", ES256, edPEM, false, []string{"Ed25519", "ES256"}, nil},
		{"P-256 key for EdDSA", EdDSA, ecPEM, false, []string{"P-256", "EdDSA"}, nil},
		{"RSA key for ES256", ES256, rsaPEM, false, []string{"RSA", "ES256"}, nil},
		{"P-256 key for RS256", RS256, ecPEM, false, []string{"P-256", "RS256"}, nil},
		{"P-384 key for ES256", ES256, p384PEM, false, []string{"P-384", "ES256"}, nil},
		{"RSA 1024 refused", RS256, rsa1024PEM, false, []string{"1024", "2048"}, nil},
		{"RSA 1024 public refused", RS256, rsa1024Pub, true, []string{"1024", "2048"}, nil},
		{"Ed25519 public for ES256", ES256, edPub, true, []string{"Ed25519", "ES256"}, nil},
		{"public key as signing key", EdDSA, edPub, false, []string{"PUBLIC KEY", "not a private key"}, nil},
		{"short HS256 secret", HS256, shortSecret, false, []string{"31 bytes", "at least 32"}, [][]byte{shortSecret[:31]}},
		{"short HS256 secret for verification", HS256, shortSecret, true, []string{"at least 32"}, [][]byte{shortSecret[:31]}},
		{"PEM as HS256 secret", HS256, edPub, false, []string{"not a PEM"}, [][]byte{edPub[27:60]}},
		{"no PEM block", EdDSA, []byte("not a key at all, just some text that is long"), false, []string{"no PEM"}, nil},
		{"garbage in PEM", ES256, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte("garbage")}), false, []string{"parse EC PRIVATE KEY"}, nil},
		{"encrypted key", EdDSA, pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte("x")}), false, []string{"encrypted"}, nil},
		{"missing file", EdDSA, nil, false, []string{"no such file"}, nil},
		{"unknown algorithm", "HS512", []byte(strings.Repeat("s", 40)), false, []string{"HS512"}, nil},
		{"none algorithm", "none", edPEM, true, []string{"none"}, nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := dir + "/missing.pem"
			if tt.data != nil {
				path = writeFile(t, dir, "key"+string(rune('a'+i))+".pem", tt.data)
			}
			load := LoadKey
			if tt.public {
				load = LoadPublicKey
			}
			k, err := load(tt.alg, path)
			if err == nil {
				t.Fatalf("load(%s) = kid %s, nil error; want an error", tt.alg, k.ID())
			}
			msg := err.Error()
			if !strings.Contains(msg, path) {
				t.Errorf("error %q does not name the path %s", msg, path)
			}
			for _, want := range tt.wantIn {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not contain %q", msg, want)
				}
			}
			for _, secret := range tt.secrets {
				if strings.Contains(msg, string(secret)) {
					t.Errorf("error %q contains key material", msg)
				}
			}
		})
	}
}

func TestLoadKeyHS256Trim(t *testing.T) {
	secret := strings.Repeat("k", 32)
	dir := t.TempDir()
	want, err := LoadKey(HS256, writeFile(t, dir, "plain", []byte(secret)))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data string
		same bool
	}{
		{"LF", secret + "\n", true},
		{"CRLF and spaces", secret + " \r\n \t\r\n", true},
		{"leading space is part of the secret", " " + secret, false},
		{"inner newline is part of the secret", secret[:16] + "\n" + secret[16:], false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := LoadKey(HS256, writeFile(t, dir, "s"+string(rune('a'+i)), []byte(tt.data)))
			if err != nil {
				t.Fatalf("LoadKey = %v", err)
			}
			if got := k.ID() == want.ID(); got != tt.same {
				t.Errorf("same kid as %q = %v, want %v", "k…k", got, tt.same)
			}
		})
	}
}

func TestThumbprintRFC7638(t *testing.T) {
	// RFC 7638 section 3.1.
	n, err := base64.RawURLEncoding.DecodeString("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
	if err != nil {
		t.Fatal(err)
	}
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537}
	k, err := newKey(RS256, nil, pub)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := k.ID(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"; got != want {
		t.Errorf("kid = %s, want %s", got, want)
	}
}

type jwk struct {
	Kty, Crv, X, Y, N, E, Kid, Alg, Use string
}

func parseJWKS(tb testing.TB, doc []byte) ([]jwk, []map[string]any) {
	tb.Helper()
	var typed struct{ Keys []jwk }
	var raw struct{ Keys []map[string]any }
	if err := json.Unmarshal(doc, &typed); err != nil {
		tb.Fatalf("JWKS %s: %v", doc, err)
	}
	if err := json.Unmarshal(doc, &raw); err != nil {
		tb.Fatal(err)
	}
	return typed.Keys, raw.Keys
}

func TestJWKS(t *testing.T) {
	for _, alg := range []string{EdDSA, ES256, RS256} {
		t.Run(alg, func(t *testing.T) {
			signing, old := testKey(t, alg, 0), testKey(t, alg, 1)
			oldPub, err := newKey(alg, nil, old.public)
			if err != nil {
				t.Fatal(err)
			}
			// signing twice, and old as both private and public: they collapse.
			ks, err := NewKeySet(signing, old, signing, oldPub)
			if err != nil {
				t.Fatalf("NewKeySet = %v", err)
			}
			keys, raw := parseJWKS(t, ks.JWKS())
			if len(keys) != 2 {
				t.Fatalf("JWKS has %d keys, want 2: %s", len(keys), ks.JWKS())
			}
			for i, want := range []*Key{signing, old} {
				got := keys[i]
				if got.Kid != want.ID() || got.Alg != alg || got.Use != "sig" {
					t.Errorf("key %d = kid %s alg %s use %s, want %s %s sig", i, got.Kid, got.Alg, got.Use, want.ID(), alg)
				}
				for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k", "oth"} {
					if _, ok := raw[i][private]; ok {
						t.Errorf("key %d has private member %q", i, private)
					}
				}
				pub := publicFromJWK(t, got)
				if !want.public.(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
					t.Errorf("key %d does not decode to the key's public part", i)
				}
			}
			ks.JWKS()[0] = 'x'
			if ks.JWKS()[0] != '{' {
				t.Errorf("JWKS() shares its buffer with the caller")
			}
		})
	}
	t.Run(HS256, func(t *testing.T) {
		ks, err := NewKeySet(testKey(t, HS256, 0), testKey(t, HS256, 1))
		if err != nil {
			t.Fatal(err)
		}
		if got := string(ks.JWKS()); got != `{"keys":[]}` {
			t.Errorf("JWKS() = %s, want {\"keys\":[]}", got)
		}
	})
}

// publicFromJWK decodes a JWK the way a relying party would.
func publicFromJWK(tb testing.TB, k jwk) crypto.PublicKey {
	tb.Helper()
	dec := func(s string) []byte {
		b, err := base64.RawURLEncoding.Strict().DecodeString(s)
		if err != nil {
			tb.Fatalf("JWK member %q: %v", s, err)
		}
		return b
	}
	switch k.Kty {
	case "OKP":
		if k.Crv != "Ed25519" {
			tb.Fatalf("crv = %s", k.Crv)
		}
		return ed25519.PublicKey(dec(k.X))
	case "EC":
		x, y := dec(k.X), dec(k.Y)
		if k.Crv != "P-256" || len(x) != 32 || len(y) != 32 {
			tb.Fatalf("EC JWK crv %s, x %d bytes, y %d bytes; want P-256, 32, 32", k.Crv, len(x), len(y))
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), slices.Concat([]byte{4}, x, y))
		if err != nil {
			tb.Fatal(err)
		}
		return pub
	case "RSA":
		n, e := dec(k.N), dec(k.E)
		if n[0] == 0 || e[0] == 0 {
			tb.Errorf("RSA JWK n or e has a leading zero byte")
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	}
	tb.Fatalf("kty = %q", k.Kty)
	return nil
}

func TestECJWKFixedLength(t *testing.T) {
	// About 1 in 128 P-256 keys has a coordinate with a leading zero byte;
	// it must still be encoded on 32 bytes (RFC 7518 section 6.2.1.2).
	found := false
	for i := 0; i < 2000 && !found; i++ {
		k, err := GenerateKey(ES256)
		if err != nil {
			t.Fatal(err)
		}
		p := k.public.(*ecdsa.PublicKey)
		point, _ := p.Bytes()
		if point[1] != 0 && point[33] != 0 {
			continue
		}
		found = true
		got := publicFromJWK(t, jwk{Kty: "EC", Crv: "P-256", X: k.jwk["x"], Y: k.jwk["y"]})
		if !p.Equal(got) {
			t.Errorf("JWK of a key with a short coordinate does not round-trip")
		}
	}
	if !found {
		t.Skip("no key with a leading zero coordinate byte in 2000 tries")
	}
}

func TestNewKeySetErrors(t *testing.T) {
	edPub, err := newKey(EdDSA, nil, testKey(t, EdDSA, 0).public)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		signing *Key
		verify  []*Key
	}{
		{"nil signing key", nil, nil},
		{"signing key without private part", edPub, nil},
		{"mixed algorithms", testKey(t, EdDSA, 0), []*Key{testKey(t, ES256, 0)}},
		{"HS256 with EdDSA", testKey(t, HS256, 0), []*Key{edPub}},
		{"nil verification key", testKey(t, EdDSA, 0), []*Key{nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewKeySet(tt.signing, tt.verify...); err == nil {
				t.Errorf("NewKeySet = nil error, want an error")
			}
		})
	}
}
