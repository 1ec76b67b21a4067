package proxy

import (
	"crypto/rand"
	"log/slog"
	"net/http"
	"time"
)

// HeaderRequestID is the header that names a request across the gateway's
// logs, the upstream and the client. A well-formed value sent by the client
// (1 to 128 characters of A-Z a-z 0-9 . _ : -) is kept; any other value, or
// none, is replaced by a random one. Either way it is forwarded to the
// upstream and returned on the response, the gateway's own answers included.
const HeaderRequestID = "X-Request-Id"

// maxRequestID bounds a client's X-Request-Id: longer ones are replaced, so a
// client cannot fill the logs through it.
const maxRequestID = 128

// Values of the "event" attribute of the security log lines, one line per
// event: a failed login (with the username, never the password), a login
// refused by the rate limit, a token reuse that revoked its session, a
// session revoked by logout or by an administrator, a request carrying
// a header under the identity prefix, and an upgraded connection (WebSocket)
// closed because its session ended or its lifetime passed.
const (
	EventLoginFailed    = "login_failed"
	EventRateLimited    = "rate_limited"
	EventReuseDetected  = "reuse_detected"
	EventSessionRevoked = "session_revoked"
	EventSpoofedHeader  = "spoofed_header"
	EventTunnelClosed   = "tunnel_closed"
)

// requestID returns the request's ID: the client's X-Request-Id when it is
// one well-formed value, otherwise a new random one, which it sets in h
// (replacing the client's) so that the upstream receives the same ID.
func requestID(h http.Header) string {
	if v := h[HeaderRequestID]; len(v) == 1 && validRequestID(v[0]) {
		return v[0]
	}
	id := rand.Text() // 26 characters of base32: 130 random bits
	h[HeaderRequestID] = []string{id}
	return id
}

// validRequestID reports whether s is 1 to 128 characters of
// [A-Za-z0-9._:-]: safe to log and to pass on without escaping.
func validRequestID(s string) bool {
	if s == "" || len(s) > maxRequestID {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

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
