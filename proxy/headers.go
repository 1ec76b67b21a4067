package proxy

import (
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/spa-gateway/gateway/auth"
)

// claimHeader is one [headers.claims] entry: the header to inject and the
// claim it is taken from.
type claimHeader struct {
	header string // canonical form
	claim  string
}

// isIdentityHeader reports whether name falls under prefix (lower case, with
// '-' for '_'), compared without case and with '_' taken as '-': both
// "x-auth-subject" and "X_Auth_Subject" reach some backends (CGI, PHP,
// nginx with underscores_in_headers) as the same variable.
func isIdentityHeader(name, prefix string) bool {
	if len(name) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		c := name[i]
		switch {
		case c == '_':
			c = '-'
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}

// hasIdentityHeader reports whether h holds any header under prefix.
func hasIdentityHeader(h http.Header, prefix string) bool {
	for k := range h {
		if isIdentityHeader(k, prefix) {
			return true
		}
	}
	return false
}

// isForwardingHeader reports whether name is one of the headers through
// which a proxy tells the upstream who the client is or how it connected:
// Forwarded, X-Real-IP and every X-Forwarded-* (-For, -Host, -Proto, but
// also -Port, -Prefix, -Server, -Ssl, -Scheme, which frameworks read to build
// redirect URLs or to decide a request came over TLS). Like identity
// headers, they are compared without case and with '_' taken as '-':
// "X_Forwarded_For" reaches CGI, PHP and nginx backends with
// underscores_in_headers as the same HTTP_X_FORWARDED_FOR.
func isForwardingHeader(name string) bool {
	// isIdentityHeader is the folded prefix comparison; equal lengths make
	// it an equality.
	return isIdentityHeader(name, "x-forwarded-") ||
		(len(name) == len("forwarded") && isIdentityHeader(name, "forwarded")) ||
		(len(name) == len("x-real-ip") && isIdentityHeader(name, "x-real-ip"))
}

// isPathOverrideHeader reports whether name is X-Original-URL or
// X-Rewrite-URL (without case, '_' for '-'). IIS, Symfony and Zend route on
// them instead of the request line, so a client could have the gateway check
// /public/ while the backend serves /admin/. They are removed from every
// request, trusted proxies' included: the gateway routes on the request path
// alone, and so must the backend.
func isPathOverrideHeader(name string) bool {
	return (len(name) == len("x-original-url") && isIdentityHeader(name, "x-original-url")) ||
		(len(name) == len("x-rewrite-url") && isIdentityHeader(name, "x-rewrite-url"))
}

// cleanRequestHeaders applies the request rules to the outbound request's
// header h: it removes, in one pass, every header under the identity
// prefix, the path-override headers, and, for a client outside
// trusted_proxies (untrusted), every forwarding header. httputil's Rewrite
// mode only removes Forwarded and X-Forwarded-For, -Host and -Proto, so
// without it "X-Forwarded-Port: 443" or "X_Forwarded_For" from anyone would
// reach the upstream (found by the adversarial suite). Its response-side
// counterpart is cleanResponseHeaders.
func cleanRequestHeaders(h http.Header, prefix string, untrusted bool) {
	for k := range h {
		if isIdentityHeader(k, prefix) || isPathOverrideHeader(k) || (untrusted && isForwardingHeader(k)) {
			delete(h, k)
		}
	}
}

// injectClaims sets the configured identity headers from the verified token.
// A claim the token lacks sets nothing; a value that could not travel in a
// header (control characters, nested objects) sets nothing either, rather
// than something the backend might misread.
func injectClaims(h http.Header, claims []claimHeader, tok *auth.Token) {
	for _, c := range claims {
		var v string
		var ok bool
		switch c.claim {
		case "sub":
			v, ok = tok.Subject, tok.Subject != ""
		case "roles":
			v, ok = strings.Join(tok.Roles, ","), tok.Roles != nil
		default:
			v, ok = claimString(tok.Claims[c.claim])
		}
		if ok && validHeaderValue(v) {
			h[c.header] = []string{v}
		}
	}
}

// claimString renders a JSON claim value as a header value; arrays are
// joined with ",".
func claimString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case bool:
		return strconv.FormatBool(v), true
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), true
	case json.Number:
		return v.String(), true
	case []any:
		parts := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := claimString(e)
			if !ok {
				return "", false
			}
			if _, nested := e.([]any); nested {
				return "", false
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ","), true
	}
	return "", false
}

func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// cleanResponseHeaders applies the response rules to an upstream's header
// or trailers: it keeps the upstream from speaking under the identity prefix
// to the client, or setting the gateway's token cookie, and removes its
// X-Request-Id (the client gets the gateway's, once). A nil h is left alone.
func cleanResponseHeaders(h http.Header, prefix, cookieName string) {
	for k := range h {
		if isIdentityHeader(k, prefix) || (len(k) == len(HeaderRequestID) && strings.EqualFold(k, HeaderRequestID)) {
			delete(h, k)
		}
	}
	sc := h["Set-Cookie"]
	if len(sc) == 0 {
		return
	}
	var nb [64]byte
	want := foldCookieName(nb[:0], cookieName, false)
	kept := sc[:0]
	for _, c := range sc {
		// The browser's name is before the first '=' of the part before
		// the first ';'; without '=' the name is empty and the whole part
		// the value, which the browser sends back as "Cookie: NAME" and a
		// backend reads as a cookie NAME with an empty value.
		nv, _, _ := strings.Cut(c, ";")
		n, _, _ := strings.Cut(nv, "=")
		if !cookieNamed(n, want) {
			kept = append(kept, c)
		}
	}
	// The key stays, even with no value left: ReverseProxy tells the
	// trailers it announced from the others by counting res.Trailer's keys,
	// so a declared trailer must not vanish (an empty one sends nothing).
	h["Set-Cookie"] = kept
}

// trusted reports whether addr (a RemoteAddr) is inside one of nets.
func trusted(nets []netip.Prefix, remoteAddr string) bool {
	if len(nets) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// clientIP is the address of the client for rate limiting: the peer, or,
// behind trusted proxies, the rightmost X-Forwarded-For entry that is not
// itself a trusted proxy.
func clientIP(nets []netip.Prefix, r *http.Request) string {
	host := r.RemoteAddr
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		host = ap.Addr().Unmap().String()
	}
	if !trusted(nets, r.RemoteAddr) {
		return host
	}
	xff := r.Header.Values("X-Forwarded-For")
	for i := len(xff) - 1; i >= 0; i-- {
		parts := strings.Split(xff[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return host
			}
			a = a.Unmap()
			inside := false
			for _, n := range nets {
				if n.Contains(a) {
					inside = true
					break
				}
			}
			if !inside {
				return a.String()
			}
		}
	}
	return host
}

// HeaderRequestID is the header that names a request across the gateway's
// logs, the upstream and the client. A well-formed value sent by the client
// (1 to 128 characters of A-Z a-z 0-9 . _ : -) is kept; any other value, or
// none, is replaced by a random one. Either way it is forwarded to the
// upstream and returned on the response, the gateway's own answers included.
const HeaderRequestID = "X-Request-Id"

// maxRequestID bounds a client's X-Request-Id: longer ones are replaced, so a
// client cannot fill the logs through it.
const maxRequestID = 128

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
