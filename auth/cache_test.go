package auth

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/auth/authtest"
)

// cached returns f with a verifier that caches up to size tokens.
func (f *fixture) cached(tb testing.TB, leeway time.Duration, size int) *fixture {
	tb.Helper()
	v, err := NewVerifier(VerifierConfig{Keys: f.keys, Algorithm: f.alg, Issuer: testIssuer, Audience: testAudience,
		Leeway: leeway, Now: f.clock.Now, CacheSize: size})
	if err != nil {
		tb.Fatalf("NewVerifier = %v", err)
	}
	g := *f
	g.verifier = v
	return &g
}

// entries counts the tokens in the cache.
func (c *tokenCache) entries() int {
	n := 0
	c.m.Range(func(any, any) bool { n++; return true })
	return n
}

func (c *tokenCache) holds(raw string) bool {
	_, ok := c.m.Load(raw)
	return ok
}

func TestVerifyCacheHit(t *testing.T) {
	for _, size := range []int{0, 10} {
		t.Run(fmt.Sprintf("size %d", size), func(t *testing.T) {
			f := newFixture(t, EdDSA, 0).cached(t, 0, size)
			raw := f.mint(t)
			a, err := f.verifier.Verify(raw)
			if err != nil {
				t.Fatalf("Verify = %v", err)
			}
			b, err := f.verifier.Verify(raw)
			if err != nil {
				t.Fatalf("second Verify = %v", err)
			}
			if got, want := a == b, size > 0; got != want {
				t.Errorf("second Verify returned the first *Token: %v, want %v", got, want)
			}
			if b.Subject != "alice" || b.SessionID != "sid-1" || b.Raw != raw {
				t.Errorf("second Verify = %+v, want alice's token", b)
			}
			// VerifyExpired never answers from the cache.
			c, err := f.verifier.VerifyExpired(raw)
			if err != nil {
				t.Fatalf("VerifyExpired = %v", err)
			}
			if c == a || c == b {
				t.Error("VerifyExpired returned a cached *Token")
			}
		})
	}
}

// TestVerifyCacheRefusesTheSame runs every refusal of TestVerifyRefuses on
// a verifier whose cache already holds a good token, twice each: the cache
// changes no decision and remembers no failure.
func TestVerifyCacheRefusesTheSame(t *testing.T) {
	for _, alg := range allAlgs {
		t.Run(alg, func(t *testing.T) {
			f := newFixture(t, alg, 0).cached(t, 0, 100)
			if _, err := f.verifier.Verify(f.good(t, f.claims())); err != nil {
				t.Fatalf("Verify(good) = %v", err)
			}
			for _, tt := range commonRefusals() {
				t.Run(tt.name, func(t *testing.T) {
					raw := tt.token(t, f)
					for range 2 {
						tok, err := f.verifier.Verify(raw)
						checkRefused(t, "Verify", tok, err, tt.kind, tt.desc)
					}
				})
			}
		})
	}
}

// TestVerifyCacheExactText: a cached token's claims with another signature,
// or the same token with one character changed, are checked in full.
func TestVerifyCacheExactText(t *testing.T) {
	f := newFixture(t, EdDSA, 0).cached(t, 0, 100)
	raw := f.mint(t)
	if _, err := f.verifier.Verify(raw); err != nil {
		t.Fatalf("Verify = %v", err)
	}
	i := len(raw) - 20 // inside the signature
	c := byte('A')
	if raw[i] == c {
		c = 'B'
	}
	tests := []struct{ name, raw string }{
		{"signature changed", raw[:i] + string(c) + raw[i+1:]},
		{"signed by another key", authtest.Forge(t, f.header(), f.claims(), signWith(testKey(t, EdDSA, 1)))},
		{"no signature", raw[:len(raw)-len(raw[lastDot(raw)+1:])]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := f.verifier.Verify(tt.raw)
			if err == nil {
				t.Fatalf("Verify = %+v, nil; want an error", tok)
			}
		})
	}
}

func lastDot(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '.' {
			return i
		}
	}
	return -1
}

