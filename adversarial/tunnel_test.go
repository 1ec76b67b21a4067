package adversarial

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/logtest"
	"github.com/spa-gateway/gateway/proxy"
	"github.com/spa-gateway/gateway/proxy/upstreamtest"
	"github.com/spa-gateway/gateway/sessionstore"
)

// open upgrades target with tok as a bearer token, requiring 101 and an
// echo.
func (e *env) open(target, tok string) *upstreamtest.WebSocket {
	e.tb.Helper()
	ws := upstreamtest.DialWebSocket(e.tb, e.addr, target, bearer(tok))
	if code := ws.Response.StatusCode; code != http.StatusSwitchingProtocols {
		e.tb.Fatalf("upgrade %s: status %d, want 101", target, code)
	}
	ws.Echoes()
	return ws
}

// TestTunnelOutlivesSession: an attacker holding a session's token opens
// WebSockets and keeps them after the session is ended, in every way one
// ends. Each must close (all the session's connections, at once unless the
// case is the watcher's), and a bystander session's connection must stay
// open; no token may be logged. Before the fix every one of them stayed
// open (issue 11, item 8).
func TestTunnelOutlivesSession(t *testing.T) {
	type tunnelCase struct {
		name         string
		everyRequest bool
		maxLifetime  time.Duration
		// watch runs the watcher every 10ms.
		watch bool
		// end ends the session s (token tok) as the case says; clk is the
		// gateway's clock.
		end func(t *testing.T, e *env, clk *clock, s sessionstore.Session, tok string)
	}
	revoke := func(t *testing.T, e *env, s sessionstore.Session, reason string) {
		if _, err := e.store.Revoke(t.Context(), s.ID, reason, epoch); err != nil {
			t.Fatal(err)
		}
	}
	tests := []tunnelCase{
		{name: "victim logs out", end: func(t *testing.T, e *env, _ *clock, _ sessionstore.Session, tok string) {
			if a := e.send(post("/auth/logout", "", bearer(tok))); a.status != http.StatusNoContent {
				t.Fatalf("logout: %d, want 204", a.status)
			}
		}},
		{name: "administrator revokes the session", end: func(t *testing.T, e *env, _ *clock, s sessionstore.Session, _ string) {
			revoke(t, e, s, sessionstore.ReasonAdmin)
			e.gw.EndSession(s.ID, sessionstore.ReasonAdmin)
		}},
		{name: "administrator revokes the user", end: func(t *testing.T, e *env, _ *clock, s sessionstore.Session, _ string) {
			e.store.RevokeSubject(t.Context(), "mallory-victim", sessionstore.ReasonAdmin, epoch)
			e.gw.EndSubject("mallory-victim", sessionstore.ReasonAdmin)
		}},
		{name: "stolen token replayed after the victim's refresh (reuse detection)", end: func(t *testing.T, e *env, clk *clock, _ sessionstore.Session, tok string) {
			clk.Set(epoch.Add(16 * time.Minute)) // the token expired: refreshable
			if a := e.send(post("/auth/refresh", "", bearer(tok))); a.status != http.StatusOK {
				t.Fatalf("victim's refresh: %d, want 200", a.status)
			}
			if a := e.send(post("/auth/refresh", "", bearer(tok))); a.status != http.StatusUnauthorized || !strings.Contains(a.body, "reuse") {
				t.Fatalf("attacker's refresh: %d %s, want 401 reuse", a.status, a.body)
			}
		}},
		{name: "revoked on another replica, every_request sees it on the next request", everyRequest: true,
			end: func(t *testing.T, e *env, _ *clock, s sessionstore.Session, tok string) {
				revoke(t, e, s, sessionstore.ReasonLogout)
				if a := e.send(get("/api/x", bearer(tok))); a.status != http.StatusUnauthorized {
					t.Fatalf("request: %d, want 401", a.status)
				}
			}},
		{name: "revoked on another replica, seen by the watcher", watch: true,
			end: func(t *testing.T, e *env, _ *clock, s sessionstore.Session, _ string) {
				revoke(t, e, s, sessionstore.ReasonAdmin)
			}},
		{name: "session past its absolute end, seen by the watcher", watch: true,
			end: func(t *testing.T, e *env, clk *clock, s sessionstore.Session, _ string) {
				clk.Set(s.ExpiresAt)
			}},
		{name: "held past upgrade_max_lifetime", watch: true, maxLifetime: time.Minute,
			end: func(t *testing.T, e *env, clk *clock, _ sessionstore.Session, _ string) {
				clk.Set(epoch.Add(time.Minute))
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &logtest.Buffer{}
			clk := newClock()
			echo := upstreamtest.StartWebSocketEcho(t)
			e := newEnv(t, envOptions{
				config: func(c *proxy.Config) {
					if tt.everyRequest {
						c.Revocation = proxy.RevocationEveryRequest
					}
					c.Routes = append(c.Routes, proxy.Route{Prefix: "/ws/", Upstream: echo, Auth: proxy.AuthRequired,
						WebSocket: true, UpgradeMaxLifetime: tt.maxLifetime})
				},
				deps: func(d *proxy.Deps) {
					d.Now = clk.Now
					d.Logger = slog.New(slog.NewJSONHandler(logs, nil))
				},
				sessions: func(c *auth.SessionsConfig, _ *sessionstore.Store) {
					c.RefreshGrace = 0 // a replay is reuse at once
				},
			})
			tok, s := e.storedSession(stored{subject: "mallory-victim", iat: epoch, idle: time.Hour, absolute: 2 * time.Hour})
			bystanderTok, _ := e.storedSession(stored{iat: epoch, idle: 24 * time.Hour, absolute: 24 * time.Hour})
			if tt.watch {
				ctx, cancel := context.WithCancel(t.Context())
				t.Cleanup(cancel)
				go e.gw.WatchTunnels(ctx, 10*time.Millisecond)
			}
			attacker := []*upstreamtest.WebSocket{e.open("/ws/1", tok), e.open("/ws/2", tok)}
			bystander := e.open("/ws/b", bystanderTok)

			tt.end(t, e, clk, s, tok)
			for i, c := range attacker {
				c.ClosedWithin(fmt.Sprintf("the attacker's WebSocket %d", i+1), 5*time.Second)
			}
			if tt.maxLifetime == 0 {
				bystander.Echoes() // the bystander's WebSocket stays open
			}
			if !settle(5*time.Second, func() bool { return strings.Contains(logs.String(), `"event":"tunnel_closed"`) }) {
				t.Errorf("no tunnel_closed log line:\n%s", logs.String())
			}
			for _, secret := range []string{tok, bystanderTok} {
				if strings.Contains(logs.String(), secret) {
					t.Errorf("a token was logged:\n%s", logs.String())
				}
			}
		})
	}
}

