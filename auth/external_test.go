package auth

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/auth/authtest"
)

// externalFixture is an Issuer over real HTTP on 127.0.0.1, its verifier
// on an injected clock, and the fetch results the verifier reported.
type externalFixture struct {
	idp     *authtest.Issuer
	clock   *testClock
	v       *ExternalVerifier
	results atomic.Int64 // fetches reported
	errs    atomic.Int64 // of which failed
}

func newExternalFixture(tb testing.TB, edit func(*ExternalConfig)) *externalFixture {
	tb.Helper()
	f := &externalFixture{idp: authtest.NewIssuer(tb), clock: newTestClock()}
	f.idp.AddKey(tb, "k1", "RS256")
	cfg := ExternalConfig{
		Name: "idp", Issuer: f.idp.URL(), JWKSURL: f.idp.JWKSURL(), Audience: "api",
		Algorithms: []string{"RS256", "ES256"}, RolesClaim: "realm_access.roles",
		Now: f.clock.Now,
		OnFetch: func(err error) {
			f.results.Add(1)
			if err != nil {
				f.errs.Add(1)
			}
		},
	}
	if edit != nil {
		edit(&cfg)
	}
	v, err := NewExternalVerifier(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	f.v = v
	return f
}

func (f *externalFixture) claims() map[string]any {
	now := f.clock.Now().Unix()
	return map[string]any{
		"iss": f.idp.URL(), "aud": []any{"api", "other"}, "sub": "svc-1", "iat": now, "exp": now + 300,
		"realm_access": map[string]any{"roles": []any{"reader", "writer"}}, "sid": "not-ours",
	}
}

func TestExternalVerifyAccepts(t *testing.T) {
	f := newExternalFixture(t, nil)
	tok, err := f.v.Verify(t.Context(), f.idp.Sign(t, "k1", "", f.claims()))
	if err != nil {
		t.Fatalf("Verify = %v, want nil", err)
	}
	if tok.Subject != "svc-1" || tok.External != "idp" || tok.SessionID != "" || strings.Join(tok.Roles, ",") != "reader,writer" {
		t.Errorf("Verify = %+v, want subject svc-1, external idp, no session, roles reader,writer", tok)
	}
}

func TestExternalVerifyRefuses(t *testing.T) {
	f := newExternalFixture(t, nil)
	f.idp.AddKey(t, "ec", "ES384")                 // published, but ES384 is not configured
	pubPEM := []byte("-----BEGIN PUBLIC KEY-----") // any bytes serve as the HMAC secret of the confusion attack
	with := func(edit func(map[string]any)) map[string]any {
		c := f.claims()
		edit(c)
		return c
	}
	tests := []struct {
		name, raw, want string
	}{
		{"wrong iss", f.idp.Sign(t, "k1", "", with(func(c map[string]any) { c["iss"] = "https://evil.example" })), "issuer mismatch"},
		{"wrong aud", f.idp.Sign(t, "k1", "", with(func(c map[string]any) { c["aud"] = "web" })), "audience mismatch"},
		{"expired", f.idp.Sign(t, "k1", "", with(func(c map[string]any) { c["exp"] = f.clock.Now().Unix() - 1 })), "token expired"},
		{"not yet valid", f.idp.Sign(t, "k1", "", with(func(c map[string]any) { c["nbf"] = f.clock.Now().Unix() + 60 })), "token used before nbf"},
		{"no sub", f.idp.Sign(t, "k1", "", with(func(c map[string]any) { delete(c, "sub") })), "missing sub claim"},
		{"HS256 with the public key as secret", authtest.Forge(t, map[string]any{"alg": "HS256", "kid": "k1"}, f.claims(), authtest.SignAs("HS256", pubPEM)), "unexpected signing algorithm"},
		{"none", authtest.Forge(t, map[string]any{"alg": "none", "kid": "k1"}, f.claims(), nil), "unexpected signing algorithm"},
		{"alg not in the list", f.idp.Sign(t, "ec", "", f.claims()), "unexpected signing algorithm"},
		// The key check refuses it before the signature is looked at.
		{"RS256 key with an ES256 header", authtest.Forge(t, map[string]any{"alg": "ES256", "kid": "k1"}, f.claims(),
			func(testing.TB, string) []byte { return make([]byte, 64) }), "key does not match algorithm"},
		{"no kid", authtest.Forge(t, map[string]any{"alg": "RS256"}, f.claims(), nil), "missing key id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.v.Verify(t.Context(), tt.raw)
			if err == nil || Describe(err) != tt.want {
				t.Errorf("Verify = %v (%q), want %q", err, Describe(err), tt.want)
			}
		})
	}
}

