package auth

import (
	"testing"
	"time"

	"github.com/spa-gateway/gateway/auth/authtest"
)

// BenchmarkVerify measures Verify per algorithm: without the cache (the
// signature checked every time), with a cache hit (the same token again),
// and with a miss that inserts and evicts (two tokens taking turns in a
// cache of one).
func BenchmarkVerify(b *testing.B) {
	for _, alg := range allAlgs {
		f := newFixture(b, alg, 0)
		raw := f.mint(b)
		other := f.good(b, authtest.With(f.claims(), "jti", "jti-2"))
		b.Run(alg+"/uncached", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.verifier.Verify(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(alg+"/cache-hit", func(b *testing.B) {
			v := f.cached(b, 0, 10_000).verifier
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(alg+"/cache-miss", func(b *testing.B) {
			v := f.cached(b, 0, 1).verifier
			toks := [2]string{raw, other}
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(toks[i%2]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkVerifyCacheHitParallel is the hit path under every core at once,
// with a clock that takes no lock (the fixture's test clock does).
func BenchmarkVerifyCacheHitParallel(b *testing.B) {
	f := newFixture(b, EdDSA, 0)
	raw := f.mint(b)
	now := f.clock.Now()
	v, err := NewVerifier(VerifierConfig{Keys: f.keys, Algorithm: EdDSA, Issuer: testIssuer, Audience: testAudience,
		Now: func() time.Time { return now }, CacheSize: 10_000})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.Verify(raw); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
