package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/spa-gateway/gateway/proxy/upstreamtest"
	"github.com/spa-gateway/gateway/sessionstore/redisstore/redistest"
)

// The tests in this file open WebSockets through a Main in process, on
// 127.0.0.1, to a real echo upstream, and end their sessions in every way a
// session ends.

// tunnelConfig is testConfig with bob (same password as alice) in the users
// file, a WebSocket route /ws/ to an echo upstream, and the watcher every
// interval.
func tunnelConfig(t testing.TB, dir string, interval time.Duration) Config {
	t.Helper()
	c := testConfig(t, dir, okUpstream(t))
	h, err := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	c.Login.UsersFile = writeFile(t, dir, "users", "alice:"+string(h)+"\nbob:"+string(h)+"\n")
	r := DefaultRoute()
	r.Prefix, r.Upstream, r.Websocket = "/ws/", upstreamtest.StartWebSocketEcho(t).String(), true
	c.Route = append(c.Route, r)
	c.Server.UpgradeCheckInterval = Duration(interval)
	return c
}

// testClock is a settable clock.
type testClock struct{ ns atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}
func (c *testClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *testClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// openTunnel upgrades /ws/ on the main listener at base with tok,
// requiring 101 and an echo.
func openTunnel(t testing.TB, base, tok string) *upstreamtest.WebSocket {
	t.Helper()
	ws := upstreamtest.DialWebSocket(t, strings.TrimPrefix(base, "http://"), "/ws/chat", "Authorization: Bearer "+tok)
	if ws.Response.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: status = %d, want 101", ws.Response.StatusCode)
	}
	ws.Echoes()
	return ws
}

// TestTunnelsEndWithTheirSession opens a WebSocket of a session of alice,
// one of another session of alice and one of bob, ends the first session,
// and checks that its WebSocket closes promptly while the others still
// echo: at once (the watcher's interval is an hour) for (a) logout, (b)
// admin revocation of the session, (c) reuse detection at refresh; (d) the
// session's idle end, noticed by the watcher (clock moved, interval 20ms);
// and the admin revocation of a user closes both of alice's.
func TestTunnelsEndWithTheirSession(t *testing.T) {
	tests := []struct {
		name string
		// end ends the session of tokA.
		end    func(t *testing.T, g *testGateway, clk *testClock, tokA, tokA2, tokB string)
		reason string
		alsoA2 bool
		// watch is server.upgrade_check_interval: an hour, unless the
		// case is the watcher's, so that the others show the close is
		// immediate.
		watch time.Duration
	}{
		{name: "logout", reason: "logout", end: func(t *testing.T, g *testGateway, _ *testClock, tokA, _, _ string) {
			if code, _, _ := g.request("POST", g.base+"/auth/logout", "", "Authorization", "Bearer "+tokA); code != http.StatusNoContent {
				t.Fatalf("logout: status %d, want 204", code)
			}
		}},
		{name: "admin revocation", reason: "admin", end: func(t *testing.T, g *testGateway, _ *testClock, tokA, _, _ string) {
			if code, body := g.adminRequest("DELETE", "/admin/sessions/"+sidOf(t, tokA), testAdminToken); code != http.StatusNoContent {
				t.Fatalf("DELETE /admin/sessions/ID: %d %s, want 204", code, body)
			}
		}},
		{name: "admin revocation of the user", reason: "admin", alsoA2: true, end: func(t *testing.T, g *testGateway, _ *testClock, _, _, _ string) {
			if code, body := g.adminRequest("DELETE", "/admin/sessions?subject=alice", testAdminToken); code != http.StatusOK || !strings.Contains(body, `"revoked":2`) {
				t.Fatalf("DELETE /admin/sessions?subject=alice: %d %s, want 200 and 2 revoked", code, body)
			}
		}},
		{name: "reuse detection", reason: "reuse_detected", end: func(t *testing.T, g *testGateway, _ *testClock, tokA, _, _ string) {
			if code, _ := g.refresh(tokA); code != http.StatusOK {
				t.Fatalf("refresh: status %d, want 200", code)
			}
			if code, ta := g.refresh(tokA); code != http.StatusUnauthorized || ta.Description != "token reuse detected" {
				t.Fatalf("refresh of the rotated token: %d %+v, want 401 token reuse detected", code, ta)
			}
		}},
		{name: "idle end, seen by the watcher", reason: "expired", watch: 20 * time.Millisecond, end: func(t *testing.T, g *testGateway, clk *testClock, _, tokA2, tokB string) {
			clk.Advance(50 * time.Minute)
			for _, tok := range []string{tokA2, tokB} {
				if code, _ := g.refresh(tok); code != http.StatusOK {
					t.Fatalf("refresh: status %d, want 200", code)
				}
			}
			clk.Advance(11 * time.Minute) // past the first session's idle deadline (1h)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.watch == 0 {
				tt.watch = time.Hour
			}
			cfg := tunnelConfig(t, t.TempDir(), tt.watch)
			clk := newTestClock()
			g := startMainClock(t, cfg, clk.Now)
			tokA, tokA2 := g.mustLogin(), g.mustLogin()
			code, ta, _ := g.login("bob", testPassword)
			if code != http.StatusOK {
				t.Fatalf("login bob: status %d", code)
			}
			tokB := ta.AccessToken
			a, a2, b := openTunnel(t, g.base, tokA), openTunnel(t, g.base, tokA2), openTunnel(t, g.base, tokB)
			tt.end(t, g, clk, tokA, tokA2, tokB)
			a.ClosedWithin("the ended session's WebSocket", 5*time.Second)
			if tt.alsoA2 {
				a2.ClosedWithin("the user's other WebSocket", 5*time.Second)
			} else {
				a2.Echoes()
			}
			b.Echoes()
			g.waitLog(`"event":"tunnel_closed","reason":"` + tt.reason + `","route":"/ws/","subject":"alice","session":"` + sidOf(t, tokA) + `"`)
		})
	}
}

