package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/auth/authtest"
)

// url is the URL of path as a client of the test server sees it: a
// proof's htu.
func (e *env) url(path string) string { return "http://" + e.srv.Listener.Addr().String() + path }

// proofHeader is h with a DPoP proof of k for method and path, with ath
// of token ("" for none) and the claim changes kv.
func (e *env) proofHeader(h http.Header, k *authtest.DPoPKey, method, path, token string, kv ...any) http.Header {
	e.t.Helper()
	h = h.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Set("DPoP", k.Proof(e.t, method, e.url(path), token, e.clock.Now(), kv...))
	return h
}

// dpopLogin logs alice in with h and returns the answer's status and body.
func (e *env) dpopLogin(h http.Header) (*http.Response, tokenResponse) {
	e.t.Helper()
	return e.loginWith("alice", "wonderland", h)
}

// boundLogin logs alice in with a proof of k, requiring a bound session.
func (e *env) boundLogin(k *authtest.DPoPKey) string {
	e.t.Helper()
	res, tr := e.dpopLogin(e.proofHeader(nil, k, "POST", "/auth/login", ""))
	if res.StatusCode != http.StatusOK || tr.TokenType != "DPoP" {
		e.t.Fatalf("bound login: status %d, token_type %q", res.StatusCode, tr.TokenType)
	}
	return tr.AccessToken
}

func dpopMode(m DPoPMode) func(*Config, *Deps) {
	return func(c *Config, _ *Deps) { c.DPoP = m }
}

// TestDPoPLoginBinds: a login with a valid proof gets a session bound to
// its key: token_type DPoP, cnf.jkt in the token and the binding in the
// store.
func TestDPoPLoginBinds(t *testing.T) {
	e := newSessionEnv(t, nil)
	k := authtest.NewDPoPKey(t)
	tok := e.boundLogin(k)
	cnf, _ := authtest.Claims(t, tok)["cnf"].(map[string]any)
	if cnf["jkt"] != k.JKT() {
		t.Fatalf("cnf = %v, want jkt %s", authtest.Claims(t, tok)["cnf"], k.JKT())
	}
	sid, _ := authtest.Claims(t, tok)["sid"].(string)
	sess, err := e.store.Get(t.Context(), sid)
	if err != nil || sess.JKT != k.JKT() {
		t.Fatalf("stored binding %q, %v", sess.JKT, err)
	}

	// Without a proof, under "allowed": a bearer session, as before.
	res, tr := e.dpopLogin(nil)
	if res.StatusCode != http.StatusOK || tr.TokenType != "Bearer" {
		t.Fatalf("unbound login: %d, %q", res.StatusCode, tr.TokenType)
	}
	if _, ok := authtest.Claims(t, tr.AccessToken)["cnf"]; ok {
		t.Fatal("unbound token carries cnf")
	}
}

// TestDPoPLoginRefusesBadProof: a login whose proof is refused gets 400
// invalid_dpop_proof (a token endpoint's answer), and no session.
func TestDPoPLoginRefusesBadProof(t *testing.T) {
	e := newSessionEnv(t, nil)
	k := authtest.NewDPoPKey(t)
	for name, h := range map[string]http.Header{
		"wrong htm":  e.proofHeader(nil, k, "GET", "/auth/login", ""),
		"wrong htu":  e.proofHeader(nil, k, "POST", "/auth/refresh", ""),
		"other host": {"DPoP": {k.Proof(t, "POST", "http://evil.example/auth/login", "", e.clock.Now())}},
		"garbage":    {"DPoP": {"not-a-proof"}},
	} {
		res, _ := e.dpopLogin(h)
		if eb := errorOf(t, res); res.StatusCode != http.StatusBadRequest || eb.Error != auth.DPoPErrorInvalidProof {
			t.Errorf("%s: %d %+v, want 400 invalid_dpop_proof", name, res.StatusCode, eb)
		}
	}
	// A replayed proof: the first login binds, the second is refused.
	h := e.proofHeader(nil, k, "POST", "/auth/login", "")
	if res, _ := e.dpopLogin(h); res.StatusCode != http.StatusOK {
		t.Fatalf("first login: %d", res.StatusCode)
	}
	if res, _ := e.dpopLogin(h); res.StatusCode != http.StatusBadRequest {
		t.Fatalf("replayed login proof: %d, want 400", res.StatusCode)
	}
}

// TestDPoPRequired: under "required" a login without a proof is refused;
// with one it binds.
func TestDPoPRequired(t *testing.T) {
	e := newSessionEnv(t, dpopMode(DPoPRequired))
	res, _ := e.dpopLogin(nil)
	if eb := errorOf(t, res); res.StatusCode != http.StatusBadRequest || eb.Error != auth.DPoPErrorInvalidProof {
		t.Fatalf("login without proof: %d %+v, want 400 invalid_dpop_proof", res.StatusCode, eb)
	}
	e.boundLogin(authtest.NewDPoPKey(t))
}

