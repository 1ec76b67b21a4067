package auth

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"
)

func TestMain(m *testing.M) {
	// Keep the users-file tests fast; production uses HashCost.
	hashCost = bcrypt.MinCost
	os.Exit(m.Run())
}

var allAlgs = []string{EdDSA, ES256, RS256, HS256}

var (
	testKeysMu sync.Mutex
	testKeys   = map[string]*Key{}
)

// testKey returns the n-th cached generated key for alg, so that the
// package generates each RSA key once.
func testKey(tb testing.TB, alg string, n int) *Key {
	tb.Helper()
	testKeysMu.Lock()
	defer testKeysMu.Unlock()
	id := fmt.Sprintf("%s/%d", alg, n)
	if k, ok := testKeys[id]; ok {
		return k
	}
	k, err := GenerateKey(alg)
	if err != nil {
		tb.Fatalf("GenerateKey(%s) = %v", alg, err)
	}
	testKeys[id] = k
	return k
}

func writeFile(tb testing.TB, dir, name string, data []byte) string {
	tb.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// testClock is an injectable clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock {
	return &testClock{t: time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// b64 is base64url without padding.
func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func b64JSON(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b64(b)
}

// signer signs a JWS signing input.
type signer func(tb testing.TB, signingInput string) []byte

// signWith signs with k's private part using k's algorithm.
func signWith(k *Key) signer {
	return signAs(k.Algorithm(), k.signingKey())
}

// signAs signs with method alg and a raw key, whatever the key is.
func signAs(alg string, key any) signer {
	return func(tb testing.TB, in string) []byte {
		tb.Helper()
		sig, err := jwt.GetSigningMethod(alg).Sign(in, key)
		if err != nil {
			tb.Fatalf("sign %s: %v", alg, err)
		}
		return sig
	}
}

// craft builds a compact JWS from a header and claims, signed by sign
// (nil: empty signature).
func craft(tb testing.TB, header, claims map[string]any, sign signer) string {
	tb.Helper()
	in := b64JSON(tb, header) + "." + b64JSON(tb, claims)
	var sig []byte
	if sign != nil {
		sig = sign(tb, in)
	}
	return in + "." + b64(sig)
}
