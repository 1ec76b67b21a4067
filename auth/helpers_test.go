package auth

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/spa-gateway/gateway/auth/authtest"
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

// signWith signs with k's private part using k's algorithm.
func signWith(k *Key) authtest.Signer {
	return authtest.SignAs(k.Algorithm(), k.signingKey())
}
