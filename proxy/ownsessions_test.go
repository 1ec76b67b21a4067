package proxy

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/logtest"
)

// newOwnEnv is a session env behind a trusted proxy on loopback, so that a
// test chooses each request's client address with X-Forwarded-For.
func newOwnEnv(t testing.TB, edit func(*Config, *Deps)) *env {
	t.Helper()
	return newSessionEnv(t, func(c *Config, d *Deps) {
		c.TrustedProxies = mustPrefixes(t, "127.0.0.0/8")
		if edit != nil {
			edit(c, d)
		}
	})
}

// from is the header of a request from user agent ua at address addr.
func from(ua, addr string) http.Header {
	return http.Header{"User-Agent": {ua}, "X-Forwarded-For": {addr}}
}

// loginFrom logs user in from h and returns the access token.
func (e *env) loginFrom(user, pass string, h http.Header) string {
	e.t.Helper()
	res, tr := e.loginWith(user, pass, h)
	if res.StatusCode != http.StatusOK {
		e.t.Fatalf("login %s: status = %d, want 200", user, res.StatusCode)
	}
	return tr.AccessToken
}

// ownSessions lists the caller's sessions, requiring 200.
func (e *env) ownSessions(h http.Header) []map[string]any {
	e.t.Helper()
	res := e.do("GET", "/auth/sessions", h, "")
	if res.StatusCode != http.StatusOK {
		e.t.Fatalf("GET /auth/sessions: status = %d, want 200", res.StatusCode)
	}
	if got := res.Header.Get("Cache-Control"); got != "no-store" {
		e.t.Errorf("GET /auth/sessions: Cache-Control = %q, want no-store", got)
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(readBody(e.t, res)), &list); err != nil {
		e.t.Fatal(err)
	}
	return list
}

// sidOf is the sid claim of a token the env minted.
func (e *env) sidOf(tok string) string {
	e.t.Helper()
	vt, err := e.gw.deps.Verifier.VerifyExpired(tok)
	if err != nil {
		e.t.Fatal(err)
	}
	return vt.SessionID
}

func sessionIDs(list []map[string]any) []string {
	var ids []string
	for _, s := range list {
		ids = append(ids, s["session_id"].(string))
	}
	return ids
}

func TestOwnSessionsList(t *testing.T) {
	e := newOwnEnv(t, nil)
	laptop := from("Firefox/140 (laptop)", "192.0.2.1")
	a1 := e.loginFrom("alice", "wonderland", laptop)
	e.clock.Advance(time.Second)
	a2 := e.loginFrom("alice", "wonderland", from("Safari/17 (phone)", "198.51.100.2"))
	b := e.loginFrom("bob", "builder", laptop)

	list := e.ownSessions(with(bearer(a1), "User-Agent", "ignored"))
	if got, want := sessionIDs(list), []string{e.sidOf(a1), e.sidOf(a2)}; !slices.Equal(got, want) {
		t.Fatalf("alice's sessions = %q, want %q (oldest first, never bob's %q)", got, want, e.sidOf(b))
	}
	first, second := list[0], list[1]
	if first["current"] != true || second["current"] != false {
		t.Errorf("current = %v, %v; want true, false", first["current"], second["current"])
	}
	if second["user_agent"] != "Safari/17 (phone)" || second["client"] != "198.51.100.2" || second["bound"] != false {
		t.Errorf("second session = %v, want the phone's user agent and address, unbound", second)
	}
	for _, k := range []string{"created_at", "refreshed_at", "expires_at"} {
		ts, _ := first[k].(string)
		if _, err := time.Parse(time.RFC3339, ts); err != nil || !strings.HasSuffix(ts, "Z") {
			t.Errorf("%s = %q: want RFC 3339 in UTC (%v)", k, ts, err)
		}
	}

	// A refresh from elsewhere: the list shows it as the last refresh's,
	// and keeps the login's.
	e.clock.Advance(16 * time.Minute)
	res := e.do("POST", "/auth/refresh", with(bearer(a1), "User-Agent", "Firefox/141 (laptop)", "X-Forwarded-For", "203.0.113.3"), "")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("refresh: status = %d, want 200", res.StatusCode)
	}
	var tr tokenResponse
	json.Unmarshal([]byte(readBody(t, res)), &tr)
	list = e.ownSessions(bearer(tr.AccessToken))
	got := list[0]
	if got["user_agent"] != "Firefox/141 (laptop)" || got["client"] != "203.0.113.3" ||
		got["login_user_agent"] != "Firefox/140 (laptop)" || got["login_client"] != "192.0.2.1" || got["current"] != true {
		t.Errorf("after the refresh: %v; want the refresh's user agent and client, the login's kept", got)
	}
	if got["refreshed_at"] != e.clock.Now().Format(time.RFC3339) {
		t.Errorf("refreshed_at = %v, want %v", got["refreshed_at"], e.clock.Now().Format(time.RFC3339))
	}

	// An expired token lists nothing, though it could still refresh.
	res = e.do("GET", "/auth/sessions", bearer(a2), "")
	if res.StatusCode != http.StatusUnauthorized || errorOf(t, res).Error != errInvalidToken {
		t.Errorf("GET /auth/sessions with an expired token: status = %d, want 401 invalid_token", res.StatusCode)
	}
	if res := e.do("GET", "/auth/sessions", nil, ""); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /auth/sessions without a token: status = %d, want 401", res.StatusCode)
	}
	if res := e.do("POST", "/auth/sessions", bearer(tr.AccessToken), ""); res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET" {
		t.Errorf("POST /auth/sessions: status = %d Allow %q, want 405 GET", res.StatusCode, res.Header.Get("Allow"))
	}
}

