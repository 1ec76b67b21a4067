package adversarial

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/auth/authtest"
)

// attacker holds keys the gateway has never seen, made once.
var attacker = sync.OnceValue(func() (a struct {
	ed   ed25519.PrivateKey
	rsa  *rsa.PrivateKey
	p384 *ecdsa.PrivateKey
	cert []byte // a self-signed certificate of ed
}) {
	var err error
	if _, a.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		panic(err)
	}
	if a.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if a.p384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gateway"},
		NotBefore: epoch.Add(-time.Hour), NotAfter: epoch.Add(time.Hour)}
	if a.cert, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, a.ed.Public(), a.ed); err != nil {
		panic(err)
	}
	return a
})

// tokenAttack is a forged or bent token. Each is sent three ways: to a
// protected route with a session whose token is still valid, and to
// /auth/refresh and /auth/logout with one whose token has expired (which is
// what those endpoints expect: only exp is relaxed there, so every attack
// must be refused there too, and leave the session as it was).
type tokenAttack struct {
	name string
	// alg is the gateway's configured algorithm; "" means EdDSA.
	alg string
	// forge builds the token from the claims of a live session of alice.
	forge func(e *env, claims map[string]any) string
	// status is the answer on all three paths; 0 means 401.
	status int
}

func noneAttack(alg string, keepSig bool) tokenAttack {
	name := "alg " + alg
	if keepSig {
		name += " keeping the real signature"
	}
	return tokenAttack{name: name, forge: func(e *env, c map[string]any) string {
		tok := authtest.Forge(e.tb, authtest.With(e.header(), "alg", alg), c, nil)
		if keepSig {
			good := authtest.Forge(e.tb, e.header(), c, e.byGateway())
			tok += good[strings.LastIndexByte(good, '.')+1:]
		}
		return tok
	}}
}

// confusion is the classic algorithm confusion: the gateway's public key,
// which anyone can fetch, used as an HMAC secret.
func confusion(alg, form string, secret func(e *env) []byte) tokenAttack {
	return tokenAttack{name: "HS256 with the " + alg + " public key as secret (" + form + ")", alg: alg,
		forge: func(e *env, c map[string]any) string {
			return authtest.Forge(e.tb, authtest.With(e.header(), "alg", "HS256"), c, authtest.SignAs("HS256", secret(e)))
		}}
}

// es256Sig replaces the signature of a gateway-signed ES256 token.
func es256Sig(name string, sig func(e *env, input string) []byte) tokenAttack {
	return tokenAttack{name: name, alg: auth.ES256, forge: func(e *env, c map[string]any) string {
		return authtest.Forge(e.tb, e.header(), c, func(_ testing.TB, input string) []byte { return sig(e, input) })
	}}
}

// reSign signs the claims with the gateway's key, header changed by kv.
func reSign(name string, kv ...any) tokenAttack {
	return tokenAttack{name: name, forge: func(e *env, c map[string]any) string {
		return authtest.Forge(e.tb, authtest.With(e.header(), kv...), c, e.byGateway())
	}}
}

// claim signs, with the gateway's own key, claims changed by kv: what a
// token of another issuer or audience sharing the key looks like.
func claim(name string, kv ...any) tokenAttack {
	return tokenAttack{name: name, forge: func(e *env, c map[string]any) string {
		return authtest.Forge(e.tb, e.header(), authtest.With(c, kv...), e.byGateway())
	}}
}

// mangle changes the compact serialisation of a correctly signed token.
func mangle(name string, f func(tok string) string) tokenAttack {
	return tokenAttack{name: name, forge: func(e *env, c map[string]any) string {
		return f(authtest.Forge(e.tb, e.header(), c, e.byGateway()))
	}}
}

// curveOrder is the order n of P-256.
var curveOrder = elliptic.P256().Params().N

