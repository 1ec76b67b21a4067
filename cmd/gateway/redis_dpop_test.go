package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/auth/authtest"
	"github.com/spa-gateway/gateway/sessionstore/redisstore/redistest"
)

// dpopHost is the host the DPoP clients of TestBinaryRedisDPoPReplay
// address, whichever replica a request reaches: one name behind a load
// balancer, as in production, so that a proof's htu is valid at both.
const dpopHost = "app.test"

// dpopAnswer is what a DPoP request to a gateway got.
type dpopAnswer struct {
	status            int
	challenge, nonce  string // WWW-Authenticate, DPoP-Nonce
	token, desc, code string // access_token, error_description, error
}

// dpopDo sends method path to g with Host dpopHost, the DPoP proof proof
// and, if not empty, Authorization: DPoP token.
func dpopDo(t testing.TB, g *gw, method, path, token, proof, body string) dpopAnswer {
	t.Helper()
	req, err := http.NewRequest(method, g.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = dpopHost
	req.Header.Set("DPoP", proof)
	if token != "" {
		req.Header.Set("Authorization", "DPoP "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := g.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var v struct {
		AccessToken string `json:"access_token"`
		Code        string `json:"error"`
		Desc        string `json:"error_description"`
	}
	_ = json.Unmarshal(b, &v)
	return dpopAnswer{status: res.StatusCode, challenge: res.Header.Get("WWW-Authenticate"), nonce: res.Header.Get("DPoP-Nonce"),
		token: v.AccessToken, desc: v.Desc, code: v.Code}
}

// TestBinaryRedisDPoPReplay runs two gateway processes on one Redis, as
// two replicas behind one balancer: a DPoP proof accepted at one is
// refused as a replay at the other (the replay cache is shared through
// Redis), at the login as on a proxied request; a fresh proof is accepted
// at either; and with Redis down a proof is refused with 503, never
// accepted on the strength of the memory cache alone. (With bbolt, each
// process keeps its own memory cache; see Main.dpopReplay.)
func TestBinaryRedisDPoPReplay(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	config := redisSetup(t, dir, srv.URL(0), "", okUpstream(t), "0s")
	// Under revocation = "refresh" a proxied request touches no session:
	// what reaches Redis is the replay cache alone.
	patch(t, config, `revocation = "every_request"`, `revocation = "refresh"`)
	a, b := startGateway(t, config), startGateway(t, config)
	key := authtest.NewDPoPKey(t)
	htu := func(path string) string { return "http://" + dpopHost + path }
	wantReplay := func(what string, got dpopAnswer, status int) {
		t.Helper()
		if got.status != status || got.code != "invalid_dpop_proof" || got.desc != "DPoP proof replayed" {
			t.Errorf("%s: %d %s (%s), want %d invalid_dpop_proof (DPoP proof replayed)", what, got.status, got.code, got.desc, status)
		}
	}

	login := key.Proof(t, "POST", htu("/auth/login"), "", time.Now())
	creds := `{"username":"alice","password":"wonderland"}`
	got := dpopDo(t, a, "POST", "/auth/login", "", login, creds)
	if got.status != http.StatusOK || got.token == "" {
		t.Fatalf("bound login on A: %d %s (%s)", got.status, got.code, got.desc)
	}
	tok := got.token
	wantReplay("the login's proof replayed to B", dpopDo(t, b, "POST", "/auth/login", "", login, creds), http.StatusBadRequest)

	proof := key.Proof(t, "GET", htu("/api/x"), tok, time.Now())
	if got := dpopDo(t, a, "GET", "/api/x", tok, proof, ""); got.status != http.StatusOK {
		t.Fatalf("proxied request on A: %d %s (%s)", got.status, got.code, got.desc)
	}
	got = dpopDo(t, b, "GET", "/api/x", tok, proof, "")
	wantReplay("the proxied request's proof replayed to B", got, http.StatusUnauthorized)
	if !strings.HasPrefix(got.challenge, "DPoP ") || !strings.Contains(got.challenge, `error="invalid_dpop_proof"`) {
		t.Errorf("replay at B: WWW-Authenticate %q, want a DPoP invalid_dpop_proof challenge", got.challenge)
	}
	wantReplay("the proof replayed to A", dpopDo(t, a, "GET", "/api/x", tok, proof, ""), http.StatusUnauthorized)
	if got := dpopDo(t, b, "GET", "/api/x", tok, key.Proof(t, "GET", htu("/api/x"), tok, time.Now()), ""); got.status != http.StatusOK {
		t.Errorf("a fresh proof on B: %d %s (%s), want 200", got.status, got.code, got.desc)
	}

	srv.Stop(t)
	got = dpopDo(t, a, "GET", "/api/x", tok, key.Proof(t, "GET", htu("/api/x"), tok, time.Now()), "")
	if got.status != http.StatusServiceUnavailable || got.desc != "DPoP proof could not be checked" {
		t.Errorf("a fresh proof with Redis down: %d %s (%s), want 503 DPoP proof could not be checked", got.status, got.code, got.desc)
	}
	srv.Restart(t)
	if got := dpopDo(t, a, "GET", "/api/x", tok, key.Proof(t, "GET", htu("/api/x"), tok, time.Now()), ""); got.status != http.StatusOK {
		t.Errorf("a fresh proof once Redis is back: %d %s (%s), want 200", got.status, got.code, got.desc)
	}
	_, metrics := a.do("GET", a.admin+"/metrics", "", "")
	if !strings.Contains(metrics, `gateway_store_operation_duration_seconds_count{op="dpop_replay"}`) {
		t.Error(`no gateway_store_operation_duration_seconds{op="dpop_replay"} on A's /metrics`)
	}
}
