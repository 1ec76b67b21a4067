package proxy

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

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
	if h == nil {
		h = http.Header{}
	}
	body, _ := json.Marshal(map[string]string{"username": "alice", "password": "wonderland"})
	res := e.do("POST", "/auth/login", with(h, "Content-Type", "application/json"), string(body))
	var tr tokenResponse
	if res.StatusCode == http.StatusOK {
		if err := json.Unmarshal([]byte(readBody(e.t, res)), &tr); err != nil {
			e.t.Fatal(err)
		}
	}
	return res, tr
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