func TestEndOwnSession(t *testing.T) {
	e := newOwnEnv(t, func(c *Config, d *Deps) { c.Revocation = RevocationEveryRequest })
	a1 := e.mustLogin("alice", "wonderland")
	a2 := e.mustLogin("alice", "wonderland")
	b := e.mustLogin("bob", "builder")

	// Bob's session and one that does not exist get the same answer.
	var bodies []string
	for _, id := range []string{e.sidOf(b), "NOSUCHSESSION234567ABCDEFG", ""} {
		res := e.do("DELETE", "/auth/sessions/"+id, bearer(a1), "")
		if res.StatusCode != http.StatusNotFound {
			t.Fatalf("alice DELETE /auth/sessions/%s: status = %d, want 404", id, res.StatusCode)
		}
		bodies = append(bodies, readBody(t, res))
	}
	if bodies[0] != bodies[1] {
		t.Errorf("404 for bob's session %q differs from that for an unknown one %q", bodies[0], bodies[1])
	}
	if res := e.do("GET", "/api/x", bearer(b), ""); res.StatusCode != http.StatusOK {
		t.Fatalf("bob after alice's attempt: status = %d, want 200", res.StatusCode)
	}

	if res := e.do("DELETE", "/auth/sessions/"+e.sidOf(a2), bearer(a1), ""); res.StatusCode != http.StatusNoContent {
		t.Fatalf("alice DELETE her other session: status = %d, want 204", res.StatusCode)
	}
	if res := e.do("GET", "/api/x", bearer(a2), ""); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("the ended session under every_request: status = %d, want 401", res.StatusCode)
	}
	if res := e.do("GET", "/api/x", bearer(a1), ""); res.StatusCode != http.StatusOK {
		t.Errorf("the caller's own session: status = %d, want 200", res.StatusCode)
	}
	e.clock.Advance(16 * time.Minute)
	if res, _ := e.refresh(a2); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("refresh of the ended session: status = %d, want 401", res.StatusCode)
	}
	if res := e.do("GET", "/auth/sessions/"+e.sidOf(a1), bearer(a1), ""); res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /auth/sessions/ID: status = %d, want 405", res.StatusCode)
	}
}

