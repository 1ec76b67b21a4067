package main

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/auth"
)

// TestDPoPNoncesAgreeAcrossReplicas: two gateways started from the same key
// file hand out the same DPoP-Nonce at the same time, so that a client
// behind a round-robin balancer is not refused at every other replica; a
// gateway with another key hands out another one.
func TestDPoPNoncesAgreeAcrossReplicas(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "signing.pem")
	if _, stderr, code := runBinary(t, "", "keygen", "--alg", "EdDSA", "--out", path); code != 0 {
		t.Fatalf("keygen: exit %d: %s", code, stderr)
	}
	at := time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { return at }
	tc := Default().Tokens
	tc.DPoPNonce = true
	nonce := func(k *auth.Key) string {
		t.Helper()
		_, nonces, err := dpopVerifier(tc, k, now)
		if err != nil {
			t.Fatal(err)
		}
		return nonces.Nonce()
	}
	load := func() *auth.Key {
		t.Helper()
		k, err := auth.LoadKey(auth.EdDSA, path)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	a, b := nonce(load()), nonce(load())
	if a == "" || a != b {
		t.Errorf("replicas with one key file: nonces %q and %q, want the same", a, b)
	}
	other, err := auth.GenerateKey(auth.EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	if c := nonce(other); c == a {
		t.Errorf("a gateway with another key hands out the same nonce %q", c)
	}
}
