package proxy

import (
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/logtest"
)

// withLogger has the gateway log JSON lines to buf, from level up.
func withLogger(buf *logtest.Buffer, level slog.Level) func(*Config, *Deps) {
	return func(_ *Config, d *Deps) {
		d.Logger = slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: level}))
	}
}

func TestAccessLogOneLinePerRequest(t *testing.T) {
	var logs logtest.Buffer
	e := newEnv(t, withLogger(&logs, slog.LevelInfo))
	tok, _ := e.session("alice")
	tests := []struct {
		name, method, target string
		header               http.Header
		route                string
		status               float64
		subject              any // nil: no subject attribute
	}{
		{"verified", "GET", "/api/x", bearer(tok), "/api/", 200, "alice"},
		{"no token", "GET", "/api/x", nil, "/api/", 401, nil},
		{"bad token", "GET", "/api/x", bearer("e30.e30.sig"), "/api/", 401, nil},
		{"public route", "POST", "/public/x", nil, "/public/", 200, nil},
		{"own endpoint", "GET", "/.well-known/jwks.json", nil, "auth", 200, nil},
		{"unmatched", "GET", "/nowhere", nil, "unmatched", 404, nil},
		{"bad path", "GET", "/api/../x", nil, "unmatched", 400, nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.header.Clone()
			if h == nil {
				h = http.Header{}
			}
			id := "test-" + string(rune('a'+i))
			h.Set("X-Request-Id", id)
			res := e.do(tt.method, tt.target, h, "")
			body := readBody(t, res)
			line := logs.WaitLines(t, 1, map[string]any{"msg": "request", "request_id": id})[0]
			want := map[string]any{
				"level": "INFO", "method": tt.method, "route": tt.route, "status": tt.status,
				"bytes": float64(len(body)), "client": "127.0.0.1", "subject": tt.subject,
			}
			for k, v := range want {
				if line[k] != v {
					t.Errorf("access line %s = %v, want %v (line %v)", k, line[k], v, line)
				}
			}
			if d, ok := line["duration"].(float64); !ok || d <= 0 {
				t.Errorf("access line duration = %v, want a positive number of nanoseconds", line["duration"])
			}
		})
	}
}

func TestAccessLogOffAboveInfo(t *testing.T) {
	var logs logtest.Buffer
	e := newEnv(t, withLogger(&logs, slog.LevelWarn))
	res := e.do("GET", "/public/x", nil, "")
	readBody(t, res)
	if res.StatusCode != 200 {
		t.Fatalf("status = %d, want 200", res.StatusCode)
	}
	// A second request: when its line would be written, the first's is.
	readBody(t, e.do("GET", "/public/y", nil, ""))
	if got := logs.String(); got != "" {
		t.Errorf("log at level warn = %q, want no access line", got)
	}
}

var generatedID = regexp.MustCompile(`^[A-Z2-7]{26}$`)

func TestRequestID(t *testing.T) {
	e := newEnv(t, nil)
	tok, _ := e.session("alice")
	long := strings.Repeat("a", 128)
	tests := []struct {
		name   string
		values []string // the client's X-Request-Id headers
		kept   bool
	}{
		{"well-formed", []string{"req-1.2_3:ab-CD"}, true},
		{"128 characters", []string{long}, true},
		{"absent", nil, false},
		{"empty", []string{""}, false},
		{"129 characters", []string{long + "a"}, false},
		{"space", []string{"a b"}, false},
		{"markup", []string{"<script>"}, false},
		{"non-ASCII", []string{"idé"}, false},
		{"two headers", []string{"one", "two"}, false},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := bearer(tok)
			h["X-Request-Id"] = tt.values
			res := e.do("GET", "/api/x", h, "")
			readBody(t, res)
			got := res.Header.Values("X-Request-Id")
			if len(got) != 1 {
				t.Fatalf("response X-Request-Id = %q, want one value", got)
			}
			if tt.kept && got[0] != tt.values[0] {
				t.Errorf("response X-Request-Id = %q, want the client's %q", got[0], tt.values[0])
			}
			if !tt.kept && !generatedID.MatchString(got[0]) {
				t.Errorf("response X-Request-Id = %q, want a generated ID", got[0])
			}
			if up := e.upstream.last(t).Header.Values("X-Request-Id"); len(up) != 1 || up[0] != got[0] {
				t.Errorf("upstream X-Request-Id = %q, want [%q]", up, got[0])
			}
			if !tt.kept {
				if seen[got[0]] {
					t.Errorf("generated ID %q seen twice", got[0])
				}
				seen[got[0]] = true
			}
		})
	}
}

