package auth

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/auth/authtest"
)

const (
	testIssuer   = "gateway"
	testAudience = "api"
)

// fixture is a key set, a minter and a verifier sharing an injected clock.
type fixture struct {
	alg      string
	key      *Key
	keys     *KeySet
	minter   *Minter
	verifier *Verifier
	clock    *testClock
}

func newFixture(tb testing.TB, alg string, leeway time.Duration) *fixture {
	tb.Helper()
	key := testKey(tb, alg, 0)
	keys, err := NewKeySet(key)
	if err != nil {
		tb.Fatal(err)
	}
	clock := newTestClock()
	v, err := NewVerifier(VerifierConfig{Keys: keys, Algorithm: alg, Issuer: testIssuer, Audience: testAudience, Leeway: leeway, Now: clock.Now})
	if err != nil {
		tb.Fatalf("NewVerifier = %v", err)
	}
	return &fixture{alg: alg, key: key, keys: keys, minter: NewMinter(keys, testIssuer, testAudience), verifier: v, clock: clock}
}

// header is the header Mint writes.
func (f *fixture) header() map[string]any {
	return map[string]any{"alg": f.alg, "typ": "JWT", "kid": f.key.ID()}
}

// claims are valid claims at the fixture's time.
func (f *fixture) claims() map[string]any {
	now := f.clock.Now()
	return map[string]any{
		"iss": testIssuer, "aud": testAudience, "sub": "alice",
		"iat": now.Add(-time.Minute).Unix(), "exp": now.Add(14 * time.Minute).Unix(),
		"jti": "jti-1", "sid": "sid-1", "roles": []string{"admin", "dev"},
	}
}

// good is a correctly signed token with the given claims.
func (f *fixture) good(tb testing.TB, claims map[string]any) string {
	tb.Helper()
	return authtest.Forge(tb, f.header(), claims, signWith(f.key))
}

func (f *fixture) mint(tb testing.TB) string {
	tb.Helper()
	now := f.clock.Now()
	tok, err := f.minter.Mint(MintClaims{Subject: "alice", SessionID: "sid-1", ID: "jti-1", Roles: []string{"admin", "dev"}, IssuedAt: now, ExpiresAt: now.Add(15 * time.Minute)})
	if err != nil {
		tb.Fatalf("Mint = %v", err)
	}
	return tok
}

// checkRefused asserts err is of kind want with description desc.
func checkRefused(tb testing.TB, call string, tok *Token, err error, want error, desc string) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("%s = token for %q, nil error; want %v (%s)", call, tok.Subject, want, desc)
	}
	if tok != nil {
		tb.Errorf("%s returned a token with an error", call)
	}
	other := ErrTokenInvalid
	if want == ErrTokenInvalid {
		other = ErrTokenExpired
	}
	if !errors.Is(err, want) || errors.Is(err, other) {
		tb.Errorf("%s error = %v, want only %v", call, err, want)
	}
	if got := Describe(err); got != desc {
		tb.Errorf("Describe(%s error) = %q, want %q", call, got, desc)
	}
}

type refusal struct {
	name  string
	token func(tb testing.TB, f *fixture) string
	kind  error
	desc  string
}