func TestExternalKeyRotation(t *testing.T) {
	f := newExternalFixture(t, nil)
	if _, err := f.v.Verify(t.Context(), f.idp.Sign(t, "k1", "", f.claims())); err != nil {
		t.Fatalf("Verify(k1) = %v", err)
	}
	f.idp.AddKey(t, "k2", "ES256")
	f.clock.Advance(31 * time.Second) // past the minimum interval
	before := f.idp.Fetches.Load()
	if _, err := f.v.Verify(t.Context(), f.idp.Sign(t, "k2", "", f.claims())); err != nil {
		t.Fatalf("Verify(new kid k2) = %v, want nil", err)
	}
	if got := f.idp.Fetches.Load() - before; got != 1 {
		t.Errorf("fetches for a new kid = %d, want 1", got)
	}
	// The old key goes; the set is fetched again once due, and from
	// that fetch on the old kid no longer verifies.
	f.idp.Unpublish("k1")
	f.clock.Advance(time.Hour)
	if _, err := f.v.Verify(t.Context(), f.idp.Sign(t, "k1", "", f.claims())); Describe(err) != "unknown key id" {
		t.Errorf("Verify(removed kid) = %v, want unknown key id", err)
	}
	if _, err := f.v.Verify(t.Context(), f.idp.Sign(t, "k2", "", f.claims())); err != nil {
		t.Errorf("Verify(k2) after rotation = %v", err)
	}
}

func TestExternalKidFloodFetchesOncePerInterval(t *testing.T) {
	for _, warm := range []bool{false, true} {
		f := newExternalFixture(t, nil)
		if warm {
			f.v.Prefetch(t.Context())
			f.clock.Advance(31 * time.Second)
		}
		before := f.idp.Fetches.Load()
		var wg sync.WaitGroup
		var accepted atomic.Int64
		for range 1000 {
			wg.Go(func() {
				b := make([]byte, 8)
				rand.Read(b)
				raw := authtest.Forge(t, map[string]any{"alg": "RS256", "kid": hex.EncodeToString(b)}, f.claims(),
					func(testing.TB, string) []byte { return make([]byte, 256) })
				if _, err := f.v.Verify(t.Context(), raw); err == nil {
					accepted.Add(1)
				}
			})
		}
		wg.Wait()
		if got := f.idp.Fetches.Load() - before; got > 1 {
			t.Errorf("warm=%v: 1000 random kids caused %d fetches, want at most 1", warm, got)
		}
		if accepted.Load() != 0 {
			t.Errorf("warm=%v: %d forged tokens accepted", warm, accepted.Load())
		}
		// Within the interval, still no fetch.
		f.clock.Advance(10 * time.Second)
		before = f.idp.Fetches.Load()
		f.v.Verify(t.Context(), authtest.Forge(t, map[string]any{"alg": "RS256", "kid": "again"}, f.claims(), nil))
		if got := f.idp.Fetches.Load() - before; got != 0 {
			t.Errorf("warm=%v: unknown kid within the interval fetched %d times, want 0", warm, got)
		}
	}
}

func TestExternalIssuerDown(t *testing.T) {
	f := newExternalFixture(t, func(c *ExternalConfig) { c.MaxStale = 6 * time.Hour })
	raw := func() string { return f.idp.Sign(t, "k1", "", f.claims()) }
	if _, err := f.v.Verify(t.Context(), raw()); err != nil {
		t.Fatal(err)
	}
	f.idp.SetDown(true)
	f.clock.Advance(2 * time.Hour) // past the refresh: a fetch, which fails
	before := f.errs.Load()
	if _, err := f.v.Verify(t.Context(), raw()); err != nil {
		t.Errorf("Verify(known kid, issuer down, within max stale) = %v, want nil", err)
	}
	if f.errs.Load() != before+1 {
		t.Errorf("failed fetches = %d, want %d", f.errs.Load(), before+1)
	}
	if _, err := f.v.Verify(t.Context(), f.idp.Sign(t, "k1", "", f.claims())); err != nil {
		t.Errorf("Verify again = %v", err)
	}
	f.clock.Advance(5 * time.Hour) // past max stale
	if _, err := f.v.Verify(t.Context(), raw()); !errors.Is(err, ErrKeysUnavailable) || errors.Is(err, ErrTokenInvalid) {
		t.Errorf("Verify past max stale = %v, want ErrKeysUnavailable", err)
	}
	f.idp.SetDown(false)
	f.clock.Advance(time.Minute)
	if _, err := f.v.Verify(t.Context(), raw()); err != nil {
		t.Errorf("Verify once the issuer is back = %v, want nil", err)
	}
}