func tokenAttacks() []tokenAttack {
	const b64url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	attacks := []tokenAttack{
		noneAttack("none", false), noneAttack("None", false), noneAttack("NONE", false), noneAttack("nOnE", false),
		noneAttack("none", true),
		reSign("alg missing", "alg", nil),
		reSign("alg empty", "alg", ""),
		reSign("alg as an array", "alg", []string{"EdDSA"}),
		reSign("alg Ed25519 (a name for the same signature)", "alg", "Ed25519"),

		confusion(auth.RS256, "PEM", func(e *env) []byte { return e.km.pubPEM }),
		confusion(auth.RS256, "PEM without newline", func(e *env) []byte { return []byte(strings.TrimSpace(string(e.km.pubPEM))) }),
		confusion(auth.RS256, "PKIX DER", func(e *env) []byte { return e.km.pubDER }),
		confusion(auth.RS256, "PKCS#1 DER", func(e *env) []byte {
			return x509.MarshalPKCS1PublicKey(e.km.priv.Public().(*rsa.PublicKey))
		}),
		confusion(auth.RS256, "JWKS document", func(e *env) []byte { return e.km.keys.JWKS() }),
		confusion(auth.ES256, "PEM", func(e *env) []byte { return e.km.pubPEM }),
		confusion(auth.ES256, "PKIX DER", func(e *env) []byte { return e.km.pubDER }),
		confusion(auth.ES256, "uncompressed point", func(e *env) []byte {
			b, _ := e.km.priv.Public().(*ecdsa.PublicKey).Bytes()
			return b
		}),
		confusion(auth.EdDSA, "PEM", func(e *env) []byte { return e.km.pubPEM }),
		confusion(auth.EdDSA, "PKIX DER", func(e *env) []byte { return e.km.pubDER }),
		confusion(auth.EdDSA, "raw 32 bytes", func(e *env) []byte { return e.km.priv.Public().(ed25519.PublicKey) }),

		// CVE-2022-21449 ("psychic signatures"): r = s = 0 verified
		// against any message in Java 15-18.
		es256Sig("ES256 r=s=0 (64 zero bytes)", func(*env, string) []byte { return make([]byte, 64) }),
		es256Sig("ES256 r=s=0 DER-encoded", func(*env, string) []byte { return []byte{0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00} }),
		es256Sig("ES256 r=s=n (the curve order)", func(*env, string) []byte {
			n := curveOrder.FillBytes(make([]byte, 32))
			return append(n, n...)
		}),
		es256Sig("ES256 valid signature DER-encoded", func(e *env, input string) []byte {
			sum := sha256.Sum256([]byte(input))
			sig, err := ecdsa.SignASN1(rand.Reader, e.km.priv.(*ecdsa.PrivateKey), sum[:])
			if err != nil {
				e.tb.Fatal(err)
			}
			return sig
		}),
		es256Sig("ES256 signature 63 bytes", func(e *env, input string) []byte { return authtest.SignAs("ES256", e.km.priv)(e.tb, input)[:63] }),
		es256Sig("ES256 signature 65 bytes", func(e *env, input string) []byte {
			return append(authtest.SignAs("ES256", e.km.priv)(e.tb, input), 0)
		}),
		es256Sig("ES256 signature twice (128 bytes)", func(e *env, input string) []byte {
			s := authtest.SignAs("ES256", e.km.priv)(e.tb, input)
			return append(s, s...)
		}),
		es256Sig("ES256 signature with a leading zero byte", func(e *env, input string) []byte {
			return append([]byte{0}, authtest.SignAs("ES256", e.km.priv)(e.tb, input)...)
		}),

		{name: "RS256 signed by an attacker's RSA key", forge: func(e *env, c map[string]any) string {
			return authtest.Forge(e.tb, authtest.With(e.header(), "alg", "RS256"), c, authtest.SignAs("RS256", attacker().rsa))
		}},
		{name: "ES384 signed by an attacker's P-384 key", alg: auth.ES256, forge: func(e *env, c map[string]any) string {
			return authtest.Forge(e.tb, authtest.With(e.header(), "alg", "ES384"), c, authtest.SignAs("ES384", attacker().p384))
		}},
		{name: "RS512 with the gateway's own RSA key", alg: auth.RS256, forge: func(e *env, c map[string]any) string {
			return authtest.Forge(e.tb, authtest.With(e.header(), "alg", "RS512"), c, authtest.SignAs("RS512", e.km.priv))
		}},
		{name: "PS256 with the gateway's own RSA key", alg: auth.RS256, forge: func(e *env, c map[string]any) string {
			return authtest.Forge(e.tb, authtest.With(e.header(), "alg", "PS256"), c, authtest.SignAs("PS256", e.km.priv))
		}},
		{name: "HS512 with the gateway's own HMAC secret", alg: auth.HS256, forge: func(e *env, c map[string]any) string {
			return authtest.Forge(e.tb, authtest.With(e.header(), "alg", "HS512"), c, authtest.SignAs("HS512", e.km.secret))
		}},
		{name: "HS256 with an empty secret", alg: auth.HS256, forge: func(e *env, c map[string]any) string {
			return authtest.Forge(e.tb, e.header(), c, authtest.SignAs("HS256", []byte{}))
		}},

		// kid: it selects among the keys the gateway holds, nothing else.
		{name: "kid path to /dev/null, HS256 with an empty secret", forge: func(e *env, c map[string]any) string {
			return authtest.Forge(e.tb, authtest.With(e.header(), "alg", "HS256", "kid", "../../../../../../../dev/null"), c, authtest.SignAs("HS256", []byte{}))
		}},
		{name: "kid absolute path, HS256 with the file's content", alg: auth.HS256, forge: func(e *env, c map[string]any) string {
			return authtest.Forge(e.tb, authtest.With(e.header(), "kid", "/etc/hostname"), c, authtest.SignAs("HS256", []byte("localhost")))
		}},
		{name: "kid SQL injection selecting a known secret", alg: auth.HS256, forge: func(e *env, c map[string]any) string {
			return authtest.Forge(e.tb, authtest.With(e.header(), "kid", "x' UNION SELECT 'attacker-secret-attacker-secret!!' -- "), c, authtest.SignAs("HS256", []byte("attacker-secret-attacker-secret!!")))
		}},
		{name: "kid SQL tautology", forge: func(e *env, c map[string]any) string {
			return authtest.Forge(e.tb, authtest.With(e.header(), "kid", "' OR '1'='1"), c, authtest.SignAs("EdDSA", attacker().ed))
		}},
		{name: "kid of the real key with a NUL and a path after it", forge: func(e *env, c map[string]any) string {
			return authtest.Forge(e.tb, authtest.With(e.header(), "kid", e.km.key.ID()+"\x00/../../etc/passwd"), c, e.byGateway())
		}},
		reSign("kid as a number", "kid", 0),
		reSign("kid as an object", "kid", map[string]any{"$ne": ""}),

		// Keys offered by the token itself must never be used or fetched.
		{name: "jku pointing at the attacker's JWKS", forge: func(e *env, c map[string]any) string {
			return authtest.Forge(e.tb, authtest.With(e.header(), "jku", e.trap.url("/jwks.json"), "kid", "attacker"), c, authtest.SignAs("EdDSA", attacker().ed))
		}},
		{name: "x5u pointing at the attacker's certificate", forge: func(e *env, c map[string]any) string {
			return authtest.Forge(e.tb, authtest.With(e.header(), "x5u", e.trap.url("/cert.pem"), "kid", nil), c, authtest.SignAs("EdDSA", attacker().ed))
		}},
		{name: "jwk embedding the attacker's key", forge: func(e *env, c map[string]any) string {
			jwk := map[string]any{"kty": "OKP", "crv": "Ed25519", "x": authtest.Encode(attacker().ed.Public().(ed25519.PublicKey))}
			return authtest.Forge(e.tb, authtest.With(e.header(), "jwk", jwk, "kid", nil), c, authtest.SignAs("EdDSA", attacker().ed))
		}},
		{name: "x5c embedding the attacker's certificate", forge: func(e *env, c map[string]any) string {
			return authtest.Forge(e.tb, authtest.With(e.header(), "x5c", []string{base64.StdEncoding.EncodeToString(attacker().cert)}, "kid", nil), c, authtest.SignAs("EdDSA", attacker().ed))
		}},
		{name: "jwk and jku with the attacker's key under the gateway's kid", forge: func(e *env, c map[string]any) string {
			jwk := map[string]any{"kty": "OKP", "crv": "Ed25519", "x": authtest.Encode(attacker().ed.Public().(ed25519.PublicKey))}
			return authtest.Forge(e.tb, authtest.With(e.header(), "jwk", jwk, "jku", e.trap.url("/jwks.json")), c, authtest.SignAs("EdDSA", attacker().ed))
		}},

		// RFC 7515 section 4.1.11: unknown critical extensions must be
		// refused, even on a correctly signed token.
		reSign("crit naming an unknown extension", "crit", []string{"urn:example:unknown"}, "urn:example:unknown", true),
		reSign("crit naming exp", "crit", []string{"exp"}, "exp", 0),
		reSign("crit b64 false (unencoded payload)", "crit", []string{"b64"}, "b64", false),
		reSign("crit empty", "crit", []string{}),

		mangle("signature with non-canonical base64 (spare bits set)", func(tok string) string {
			last := strings.IndexByte(b64url, tok[len(tok)-1])
			return tok[:len(tok)-1] + string(b64url[last|1])
		}),
		mangle("payload padded with =", func(tok string) string {
			p := strings.Split(tok, ".")
			p[1] += "=="
			return strings.Join(p, ".")
		}),
		mangle("standard base64 alphabet", func(tok string) string {
			return strings.NewReplacer("-", "+", "_", "/").Replace(tok) + "+/"
		}),
		mangle("five segments (JWE-like)", func(tok string) string { return tok + ".e30.e30" }),
		mangle("two segments", func(tok string) string { return tok[:strings.LastIndexByte(tok, '.')] }),
		mangle("signature bytes altered", func(tok string) string {
			return tok[:strings.LastIndexByte(tok, '.')] + ".AAAA" + tok[strings.LastIndexByte(tok, '.')+5:]
		}),
		{name: "payload changed to another subject, signature kept", forge: func(e *env, c map[string]any) string {
			p := strings.Split(authtest.Forge(e.tb, e.header(), c, e.byGateway()), ".")
			p[1] = authtest.EncodeJSON(e.tb, authtest.With(c, "sub", marker, "roles", []string{"admin"}))
			return strings.Join(p, ".")
		}},
		{name: "signed by another key of the same algorithm, gateway's kid", forge: func(e *env, c map[string]any) string {
			return authtest.Forge(e.tb, e.header(), c, authtest.SignAs("EdDSA", attacker().ed))
		}},
		{name: "signed by another key of the same algorithm, no kid", forge: func(e *env, c map[string]any) string {
			return authtest.Forge(e.tb, authtest.With(e.header(), "kid", nil), c, authtest.SignAs("EdDSA", attacker().ed))
		}},
		{name: "16 KiB token (over the 8 KiB token limit, under the header limit)", forge: func(e *env, c map[string]any) string {
			return authtest.Forge(e.tb, e.header(), authtest.With(c, "pad", strings.Repeat("p", 16<<10)), e.byGateway())
		}},
		// A 1 MiB Authorization header is over server.max_header_bytes
		// (32 KiB): net/http refuses the request head with 431 before any
		// handler, so the token is never even parsed. 431 is right: the
		// request is refused for its size, whatever it carries; the 8 KiB
		// token limit (401 "token too large") only applies to tokens that
		// fit in the header limit.
		{name: "1 MiB token", status: http.StatusRequestHeaderFieldsTooLarge, forge: func(e *env, c map[string]any) string {
			return authtest.Forge(e.tb, e.header(), authtest.With(c, "pad", strings.Repeat("p", 1<<20)), e.byGateway())
		}},

		claim("iat in the future", "iat", epoch.Add(time.Hour).Unix()),
		claim("nbf in the future", "nbf", epoch.Add(time.Hour).Unix()),
		claim("another issuer, same key", "iss", "other-gateway"),
		claim("issuer differing in case", "iss", "Gateway"),
		claim("issuer as an array", "iss", []string{issuer}),
		claim("another audience, same key", "aud", "other-api"),
		claim("audience array without ours", "aud", []string{"other-api", "x"}),
		claim("exp missing", "exp", nil),
		claim("exp as a string", "exp", "99999999999"),
		claim("exp beyond year 9999", "exp", 1e300),
		claim("sub missing", "sub", nil),
		claim("roles as a string", "roles", "admin"),
	}
	return attacks
}

