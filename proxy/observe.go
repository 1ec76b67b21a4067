package proxy

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// Values of the "event" attribute of the security log lines, one line per
// event: a login's new session (subject, session, user agent, client and
// whether it is bound: what a "new sign-in" notice needs), a failed login (with the username, never the password), a failed
// OpenID Connect callback, a login
// refused by the rate limit, a token reuse that revoked its session, a
// session revoked by logout or by an administrator, a request carrying
// a header under the identity prefix, and an upgraded connection (WebSocket)
// closed because its session ended or its lifetime passed.
const (
	EventSessionCreated = "session_created"
	EventLoginFailed    = "login_failed"
	// EventOIDCLoginFailed: an OpenID Connect callback created nothing
	// (its "result" says why: gateway_oidc_logins_total's label).
	EventOIDCLoginFailed = "oidc_login_failed"
	EventRateLimited     = "rate_limited"
	EventReuseDetected   = "reuse_detected"
	EventSessionRevoked  = "session_revoked"
	EventSpoofedHeader   = "spoofed_header"
	EventTunnelClosed    = "tunnel_closed"
	// EventForwardUntrusted: /auth/verify called by a peer outside
	// trusted_proxies (verify.go).
	EventForwardUntrusted = "forward_untrusted"
)

// accessLog writes the one access-log line of a request on the main
// listener, at level Info: method, route label (never the raw path, whose
// query may hold what must not be logged), status, duration, body bytes
// written, client address, request ID, and the subject where a token was
// verified.
func (g *Gateway) accessLog(r *http.Request, sw *statusWriter, route, id string, d time.Duration) {
	ctx := r.Context()
	if !g.log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	attrs := [...]slog.Attr{
		slog.String("method", r.Method),
		slog.String("route", route),
		slog.Int("status", sw.status),
		slog.Duration("duration", d),
		slog.Int64("bytes", sw.bytes),
		slog.String("client", clientIP(g.cfg.TrustedProxies, r)),
		slog.String("request_id", id),
		slog.String("subject", sw.subject), // last: left out when empty
	}
	n := len(attrs)
	if sw.subject == "" {
		n--
	}
	g.log.LogAttrs(ctx, slog.LevelInfo, "request", attrs[:n]...)
}

// statusWriter records the status code and the body bytes written, for the
// metrics and the access log, and the subject of the token verified for the
// request, if any. Unwrap lets http.ResponseController (and so
// ReverseProxy's flushing and upgrades) reach the underlying writer.
//
// It also applies the response rules to informational answers (103 Early
// Hints and the like): ReverseProxy copies an upstream's 1xx headers into
// the writer's header map and writes them itself, bypassing ModifyResponse,
// then clears the map, the gateway's X-Request-Id with it.
type statusWriter struct {
	http.ResponseWriter
	status  int
	bytes   int64
	subject string // "" until a token is verified

	g       *Gateway // for the response rules of a 1xx
	id      string   // the request's X-Request-Id
	sent1xx bool     // an informational answer cleared the header map
}

func (w *statusWriter) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		h := w.Header()
		cleanResponseHeaders(h, w.g.prefix, w.g.cfg.CookieName)
		h.Set(HeaderRequestID, w.id)
		w.sent1xx = true
		w.ResponseWriter.WriteHeader(code)
		return
	}
	if w.sent1xx && w.Header().Get(HeaderRequestID) == "" {
		w.Header().Set(HeaderRequestID, w.id)
	}
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// noteSubject records the verified subject of the request for the access
// log, when w is the gateway's statusWriter.
func noteSubject(w http.ResponseWriter, subject string) {
	if sw, ok := w.(*statusWriter); ok {
		sw.subject = subject
	}
}

// statusText is strconv.Itoa for the common codes without allocating.
func statusText(code int) string {
	switch code {
	case 200:
		return "200"
	case 204:
		return "204"
	case 400:
		return "400"
	case 401:
		return "401"
	case 403:
		return "403"
	case 404:
		return "404"
	case 502:
		return "502"
	}
	return fmt.Sprint(code)
}