// commonRefusals apply to every algorithm.
func commonRefusals() []refusal {
	var tests []refusal
	for _, none := range []string{"none", "None", "NONE", "nOnE"} {
		tests = append(tests,
			refusal{"alg " + none + " without signature", func(tb testing.TB, f *fixture) string {
				return authtest.Forge(tb, authtest.With(f.header(), "alg", none), f.claims(), nil)
			}, ErrTokenInvalid, "unexpected signing algorithm"},
			refusal{"alg " + none + " with signature", func(tb testing.TB, f *fixture) string {
				good := f.good(tb, f.claims())
				sig := good[strings.LastIndexByte(good, '.'):]
				return authtest.Forge(tb, authtest.With(f.header(), "alg", none), f.claims(), nil) + sig[1:]
			}, ErrTokenInvalid, "unexpected signing algorithm"},
		)
	}
	tests = append(tests, []refusal{
		{"alg missing", func(tb testing.TB, f *fixture) string {
			return authtest.Forge(tb, authtest.With(f.header(), "alg", nil), f.claims(), signWith(f.key))
		}, ErrTokenInvalid, "unexpected signing algorithm"},
		{"alg lower case", func(tb testing.TB, f *fixture) string {
			return authtest.Forge(tb, authtest.With(f.header(), "alg", strings.ToLower(f.alg)), f.claims(), signWith(f.key))
		}, ErrTokenInvalid, "unexpected signing algorithm"},
		{"alg HS512 with the key", func(tb testing.TB, f *fixture) string {
			return authtest.Forge(tb, authtest.With(f.header(), "alg", "HS512"), f.claims(), authtest.SignAs("HS512", []byte("k")))
		}, ErrTokenInvalid, "unexpected signing algorithm"},
		{"wrong issuer", func(tb testing.TB, f *fixture) string {
			return f.good(tb, authtest.With(f.claims(), "iss", "other"))
		}, ErrTokenInvalid, "issuer mismatch"},
		{"missing issuer", func(tb testing.TB, f *fixture) string {
			return f.good(tb, authtest.With(f.claims(), "iss", nil))
		}, ErrTokenInvalid, "issuer mismatch"},
		{"issuer of another case", func(tb testing.TB, f *fixture) string {
			return f.good(tb, authtest.With(f.claims(), "iss", "Gateway"))
		}, ErrTokenInvalid, "issuer mismatch"},
		{"wrong audience", func(tb testing.TB, f *fixture) string {
			return f.good(tb, authtest.With(f.claims(), "aud", "other"))
		}, ErrTokenInvalid, "audience mismatch"},
		{"audience array without ours", func(tb testing.TB, f *fixture) string {
			return f.good(tb, authtest.With(f.claims(), "aud", []string{"a", "b"}))
		}, ErrTokenInvalid, "audience mismatch"},
		{"missing audience", func(tb testing.TB, f *fixture) string {
			return f.good(tb, authtest.With(f.claims(), "aud", nil))
		}, ErrTokenInvalid, "audience mismatch"},
		{"audience of wrong type", func(tb testing.TB, f *fixture) string {
			return f.good(tb, authtest.With(f.claims(), "aud", []any{testAudience, 5}))
		}, ErrTokenInvalid, "invalid aud claim"},
		{"missing exp", func(tb testing.TB, f *fixture) string {
			return f.good(tb, authtest.With(f.claims(), "exp", nil))
		}, ErrTokenInvalid, "missing exp claim"},
		{"exp as string", func(tb testing.TB, f *fixture) string {
			return f.good(tb, authtest.With(f.claims(), "exp", fmt.Sprint(f.clock.Now().Add(time.Hour).Unix())))
		}, ErrTokenInvalid, "invalid exp claim"},
		{"exp absurdly far", func(tb testing.TB, f *fixture) string {
			return f.good(tb, authtest.With(f.claims(), "exp", 1e300))
		}, ErrTokenInvalid, "invalid exp claim"},
		{"past exp", func(tb testing.TB, f *fixture) string {
			return f.good(tb, authtest.With(f.claims(), "exp", f.clock.Now().Add(-time.Second).Unix()))
		}, ErrTokenExpired, "token expired"},
		{"exp now", func(tb testing.TB, f *fixture) string {
			return f.good(tb, authtest.With(f.claims(), "exp", f.clock.Now().Unix()))
		}, ErrTokenExpired, "token expired"},
		{"future nbf", func(tb testing.TB, f *fixture) string {
			return f.good(tb, authtest.With(f.claims(), "nbf", f.clock.Now().Add(time.Second).Unix()))
		}, ErrTokenInvalid, "token used before nbf"},
		{"future iat", func(tb testing.TB, f *fixture) string {
			return f.good(tb, authtest.With(f.claims(), "iat", f.clock.Now().Add(time.Second).Unix()))
		}, ErrTokenInvalid, "token issued in the future"},
		{"iat of wrong type", func(tb testing.TB, f *fixture) string {
			return f.good(tb, authtest.With(f.claims(), "iat", true))
		}, ErrTokenInvalid, "invalid iat claim"},
		{"missing sub", func(tb testing.TB, f *fixture) string {
			return f.good(tb, authtest.With(f.claims(), "sub", nil))
		}, ErrTokenInvalid, "missing sub claim"},
		{"empty sub", func(tb testing.TB, f *fixture) string {
			return f.good(tb, authtest.With(f.claims(), "sub", ""))
		}, ErrTokenInvalid, "missing sub claim"},
		{"sub of wrong type", func(tb testing.TB, f *fixture) string {
			return f.good(tb, authtest.With(f.claims(), "sub", 42))
		}, ErrTokenInvalid, "invalid sub claim"},
		{"roles as a string", func(tb testing.TB, f *fixture) string {
			return f.good(tb, authtest.With(f.claims(), "roles", "admin"))
		}, ErrTokenInvalid, "invalid roles claim"},
		{"roles with a number", func(tb testing.TB, f *fixture) string {
			return f.good(tb, authtest.With(f.claims(), "roles", []any{"admin", 1}))
		}, ErrTokenInvalid, "invalid roles claim"},
		{"sid of wrong type", func(tb testing.TB, f *fixture) string {
			return f.good(tb, authtest.With(f.claims(), "sid", 7))
		}, ErrTokenInvalid, "invalid sid claim"},
		{"jti of wrong type", func(tb testing.TB, f *fixture) string {
			return f.good(tb, authtest.With(f.claims(), "jti", []string{"a"}))
		}, ErrTokenInvalid, "invalid jti claim"},
		{"tampered payload", func(tb testing.TB, f *fixture) string {
			parts := strings.Split(f.mint(tb), ".")
			parts[1] = authtest.EncodeJSON(tb, authtest.With(f.claims(), "sub", "mallory"))
			return strings.Join(parts, ".")
		}, ErrTokenInvalid, "signature invalid"},
		{"tampered header", func(tb testing.TB, f *fixture) string {
			parts := strings.Split(f.mint(tb), ".")
			parts[0] = authtest.EncodeJSON(tb, authtest.With(f.header(), "typ", "at+jwt"))
			return strings.Join(parts, ".")
		}, ErrTokenInvalid, "signature invalid"},
		{"another key's signature", func(tb testing.TB, f *fixture) string {
			return authtest.Forge(tb, f.header(), f.claims(), signWith(testKey(tb, f.alg, 1)))
		}, ErrTokenInvalid, "signature invalid"},
		{"another key's signature without kid", func(tb testing.TB, f *fixture) string {
			return authtest.Forge(tb, authtest.With(f.header(), "kid", nil), f.claims(), signWith(testKey(tb, f.alg, 1)))
		}, ErrTokenInvalid, "signature invalid"},
		{"empty signature", func(tb testing.TB, f *fixture) string {
			return authtest.Forge(tb, f.header(), f.claims(), nil)
		}, ErrTokenInvalid, "signature invalid"},
		{"signature of another token", func(tb testing.TB, f *fixture) string {
			other := f.good(tb, authtest.With(f.claims(), "jti", "jti-2"))
			tok := f.good(tb, f.claims())
			return tok[:strings.LastIndexByte(tok, '.')] + other[strings.LastIndexByte(other, '.'):]
		}, ErrTokenInvalid, "signature invalid"},
		{"empty string", func(tb testing.TB, f *fixture) string { return "" }, ErrTokenInvalid, "malformed token"},
		{"1 segment", func(tb testing.TB, f *fixture) string {
			return strings.Split(f.mint(tb), ".")[0]
		}, ErrTokenInvalid, "malformed token"},
		{"2 segments", func(tb testing.TB, f *fixture) string {
			tok := f.mint(tb)
			return tok[:strings.LastIndexByte(tok, '.')]
		}, ErrTokenInvalid, "malformed token"},
		{"4 segments", func(tb testing.TB, f *fixture) string { return f.mint(tb) + ".e30" }, ErrTokenInvalid, "malformed token"},
		{"JWE-like 5 segments", func(tb testing.TB, f *fixture) string { return f.mint(tb) + ".e30.e30" }, ErrTokenInvalid, "malformed token"},
		{"padded base64", func(tb testing.TB, f *fixture) string {
			// Find a token whose payload needs padding, then pad it.
			for i := 0; ; i++ {
				parts := strings.Split(f.good(tb, authtest.With(f.claims(), "jti", strings.Repeat("j", i))), ".")
				if len(parts[1])%4 != 0 {
					parts[1] += strings.Repeat("=", 4-len(parts[1])%4)
					return strings.Join(parts, ".")
				}
			}
		}, ErrTokenInvalid, "malformed token"},
		{"standard base64 alphabet", func(tb testing.TB, f *fixture) string {
			for i := 0; ; i++ {
				tok := f.good(tb, authtest.With(f.claims(), "jti", strings.Repeat("?", i)))
				if strings.ContainsAny(tok, "-_") {
					return strings.NewReplacer("-", "+", "_", "/").Replace(tok)
				}
			}
		}, ErrTokenInvalid, "malformed token"},
		{"non-canonical signature encoding", func(tb testing.TB, f *fixture) string {
			// The last character of an unpadded segment carries unused
			// low bits; setting them decodes to the same bytes in a lax
			// decoder but must be refused.
			tok := f.mint(tb)
			sig := tok[strings.LastIndexByte(tok, '.')+1:]
			if len(sig)%4 == 0 {
				tb.Fatalf("signature length %d has no spare bits", len(sig))
			}
			const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
			last := strings.IndexByte(alphabet, sig[len(sig)-1])
			return tok[:len(tok)-1] + string(alphabet[last|1])
		}, ErrTokenInvalid, "malformed token"},
		{"newline inside the signature", func(tb testing.TB, f *fixture) string {
			tok := f.mint(tb)
			return tok[:len(tok)-4] + "\n" + tok[len(tok)-4:]
		}, ErrTokenInvalid, "malformed token"},
		{"trailing space", func(tb testing.TB, f *fixture) string { return f.mint(tb) + " " }, ErrTokenInvalid, "malformed token"},
		{"header not JSON", func(tb testing.TB, f *fixture) string {
			tok := f.mint(tb)
			return authtest.Encode([]byte("{alg")) + tok[strings.IndexByte(tok, '.'):]
		}, ErrTokenInvalid, "malformed token"},
		{"payload an array", func(tb testing.TB, f *fixture) string {
			in := authtest.EncodeJSON(tb, f.header()) + "." + authtest.Encode([]byte("[]"))
			return in + "." + authtest.Encode(signWith(f.key)(tb, in))
		}, ErrTokenInvalid, "malformed token"},
		{"payload null", func(tb testing.TB, f *fixture) string {
			in := authtest.EncodeJSON(tb, f.header()) + "." + authtest.Encode([]byte("null"))
			return in + "." + authtest.Encode(signWith(f.key)(tb, in))
		}, ErrTokenInvalid, "malformed token"},
		{"payload with trailing data", func(tb testing.TB, f *fixture) string {
			payload, _ := json.Marshal(f.claims())
			in := authtest.EncodeJSON(tb, f.header()) + "." + authtest.Encode(append(payload, "{}"...))
			return in + "." + authtest.Encode(signWith(f.key)(tb, in))
		}, ErrTokenInvalid, "malformed token"},
		{"token over 8 KiB", func(tb testing.TB, f *fixture) string {
			return f.good(tb, authtest.With(f.claims(), "pad", strings.Repeat("p", MaxTokenBytes)))
		}, ErrTokenInvalid, "token too large"},
		{"unknown kid", func(tb testing.TB, f *fixture) string {
			return authtest.Forge(tb, authtest.With(f.header(), "kid", testKey(tb, f.alg, 1).ID()), f.claims(), signWith(f.key))
		}, ErrTokenInvalid, "unknown key id"},
		{"empty kid", func(tb testing.TB, f *fixture) string {
			return authtest.Forge(tb, authtest.With(f.header(), "kid", ""), f.claims(), signWith(f.key))
		}, ErrTokenInvalid, "unknown key id"},
		{"kid of wrong type", func(tb testing.TB, f *fixture) string {
			return authtest.Forge(tb, authtest.With(f.header(), "kid", 1), f.claims(), signWith(f.key))
		}, ErrTokenInvalid, "unknown key id"},
		{"kid as a path", func(tb testing.TB, f *fixture) string {
			return authtest.Forge(tb, authtest.With(f.header(), "kid", "../../../../dev/null"), f.claims(), signWith(f.key))
		}, ErrTokenInvalid, "unknown key id"},
		{"crit header", func(tb testing.TB, f *fixture) string {
			return authtest.Forge(tb, authtest.With(f.header(), "crit", []string{"exp"}, "exp", 1), f.claims(), signWith(f.key))
		}, ErrTokenInvalid, "unsupported critical header"},
		{"unencoded payload (b64 false, crit)", func(tb testing.TB, f *fixture) string {
			return authtest.Forge(tb, authtest.With(f.header(), "crit", []string{"b64"}, "b64", false), f.claims(), signWith(f.key))
		}, ErrTokenInvalid, "unsupported critical header"},
	}...)
	return tests
}