// TestDPoPOff: under "off" the header is not read: even a garbage proof
// logs in unbound.
func TestDPoPOff(t *testing.T) {
	e := newSessionEnv(t, dpopMode(DPoPOff))
	res, tr := e.dpopLogin(http.Header{"DPoP": {"garbage"}})
	if res.StatusCode != http.StatusOK || tr.TokenType != "Bearer" || strings.Contains(tr.AccessToken, "cnf") {
		t.Fatalf("login under off: %d, %q", res.StatusCode, tr.TokenType)
	}
	if _, ok := authtest.Claims(t, tr.AccessToken)["cnf"]; ok {
		t.Fatal("token carries cnf under off")
	}
}

func dpopAuth(tok string) http.Header { return http.Header{"Authorization": {"DPoP " + tok}} }

// wantDPoPRefusal checks a 401 with a DPoP challenge of code, the algs,
// and the JSON body.
func wantDPoPRefusal(t *testing.T, name string, res *http.Response, code string) {
	t.Helper()
	chal := res.Header.Get("WWW-Authenticate")
	eb := errorOf(t, res)
	if res.StatusCode != http.StatusUnauthorized || eb.Error != code ||
		!strings.HasPrefix(chal, `DPoP error="`+code+`"`) || !strings.Contains(chal, `algs="ES256 EdDSA Ed25519"`) {
		t.Errorf("%s: %d %q %+v, want 401 DPoP %s", name, res.StatusCode, chal, eb, code)
	}
}

// TestDPoPProxied: a bound token passes with a fresh proof of its key for
// the request, and only so; an unbound token keeps working as a bearer
// token.
func TestDPoPProxied(t *testing.T) {
	e := newSessionEnv(t, func(c *Config, d *Deps) {
		// The verifier's cache on: a bound token seen before must still
		// prove its key on every request.
		v, err := auth.NewVerifier(auth.VerifierConfig{Keys: d.Keys, Algorithm: auth.EdDSA, Issuer: "gateway",
			Audience: "api", Now: d.Now, CacheSize: 100})
		if err != nil {
			t.Fatal(err)
		}
		d.Verifier = v
	})
	k, other := authtest.NewDPoPKey(t), authtest.NewDPoPKey(t)
	tok := e.boundLogin(k)
	good := func() http.Header { return e.proofHeader(dpopAuth(tok), k, "GET", "/api/x", tok) }
	if res := e.do("GET", "/api/x", good(), ""); res.StatusCode != http.StatusOK {
		t.Fatalf("bound token with its proof: %d %s", res.StatusCode, readBody(t, res))
	}
	// Like the token, its proof is the client's credential, not the
	// upstream's (forward_token = false).
	reqs := e.upstream.requests()
	if got := reqs[len(reqs)-1].Header; got.Get("Dpop") != "" || got.Get("Authorization") != "" {
		t.Errorf("the upstream received the credential: DPoP %q, Authorization %q", got.Get("Dpop"), got.Get("Authorization"))
	}
	replayed := good()
	e.do("GET", "/api/x", replayed, "")
	for name, h := range map[string]http.Header{
		"no proof (cached token)": dpopAuth(tok),
		"another key's proof":     e.proofHeader(dpopAuth(tok), other, "GET", "/api/x", tok),
		"replayed proof":          replayed,
		"wrong htu":               e.proofHeader(dpopAuth(tok), k, "GET", "/api/y", tok),
		"wrong htm":               e.proofHeader(dpopAuth(tok), k, "POST", "/api/x", tok),
		"proof for another token": e.proofHeader(dpopAuth(tok), k, "GET", "/api/x", "other"),
		"two proofs":              with(good(), "DPoP", k.Proof(t, "GET", e.url("/api/x"), tok, e.clock.Now())),
	} {
		wantDPoPRefusal(t, name, e.do("GET", "/api/x", h, ""), auth.DPoPErrorInvalidProof)
	}
	// The stolen token as a bearer token: refused, with the DPoP scheme.
	wantDPoPRefusal(t, "bound token as Bearer", e.do("GET", "/api/x", bearer(tok), ""), "invalid_token")
	wantDPoPRefusal(t, "bound token as Bearer with proof",
		e.do("GET", "/api/x", e.proofHeader(bearer(tok), k, "GET", "/api/x", tok), ""), "invalid_token")

	// Unbound: a bearer token works as before; under the DPoP scheme it
	// is refused (RFC 9449 section 7.1).
	plain := e.mustLogin("bob", "builder")
	if res := e.do("GET", "/api/x", bearer(plain), ""); res.StatusCode != http.StatusOK {
		t.Fatalf("unbound bearer: %d", res.StatusCode)
	}
	wantDPoPRefusal(t, "unbound token as DPoP", e.do("GET", "/api/x", e.proofHeader(dpopAuth(plain), k, "GET", "/api/x", plain), ""),
		"invalid_token")
}

