package proxy

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/logtest"
	"github.com/spa-gateway/gateway/proxy/upstreamtest"
	"github.com/spa-gateway/gateway/sessionstore"
)

// tunnelEnv is a gateway with a WebSocket route /ws/ (edit applied last)
// in front of an echo upstream, logging to logs.
func tunnelEnv(t testing.TB, logs *logtest.Buffer, edit func(*Config, *Deps), editSessions ...func(*auth.SessionsConfig, *sessionstore.Store)) *env {
	t.Helper()
	e := newEnv(t, func(c *Config, d *Deps) {
		c.Routes = append(c.Routes, Route{Prefix: "/ws/", Upstream: c.Routes[0].Upstream, Auth: AuthRequired, WebSocket: true})
		withLogger(logs, slog.LevelInfo)(c, d)
		if edit != nil {
			edit(c, d)
		}
	}, editSessions...)
	e.upstream.respond = upstreamtest.WebSocketEcho
	return e
}

func (e *env) addr() string { return e.srv.Listener.Addr().String() }

// TestTunnelClosedWhenItsSessionEnds opens three tunnels (two sessions of
// alice, one of bob), ends the first session in each way a session ends,
// and checks that exactly the tunnels of the ended sessions close, with a
// tunnel_closed log line that names the reason and never the token, and
// that the registry empties once every tunnel is gone.
func TestTunnelClosedWhenItsSessionEnds(t *testing.T) {
	type sessions struct {
		a, a2, b          sessionstore.Session
		tokA, tokA2, tokB string
	}
	tests := []struct {
		name         string
		everyRequest bool
		maxSessions  int // login.max_sessions_per_user, with alice/wonderland as a user
		end          func(t *testing.T, e *env, s sessions)
		reason       string
		alsoA2       bool // alice's other session's tunnel closes too
	}{
		{name: "logout", reason: "logout", end: func(t *testing.T, e *env, s sessions) {
			if res := e.do("POST", "/auth/logout", bearer(s.tokA), ""); res.StatusCode != http.StatusNoContent {
				t.Fatalf("logout: status = %d, want 204", res.StatusCode)
			}
		}},
		{name: "EndSession (admin revocation)", reason: "admin", end: func(t *testing.T, e *env, s sessions) {
			e.store.Revoke(t.Context(), s.a.ID, sessionstore.ReasonAdmin, e.clock.Now())
			if n := e.gw.EndSession(s.a.ID, sessionstore.ReasonAdmin); n != 1 {
				t.Errorf("EndSession = %d, want 1", n)
			}
		}},
		{name: "EndSubject (admin revocation of a user)", reason: "admin", alsoA2: true, end: func(t *testing.T, e *env, s sessions) {
			if n := e.gw.EndSubject("alice", sessionstore.ReasonAdmin); n != 2 {
				t.Errorf("EndSubject = %d, want 2", n)
			}
		}},
		{name: "reuse detected at refresh", reason: "reuse_detected", end: func(t *testing.T, e *env, s sessions) {
			e.clock.Advance(e.sessions.AccessTTL + time.Second)
			if res, _ := e.refresh(s.tokA); res.StatusCode != http.StatusOK {
				t.Fatalf("refresh: status = %d, want 200", res.StatusCode)
			}
			e.clock.Advance(e.sessions.RefreshGrace + time.Second)
			res, _ := e.refresh(s.tokA)
			if eb := errorOf(t, res); res.StatusCode != http.StatusUnauthorized || eb.Description != "token reuse detected" {
				t.Fatalf("refresh of the rotated token: %d %q, want 401 token reuse detected", res.StatusCode, eb.Description)
			}
		}},
		{name: "refresh finds the session revoked elsewhere", reason: "revoked", end: func(t *testing.T, e *env, s sessions) {
			e.store.Revoke(t.Context(), s.a.ID, sessionstore.ReasonAdmin, e.clock.Now())
			e.clock.Advance(e.sessions.AccessTTL + time.Second)
			if res, _ := e.refresh(s.tokA); res.StatusCode != http.StatusUnauthorized {
				t.Fatalf("refresh: status = %d, want 401", res.StatusCode)
			}
		}},
		{name: "every_request finds the session revoked elsewhere", everyRequest: true, reason: "admin", end: func(t *testing.T, e *env, s sessions) {
			e.store.Revoke(t.Context(), s.a.ID, sessionstore.ReasonAdmin, e.clock.Now())
			if res := e.do("GET", "/api/x", bearer(s.tokA), ""); res.StatusCode != http.StatusUnauthorized {
				t.Fatalf("request: status = %d, want 401", res.StatusCode)
			}
		}},
		{name: "login past max_sessions_per_user", maxSessions: 2, reason: "session_limit", end: func(t *testing.T, e *env, s sessions) {
			e.mustLogin("alice", "wonderland") // a third session: the least recently refreshed goes
		}},
		{name: "watcher: revoked elsewhere", reason: "logout", end: func(t *testing.T, e *env, s sessions) {
			e.store.Revoke(t.Context(), s.a.ID, sessionstore.ReasonLogout, e.clock.Now())
			e.gw.checkTunnels(t.Context())
		}},
		{name: "watcher: idle deadline passed", reason: "expired", end: func(t *testing.T, e *env, s sessions) {
			// The others stay active: refreshed at 50 minutes, their
			// idle deadline moves past the first's.
			e.clock.Advance(50 * time.Minute)
			for _, tok := range []string{s.tokA2, s.tokB} {
				if res, _ := e.refresh(tok); res.StatusCode != http.StatusOK {
					t.Fatalf("refresh: status = %d, want 200", res.StatusCode)
				}
			}
			e.gw.checkTunnels(t.Context())
			if n := e.gw.tunnels.count(); n != 3 {
				t.Fatalf("tunnels after a check at 50m = %d, want 3", n)
			}
			e.clock.Advance(11 * time.Minute)
			e.gw.checkTunnels(t.Context())
		}},
		{name: "watcher: session swept", reason: "unknown_session", end: func(t *testing.T, e *env, s sessions) {
			// Idle past its deadline, and deleted by a sweeper (another
			// gateway's) before this one checked.
			e.clock.Advance(50 * time.Minute)
			for _, tok := range []string{s.tokA2, s.tokB} {
				if res, _ := e.refresh(tok); res.StatusCode != http.StatusOK {
					t.Fatalf("refresh: status = %d, want 200", res.StatusCode)
				}
			}
			e.clock.Advance(11 * time.Minute)
			if n, err := e.store.Sweep(t.Context(), e.clock.Now()); err != nil || n != 1 {
				t.Fatalf("Sweep = %d, %v; want 1", n, err)
			}
			e.gw.checkTunnels(t.Context())
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs logtest.Buffer
			e := tunnelEnv(t, &logs, func(c *Config, d *Deps) {
				if tt.everyRequest {
					c.Revocation = RevocationEveryRequest
				}
				if tt.maxSessions > 0 {
					d.Login = usersFile(t, nil, "alice", "wonderland")
				}
			}, func(c *auth.SessionsConfig, _ *sessionstore.Store) { c.MaxSessionsPerUser = tt.maxSessions })
			var s sessions
			s.tokA, s.a = e.session("alice")
			e.clock.Advance(time.Millisecond)
			s.tokA2, s.a2 = e.session("alice")
			s.tokB, s.b = e.session("bob")
			a := openTunnel(t, e.addr(), "/ws/a", s.tokA)
			a2 := openTunnel(t, e.addr(), "/ws/a2", s.tokA2)
			b := openTunnel(t, e.addr(), "/ws/b", s.tokB)
			if n := e.gw.tunnels.count(); n != 3 {
				t.Fatalf("tunnels = %d, want 3", n)
			}

			tt.end(t, e, s)
			a.ClosedWithin("the ended session's tunnel", 5*time.Second)
			if tt.alsoA2 {
				a2.ClosedWithin("the subject's other session's tunnel", 5*time.Second)
			} else {
				a2.Echoes()
			}
			b.Echoes()

			// A tunnel's line is written once the proxy has returned, just
			// after the client sees the connection close.
			wantLog := `"event":"tunnel_closed","reason":"` + tt.reason + `","route":"/ws/","subject":"alice","session":"` + s.a.ID + `"`
			awaitCond(t, "a log line "+wantLog, func() bool { return strings.Contains(logs.String(), wantLog) })
			for _, tok := range []string{s.tokA, s.tokA2, s.tokB} {
				if strings.Contains(logs.String(), tok) {
					t.Errorf("a token was logged:\n%s", logs.String())
				}
			}
			a2.Close()
			b.Close()
			awaitCond(t, "no tunnels registered", func() bool { return e.gw.tunnels.count() == 0 })
		})
	}
}