func TestExternalNeverFetched(t *testing.T) {
	f := newExternalFixture(t, nil)
	f.idp.SetDown(true)
	if _, err := f.v.Verify(t.Context(), f.idp.Sign(t, "k1", "", f.claims())); !errors.Is(err, ErrKeysUnavailable) {
		t.Errorf("Verify with no set ever fetched = %v, want ErrKeysUnavailable", err)
	}
}

func TestExternalBadSetKeepsLastGood(t *testing.T) {
	for name, body := range map[string][]byte{
		"garbage":   []byte("<html>not json"),
		"oversized": []byte(`{"keys":[],"pad":"` + strings.Repeat("x", 2048) + `"}`),
		"no keys":   []byte(`{"keys":[]}`),
		"oct only":  []byte(`{"keys":[{"kty":"oct","kid":"k1","k":"c2VjcmV0"}]}`),
	} {
		t.Run(name, func(t *testing.T) {
			f := newExternalFixture(t, func(c *ExternalConfig) { c.MaxJWKSBytes = 1024 })
			raw := f.idp.Sign(t, "k1", "", f.claims())
			if _, err := f.v.Verify(t.Context(), raw); err != nil {
				t.Fatal(err)
			}
			f.idp.SetBody(body)
			f.clock.Advance(2 * time.Hour)
			if _, err := f.v.Verify(t.Context(), f.idp.Sign(t, "k1", "", f.claims())); err != nil {
				t.Errorf("Verify after a bad set = %v, want the last good set to verify", err)
			}
			if f.errs.Load() != 1 {
				t.Errorf("failed fetches = %d, want 1", f.errs.Load())
			}
		})
	}
}

func TestExternalCacheControl(t *testing.T) {
	f := newExternalFixture(t, nil)
	f.idp.SetCacheControl("public, max-age=120")
	f.v.Prefetch(t.Context())
	f.clock.Advance(100 * time.Second)
	before := f.idp.Fetches.Load()
	f.v.Verify(t.Context(), f.idp.Sign(t, "k1", "", f.claims()))
	if got := f.idp.Fetches.Load() - before; got != 0 {
		t.Errorf("fetches within max-age = %d, want 0", got)
	}
	f.clock.Advance(30 * time.Second)
	f.v.Verify(t.Context(), f.idp.Sign(t, "k1", "", f.claims()))
	if got := f.idp.Fetches.Load() - before; got != 1 {
		t.Errorf("fetches past max-age = %d, want 1", got)
	}
}

func TestExternalDiscovery(t *testing.T) {
	f := newExternalFixture(t, func(c *ExternalConfig) { c.JWKSURL = "" })
	if _, err := f.v.Verify(t.Context(), f.idp.Sign(t, "k1", "", f.claims())); err != nil {
		t.Errorf("Verify through discovery = %v, want nil", err)
	}
}

func TestIssuersKeepTokensApart(t *testing.T) {
	f := newExternalFixture(t, nil)
	keys, err := NewKeySet(testKey(t, ES256, 0))
	if err != nil {
		t.Fatal(err)
	}
	gw, err := NewVerifier(VerifierConfig{Keys: keys, Algorithm: ES256, Issuer: "gateway", Audience: "api", Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	now := f.clock.Now()
	own, err := NewMinter(keys, "gateway", "api").Mint(MintClaims{Subject: "u", SessionID: "s", ID: "j", IssuedAt: now, ExpiresAt: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	ext := f.idp.Sign(t, "k1", "", f.claims())

	gatewayOnly, _ := NewIssuers(gw)
	externalOnly, _ := NewIssuers(nil, f.v)
	both, _ := NewIssuers(gw, f.v)
	tests := []struct {
		name    string
		is      *Issuers
		raw     string
		wantErr bool
	}{
		{"gateway route, gateway token", gatewayOnly, own, false},
		{"gateway route, external token", gatewayOnly, ext, true},
		{"external route, external token", externalOnly, ext, false},
		{"external route, gateway token", externalOnly, own, true},
		{"both, gateway token", both, own, false},
		{"both, external token", both, ext, false},
	}
	for _, tt := range tests {
		tok, err := tt.is.Verify(t.Context(), tt.raw)
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: Verify = %v, want error %v", tt.name, err, tt.wantErr)
		}
		if err == nil && (tok.External != "") != (tt.raw == ext) {
			t.Errorf("%s: External = %q", tt.name, tok.External)
		}
	}
	// Directly, too: neither verifier takes the other's token.
	if _, err := f.v.Verify(t.Context(), own); err == nil {
		t.Error("ExternalVerifier.Verify(gateway token) = nil, want an error")
	}
	if _, err := gw.Verify(ext); err == nil {
		t.Error("Verifier.Verify(external token) = nil, want an error")
	}
	if _, err := NewIssuers(gw, f.v, f.v); err == nil {
		t.Error("NewIssuers with one issuer twice = nil, want an error")
	}
}