// watcherPasses waits until the watcher has made n passes that began
// after the call, with tunnels WebSockets of live sessions open: a pass
// reads each of their sessions once (the store-get count), and one pass
// begun before the call may add up to tunnels reads after it.
func (g *testGateway) watcherPasses(n, tunnels int) {
	g.t.Helper()
	gets := func() float64 {
		v, _ := sample(g.scrape(), `gateway_store_operation_duration_seconds_count{op="get"}`)
		return v
	}
	want := gets() + float64((n+1)*tunnels)
	deadline := time.Now().Add(5 * time.Second)
	for gets() < want {
		if time.Now().After(deadline) {
			g.t.Fatalf("the watcher made fewer than %d passes in 5s", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitLog fails the test unless the gateway's logs hold want within 5s (a
// tunnel's line is written just after the client sees it close).
func (g *testGateway) waitLog(want string) {
	g.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(g.logs.String(), want) {
		if time.Now().After(deadline) {
			g.t.Fatalf("logs lack %s", want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestTunnelUpgradeMaxLifetime: (e) route.upgrade_max_lifetime closes a
// WebSocket that long after its upgrade, its session still live (the
// watcher sees the moved clock), and one opened later stays open.
func TestTunnelUpgradeMaxLifetime(t *testing.T) {
	cfg := tunnelConfig(t, t.TempDir(), 20*time.Millisecond)
	cfg.Route[1].UpgradeMaxLifetime = Duration(30 * time.Minute)
	clk := newTestClock()
	g := startMainClock(t, cfg, clk.Now)
	tokA := g.mustLogin()
	a := openTunnel(t, g.base, tokA)
	clk.Advance(20 * time.Minute)
	b := openTunnel(t, g.base, g.mustLogin())
	clk.Advance(9 * time.Minute)
	g.watcherPasses(2, 2) // at 29 minutes: not yet
	a.Echoes()
	clk.Advance(2 * time.Minute)
	a.ClosedWithin("a WebSocket past upgrade_max_lifetime", 5*time.Second)
	b.Echoes()
	g.waitLog(`"event":"tunnel_closed","reason":"max_lifetime","route":"/ws/","subject":"alice","session":"` + sidOf(t, tokA) + `"`)
}

// TestTunnelClosedAcrossReplicas runs two gateways on one real redis-server:
// a session revoked on the first (admin API, then logout of another) has
// its WebSocket on the second closed within the second's
// server.upgrade_check_interval, while a third session's stays open.
func TestTunnelClosedAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	const interval = 200 * time.Millisecond
	replica := func() *testGateway {
		cfg := tunnelConfig(t, dir, interval)
		cfg.Store.Backend, cfg.Store.URL, cfg.Store.Path = BackendRedis, srv.URL(0), ""
		return startMain(t, cfg)
	}
	one, two := replica(), replica()
	if _, err := os.Stat(filepath.Join(dir, "signing.pem")); err != nil {
		t.Fatal(err) // both replicas sign with this key
	}
	tokA, tokA2, tokB := one.mustLogin(), one.mustLogin(), one.mustLogin()
	a, a2, b := openTunnel(t, two.base, tokA), openTunnel(t, two.base, tokA2), openTunnel(t, two.base, tokB)

	if code, body := one.adminRequest("DELETE", "/admin/sessions/"+sidOf(t, tokA), testAdminToken); code != http.StatusNoContent {
		t.Fatalf("revoke on the first replica: %d %s, want 204", code, body)
	}
	if took := a.ClosedWithin("a WebSocket on the second replica of a session revoked on the first", 5*time.Second); took > interval+time.Second {
		t.Errorf("closed after %v, want within the interval %v (and a second of slack)", took, interval)
	}
	if code, _, _ := one.request("POST", one.base+"/auth/logout", "", "Authorization", "Bearer "+tokA2); code != http.StatusNoContent {
		t.Fatalf("logout on the first replica: status %d, want 204", code)
	}
	if took := a2.ClosedWithin("a WebSocket on the second replica of a session logged out on the first", 5*time.Second); took > interval+time.Second {
		t.Errorf("closed after %v, want within the interval %v (and a second of slack)", took, interval)
	}
	b.Echoes()
	if !strings.Contains(two.logs.String(), `"event":"tunnel_closed","reason":"admin"`) {
		t.Errorf("second replica's logs lack the tunnel_closed line")
	}
}