// TestTunnelUpgradeNeedsLiveSession: under revocation = "refresh" a valid
// token of a revoked or ended session may still make plain requests until
// its exp, but never opens a tunnel, which would outlive the token.
func TestTunnelUpgradeNeedsLiveSession(t *testing.T) {
	var logs logtest.Buffer
	e := tunnelEnv(t, &logs, nil)
	tok, s := e.session("alice")
	if _, err := e.store.Revoke(t.Context(), s.ID, sessionstore.ReasonLogout, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if res := e.do("GET", "/api/x", bearer(tok), ""); res.StatusCode != http.StatusOK {
		t.Fatalf("plain request: status = %d, want 200 (refresh mode)", res.StatusCode)
	}
	before := len(e.upstream.requests())
	c := upgrade(t, e.addr(), "/ws/x", tok)
	if c.Response.StatusCode != http.StatusUnauthorized {
		t.Fatalf("upgrade with a revoked session's token: status = %d, want 401", c.Response.StatusCode)
	}
	if n := len(e.upstream.requests()); n != before {
		t.Errorf("upstream received the refused upgrade")
	}
	now := e.clock.Now()
	unknown := e.mint(auth.MintClaims{Subject: "alice", SessionID: "no-such-session", ID: "j", IssuedAt: now, ExpiresAt: now.Add(e.sessions.AccessTTL)})
	if c := upgrade(t, e.addr(), "/ws/x", unknown); c.Response.StatusCode != http.StatusUnauthorized {
		t.Fatalf("upgrade with an unknown session: status = %d, want 401", c.Response.StatusCode)
	}
	if n := e.gw.tunnels.count(); n != 0 {
		t.Errorf("tunnels = %d after refused upgrades, want 0", n)
	}
}

// TestTunnelMaxLifetime: Route.UpgradeMaxLifetime closes a tunnel that long
// after its upgrade, by the gateway's clock (a check of the watcher), even
// though its session is live; one opened later stays.
func TestTunnelMaxLifetime(t *testing.T) {
	var logs logtest.Buffer
	e := tunnelEnv(t, &logs, func(c *Config, _ *Deps) {
		c.Routes[len(c.Routes)-1].UpgradeMaxLifetime = 30 * time.Minute
	})
	tokA, sA := e.session("alice")
	old := openTunnel(t, e.addr(), "/ws/old", tokA)
	e.clock.Advance(20 * time.Minute)
	tokB, _ := e.session("alice")
	young := openTunnel(t, e.addr(), "/ws/young", tokB)

	e.clock.Advance(9 * time.Minute)
	e.gw.checkTunnels(t.Context())
	old.Echoes()
	e.clock.Advance(2 * time.Minute)
	e.gw.checkTunnels(t.Context())
	old.ClosedWithin("a tunnel past upgrade_max_lifetime", 5*time.Second)
	young.Echoes()
	// A tunnel's line is written once the proxy has returned, just
	// after the client sees the connection close.
	wantLog := `"event":"tunnel_closed","reason":"max_lifetime","route":"/ws/","subject":"alice","session":"` + sA.ID + `"`
	awaitCond(t, "a log line "+wantLog, func() bool { return strings.Contains(logs.String(), wantLog) })
	// An anonymous tunnel (auth optional) is capped too.
	e2 := tunnelEnv(t, &logs, func(c *Config, _ *Deps) {
		r := &c.Routes[len(c.Routes)-1]
		r.Auth, r.UpgradeMaxLifetime = AuthOptional, time.Minute
	})
	anon := openTunnel(t, e2.addr(), "/ws/anon", "")
	e2.clock.Advance(time.Minute)
	e2.gw.checkTunnels(t.Context())
	anon.ClosedWithin("an anonymous tunnel past upgrade_max_lifetime", 5*time.Second)
	awaitCond(t, "no tunnels registered", func() bool { return e2.gw.tunnels.count() == 0 })
}

// TestTunnelDeadlineTimer: with the real clock, the deadline is a timer, not
// only a watcher check: a tunnel with a short upgrade_max_lifetime closes on
// time with no watcher running.
func TestTunnelDeadlineTimer(t *testing.T) {
	var logs logtest.Buffer
	e := tunnelEnv(t, &logs, func(c *Config, d *Deps) {
		c.Routes[len(c.Routes)-1].UpgradeMaxLifetime = 200 * time.Millisecond
		d.Now = time.Now
	})
	e.clock.ns.Store(time.Now().UnixNano()) // sessions and tokens at the real time
	tok, _ := e.session("alice")
	c := openTunnel(t, e.addr(), "/ws/x", tok)
	start := time.Now()
	c.ClosedWithin("a tunnel past upgrade_max_lifetime (timer)", 5*time.Second)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("closed after %v, want about 200ms", d)
	}
	awaitCond(t, "no tunnels registered", func() bool { return e.gw.tunnels.count() == 0 })
}