// TestVerifyCacheTimeRules: a cached token is still refused once its exp
// (plus leeway) has passed, and before its nbf or iat if the clock goes
// back; and a token refused for its time is accepted once its time comes.
func TestVerifyCacheTimeRules(t *testing.T) {
	const leeway = 30 * time.Second
	tests := []struct {
		name    string
		claims  func(f *fixture) map[string]any
		advance []time.Duration // clock moves before each Verify after the first
		want    []string        // "" accepted, else the description
	}{
		{
			name: "exp passes",
			claims: func(f *fixture) map[string]any {
				return authtest.With(f.claims(), "exp", f.clock.Now().Add(time.Minute).Unix())
			},
			advance: []time.Duration{59 * time.Second, time.Second + leeway - time.Millisecond, time.Millisecond, 0},
			want:    []string{"", "", "", "token expired", "token expired"},
		},
		{
			name:    "clock goes back before nbf",
			claims:  func(f *fixture) map[string]any { return authtest.With(f.claims(), "nbf", f.clock.Now().Unix()) },
			advance: []time.Duration{-leeway, -time.Second, 2 * time.Second},
			want:    []string{"", "", "token used before nbf", ""},
		},
		{
			name:    "clock goes back before iat",
			claims:  func(f *fixture) map[string]any { return authtest.With(f.claims(), "iat", f.clock.Now().Unix()) },
			advance: []time.Duration{-leeway - time.Second},
			want:    []string{"", "token issued in the future"},
		},
		{
			name: "refused before nbf, accepted after",
			claims: func(f *fixture) map[string]any {
				return authtest.With(f.claims(), "nbf", f.clock.Now().Add(time.Minute).Unix())
			},
			advance: []time.Duration{30*time.Second - time.Millisecond, time.Millisecond},
			want:    []string{"token used before nbf", "token used before nbf", ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, ES256, 0).cached(t, leeway, 10)
			raw := f.good(t, tt.claims(f))
			for i, want := range tt.want {
				if i > 0 {
					f.clock.Advance(tt.advance[i-1])
				}
				tok, err := f.verifier.Verify(raw)
				if got := Describe(err); got != want || (err == nil) != (tok != nil) {
					t.Errorf("Verify #%d = %v, %q; want %q", i+1, tok != nil, got, want)
				}
			}
		})
	}
}

// TestVerifyCacheBounded: the cache holds at most its size, evicting the
// oldest first, and an evicted token is verified again, in full.
func TestVerifyCacheBounded(t *testing.T) {
	f := newFixture(t, HS256, 0).cached(t, 0, 3)
	tokens := make([]string, 5)
	for i := range tokens {
		tokens[i] = f.good(t, authtest.With(f.claims(), "jti", fmt.Sprintf("jti-%d", i)))
		if _, err := f.verifier.Verify(tokens[i]); err != nil {
			t.Fatalf("Verify(%d) = %v", i, err)
		}
	}
	c := f.verifier.cache
	if got := c.entries(); got != 3 {
		t.Errorf("cache holds %d tokens, want 3", got)
	}
	for i, raw := range tokens {
		if got, want := c.holds(raw), i >= 2; got != want {
			t.Errorf("token %d cached: %v, want %v", i, got, want)
		}
	}
	// Token 0 again: verified, cached, and token 2, now the oldest, goes.
	if _, err := f.verifier.Verify(tokens[0]); err != nil {
		t.Fatalf("Verify(0) again = %v", err)
	}
	if !c.holds(tokens[0]) || c.holds(tokens[2]) || c.entries() != 3 {
		t.Errorf("after token 0 again: 0 cached %v, 2 cached %v, %d entries; want true, false, 3",
			c.holds(tokens[0]), c.holds(tokens[2]), c.entries())
	}
	f.clock.Advance(15 * time.Minute)
	if _, err := f.verifier.Verify(tokens[3]); err == nil {
		t.Fatal("Verify(expired) = nil")
	}
	if c.holds(tokens[3]) {
		t.Error("an expired token is still cached")
	}
}

func TestVerifyCacheConcurrent(t *testing.T) {
	f := newFixture(t, EdDSA, 0).cached(t, 0, 8)
	tokens := make([]string, 20)
	for i := range tokens {
		tokens[i] = f.good(t, authtest.With(f.claims(), "jti", fmt.Sprintf("jti-%d", i)))
	}
	bad := tokens[0][:len(tokens[0])-4] + "AAAA"
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 60 {
				raw := tokens[(w+i)%len(tokens)]
				tok, err := f.verifier.Verify(raw)
				if err != nil || tok.Raw != raw {
					t.Errorf("Verify = %v", err)
				}
				if _, err := f.verifier.Verify(bad); err == nil {
					t.Error("Verify(bad) = nil")
				}
			}
		})
	}
	wg.Wait()
	if got := f.verifier.cache.entries(); got > 8 {
		t.Errorf("cache holds %d tokens, want at most 8", got)
	}
}

// TestTokenCacheStaleSlot: an entry dropped for its time leaves its ring
// slot behind; when that slot is reused, the same token cached again since
// (with a slot of its own) stays.
func TestTokenCacheStaleSlot(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tok := func(raw string) *Token { return &Token{Raw: raw, IssuedAt: t0, ExpiresAt: t0.Add(time.Hour)} }
	c := newTokenCache(2)
	c.put(tok("a"))
	if c.get("a", t0.Add(-time.Second), 0) != nil { // the clock went back before iat
		t.Fatal("get before iat = token, want nil")
	}
	a2 := tok("a")
	c.put(a2)
	c.put(tok("b")) // reuses a's first, stale slot
	if got := c.get("a", t0, 0); got != a2 {
		t.Errorf("get(a) = %p, want the token cached again (%p)", got, a2)
	}
	c.put(tok("c")) // reuses a's second slot
	if c.holds("a") || !c.holds("b") || !c.holds("c") {
		t.Errorf("after c: a %v, b %v, c %v; want false, true, true", c.holds("a"), c.holds("b"), c.holds("c"))
	}
}