// TestTunnelUpgradeOfEndedSession: a token whose session was revoked still
// passes plain requests until its exp under revocation = "refresh", but it
// must not open a WebSocket, which would outlive the token; nor may a
// token naming no stored session.
func TestTunnelUpgradeOfEndedSession(t *testing.T) {
	echo := upstreamtest.StartWebSocketEcho(t)
	e := newEnv(t, envOptions{config: func(c *proxy.Config) {
		c.Routes = append(c.Routes, proxy.Route{Prefix: "/ws/", Upstream: echo, Auth: proxy.AuthRequired, WebSocket: true})
	}})
	tok, s := e.token(false)
	if a := e.send(post("/auth/logout", "", bearer(tok))); a.status != http.StatusNoContent {
		t.Fatalf("logout: %d, want 204", a.status)
	}
	if code := upstreamtest.DialWebSocket(t, e.addr, "/ws/x", bearer(tok)).Response.StatusCode; code != http.StatusUnauthorized {
		t.Errorf("upgrade with a logged-out session's token: %d, want 401", code)
	}
	forged := e.mint(s, "no-such-session")
	if code := upstreamtest.DialWebSocket(t, e.addr, "/ws/x", bearer(forged)).Response.StatusCode; code != http.StatusUnauthorized {
		t.Errorf("upgrade with a token of no stored session: %d, want 401", code)
	}
}