func TestLogoutScope(t *testing.T) {
	e := newOwnEnv(t, func(c *Config, d *Deps) { c.Revocation = RevocationEveryRequest })
	a := []string{e.mustLogin("alice", "wonderland"), e.mustLogin("alice", "wonderland"), e.mustLogin("alice", "wonderland")}
	b := e.mustLogin("bob", "builder")
	api := func(tok string) int { return e.do("GET", "/api/x", bearer(tok), "").StatusCode }

	for _, body := range []string{`{"scope":"everyone"}`, `{"scope":"ALL"}`, `{"scope":""}`, `{"scope":["all"]}`,
		`scope=all`, `{"scope":"all"} {"scope":"others"}`} {
		res := e.do("POST", "/auth/logout", with(bearer(a[0]), "Content-Type", "application/json"), body)
		if res.StatusCode != http.StatusBadRequest || errorOf(t, res).Error != errInvalidRequest {
			t.Errorf("logout %s: status = %d, want 400 invalid_request", body, res.StatusCode)
		}
	}
	if got := api(a[0]) + api(a[1]) + api(a[2]); got != 3*http.StatusOK {
		t.Fatalf("after refused logouts: statuses sum to %d, want every session live", got)
	}

	revokedBefore := counter(t, e.metrics.SessionsRevoked.WithLabelValues("logout"))
	if res := e.do("POST", "/auth/logout", bearer(a[0]), `{"scope":"others"}`); res.StatusCode != http.StatusNoContent {
		t.Fatalf("logout others: status = %d, want 204", res.StatusCode)
	} else if c := res.Header.Get("Set-Cookie"); c != "" {
		t.Errorf("logout others in bearer delivery set a cookie: %q", c)
	}
	if api(a[0]) != http.StatusOK || api(a[1]) != http.StatusUnauthorized || api(a[2]) != http.StatusUnauthorized || api(b) != http.StatusOK {
		t.Errorf("after logout others: alice %d %d %d, bob %d; want 200 401 401, 200", api(a[0]), api(a[1]), api(a[2]), api(b))
	}
	if got := counter(t, e.metrics.SessionsRevoked.WithLabelValues("logout")) - revokedBefore; got != 2 {
		t.Errorf("sessions revoked by logout others = %v, want 2", got)
	}

	a3 := e.mustLogin("alice", "wonderland")
	if res := e.do("POST", "/auth/logout", bearer(a[0]), `{"scope":"all"}`); res.StatusCode != http.StatusNoContent {
		t.Fatalf("logout all: status = %d, want 204", res.StatusCode)
	}
	if api(a[0]) != http.StatusUnauthorized || api(a3) != http.StatusUnauthorized || api(b) != http.StatusOK {
		t.Errorf("after logout all: alice %d %d, bob %d; want 401 401, 200", api(a[0]), api(a3), api(b))
	}
	e.clock.Advance(16 * time.Minute)
	for i, tok := range []string{a[0], a[1], a3} {
		if res, _ := e.refresh(tok); res.StatusCode != http.StatusUnauthorized {
			t.Errorf("refresh of alice's session %d: status = %d, want 401", i, res.StatusCode)
		}
	}
	// An ended session's token ends nothing more; bob's stays.
	if res := e.do("POST", "/auth/logout", bearer(a[0]), `{"scope":"all"}`); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("logout all with an ended session's token: status = %d, want 401", res.StatusCode)
	}
	// {} and no body still end the caller's own session, as before.
	b2 := e.mustLogin("bob", "builder")
	if res := e.do("POST", "/auth/logout", bearer(b2), `{}`); res.StatusCode != http.StatusNoContent || api(b2) != http.StatusUnauthorized {
		t.Errorf("logout {}: status = %d, then %d; want 204, then 401", res.StatusCode, api(b2))
	}
}

func TestOwnSessionsCSRF(t *testing.T) {
	e := newOwnEnv(t, func(c *Config, d *Deps) { c.Delivery = DeliveryBoth })
	a1 := e.mustLogin("alice", "wonderland")
	a2 := e.mustLogin("alice", "wonderland")
	cookie := func(tok string, kv ...string) http.Header {
		return with(http.Header{"Cookie": {"__Host-gateway=" + tok}}, kv...)
	}
	tests := []struct {
		name, method, target, body string
		h                          http.Header
		want                       int
	}{
		{"DELETE without X-Requested-With", "DELETE", "/auth/sessions/" + e.sidOf(a2), "", cookie(a1), 403},
		{"DELETE from a foreign origin", "DELETE", "/auth/sessions/" + e.sidOf(a2), "", cookie(a1, "X-Requested-With", "x", "Origin", "https://evil.example"), 403},
		{"logout others without X-Requested-With", "POST", "/auth/logout", `{"scope":"others"}`, cookie(a1), 403},
		{"logout all from Origin null", "POST", "/auth/logout", `{"scope":"all"}`, cookie(a1, "X-Requested-With", "x", "Origin", "null"), 403},
		{"GET is safe", "GET", "/auth/sessions", "", cookie(a1), 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if res := e.do(tt.method, tt.target, tt.h, tt.body); res.StatusCode != tt.want {
				t.Fatalf("status = %d, want %d", res.StatusCode, tt.want)
			}
		})
	}
	if list := e.ownSessions(bearer(a1)); len(list) != 2 {
		t.Fatalf("after the refused requests alice has %d sessions, want 2", len(list))
	}
	// With the header, from the page's own origin: it works, and ending
	// the current session clears the cookie.
	h := cookie(a1, "X-Requested-With", "fetch")
	h.Set("Origin", "http://"+e.srv.Listener.Addr().String())
	res := e.do("DELETE", "/auth/sessions/"+e.sidOf(a1), h, "")
	if res.StatusCode != http.StatusNoContent || !strings.Contains(res.Header.Get("Set-Cookie"), "Max-Age=0") {
		t.Fatalf("DELETE own current session: status = %d, Set-Cookie %q; want 204 and the cookie cleared", res.StatusCode, res.Header.Get("Set-Cookie"))
	}
}