func TestRequestIDOnOwnAnswers(t *testing.T) {
	e := newEnv(t, nil)
	e.upstream.respond = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", "from-upstream")
		w.WriteHeader(http.StatusTeapot)
	}
	tok, _ := e.session("alice")
	tests := []struct {
		name, target string
		header       http.Header
		status       int
	}{
		{"no token", "/api/x", nil, 401},
		{"unmatched", "/nowhere", nil, 404},
		{"bad path", "/api/%2e%2e/x", nil, 400},
		{"refresh refused", "/auth/refresh", nil, 405},
		{"upstream's own ID replaced", "/api/x", bearer(tok), http.StatusTeapot},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.header.Clone()
			if h == nil {
				h = http.Header{}
			}
			h.Set("X-Request-Id", "client-id-1")
			res := e.do("GET", tt.target, h, "")
			if res.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d", res.StatusCode, tt.status)
			}
			if got := res.Header.Values("X-Request-Id"); len(got) != 1 || got[0] != "client-id-1" {
				t.Errorf("X-Request-Id = %q, want [client-id-1]", got)
			}
		})
	}
}

// TestSecurityEventsAreLogged checks that each security event writes one
// line with its "event" attribute and the request ID.
func TestSecurityEventsAreLogged(t *testing.T) {
	tests := []struct {
		name  string
		event string
		level string
		do    func(e *env)
	}{
		{"login failure", EventLoginFailed, "WARN", func(e *env) { e.login("alice", "wrong") }},
		{"rate limit", EventRateLimited, "WARN", func(e *env) {
			for range 4 {
				e.login("bob", "wrong")
			}
		}},
		{"reuse detected", EventReuseDetected, "WARN", func(e *env) {
			first := e.mustLogin("alice", "wonderland")
			e.clock.Advance(16 * time.Minute)
			if res, _ := e.refresh(first); res.StatusCode != 200 {
				e.t.Fatalf("refresh: status = %d, want 200", res.StatusCode)
			}
			e.clock.Advance(time.Minute)
			e.refresh(first)
		}},
		{"logout", EventSessionRevoked, "INFO", func(e *env) {
			tok := e.mustLogin("alice", "wonderland")
			if res := e.do("POST", "/auth/logout", bearer(tok), ""); res.StatusCode != 204 {
				e.t.Fatalf("logout: status = %d, want 204", res.StatusCode)
			}
		}},
		{"spoofed header", EventSpoofedHeader, "WARN", func(e *env) {
			e.do("GET", "/public/x", http.Header{"X-Auth-Subject": {"root"}}, "")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs logtest.Buffer
			e := newSessionEnv(t, withLogger(&logs, slog.LevelInfo))
			tt.do(e)
			line := logs.WaitLines(t, 1, map[string]any{"event": tt.event})[0]
			if line["level"] != tt.level {
				t.Errorf("level = %v, want %s", line["level"], tt.level)
			}
			if id, _ := line["request_id"].(string); !generatedID.MatchString(id) {
				t.Errorf("request_id = %v, want the request's ID", line["request_id"])
			}
			for _, secret := range []string{"wonderland", "wrong"} {
				if strings.Contains(logs.String(), secret) {
					t.Errorf("the log holds the password %q:\n%s", secret, logs.String())
				}
			}
		})
	}
}
