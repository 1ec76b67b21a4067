package adversarial

import (
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/spa-gateway/gateway/auth/authtest"
	"github.com/spa-gateway/gateway/sessionstore"
)

// boundLogin logs alice in with a proof of k and returns her bound token
// and its session.
func (e *env) boundLogin(k *authtest.DPoPKey) (string, sessionstore.Session) {
	e.tb.Helper()
	a := e.send(post("/auth/login", `{"username":"alice","password":"wonderland"}`, "Content-Type: application/json",
		"DPoP: "+k.Proof(e.tb, "POST", "http://"+e.addr+"/auth/login", "", epoch)))
	var tr struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	if a.status != http.StatusOK || json.Unmarshal([]byte(a.body), &tr) != nil || tr.TokenType != "DPoP" {
		e.tb.Fatalf("bound login: %d %s", a.status, a.body)
	}
	sid, _ := authtest.Claims(e.tb, tr.AccessToken)["sid"].(string)
	s, err := e.store.Get(e.tb.Context(), sid)
	if err != nil {
		e.tb.Fatal(err)
	}
	return tr.AccessToken, s
}

func ath(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return authtest.Encode(sum[:])
}

// TestDPoPAttacks: what a thief holding a bound token, the cookie, or a
// captured proof can do without the key: nothing. Every case is refused
// with 401 and a DPoP challenge, and the victim's session neither rotates
// nor is revoked.
func TestDPoPAttacks(t *testing.T) {
	e := newEnv(t, envOptions{})
	victim, thief := authtest.NewDPoPKey(t), authtest.NewDPoPKey(t)
	tok, sess := e.boundLogin(victim)
	url := func(path string) string { return "http://" + e.addr + path }
	claims := func(method, path string) map[string]any {
		return map[string]any{"htm": method, "htu": url(path), "iat": epoch.Unix(), "jti": randomID(t), "ath": ath(tok)}
	}
	hdr := func(k *authtest.DPoPKey, kv ...any) map[string]any {
		return authtest.With(map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": k.JWK()}, kv...)
	}
	// A proof the victim really made, captured in transit.
	captured := victim.Proof(t, "GET", url("/api/a"), tok, epoch)
	if a := e.send(get("/api/a", "Authorization: DPoP "+tok, "DPoP: "+captured)); a.status != http.StatusOK {
		t.Fatalf("the victim's own request: %d %s", a.status, a.body)
	}
	cookie := "Cookie: __Host-gateway=" + tok
	for _, c := range []struct {
		name string
		req  rawReq
		// desc is the error_description the refusal must carry: the check
		// the case is named for refused it, not another one.
		desc string
	}{
		{"stolen token, no proof", get("/api/a", "Authorization: DPoP "+tok), "missing DPoP proof"},
		{"stolen token as Bearer", get("/api/a", bearer(tok)), "bound token needs the DPoP scheme"},
		{"stolen cookie, no proof", get("/api/a", cookie), "missing DPoP proof"},
		{"stolen token, the thief's own key", get("/api/a", "Authorization: DPoP "+tok, "DPoP: "+thief.Proof(t, "GET", url("/api/a"), tok, epoch)), "DPoP key mismatch"},
		{"stolen cookie, the thief's own key", get("/api/a", cookie, "DPoP: "+thief.Proof(t, "GET", url("/api/a"), "", epoch)), "DPoP key mismatch"},
		{"captured proof replayed", get("/api/a", "Authorization: DPoP "+tok, "DPoP: "+captured), "DPoP proof replayed"},
		// A fresh proof, never sent, so that only its htu can refuse it.
		{"captured proof at another path", get("/api/b", "Authorization: DPoP "+tok,
			"DPoP: "+victim.Proof(t, "GET", url("/api/a"), tok, epoch)), "htu mismatch"},
		{"alg none with the victim's jwk", get("/api/a", "Authorization: DPoP "+tok,
			"DPoP: "+authtest.Forge(t, hdr(victim, "alg", "none"), claims("GET", "/api/a"), nil)), "unsupported DPoP proof algorithm"},
		{"HS256 keyed with the victim's public x", get("/api/a", "Authorization: DPoP "+tok,
			"DPoP: "+authtest.Forge(t, hdr(victim, "alg", "HS256"), claims("GET", "/api/a"), authtest.SignAs("HS256", []byte(victim.JWK()["x"].(string))))), "unsupported DPoP proof algorithm"},
		{"thief's signature, the victim's jwk", get("/api/a", "Authorization: DPoP "+tok,
			"DPoP: "+authtest.Forge(t, hdr(victim), claims("GET", "/api/a"), thief.Signer())), "DPoP proof signature invalid"},
		// Signed with the victim's key, so that only the private member
		// can refuse it.
		{"jwk with a private part", get("/api/a", "Authorization: DPoP "+tok,
			"DPoP: "+authtest.Forge(t, hdr(victim, "jwk", authtest.With(victim.JWK(), "d", "AAAA")), claims("GET", "/api/a"), victim.Signer())),
			"jwk holds a private key"},
		// Signed with the victim's key, so that only the htu's query can
		// refuse it (the query alone would be ignored on the request).
		{"htu with a query", get("/api/a?x=1", "Authorization: DPoP "+tok,
			"DPoP: "+victim.Proof(t, "GET", url("/api/a?x=1"), tok, epoch)), "htu mismatch"},
		{"htu of a host an untrusted client names", get("/api/a", "Authorization: DPoP "+tok, "X-Forwarded-Host: evil.example",
			"DPoP: "+victim.Proof(t, "GET", "http://evil.example/api/a", tok, epoch)), "htu mismatch"},
		{"refresh with the thief's key", post("/auth/refresh", "", "Authorization: DPoP "+tok,
			"DPoP: "+thief.Proof(t, "POST", url("/auth/refresh"), tok, epoch)), "DPoP key mismatch"},
		{"refresh with the cookie alone", post("/auth/refresh", "", cookie, "X-Requested-With: x"), "missing DPoP proof"},
		{"logout with the thief's key", post("/auth/logout", "", "Authorization: DPoP "+tok,
			"DPoP: "+thief.Proof(t, "POST", url("/auth/logout"), tok, epoch)), "DPoP key mismatch"},
		{"logout with the cookie alone", post("/auth/logout", "", cookie, "X-Requested-With: x"), "missing DPoP proof"},
		{"own sessions with the thief's key", get("/auth/sessions", "Authorization: DPoP "+tok,
			"DPoP: "+thief.Proof(t, "GET", url("/auth/sessions"), tok, epoch)), "DPoP key mismatch"},
	} {
		a := e.send(c.req)
		if a.status != http.StatusUnauthorized || !strings.HasPrefix(a.header.Get("WWW-Authenticate"), "DPoP ") {
			t.Errorf("%s: %d %q %s, want 401 with a DPoP challenge", c.name, a.status, a.header.Get("WWW-Authenticate"), a.body)
		}
		if want := `error_description="` + c.desc + `"`; !strings.Contains(a.header.Get("WWW-Authenticate"), want) {
			t.Errorf("%s: WWW-Authenticate = %q, want %s", c.name, a.header.Get("WWW-Authenticate"), want)
		}
		if err := e.invariants(a); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	if err := unchanged(sess)(e); err != nil {
		t.Fatalf("the victim's session after the attacks: %v", err)
	}
	// The thief's own bound session does not lend its key to the victim's
	// token: the binding is the token's, not the key's holder's.
	e.boundLogin(thief)
	if a := e.send(get("/api/a", "Authorization: DPoP "+tok, "DPoP: "+thief.Proof(t, "GET", url("/api/a"), tok, epoch))); a.status != http.StatusUnauthorized {
		t.Fatalf("the victim's token with the key of the thief's own session: %d", a.status)
	}
}