// TestWatchTunnels runs the watcher loop on the real ticker with a short
// interval: a session revoked in the store (as by another gateway) has its
// tunnel closed, and the loop returns when its context ends. Without any
// tunnel a pass of the watcher reads nothing.
func TestWatchTunnels(t *testing.T) {
	var logs logtest.Buffer
	e := tunnelEnv(t, &logs, nil)
	// Passes that certainly ran, where a sleep beside the loop would pass
	// had the loop never ticked.
	for range 3 {
		e.gw.checkTunnels(t.Context())
	}
	if got := storeGets(t, e); got != 0 {
		t.Errorf("store reads of 3 passes with no tunnel open = %v, want 0", got)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { e.gw.WatchTunnels(ctx, 10*time.Millisecond); close(done) }()
	tokA, sA := e.session("alice")
	tokB, _ := e.session("bob")
	a := openTunnel(t, e.addr(), "/ws/a", tokA)
	b := openTunnel(t, e.addr(), "/ws/b", tokB)
	if _, err := e.store.Revoke(t.Context(), sA.ID, sessionstore.ReasonAdmin, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	a.ClosedWithin("a tunnel whose session was revoked in the store", 5*time.Second)
	b.Echoes()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("WatchTunnels did not return after its context ended")
	}
}

// storeGets is how many store reads the gateway timed.
func storeGets(t testing.TB, e *env) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "gateway_store_operation_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "op" && l.GetValue() == "get" {
					return float64(m.GetHistogram().GetSampleCount())
				}
			}
		}
	}
	return 0
}

// count is the number of open tunnels.
func (ts *tunnels) count() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	n := 0
	for _, set := range ts.bySession {
		n += len(set)
	}
	return n
}