// TestDPoPRefreshLogout: refresh and logout of a bound session need its
// proof; the refreshed token stays bound to the same key.
func TestDPoPRefreshLogout(t *testing.T) {
	e := newSessionEnv(t, nil)
	k, other := authtest.NewDPoPKey(t), authtest.NewDPoPKey(t)
	tok := e.boundLogin(k)
	e.clock.Advance(16 * time.Minute)
	for name, h := range map[string]http.Header{
		"no proof":        dpopAuth(tok),
		"another key":     e.proofHeader(dpopAuth(tok), other, "POST", "/auth/refresh", tok),
		"wrong htu":       e.proofHeader(dpopAuth(tok), k, "POST", "/auth/logout", tok),
		"login's own htu": e.proofHeader(dpopAuth(tok), k, "POST", "/auth/login", ""),
	} {
		wantDPoPRefusal(t, "refresh, "+name, e.do("POST", "/auth/refresh", h, ""), auth.DPoPErrorInvalidProof)
	}
	wantDPoPRefusal(t, "refresh as Bearer", e.do("POST", "/auth/refresh", bearer(tok), ""), "invalid_token")

	res := e.do("POST", "/auth/refresh", e.proofHeader(dpopAuth(tok), k, "POST", "/auth/refresh", tok), "")
	var tr tokenResponse
	if res.StatusCode != http.StatusOK || json.Unmarshal([]byte(readBody(t, res)), &tr) != nil || tr.TokenType != "DPoP" {
		t.Fatalf("refresh with proof: %d %+v", res.StatusCode, tr)
	}
	if got := e.claims(tr.AccessToken).JKT; got != k.JKT() {
		t.Fatalf("refreshed token bound to %q, want %q", got, k.JKT())
	}
	next := tr.AccessToken

	wantDPoPRefusal(t, "logout without proof", e.do("POST", "/auth/logout", dpopAuth(next), ""), auth.DPoPErrorInvalidProof)
	wantDPoPRefusal(t, "logout with another key", e.do("POST", "/auth/logout", e.proofHeader(dpopAuth(next), other, "POST", "/auth/logout", next), ""),
		auth.DPoPErrorInvalidProof)
	if res := e.do("POST", "/auth/logout", e.proofHeader(dpopAuth(next), k, "POST", "/auth/logout", next), ""); res.StatusCode != http.StatusNoContent {
		t.Fatalf("logout with proof: %d", res.StatusCode)
	}
}

// TestDPoPStolenCookie: with cookie delivery, the token and the cookie
// copied out of the browser get nothing without the key, proxied, at
// refresh or at logout; the key's holder keeps working.
func TestDPoPStolenCookie(t *testing.T) {
	e := newSessionEnv(t, func(c *Config, _ *Deps) { c.Delivery = DeliveryBoth })
	k := authtest.NewDPoPKey(t)
	tok := e.boundLogin(k)
	cookie := http.Header{"Cookie": {"__Host-gateway=" + tok}, "X-Requested-With": {"x"}}
	stolen := with(cookie, "Authorization", "DPoP "+tok)
	for _, target := range []struct{ method, path string }{{"GET", "/api/x"}, {"POST", "/auth/refresh"}, {"POST", "/auth/logout"}} {
		for name, h := range map[string]http.Header{"cookie": cookie, "token and cookie": stolen} {
			res := e.do(target.method, target.path, h, "")
			wantDPoPRefusal(t, target.path+", stolen "+name, res, auth.DPoPErrorInvalidProof)
		}
	}
	// The cookie with a proof of the key (no ath: the page cannot read
	// the HttpOnly cookie) passes.
	if res := e.do("GET", "/api/x", e.proofHeader(cookie, k, "GET", "/api/x", ""), ""); res.StatusCode != http.StatusOK {
		t.Fatalf("cookie with proof: %d", res.StatusCode)
	}
}