// TestTokenAttacks sends every forged token to a protected route, to
// /auth/refresh and to /auth/logout. None may pass, none may reach an
// upstream, none may change the session, and the trap listener (where jku
// and x5u point) must see no connection.
func TestTokenAttacks(t *testing.T) {
	t.Parallel()
	for _, ta := range tokenAttacks() {
		want := ta.status
		if want == 0 {
			want = http.StatusUnauthorized
		}
		for _, path := range []string{"/api/x", "/auth/refresh", "/auth/logout"} {
			t.Run(path+"/"+ta.name, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, envOptions{alg: ta.alg})
				expired := path != "/api/x"
				s, claims := e.session(expired)
				tok := ta.forge(e, claims)
				var r rawReq
				if expired {
					r = post(path, "", bearer(tok))
				} else {
					r = get(path, bearer(tok))
				}
				a := e.send(r)
				if a.status != want {
					t.Errorf("status = %d, want %d (%s)", a.status, want, a.body)
				}
				if want == http.StatusUnauthorized && !strings.Contains(a.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
					t.Errorf("WWW-Authenticate = %q, want an invalid_token challenge", a.header.Get("WWW-Authenticate"))
				}
				if err := all(nothing, unchanged(s))(e); err != nil {
					t.Error(err)
				}
				if err := e.invariants(a); err != nil {
					t.Error(err)
				}
			})
		}
	}
}

// TestTokenHeadersNeverFetched: a token the gateway signed that also
// carries jku, x5u, jwk or x5c passes on its signature alone, and the
// gateway opens no connection to where they point (the trap listener).
func TestTokenHeadersNeverFetched(t *testing.T) {
	t.Parallel()
	for _, h := range []string{"jku", "x5u"} {
		t.Run(h, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{})
			_, c := e.session(false)
			tok := authtest.Forge(t, authtest.With(e.header(), h, e.trap.url("/keys")), c, e.byGateway())
			a := e.send(get("/api/x", bearer(tok)))
			if a.status != http.StatusOK {
				t.Fatalf("status = %d, want 200 (%s)", a.status, a.body)
			}
			if err := all(identity(user), absent(tok))(e); err != nil {
				t.Error(err)
			}
			if err := e.invariants(a); err != nil {
				t.Error(err)
			}
		})
	}
}
