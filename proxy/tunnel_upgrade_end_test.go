package proxy

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/logtest"
	"github.com/spa-gateway/gateway/sessionstore"
)

// TestTunnelUpgradeFindsSessionEnded: an upgrade that finds its session
// ended (revoked elsewhere, under revocation = "refresh") is refused, and
// closes the session's tunnels already open at once, as a proxied request
// under every_request or a refresh that finds it so would; another
// session's tunnel stays open.
func TestTunnelUpgradeFindsSessionEnded(t *testing.T) {
	var logs logtest.Buffer
	e := tunnelEnv(t, &logs, nil)
	tokA, a := e.session("alice")
	tokB, _ := e.session("bob")
	open := openTunnel(t, e.addr(), "/ws/a", tokA)
	other := openTunnel(t, e.addr(), "/ws/b", tokB)
	if _, err := e.store.Revoke(t.Context(), a.ID, sessionstore.ReasonAdmin, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if c := upgrade(t, e.addr(), "/ws/again", tokA); c.Response.StatusCode != http.StatusUnauthorized {
		t.Fatalf("upgrade with a revoked session's token: status = %d, want 401", c.Response.StatusCode)
	}
	open.ClosedWithin("the revoked session's open tunnel", 5*time.Second)
	other.Echoes()
	wantLog := `"event":"tunnel_closed","reason":"admin","route":"/ws/","subject":"alice","session":"` + a.ID + `"`
	awaitCond(t, "a log line "+wantLog, func() bool { return strings.Contains(logs.String(), wantLog) })
	other.Close()
	awaitCond(t, "no tunnels registered", func() bool { return e.gw.tunnels.count() == 0 })
}

// TestTunnelUpgradeReadsSessionOnce: under every_request an upgrade's
// session is read once, by the request's check, and not again for the
// tunnel.
func TestTunnelUpgradeReadsSessionOnce(t *testing.T) {
	var logs logtest.Buffer
	var gets atomic.Int64
	e := tunnelEnv(t, &logs, func(c *Config, _ *Deps) { c.Revocation = RevocationEveryRequest },
		func(c *auth.SessionsConfig, _ *sessionstore.Store) {
			c.ObserveStore = func(op string, _ time.Duration) {
				if op == "get" {
					gets.Add(1)
				}
			}
		})
	tok, _ := e.session("alice")
	c := openTunnel(t, e.addr(), "/ws/a", tok)
	if n := gets.Load(); n != 1 {
		t.Errorf("session reads for an upgrade = %d, want 1", n)
	}
	c.Echoes()
	c.Close()
	awaitCond(t, "no tunnels registered", func() bool { return e.gw.tunnels.count() == 0 })
}
