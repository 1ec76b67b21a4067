package adversarial

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/spa-gateway/gateway/sessionstore"
)

// liveIDs are subject's live sessions in the store.
func (e *env) liveIDs(subject string) []string {
	e.tb.Helper()
	list, err := e.store.List(e.tb.Context(), subject, epoch)
	if err != nil {
		e.tb.Fatal(err)
	}
	var ids []string
	for _, s := range list {
		ids = append(ids, s.ID)
	}
	slices.Sort(ids)
	return ids
}

// TestOwnSessionEnumeration: a user probing for other users' session IDs
// learns nothing. Bob's real ID, a made-up one, variants of bob's (case,
// padding, encodings) and paths around the endpoint all get the answer an
// unknown ID gets, or a refusal before any session is looked at; bob's
// session stays live, and alice's list never shows it.
func TestOwnSessionEnumeration(t *testing.T) {
	e := newEnv(t, envOptions{})
	alice, _ := e.storedSession(stored{})
	_, bob := e.storedSession(stored{subject: "bob"})
	notFound := e.send(rawReq{method: "DELETE", target: "/auth/sessions/" + randomID(t), lines: []string{bearer(alice)}})
	if notFound.status != http.StatusNotFound {
		t.Fatalf("DELETE of an unknown session: status = %d, want 404", notFound.status)
	}
	tests := []struct {
		name, target string
		want         int // 404: the unknown session's answer, body and all
	}{
		{"bob's session", "/auth/sessions/" + bob.ID, 404},
		{"bob's session in other case", "/auth/sessions/" + strings.ToUpper(bob.ID), 404},
		{"bob's session with a query", "/auth/sessions/" + bob.ID + "?subject=bob", 404},
		{"bob's session, trailing space encoded", "/auth/sessions/" + bob.ID + "%20", 404},
		{"bob's session, percent-encoded twice", "/auth/sessions/" + strings.ReplaceAll(bob.ID, "-", "%252D"), 400},
		{"bob's session behind a dot segment", "/auth/sessions/x/../" + bob.ID, 400},
		{"bob's session behind an encoded slash", "/auth/sessions/x%2F" + bob.ID, 400},
		{"the subject instead of an ID", "/auth/sessions/bob", 404},
		{"an empty ID", "/auth/sessions/", 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := e.send(rawReq{method: "DELETE", target: tt.target, lines: []string{bearer(alice)}})
			if a.status != tt.want {
				t.Fatalf("DELETE %s: status = %d, want %d", tt.target, a.status, tt.want)
			}
			if tt.want == http.StatusNotFound && a.body != notFound.body {
				t.Errorf("DELETE %s: body %q, want the unknown session's %q", tt.target, a.body, notFound.body)
			}
			if got := e.liveIDs("bob"); !slices.Equal(got, []string{bob.ID}) {
				t.Fatalf("bob's live sessions = %q, want %q", got, []string{bob.ID})
			}
		})
	}
	a := e.send(get("/auth/sessions?subject=bob", bearer(alice)))
	if a.status != http.StatusOK || strings.Contains(a.body, bob.ID) || strings.Contains(a.body, `"bob"`) {
		t.Errorf("GET /auth/sessions?subject=bob: status %d, body %s; want 200 with alice's sessions only", a.status, a.body)
	}
	if err := nothing(e); err != nil {
		t.Error(err)
	}
}

// TestOwnSessionTokenTricks: what a token must be to see or end sessions.
// One whose sid names another subject's session (a token no login of ours
// mints, but the rule must not depend on that) neither lists nor ends
// anything; an expired one lists nothing; one of a session that is over
// ends nothing more.
func TestOwnSessionTokenTricks(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, bob := e.storedSession(stored{subject: "bob"})
	crossed, _ := e.storedSession(stored{sid: bob.ID}) // alice's token naming bob's session
	expired, _ := e.token(true)
	ended, endedSession := e.storedSession(stored{})
	if _, err := e.store.Revoke(t.Context(), endedSession.ID, sessionstore.ReasonReuseDetected, epoch); err != nil {
		t.Fatal(err)
	}
	other, otherSession := e.storedSession(stored{})

	tests := []struct {
		name string
		req  rawReq
		want int
	}{
		{"crossed sid lists", get("/auth/sessions", bearer(crossed)), 401},
		{"crossed sid ends bob's", rawReq{method: "DELETE", target: "/auth/sessions/" + bob.ID, lines: []string{bearer(crossed)}}, 401},
		{"crossed sid logs out all", post("/auth/logout", `{"scope":"all"}`, bearer(crossed)), 401},
		{"crossed sid logs out others", post("/auth/logout", `{"scope":"others"}`, bearer(crossed)), 401},
		{"expired token lists", get("/auth/sessions", bearer(expired)), 401},
		{"expired token ends one", rawReq{method: "DELETE", target: "/auth/sessions/" + otherSession.ID, lines: []string{bearer(expired)}}, 401},
		{"revoked session's token lists", get("/auth/sessions", bearer(ended)), 401},
		{"revoked session's token logs out all", post("/auth/logout", `{"scope":"all"}`, bearer(ended)), 401},
		{"revoked session's token ends one", rawReq{method: "DELETE", target: "/auth/sessions/" + otherSession.ID, lines: []string{bearer(ended)}}, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if a := e.send(tt.req); a.status != tt.want {
				t.Fatalf("status = %d, want %d (%s)", a.status, tt.want, a.body)
			}
			if got := e.liveIDs("bob"); !slices.Equal(got, []string{bob.ID}) {
				t.Fatalf("bob's live sessions = %q, want his one", got)
			}
			if !slices.Contains(e.liveIDs(user), otherSession.ID) {
				t.Fatalf("alice's other session ended")
			}
		})
	}
	if a := e.send(get("/api/x", bearer(other))); a.status != http.StatusOK {
		t.Errorf("alice's other session afterwards: status = %d, want 200", a.status)
	}
}

