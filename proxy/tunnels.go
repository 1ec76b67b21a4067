package proxy

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/spa-gateway/gateway/auth"
)

// An upgraded connection (a WebSocket, on a route with WebSocket set) is a
// tunnel: once the upstream has switched protocols, no token crosses the
// gateway any more, so nothing on the connection itself would ever notice
// that its session ended. The gateway therefore keeps every tunnel in a
// registry under its session, and ends it:
//
//   - at once, when a session ends on this gateway: logout, a refresh that
//     finds the session revoked, expired or reused, a request refused under
//     every_request, and whatever calls EndSession or EndSubject (the admin
//     API);
//   - at its deadline: the session's absolute end, or Route.UpgradeMaxLifetime
//     after the upgrade if that is sooner;
//   - within one interval of WatchTunnels when the session ended in a way
//     this gateway did not see: revoked on another gateway sharing the store,
//     or past its idle deadline.
//
// Ending a tunnel cancels the upgrade request's context, which makes
// ReverseProxy close the upstream connection; both copy directions then end
// and ReverseProxy closes the client's connection (see handleUpgradeResponse
// in net/http/httputil, golang.org/issue/35559).
//
// The registry is touched only by upgrade requests and session ends, never
// by an ordinary proxied request: the verified-request path takes no lock
// and allocates nothing for it.

// Reasons a tunnel is closed for, as the "reason" of EventTunnelClosed. A
// session revoked elsewhere is reported with its revocation reason
// (auth.ReasonLogout, ReasonAdmin, ReasonReuseDetected, ...).
const (
	// TunnelExpired: the session passed its idle or absolute deadline.
	TunnelExpired = auth.EndExpired
	// TunnelRevoked: the session was found revoked, with no reason recorded.
	TunnelRevoked = auth.EndRevoked
	// TunnelUnknownSession: the session is no longer in the store.
	TunnelUnknownSession = auth.EndUnknownSession
	// TunnelMaxLifetime: the route's UpgradeMaxLifetime passed.
	TunnelMaxLifetime = "max_lifetime"
)

// EndSession closes at once every upgraded connection (WebSocket) of the
// session id open on this gateway, and returns how many it closed. reason
// is logged with each (EventTunnelClosed). The gateway calls it itself
// wherever its own endpoints end a session (logout, refresh); anything else
// that ends a session on this process (the admin API, a per-user session
// limit) must call it too. Sessions ended elsewhere are found by
// WatchTunnels.
func (g *Gateway) EndSession(id, reason string) int {
	if id == "" {
		return 0 // the anonymous tunnels belong to no session
	}
	return g.tunnels.endSession(id, reason)
}

// endedWith closes the tunnels of session id when err, an error of
// auth.Sessions about it, says the session is over, and reports whether it
// did.
func (g *Gateway) endedWith(id string, err error) bool {
	reason := auth.EndReason(err)
	if reason != "" {
		g.EndSession(id, reason)
	}
	return reason != ""
}

// EndSubject is EndSession for every session of subject, for a revocation
// of all of a user's sessions.
func (g *Gateway) EndSubject(subject, reason string) int {
	return g.tunnels.endSubject(subject, reason)
}

// WatchTunnels checks the open upgraded connections every interval until
// ctx ends: it closes those past their deadline (by the gateway's clock),
// reads the session of the others from the store (one Get per session with
// an open tunnel, none when there is none) and closes those whose session is
// no longer live. A session ended where this gateway could not see it
// (another gateway on the same store, its idle deadline) is so noticed
// within interval plus the time of the reads. A session the store cannot
// read keeps its tunnels until a later check reads it. interval must be
// positive.
func (g *Gateway) WatchTunnels(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			g.checkTunnels(ctx)
		}
	}
}

// checkTunnels is one pass of WatchTunnels.
func (g *Gateway) checkTunnels(ctx context.Context) {
	for _, id := range g.tunnels.due(g.now()) {
		if ctx.Err() != nil {
			return
		}
		_, err := g.deps.Sessions.CheckTunnel(ctx, id)
		if !g.endedWith(id, err) && err != nil && ctx.Err() == nil {
			g.log.Warn("session store read", "op", "get", "err", err)
		}
	}
}

// serveTunnel forwards an upgrade request (Upgrade: websocket on a route
// that allows it) as a tunnel: a verified token's session is checked first,
// whatever the revocation mode (an upgraded connection outlives any token,
// so it is opened for a live session only: 401 otherwise, and the
// session's other tunnels closed, 503 if the store cannot say), and the
// request is registered under it until it ends. live is the session as
// authorize read it under every_request, which is not read again; zero, it
// is read here.
func (g *Gateway) serveTunnel(w *statusWriter, r *http.Request, fw *forward, live auth.Liveness) {
	now := g.now()
	t := &tunnel{routePrefix: fw.route.Prefix}
	if fw.token != nil {
		if live.ExpiresAt.IsZero() {
			var err error
			if live, err = g.deps.Sessions.CheckTunnel(r.Context(), fw.token.SessionID); err != nil {
				g.endedWith(fw.token.SessionID, err)
				g.fail(w, fw.scheme, err)
				return
			}
		}
		t.session, t.subject = fw.token.SessionID, live.Subject
		t.deadline, t.deadlineReason = live.ExpiresAt, TunnelExpired
	}
	if max := fw.route.UpgradeMaxLifetime; max > 0 {
		if end := now.Add(max); t.deadline.IsZero() || end.Before(t.deadline) {
			t.deadline, t.deadlineReason = end, TunnelMaxLifetime
		}
	}
	ctx, cancel := context.WithCancelCause(context.WithValue(r.Context(), forwardKey{}, fw))
	t.cancel = cancel
	g.tunnels.add(t)
	if !t.deadline.IsZero() {
		// Exact in production; an injected clock that jumps ahead is
		// caught by WatchTunnels, which checks deadlines by g.now.
		t.timer = time.AfterFunc(t.deadline.Sub(now), func() { t.end(t.deadlineReason) })
	}
	defer func() {
		if t.timer != nil {
			t.timer.Stop()
		}
		g.tunnels.remove(t)
		cancel(nil)
	}()
	fw.route.proxy.ServeHTTP(w, r.WithContext(ctx))
	var end *tunnelEnd
	if errors.As(context.Cause(ctx), &end) {
		g.log.Info("tunnel closed", "event", EventTunnelClosed, "reason", end.reason, "route", t.routePrefix,
			"subject", t.subject, "session", t.session, "request_id", r.Header.Get(HeaderRequestID))
	}
}