func TestVerifyRefuses(t *testing.T) {
	for _, alg := range allAlgs {
		t.Run(alg, func(t *testing.T) {
			f := newFixture(t, alg, 0)
			tests := commonRefusals()
			if alg == HS256 {
				tests = append(tests, refusal{"EdDSA token with a key the verifier lacks", func(tb testing.TB, f *fixture) string {
					return authtest.Forge(tb, authtest.With(f.header(), "alg", EdDSA), f.claims(), signWith(testKey(tb, EdDSA, 0)))
				}, ErrTokenInvalid, "unexpected signing algorithm"})
			} else {
				tests = append(tests, algorithmConfusion(t, f)...)
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					raw := tt.token(t, f)
					tok, err := f.verifier.Verify(raw)
					checkRefused(t, "Verify", tok, err, tt.kind, tt.desc)
					if tt.kind == ErrTokenExpired {
						// The only check VerifyExpired skips.
						if _, err := f.verifier.VerifyExpired(raw); err != nil {
							t.Errorf("VerifyExpired = %v, want nil", err)
						}
						return
					}
					tok, err = f.verifier.VerifyExpired(raw)
					checkRefused(t, "VerifyExpired", tok, err, tt.kind, tt.desc)
				})
			}
		})
	}
}

// algorithmConfusion are HS256 tokens whose HMAC key is the verifier's
// public key, in every form an attacker might guess the server uses.
func algorithmConfusion(tb testing.TB, f *fixture) []refusal {
	tb.Helper()
	der, err := x509.MarshalPKIXPublicKey(f.key.public)
	if err != nil {
		tb.Fatal(err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	jwks, _ := json.Marshal(f.key.jwk)
	forms := map[string][]byte{
		"PEM":                 pemBytes,
		"PEM without newline": pemBytes[:len(pemBytes)-1],
		"DER":                 der,
		"JWK":                 jwks,
		"JWKS":                f.keys.JWKS(),
		"x coordinate or modulus": func() []byte {
			m := f.key.jwk["x"]
			if m == "" {
				m = f.key.jwk["n"]
			}
			b, _ := base64.RawURLEncoding.DecodeString(m)
			return b
		}(),
	}
	var tests []refusal
	for form, secret := range forms {
		for _, kid := range []any{f.key.ID(), nil} {
			tests = append(tests, refusal{fmt.Sprintf("HS256 with the public key as %s, kid %v", form, kid), func(tb testing.TB, f *fixture) string {
				return authtest.Forge(tb, authtest.With(f.header(), "alg", HS256, "kid", kid), f.claims(), authtest.SignAs(HS256, secret))
			}, ErrTokenInvalid, "unexpected signing algorithm"})
		}
	}
	other := map[string]string{EdDSA: ES256, ES256: RS256, RS256: EdDSA}[f.alg]
	tests = append(tests, refusal{"token of another asymmetric algorithm", func(tb testing.TB, f *fixture) string {
		return authtest.Forge(tb, authtest.With(f.header(), "alg", other), f.claims(), signWith(testKey(tb, other, 0)))
	}, ErrTokenInvalid, "unexpected signing algorithm"})
	return tests
}

func TestVerifyAccepts(t *testing.T) {
	for _, alg := range allAlgs {
		t.Run(alg, func(t *testing.T) {
			f := newFixture(t, alg, 0)
			now := f.clock.Now()
			raw := f.mint(t)
			for _, call := range []struct {
				name   string
				verify func(string) (*Token, error)
			}{{"Verify", f.verifier.Verify}, {"VerifyExpired", f.verifier.VerifyExpired}} {
				tok, err := call.verify(raw)
				if err != nil {
					t.Fatalf("%s(minted token) = %v", call.name, err)
				}
				want := Token{
					Raw: raw, Subject: "alice", SessionID: "sid-1", ID: "jti-1", Roles: []string{"admin", "dev"},
					IssuedAt: now.Truncate(time.Second), ExpiresAt: now.Add(15 * time.Minute).Truncate(time.Second),
				}
				if tok.Raw != want.Raw || tok.Subject != want.Subject || tok.SessionID != want.SessionID || tok.ID != want.ID ||
					!slices.Equal(tok.Roles, want.Roles) || !tok.IssuedAt.Equal(want.IssuedAt) || !tok.ExpiresAt.Equal(want.ExpiresAt) {
					t.Errorf("%s = %+v, want %+v", call.name, *tok, want)
				}
				if tok.Claims["iss"] != testIssuer || tok.Claims["aud"] != testAudience {
					t.Errorf("%s Claims = %v, want iss and aud", call.name, tok.Claims)
				}
				if got, ok := tok.Claims["exp"].(json.Number); !ok || got.String() != fmt.Sprint(want.ExpiresAt.Unix()) {
					t.Errorf("%s Claims[exp] = %#v, want json.Number %d", call.name, tok.Claims["exp"], want.ExpiresAt.Unix())
				}
			}

			variants := []struct {
				name   string
				header map[string]any
				claims map[string]any
			}{
				{"no kid", authtest.With(f.header(), "kid", nil), f.claims()},
				{"no typ", authtest.With(f.header(), "typ", nil), f.claims()},
				{"audience array holding ours", f.header(), authtest.With(f.claims(), "aud", []string{"other", testAudience})},
				{"no roles, sid, iat", f.header(), authtest.With(f.claims(), "roles", nil, "sid", nil, "iat", nil)},
				{"fractional exp", f.header(), authtest.With(f.claims(), "exp", float64(now.Unix())+0.5)},
				{"nbf now", f.header(), authtest.With(f.claims(), "nbf", now.Unix())},
				{"iat now", f.header(), authtest.With(f.claims(), "iat", now.Unix())},
				{"extra claims", f.header(), authtest.With(f.claims(), "email", "a@example.com", "n", 12345678901234)},
				{"jku, x5u, jwk, x5c ignored", authtest.With(f.header(), "jku", "http://127.0.0.1:1/jwks", "x5u", "http://127.0.0.1:1/c", "jwk", map[string]any{"kty": "oct", "k": "AA"}, "x5c", []string{"MIIB"}), f.claims()},
			}
			for _, tt := range variants {
				t.Run(tt.name, func(t *testing.T) {
					if _, err := f.verifier.Verify(authtest.Forge(t, tt.header, tt.claims, signWith(f.key))); err != nil {
						t.Errorf("Verify = %v, want nil", err)
					}
				})
			}
		})
	}
}

func TestVerifyTokenSizeBoundary(t *testing.T) {
	f := newFixture(t, EdDSA, 0)
	var fits, over string
	// Each pad byte adds 4/3 of a character; start a little below the limit.
	base := len(f.good(t, authtest.With(f.claims(), "pad", "")))
	start := (MaxTokenBytes-base)*3/4 - 8
	for n := start; fits == "" || over == ""; n++ {
		if n > start+64 {
			t.Fatalf("no pad length from %d to %d brackets the limit (fits %d, over %d bytes)", start, n, len(fits), len(over))
		}
		tok := f.good(t, authtest.With(f.claims(), "pad", strings.Repeat("p", n)))
		switch {
		case len(tok) <= MaxTokenBytes:
			fits = tok
		case over == "":
			over = tok
		}
	}
	if len(fits) < MaxTokenBytes-3 {
		t.Fatalf("largest token that fits is %d bytes, want close to %d", len(fits), MaxTokenBytes)
	}
	if _, err := f.verifier.Verify(fits); err != nil {
		t.Errorf("Verify(%d-byte token) = %v, want nil", len(fits), err)
	}
	tok, err := f.verifier.Verify(over)
	checkRefused(t, fmt.Sprintf("Verify(%d-byte token)", len(over)), tok, err, ErrTokenInvalid, "token too large")
}

func TestVerifyRotation(t *testing.T) {
	for _, alg := range allAlgs {
		t.Run(alg, func(t *testing.T) {
			oldKey, newKey := testKey(t, alg, 1), testKey(t, alg, 0)
			verifyOnly := oldKey
			if alg != HS256 {
				pub, err := newKeyFromPublic(alg, oldKey)
				if err != nil {
					t.Fatal(err)
				}
				verifyOnly = pub
			}
			keys, err := NewKeySet(newKey, verifyOnly)
			if err != nil {
				t.Fatal(err)
			}
			clock := newTestClock()
			v, err := NewVerifier(VerifierConfig{Keys: keys, Algorithm: alg, Issuer: testIssuer, Audience: testAudience, Now: clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			f := &fixture{alg: alg, key: oldKey, clock: clock}
			if _, err := v.Verify(f.good(t, f.claims())); err != nil {
				t.Errorf("Verify(token of the old key, its kid) = %v, want nil", err)
			}
			tok, err := v.Verify(authtest.Forge(t, authtest.With(f.header(), "kid", nil), f.claims(), signWith(oldKey)))
			checkRefused(t, "Verify(token of the old key, no kid)", tok, err, ErrTokenInvalid, "signature invalid")
			tok, err = v.Verify(authtest.Forge(t, authtest.With(f.header(), "kid", newKey.ID()), f.claims(), signWith(oldKey)))
			checkRefused(t, "Verify(token of the old key, new kid)", tok, err, ErrTokenInvalid, "signature invalid")
		})
	}
}

// newKeyFromPublic is k without its private part, as LoadPublicKey makes.
func newKeyFromPublic(alg string, k *Key) (*Key, error) { return newKey(alg, nil, k.public) }

func TestVerifyExpiredRelaxesOnlyExp(t *testing.T) {
	for _, alg := range allAlgs {
		t.Run(alg, func(t *testing.T) {
			f := newFixture(t, alg, 0)
			raw := f.mint(t)
			f.clock.Advance(24 * time.Hour)
			expired := func(tb testing.TB, f *fixture) map[string]any {
				now := f.clock.Now()
				return authtest.With(f.claims(), "iat", now.Add(-2*time.Hour).Unix(), "exp", now.Add(-time.Hour).Unix())
			}

			tok, err := f.verifier.Verify(raw)
			checkRefused(t, "Verify(expired minted token)", tok, err, ErrTokenExpired, "token expired")
			tok, err = f.verifier.VerifyExpired(raw)
			if err != nil {
				t.Fatalf("VerifyExpired(expired minted token) = %v, want nil", err)
			}
			if tok.Subject != "alice" || tok.ID != "jti-1" || !tok.ExpiresAt.Before(f.clock.Now()) {
				t.Errorf("VerifyExpired = %+v, want alice's expired token", *tok)
			}

			tests := []refusal{
				{"bad signature", func(tb testing.TB, f *fixture) string {
					return authtest.Forge(tb, f.header(), expired(tb, f), signWith(testKey(tb, f.alg, 1)))
				}, ErrTokenInvalid, "signature invalid"},
				{"tampered", func(tb testing.TB, f *fixture) string {
					parts := strings.Split(raw, ".")
					parts[1] = authtest.EncodeJSON(tb, authtest.With(expired(tb, f), "sub", "mallory"))
					return strings.Join(parts, ".")
				}, ErrTokenInvalid, "signature invalid"},
				{"alg none", func(tb testing.TB, f *fixture) string {
					return authtest.Forge(tb, authtest.With(f.header(), "alg", "none"), expired(tb, f), nil)
				}, ErrTokenInvalid, "unexpected signing algorithm"},
				{"wrong issuer", func(tb testing.TB, f *fixture) string {
					return f.good(tb, authtest.With(expired(tb, f), "iss", "other"))
				}, ErrTokenInvalid, "issuer mismatch"},
				{"wrong audience", func(tb testing.TB, f *fixture) string {
					return f.good(tb, authtest.With(expired(tb, f), "aud", "other"))
				}, ErrTokenInvalid, "audience mismatch"},
				{"future nbf", func(tb testing.TB, f *fixture) string {
					return f.good(tb, authtest.With(expired(tb, f), "nbf", f.clock.Now().Add(time.Minute).Unix()))
				}, ErrTokenInvalid, "token used before nbf"},
				{"future iat", func(tb testing.TB, f *fixture) string {
					return f.good(tb, authtest.With(expired(tb, f), "iat", f.clock.Now().Add(time.Minute).Unix()))
				}, ErrTokenInvalid, "token issued in the future"},
				{"missing exp", func(tb testing.TB, f *fixture) string {
					return f.good(tb, authtest.With(expired(tb, f), "exp", nil))
				}, ErrTokenInvalid, "missing exp claim"},
				{"unknown kid", func(tb testing.TB, f *fixture) string {
					return authtest.Forge(tb, authtest.With(f.header(), "kid", "nope"), expired(tb, f), signWith(f.key))
				}, ErrTokenInvalid, "unknown key id"},
				{"missing sub", func(tb testing.TB, f *fixture) string {
					return f.good(tb, authtest.With(expired(tb, f), "sub", nil))
				}, ErrTokenInvalid, "missing sub claim"},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					raw := tt.token(t, f)
					tok, err := f.verifier.VerifyExpired(raw)
					checkRefused(t, "VerifyExpired", tok, err, tt.kind, tt.desc)
					// Verify reports the same problem, not the expiry.
					tok, err = f.verifier.Verify(raw)
					checkRefused(t, "Verify", tok, err, tt.kind, tt.desc)
				})
			}
		})
	}
}

func TestVerifyLeeway(t *testing.T) {
	const leeway = 30 * time.Second
	f := newFixture(t, EdDSA, leeway)
	now := f.clock.Now()
	tests := []struct {
		name   string
		claims map[string]any
		kind   error // nil: accepted
		desc   string
	}{
		{"exp 29s ago", authtest.With(f.claims(), "exp", now.Add(-29*time.Second).Unix()), nil, ""},
		{"exp 30s ago", authtest.With(f.claims(), "exp", now.Add(-30*time.Second).Unix()), ErrTokenExpired, "token expired"},
		{"nbf in 30s", authtest.With(f.claims(), "nbf", now.Add(30*time.Second).Unix()), nil, ""},
		{"nbf in 31s", authtest.With(f.claims(), "nbf", now.Add(31*time.Second).Unix()), ErrTokenInvalid, "token used before nbf"},
		{"iat in 30s", authtest.With(f.claims(), "iat", now.Add(30*time.Second).Unix()), nil, ""},
		{"iat in 31s", authtest.With(f.claims(), "iat", now.Add(31*time.Second).Unix()), ErrTokenInvalid, "token issued in the future"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := f.verifier.Verify(f.good(t, tt.claims))
			if tt.kind == nil {
				if err != nil {
					t.Errorf("Verify = %v, want nil", err)
				}
				return
			}
			checkRefused(t, "Verify", tok, err, tt.kind, tt.desc)
		})
	}

	// Without leeway, the same tokens are refused.
	strict := newFixture(t, EdDSA, 0)
	for _, name := range []string{"exp 29s ago", "nbf in 30s", "iat in 30s"} {
		for _, tt := range tests {
			if tt.name == name {
				if _, err := strict.verifier.Verify(strict.good(t, tt.claims)); err == nil {
					t.Errorf("Verify(%s) without leeway = nil, want an error", name)
				}
			}
		}
	}
}

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func TestVerifyNeverFetches(t *testing.T) {
	attacker := testKey(t, EdDSA, 1)
	attackerJWKS := attacker.jwkSetForTest(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(attackerJWKS)
	}))
	ln := &countingListener{Listener: srv.Listener}
	srv.Listener = ln
	srv.Start()
	defer srv.Close()

	f := newFixture(t, EdDSA, 0)
	url := srv.URL + "/.well-known/jwks.json"
	attackerJWK := map[string]any{"kty": "OKP", "crv": "Ed25519", "x": attacker.jwk["x"]}
	tests := []struct {
		name   string
		header map[string]any
		sign   authtest.Signer
		desc   string // "" : accepted
	}{
		{"jku with the attacker's kid", authtest.With(f.header(), "jku", url, "kid", attacker.ID()), signWith(attacker), "unknown key id"},
		{"jku without kid", authtest.With(f.header(), "jku", url, "kid", nil), signWith(attacker), "signature invalid"},
		{"x5u without kid", authtest.With(f.header(), "x5u", url, "kid", nil), signWith(attacker), "signature invalid"},
		{"x5u with our kid", authtest.With(f.header(), "x5u", url), signWith(attacker), "signature invalid"},
		{"embedded jwk", authtest.With(f.header(), "jwk", attackerJWK, "kid", nil), signWith(attacker), "signature invalid"},
		{"jku on a good token", authtest.With(f.header(), "jku", url, "x5u", url), signWith(f.key), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := authtest.Forge(t, tt.header, f.claims(), tt.sign)
			for _, verify := range []func(string) (*Token, error){f.verifier.Verify, f.verifier.VerifyExpired} {
				tok, err := verify(raw)
				if tt.desc == "" {
					if err != nil {
						t.Errorf("verify = %v, want nil", err)
					}
					continue
				}
				checkRefused(t, "verify", tok, err, ErrTokenInvalid, tt.desc)
			}
		})
	}
	if got := ln.n.Load(); got != 0 {
		t.Errorf("verification opened %d connections to the jku/x5u server, want 0", got)
	}
	// The counter works: a real fetch is counted.
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := ln.n.Load(); got != 1 {
		t.Errorf("after one GET the listener counted %d connections, want 1", got)
	}
}