// TestLogoutScopeTricks: a scope that is not exactly "others" or "all",
// or that arrives anywhere but a JSON body, ends nothing beyond what plain
// logout ends; and whatever the scope, another subject's sessions stay.
func TestLogoutScopeTricks(t *testing.T) {
	bodies := []struct {
		name string
		// query is the logout target's query, "" for none.
		query, body string
		lines       []string
		want        int
		// ends: "none", "own" (plain logout) or "others"
		ends string
	}{
		{"upper case", "", `{"scope":"ALL"}`, nil, 400, "none"},
		{"padded", "", `{"scope":" all"}`, nil, 400, "none"},
		{"NUL after", "", `{"scope":"all\u0000"}`, nil, 400, "none"},
		{"Cyrillic а", "", `{"scope":"аll"}`, nil, 400, "none"},
		{"array", "", `{"scope":["all"]}`, nil, 400, "none"},
		{"number", "", `{"scope":1}`, nil, 400, "none"},
		{"empty", "", `{"scope":""}`, nil, 400, "none"},
		{"subject", "", `{"scope":"bob"}`, nil, 400, "none"},
		{"form", "", `scope=all`, []string{"Content-Type: application/x-www-form-urlencoded"}, 400, "none"},
		{"two documents", "", `{"scope":"others"}{"scope":"all"}`, nil, 400, "none"},
		{"in the query only", "scope=all", ``, nil, 204, "own"},
		{"others, with a subject", "", `{"scope":"others","subject":"bob"}`, nil, 204, "others"},
	}
	for _, tt := range bodies {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			alice, mine := e.storedSession(stored{})
			_, second := e.storedSession(stored{})
			_, bob := e.storedSession(stored{subject: "bob"})
			target := "/auth/logout"
			if tt.query != "" {
				target += "?" + tt.query
			}
			a := e.send(post(target, tt.body, append([]string{bearer(alice)}, tt.lines...)...))
			if a.status != tt.want {
				t.Fatalf("logout %s: status = %d, want %d (%s)", tt.body, a.status, tt.want, a.body)
			}
			want := map[string][]string{
				"none":   {mine.ID, second.ID},
				"own":    {second.ID},
				"others": {mine.ID},
			}[tt.ends]
			slices.Sort(want)
			if got := e.liveIDs(user); !slices.Equal(got, want) {
				t.Errorf("alice's live sessions = %q, want %q", got, want)
			}
			if got := e.liveIDs("bob"); !slices.Equal(got, []string{bob.ID}) {
				t.Errorf("bob's live sessions = %q, want his one", got)
			}
		})
	}
}

// TestOwnSessionsListShape: the list is JSON with the documented fields,
// never a token or a jti, and not cacheable.
func TestOwnSessionsListShape(t *testing.T) {
	e := newEnv(t, envOptions{})
	alice, s := e.storedSession(stored{})
	a := e.send(get("/auth/sessions", bearer(alice), "User-Agent: probe"))
	if a.status != http.StatusOK || a.header.Get("Cache-Control") != "no-store" || a.header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /auth/sessions: status %d, Cache-Control %q, Content-Type %q; want 200, no-store, application/json",
			a.status, a.header.Get("Cache-Control"), a.header.Get("Content-Type"))
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(a.body), &list); err != nil || len(list) != 1 {
		t.Fatalf("body %s: %v, want one session", a.body, err)
	}
	for _, k := range []string{"session_id", "created_at", "refreshed_at", "user_agent", "client", "bound", "current"} {
		if _, ok := list[0][k]; !ok {
			t.Errorf("field %q missing from %v", k, list[0])
		}
	}
	for _, secret := range []string{s.JTI, alice} {
		if strings.Contains(a.body, secret) {
			t.Errorf("the list holds a jti or the token: %s", a.body)
		}
	}
	if got := fmt.Sprint(list[0]["session_id"]); got != s.ID {
		t.Errorf("session_id = %s, want %s", got, s.ID)
	}
}