func TestSessionCreatedEvent(t *testing.T) {
	var logs logtest.Buffer
	e := newOwnEnv(t, withLogger(&logs, slog.LevelInfo))
	ua := "Mozilla/5.0 " + strings.Repeat("x", 1000)
	tok := e.loginFrom("alice", "wonderland", from(ua, "192.0.2.44"))
	lines := logs.WaitLines(t, 1, map[string]any{"event": EventSessionCreated})
	l := lines[0]
	if l["subject"] != "alice" || l["session"] != e.sidOf(tok) || l["client"] != "192.0.2.44" || l["bound"] != false {
		t.Errorf("session_created line = %v, want alice's session from 192.0.2.44, unbound", l)
	}
	if got, _ := l["user_agent"].(string); !strings.HasPrefix(ua, got) || len(got) != 256 {
		t.Errorf("user_agent of %d bytes, want the first 256 of the request's", len(got))
	}
	if strings.Contains(logs.String(), tok) || strings.Contains(logs.String(), "wonderland") {
		t.Error("the log holds the token or the password")
	}
	if got := counter(t, e.metrics.SessionsCreated.WithLabelValues("false")); got != 1 {
		t.Errorf(`gateway_sessions_created_total{bound="false"} = %v, want 1`, got)
	}
	if got := counter(t, e.metrics.SessionsCreated.WithLabelValues("true")); got != 0 {
		t.Errorf(`gateway_sessions_created_total{bound="true"} = %v, want 0`, got)
	}
}

// TestOwnSessionPaths: only /auth/sessions/{one segment} is the endpoint;
// a deeper path, and one that decodes again to it, are not.
func TestOwnSessionPaths(t *testing.T) {
	e := newOwnEnv(t, func(c *Config, d *Deps) {
		c.Routes = append(c.Routes, Route{Prefix: "/", Upstream: c.Routes[0].Upstream, Auth: AuthNone})
	})
	a := e.mustLogin("alice", "wonderland")
	sid := e.sidOf(a)
	if res := e.do("DELETE", "/auth/sessions/"+sid+"/x", bearer(a), ""); res.StatusCode != http.StatusOK {
		t.Errorf("DELETE /auth/sessions/ID/x: status = %d, want 200 from the upstream", res.StatusCode)
	}
	if res := e.do("DELETE", "/auth/session%2573/"+sid, bearer(a), ""); res.StatusCode != http.StatusBadRequest {
		t.Errorf("a path decoding again to /auth/sessions/ID: status = %d, want 400", res.StatusCode)
	}
	if list := e.ownSessions(bearer(a)); len(list) != 1 {
		t.Errorf("alice has %d sessions after the other paths, want 1", len(list))
	}
}

// TestOwnEndingsCloseTunnels: every session a user ends (one by ID, the
// others, all) has its WebSockets closed; those of sessions that stay, and
// of another user, keep echoing.
func TestOwnEndingsCloseTunnels(t *testing.T) {
	var logs logtest.Buffer
	e := tunnelEnv(t, &logs, nil)
	tokA, _ := e.session("alice")
	e.clock.Advance(time.Millisecond)
	tokA2, a2 := e.session("alice")
	e.clock.Advance(time.Millisecond)
	tokA3, _ := e.session("alice")
	tokB, _ := e.session("bob")
	ta := openTunnel(t, e.addr(), "/ws/a", tokA)
	ta2 := openTunnel(t, e.addr(), "/ws/a2", tokA2)
	ta3 := openTunnel(t, e.addr(), "/ws/a3", tokA3)
	tb := openTunnel(t, e.addr(), "/ws/b", tokB)

	if res := e.do("DELETE", "/auth/sessions/"+a2.ID, bearer(tokA), ""); res.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE alice's second session: status = %d, want 204", res.StatusCode)
	}
	ta2.ClosedWithin("the tunnel of the session ended by ID", 5*time.Second)
	ta.Echoes()
	ta3.Echoes()
	if res := e.do("POST", "/auth/logout", bearer(tokA), `{"scope":"others"}`); res.StatusCode != http.StatusNoContent {
		t.Fatalf("logout others: status = %d, want 204", res.StatusCode)
	}
	ta3.ClosedWithin("the tunnel of another session ended by logout others", 5*time.Second)
	ta.Echoes()
	if res := e.do("POST", "/auth/logout", bearer(tokA), `{"scope":"all"}`); res.StatusCode != http.StatusNoContent {
		t.Fatalf("logout all: status = %d, want 204", res.StatusCode)
	}
	ta.ClosedWithin("the caller's own tunnel, after logout all", 5*time.Second)
	tb.Echoes()
	tb.Close()
	awaitCond(t, "no tunnels registered", func() bool { return e.gw.tunnels.count() == 0 })
}