// jwkSetForTest is a JWKS holding k alone.
func (k *Key) jwkSetForTest(tb testing.TB) []byte {
	tb.Helper()
	ks, err := NewKeySet(k)
	if err != nil {
		tb.Fatal(err)
	}
	return ks.JWKS()
}

func TestNewVerifierErrors(t *testing.T) {
	keys, err := NewKeySet(testKey(t, EdDSA, 0))
	if err != nil {
		t.Fatal(err)
	}
	good := VerifierConfig{Keys: keys, Algorithm: EdDSA, Issuer: testIssuer, Audience: testAudience}
	tests := []struct {
		name string
		cfg  VerifierConfig
		want string
	}{
		{"no keys", with2(good, func(c *VerifierConfig) { c.Keys = nil }), "no keys"},
		{"algorithm differs from keys", with2(good, func(c *VerifierConfig) { c.Algorithm = ES256 }), "keys are EdDSA"},
		{"algorithm none", with2(good, func(c *VerifierConfig) { c.Algorithm = "none" }), "unsupported algorithm"},
		{"empty issuer", with2(good, func(c *VerifierConfig) { c.Issuer = "" }), "empty issuer"},
		{"empty audience", with2(good, func(c *VerifierConfig) { c.Audience = "" }), "empty audience"},
		{"negative leeway", with2(good, func(c *VerifierConfig) { c.Leeway = -time.Second }), "negative leeway"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewVerifier(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewVerifier = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if _, err := NewVerifier(good); err != nil {
		t.Errorf("NewVerifier(good) = %v, want nil", err)
	}
}

func with2(c VerifierConfig, change func(*VerifierConfig)) VerifierConfig {
	change(&c)
	return c
}

func TestMint(t *testing.T) {
	for _, alg := range allAlgs {
		t.Run(alg, func(t *testing.T) {
			f := newFixture(t, alg, 0)
			a, b := f.mint(t), f.mint(t)
			pa, pb := strings.Split(a, "."), strings.Split(b, ".")
			if pa[0] != pb[0] || pa[1] != pb[1] {
				t.Errorf("Mint twice gave different header or claims")
			}
			if deterministic := alg != ES256; (a == b) != deterministic {
				t.Errorf("Mint twice identical = %v, want %v", a == b, deterministic)
			}

			var header map[string]any
			hb, _ := base64.RawURLEncoding.DecodeString(pa[0])
			if err := json.Unmarshal(hb, &header); err != nil {
				t.Fatal(err)
			}
			if want := map[string]any{"alg": alg, "typ": "JWT", "kid": f.key.ID()}; fmt.Sprint(header) != fmt.Sprint(want) {
				t.Errorf("header = %v, want %v", header, want)
			}
			pl, _ := base64.RawURLEncoding.DecodeString(pa[1])
			now := f.clock.Now().Unix()
			want := fmt.Sprintf(`{"iss":"gateway","aud":"api","sub":"alice","iat":%d,"exp":%d,"jti":"jti-1","sid":"sid-1","roles":["admin","dev"]}`, now, now+900)
			if string(pl) != want {
				t.Errorf("claims = %s, want %s", pl, want)
			}
		})
	}
}

func TestMintOmitsEmpty(t *testing.T) {
	f := newFixture(t, HS256, 0)
	now := time.Unix(1900000000, 999_000_000)
	raw, err := f.minter.Mint(MintClaims{Subject: "bob", ID: "j", IssuedAt: now, ExpiresAt: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	pl, _ := base64.RawURLEncoding.DecodeString(strings.Split(raw, ".")[1])
	if want := `{"iss":"gateway","aud":"api","sub":"bob","iat":1900000000,"exp":1900000060,"jti":"j"}`; string(pl) != want {
		t.Errorf("claims = %s, want %s", pl, want)
	}
}

func TestMintErrors(t *testing.T) {
	f := newFixture(t, EdDSA, 0)
	now := f.clock.Now()
	good := MintClaims{Subject: "alice", ID: "j", IssuedAt: now, ExpiresAt: now.Add(time.Minute)}
	manyRoles := make([]string, 1000)
	for i := range manyRoles {
		manyRoles[i] = fmt.Sprintf("role-%d", i)
	}
	tests := []struct {
		name   string
		change func(*MintClaims)
	}{
		{"empty subject", func(c *MintClaims) { c.Subject = "" }},
		{"empty jti", func(c *MintClaims) { c.ID = "" }},
		{"zero iat", func(c *MintClaims) { c.IssuedAt = time.Time{} }},
		{"zero exp", func(c *MintClaims) { c.ExpiresAt = time.Time{} }},
		{"exp before iat", func(c *MintClaims) { c.ExpiresAt = now.Add(-time.Minute) }},
		{"too large for Verify", func(c *MintClaims) { c.Roles = manyRoles }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.change(&c)
			if raw, err := f.minter.Mint(c); err == nil {
				t.Errorf("Mint = %d-byte token, nil error; want an error", len(raw))
			}
		})
	}
	if _, err := f.minter.Mint(good); err != nil {
		t.Errorf("Mint(good) = %v", err)
	}
}

func TestDescribe(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{errors.New("some other error with \"quotes\""), "invalid token"},
		{ErrTokenExpired, "token expired"},
		{ErrTokenInvalid, "invalid token"},
		{invalid("issuer mismatch"), "issuer mismatch"},
		{fmt.Errorf("proxy: %w", invalid("signature invalid")), "signature invalid"},
		{invalid("bad \"desc\" \\ with\nnewline\x7f and é"), "bad desc  withnewline and "},
	}
	for _, tt := range tests {
		if got := Describe(tt.err); got != tt.want {
			t.Errorf("Describe(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestVerifyConcurrent(t *testing.T) {
	f := newFixture(t, EdDSA, 0)
	raw := f.mint(t)
	i := len(raw) - 20 // inside the signature
	c := byte('A')
	if raw[i] == c {
		c = 'B'
	}
	bad := raw[:i] + string(c) + raw[i+1:]
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if _, err := f.verifier.Verify(raw); err != nil {
					t.Errorf("Verify = %v", err)
				}
				if _, err := f.verifier.Verify(bad); err == nil {
					t.Errorf("Verify(bad) = nil")
				}
			}
		})
	}
	wg.Wait()
}
