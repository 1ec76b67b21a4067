package auth

import (
	"bytes"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
)

// TestDeriveSecret: one key and purpose give one secret (so replicas with
// the same key file agree), another purpose or another key another one,
// and a verification-only key none.
func TestDeriveSecret(t *testing.T) {
	for _, alg := range []string{EdDSA, ES256, RS256, HS256} {
		t.Run(alg, func(t *testing.T) {
			k, err := GenerateKey(alg)
			if err != nil {
				t.Fatal(err)
			}
			a, err := k.DeriveSecret("dpop nonce")
			if err != nil {
				t.Fatal(err)
			}
			if len(a) != 32 {
				t.Fatalf("len = %d, want 32", len(a))
			}
			pemBytes, err := k.PrivatePEM()
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "key.pem")
			if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
				t.Fatal(err)
			}
			loaded, err := LoadKey(alg, path)
			if err != nil {
				t.Fatal(err)
			}
			same, err := loaded.DeriveSecret("dpop nonce")
			if err != nil || !bytes.Equal(a, same) {
				t.Errorf("the same key read back derives %x, %v; want %x", same, err, a)
			}
			if other, _ := k.DeriveSecret("another use"); bytes.Equal(a, other) {
				t.Error("two purposes share a secret")
			}
			k2, _ := GenerateKey(alg)
			if other, _ := k2.DeriveSecret("dpop nonce"); bytes.Equal(a, other) {
				t.Error("two keys share a secret")
			}
			// The key material itself: the PKCS#8 DER inside the PEM (its
			// base64 text could never hold the raw secret), or HS256's
			// secret, which is the file.
			material := pemBytes
			if block, _ := pem.Decode(pemBytes); block != nil {
				material = block.Bytes
			}
			if bytes.Contains(material, a) {
				t.Error("the secret is part of the key material")
			}
		})
	}
}