// TestDPoPNonce: with dpop_nonce, a proof without the server's nonce is
// answered use_dpop_nonce with a fresh DPoP-Nonce (400 at the login, 401
// elsewhere); a proof carrying it passes, and successful answers hand out
// the next one.
func TestDPoPNonce(t *testing.T) {
	e := newSessionEnv(t, func(c *Config, d *Deps) {
		n, err := auth.NewDPoPNonces(auth.DPoPNonceConfig{Key: []byte(strings.Repeat("k", 32)), Now: d.Now})
		if err != nil {
			t.Fatal(err)
		}
		c.DPoPNonce, d.DPoPNonces = true, n
	})
	k := authtest.NewDPoPKey(t)
	res, _ := e.dpopLogin(e.proofHeader(nil, k, "POST", "/auth/login", ""))
	nonce := res.Header.Get("DPoP-Nonce")
	if eb := errorOf(t, res); res.StatusCode != http.StatusBadRequest || eb.Error != auth.DPoPErrorUseNonce || nonce == "" {
		t.Fatalf("login without nonce: %d %+v, nonce %q", res.StatusCode, eb, nonce)
	}
	res, tr := e.dpopLogin(e.proofHeader(nil, k, "POST", "/auth/login", "", "nonce", nonce))
	if res.StatusCode != http.StatusOK || tr.TokenType != "DPoP" || res.Header.Get("DPoP-Nonce") == "" {
		t.Fatalf("login with nonce: %d %q, DPoP-Nonce %q", res.StatusCode, tr.TokenType, res.Header.Get("DPoP-Nonce"))
	}
	tok := tr.AccessToken

	res = e.do("GET", "/api/x", e.proofHeader(dpopAuth(tok), k, "GET", "/api/x", tok), "")
	wantDPoPRefusal(t, "proxied without nonce", res, auth.DPoPErrorUseNonce)
	if res.Header.Get("DPoP-Nonce") == "" {
		t.Fatal("use_dpop_nonce without a DPoP-Nonce")
	}
	res = e.do("GET", "/api/x", e.proofHeader(dpopAuth(tok), k, "GET", "/api/x", tok, "nonce", "stale"), "")
	wantDPoPRefusal(t, "proxied with a wrong nonce", res, auth.DPoPErrorUseNonce)
	res = e.do("GET", "/api/x", e.proofHeader(dpopAuth(tok), k, "GET", "/api/x", tok, "nonce", nonce), "")
	if res.StatusCode != http.StatusOK || res.Header.Get("DPoP-Nonce") == "" {
		t.Fatalf("proxied with nonce: %d, DPoP-Nonce %q", res.StatusCode, res.Header.Get("DPoP-Nonce"))
	}
}

// failingReplay is a replay cache that cannot answer.
type failingReplay struct{ err error }

func (f failingReplay) Seen(context.Context, string, time.Time) (bool, error) { return false, f.err }

// TestDPoPReplayCacheFailure: a proof that cannot be checked against the
// replay cache (full, or unreachable) is refused with 503, never let
// through.
func TestDPoPReplayCacheFailure(t *testing.T) {
	var replay failingReplay
	e := newSessionEnv(t, func(c *Config, d *Deps) {
		v, err := auth.NewDPoPVerifier(auth.DPoPConfig{Now: d.Now, Replay: &replay})
		if err != nil {
			t.Fatal(err)
		}
		d.DPoP = v
	})
	k := authtest.NewDPoPKey(t)
	tok := e.boundLogin(k)
	for _, err := range []error{auth.ErrDPoPReplayFull, errors.New("redis down")} {
		replay.err = err
		res := e.do("GET", "/api/x", e.proofHeader(dpopAuth(tok), k, "GET", "/api/x", tok), "")
		if eb := errorOf(t, res); res.StatusCode != http.StatusServiceUnavailable || eb.Error != "temporarily_unavailable" {
			t.Errorf("%v: %d %+v, want 503", err, res.StatusCode, eb)
		}
		if res, _ := e.dpopLogin(e.proofHeader(nil, k, "POST", "/auth/login", "")); res.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("%v: login %d, want 503", err, res.StatusCode)
		}
	}
}

// TestDPoPSchemeTokenErrors: a token refused on a DPoP-scheme request
// gets a DPoP challenge, invalid_token.
func TestDPoPSchemeTokenErrors(t *testing.T) {
	e := newSessionEnv(t, nil)
	k := authtest.NewDPoPKey(t)
	tok := e.boundLogin(k)
	e.clock.Advance(16 * time.Minute)
	wantDPoPRefusal(t, "expired", e.do("GET", "/api/x", e.proofHeader(dpopAuth(tok), k, "GET", "/api/x", tok), ""), "invalid_token")
	wantDPoPRefusal(t, "forged", e.do("GET", "/api/x", e.proofHeader(dpopAuth(tok+"x"), k, "GET", "/api/x", tok+"x"), ""), "invalid_token")
}
