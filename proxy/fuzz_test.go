package proxy

import (
	"net/http"
	"net/url"
	"path"
	"strings"
	"testing"
	"unicode/utf8"
)

// fuzzRoutes are routes as New sorts them: a public prefix, a protected one,
// and a catch-all.
func fuzzRoutes() []*route {
	rs := []*route{
		{Route: Route{Prefix: "/public/", Auth: AuthNone}},
		{Route: Route{Prefix: "/api/", Auth: AuthRequired}},
		{Route: Route{Prefix: "/api/admin/", Auth: AuthRequired}},
		{Route: Route{Prefix: "/", Auth: AuthOptional}},
	}
	sortRoutes(rs)
	return rs
}

// FuzzCheckPath: for any request path, checkPath either refuses it or
// returns a routing path that
//   - is what the upstream reads: the path decoded once (with "%2F" kept
//     encoded when encoded slashes are allowed);
//   - has no dot segment, empty segment, ';', backslash or control
//     character, and is UTF-8, at any level of further decoding, so that
//     however often the backend decodes it, it resolves to the same route;
//   - unless checkRedecoded refuses it, selects, at any level of further
//     decoding ("%2F" included), the same route, and never one of the
//     gateway's own endpoints it did not select decoded once;
//   - gives the same answer every time.
func FuzzCheckPath(f *testing.F) {
	for _, p := range []string{
		"/api/x", "/public/../api/x", "/public/%2e%2e/api/x", "/public/%252e%252e/api/x",
		"/public/..%2fapi", "/public/..%5capi", "//api", "/api;x/", "/%61pi/x", "/api/%2Fx",
		"/public/%c0%ae%c0%ae/api", "/public/%25252e", "/", "", "api", "/a/b/c/", "/%zz",
		"/public/%2525252e%2525252e/api", "/public/.%2e/api", "/public/x%00", "/public/%e2%80%ae",
		"/%2561pi/x", "/%252561pi/x", "/api%2Fx", "/%2561uth/refresh", "/public/%2561", "/x%2561pi",
	} {
		f.Add(p, false)
		f.Add(p, true)
	}
	rs := fuzzRoutes()
	own := map[string]http.Handler{
		"/auth/login": http.NotFoundHandler(), "/auth/refresh": http.NotFoundHandler(),
		"/auth/logout": http.NotFoundHandler(), "/.well-known/jwks.json": http.NotFoundHandler(),
	}
	f.Fuzz(func(t *testing.T, escaped string, allowSlash bool) {
		routePath, reason := checkPath(escaped, allowSlash)
		if r2, reason2 := checkPath(escaped, allowSlash); r2 != routePath || reason2 != reason {
			t.Fatalf("checkPath(%q) unstable: %q/%q then %q/%q", escaped, routePath, reason, r2, reason2)
		}
		if reason != "" {
			if routePath != "" {
				t.Fatalf("checkPath(%q) refused (%s) but returned %q", escaped, reason, routePath)
			}
			return
		}
		// What the upstream reads, decoding once.
		want, err := url.PathUnescape(escaped)
		if err != nil {
			t.Fatalf("checkPath(%q) accepted a path that does not decode: %v", escaped, err)
		}
		if allowSlash {
			want = strings.Join(strings.Split(strings.ReplaceAll(escaped, "%2f", "%2F"), "%2F"), "\x00")
			parts := strings.Split(want, "\x00")
			for i, p := range parts {
				parts[i], _ = url.PathUnescape(p)
			}
			want = strings.Join(parts, "%2F")
		}
		if routePath != want {
			t.Fatalf("checkPath(%q) routes on %q, the upstream reads %q", escaped, routePath, want)
		}
		if checkRedecoded(rs, own, routePath) != "" {
			return
		}
		// However many more times a backend decodes it, the path keeps
		// its shape and its route.
		rt := match(rs, routePath)
		p := routePath
		for depth := 0; depth < 4; depth++ {
			if match(rs, p) != rt || (p != routePath && own[p] != nil) {
				t.Fatalf("checkPath(%q) routes on %q, but %q (decoded %d more times) selects another route or endpoint", escaped, routePath, p, depth)
			}
			if !strings.HasPrefix(p, "/") || !utf8.ValidString(p) || strings.ContainsAny(p, ";\\") {
				t.Fatalf("checkPath(%q) accepted %q, which decodes to %q", escaped, routePath, p)
			}
			for _, c := range []byte(p) {
				if c < 0x20 || c == 0x7f {
					t.Fatalf("checkPath(%q) accepted a control character at depth %d", escaped, depth)
				}
			}
			segs := strings.Split(p[1:], "/")
			for i, s := range segs {
				if s == "." || s == ".." || (s == "" && i != len(segs)-1) {
					t.Fatalf("checkPath(%q) accepted %q, which decodes to %q with a dot or empty segment", escaped, routePath, p)
				}
			}
			if clean := path.Clean(p); match(rs, clean) != rt && match(rs, clean+"/") != rt {
				t.Fatalf("checkPath(%q): %q routes to %q, but resolves to %q, another route", escaped, routePath, rt.Prefix, clean)
			}
			d, err := url.PathUnescape(p)
			if err != nil || d == p {
				break
			}
			p = d
		}
	})
}

// FuzzExtractToken: for any Authorization and Cookie headers, extractToken
// never panics, refuses ambiguity (two different tokens), and returns a
// token that is one the client sent, trimmed, with the scheme it was sent
// with (Bearer or DPoP).
func FuzzExtractToken(f *testing.F) {
	f.Add("Bearer abc.def.ghi", "", false)
	f.Add("bearer   abc  ", "__Host-gateway=abc", false)
	f.Add("Bearer a", "__Host-gateway=b", false)
	f.Add("", "__Host-gateway=a; __Host-gateway=b", false)
	f.Add("", `a=1; __Host-gateway="x"; b=2`, false)
	f.Add("Basic YTpi", "__Host-gateway=x", false)
	f.Add("Bearer x", "", true)
	f.Add("Bearer", "__Host-gateway=", false)
	f.Add("DPoP abc.def.ghi", "", false)
	f.Add("dpop   abc  ", "__Host-gateway=abc", false)
	f.Add("DPoP a", "__Host-gateway=b", false)
	f.Add("DPoP x", "", true)
	f.Fuzz(func(t *testing.T, authz, cookie string, twoAuthz bool) {
		for _, d := range []Delivery{DeliveryBearer, DeliveryCookie, DeliveryBoth} {
			g := &Gateway{cfg: Config{Delivery: d, CookieName: "__Host-gateway"}}
			r := &http.Request{Header: http.Header{}}
			if authz != "" {
				r.Header["Authorization"] = []string{authz}
				if twoAuthz {
					r.Header["Authorization"] = []string{authz, authz}
				}
			}
			if cookie != "" {
				r.Header["Cookie"] = []string{cookie}
			}
			raw, fromCookie, scheme, bad := g.extractToken(r)
			if bad != "" {
				if raw != "" {
					t.Fatalf("extractToken refused (%s) and returned a token", bad)
				}
				continue
			}
			if twoAuthz && authz != "" {
				t.Fatal("two Authorization headers accepted")
			}
			at, sent := authorization(authz)
			cv, n, conflict := cookieValues(r.Header, "__Host-gateway")
			switch {
			case raw == "":
			case fromCookie:
				if d == DeliveryBearer || n == 0 || conflict || raw != cv || sent != schemeNone || scheme != schemeNone {
					t.Fatalf("cookie token %q from %q (delivery %v) not as sent", raw, cookie, d)
				}
			default:
				if sent == schemeNone || raw != at || scheme != sent {
					t.Fatalf("header token %q (scheme %d) from %q not as sent", raw, scheme, authz)
				}
				if prefix := map[authScheme]string{schemeBearer: "bearer ", schemeDPoP: "dpop "}[scheme]; len(authz) <= len(prefix) ||
					!strings.EqualFold(authz[:len(prefix)], prefix) {
					t.Fatalf("header token %q (scheme %d) from %q, which has no such scheme", raw, scheme, authz)
				}
				if d != DeliveryBearer && n > 0 && cv != raw {
					t.Fatalf("header token %q and cookie %q differ but were accepted", raw, cv)
				}
			}
			// A header token is trimmed (RFC 7235 allows spaces after the
			// scheme); a cookie value is trimmed as Node, Django and
			// Werkzeug trim it (cookieSpace), not as strings.TrimSpace.
			if !fromCookie && raw != strings.TrimSpace(raw) {
				t.Fatalf("header token %q not trimmed", raw)
			}
			if fromCookie && raw != trimCookieSpace(raw) {
				t.Fatalf("cookie token %q not trimmed", raw)
			}
		}
	})
}

// FuzzStripIdentityHeaders: whatever header names a client sends, after
// stripping none is under the identity prefix in any case or '_'/'-'
// spelling (also as net/http would canonicalise it), and every other header
// is kept; the forwarding headers of untrusted clients go the same way.
func FuzzStripIdentityHeaders(f *testing.F) {
	for _, n := range []string{
		"X-Auth-Subject", "x-auth-subject", "X_AUTH_SUBJECT", "x_Auth-roles", "X-Auth-", "X-Auth", "X-Authx",
		"X-Forwarded-For", "x_forwarded_port", "Forwarded", "X-Real-Ip", "X_Real_IP", "X-Other", "\x00", "",
	} {
		f.Add(n, "X-Auth-")
		f.Add(n, "X_Auth_")
	}
	f.Fuzz(func(t *testing.T, name, configured string) {
		if configured == "" {
			return
		}
		// Header names are ASCII tokens (net/http refuses others with 400),
		// and so is identity_prefix (Validate): fold ASCII only.
		fold := func(s string) string {
			b := []byte(s)
			for i, c := range b {
				switch {
				case c == '_':
					b[i] = '-'
				case 'A' <= c && c <= 'Z':
					b[i] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
		prefix := fold(configured) // as New prepares it
		names := []string{name, http.CanonicalHeaderKey(name), strings.ToUpper(name), strings.ReplaceAll(name, "-", "_"), "X-Kept"}
		h := http.Header{}
		for _, n := range names {
			h[n] = []string{"v"}
		}
		stripIdentityHeaders(h, prefix)
		for _, n := range names {
			_, kept := h[n]
			under := strings.HasPrefix(fold(n), prefix)
			if kept == under {
				t.Fatalf("prefix %q: header %q kept=%v, under the prefix=%v", configured, n, kept, under)
			}
		}
		if hasIdentityHeader(h, prefix) {
			t.Fatalf("prefix %q: an identity header is left: %v", configured, h)
		}

		h = http.Header{}
		for _, n := range names {
			h[n] = []string{"v"}
		}
		stripForwardingHeaders(h)
		for _, n := range names {
			_, kept := h[n]
			f := fold(n)
			forwarding := f == "forwarded" || f == "x-real-ip" || strings.HasPrefix(f, "x-forwarded-")
			if kept == forwarding {
				t.Fatalf("forwarding header %q kept=%v, forwarding=%v", n, kept, forwarding)
			}
		}
	})
}

// FuzzCookies: for any Cookie line and token cookie name, no common
// backend's cookie parser (modelled in backendCookies) finds the token
// cookie in what removeCookie leaves; if one finds it in the line,
// cookieValues finds it too; and removeCookie keeps every ordinary cookie
// of another name.
func FuzzCookies(f *testing.F) {
	for _, c := range []string{
		"__Host-gateway=t", "a=1; __Host-gateway =t; b=2", "__host-gateway=t", "%5F%5FHost-gateway=t",
		"..Host-gateway=t", "_ Host-gateway=t", "_+Host-gateway=t", "__Host-gateway[x]=t", "a=1,__Host-gateway=t",
		"\xa0__Host-gateway\xa0=t", "__Ho%C5%BFt-gateway=t", "__Host-gateway%20=t", `__Host-gateway="t"`,
		"__Host-gateway", "x=__Host-gateway=t", "__Host-gateway2=t; gateway=1", "; ;;", "",
	} {
		f.Add(c, "__Host-gateway")
	}
	f.Add("tok%20=t", "tok_")
	f.Add("a.b=t", "a_b")
	f.Fuzz(func(t *testing.T, line, name string) {
		if !validCookieName(name) {
			return
		}
		h := http.Header{"Cookie": {line}}
		read := false
		for _, p := range backendCookies {
			if _, ok := p.read(line, name); ok {
				read = true
			}
		}
		if _, n, _ := cookieValues(h, name); read && n == 0 {
			t.Fatalf("Cookie %q: a backend reads %q, cookieValues does not", line, name)
		}
		removeCookie(h, name)
		out := h["Cookie"]
		for _, l := range out {
			for _, p := range backendCookies {
				if v, ok := p.read(l, name); ok {
					t.Fatalf("Cookie %q: after removeCookie(%q), %q, where %s reads %q", line, name, out, p.name, v)
				}
			}
		}
		// An ordinary cookie beside a name of letters, digits, '-' and '_':
		// a name of letters, digits and '-', no space after it, in a part
		// without ','.
		if !onlyChars(name, "-_") {
			return
		}
		joined := strings.Join(out, "; ")
		for part := range strings.SplitSeq(line, ";") {
			k, _, _ := strings.Cut(strings.TrimLeft(part, " "), "=")
			if k != "" && onlyChars(k, "-") && !strings.Contains(part, ",") && !strings.EqualFold(k, name) &&
				!strings.Contains(joined, strings.TrimSpace(part)) {
				t.Fatalf("Cookie %q: removeCookie(%q) dropped %q: %q", line, name, part, out)
			}
		}
	})
}

// validCookieName is tokens.cookie_name's rule: a token.
func validCookieName(s string) bool { return s != "" && onlyChars(s, "!#$%&'*+-.^_`|~") }

// onlyChars reports whether s holds only ASCII letters, digits and bytes of
// extra.
func onlyChars(s, extra string) bool {
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(extra, c) >= 0) {
			return false
		}
	}
	return true
}

// backendCookie models how one common backend finds the cookie named name
// in a Cookie line: its separators, trimming, decoding and comparison.
type backendCookie struct {
	name string
	read func(line, name string) (string, bool)
}

var backendCookies = []backendCookie{
	{"Go net/http", func(line, name string) (string, bool) {
		r := &http.Request{Header: http.Header{"Cookie": {line}}}
		c, err := r.Cookie(name)
		if err != nil {
			return "", false
		}
		return c.Value, true
	}},
	{"Node cookie", func(line, name string) (string, bool) {
		for part := range strings.SplitSeq(line, ";") {
			k, v, ok := strings.Cut(part, "=")
			if ok && trimBytes(k, jsSpace) == name {
				return trimBytes(v, jsSpace), true
			}
		}
		return "", false
	}},
	{"Werkzeug", func(line, name string) (string, bool) {
		for part := range strings.SplitSeq(line, ";") {
			k, v, _ := strings.Cut(part, "=")
			if trimBytes(k, pySpace) == name {
				return v, true
			}
		}
		return "", false
	}},
	{"PHP", func(line, name string) (string, bool) {
		for part := range strings.SplitSeq(line, ";") {
			k, v, ok := strings.Cut(part, "=")
			if ok && phpName(phpURLDecode(strings.TrimLeft(k, " "))) == phpName(name) {
				return v, true
			}
		}
		return "", false
	}},
	{"Rack 2", func(line, name string) (string, bool) {
		for part := range strings.FieldsFuncSeq(line, func(r rune) bool { return r == ';' || r == ',' }) {
			k, v, _ := strings.Cut(strings.TrimLeft(part, " "), "=")
			if dk, err := url.QueryUnescape(k); err == nil && dk == name || err != nil && k == name {
				return v, true
			}
		}
		return "", false
	}},
	{"ASP.NET Core", func(line, name string) (string, bool) {
		for part := range strings.SplitSeq(line, ";") {
			k, v, ok := strings.Cut(part, "=")
			if !ok {
				continue
			}
			k = strings.Trim(k, " \t")
			if dk, err := url.PathUnescape(k); err == nil {
				k = dk
			}
			if strings.EqualFold(k, name) || strings.ToUpper(k) == strings.ToUpper(name) {
				return v, true
			}
		}
		return "", false
	}},
}

// The white space that JavaScript's trim and Python's str.strip remove
// from a header decoded as Latin-1 (as Node and WSGI decode them), as bytes.
const (
	jsSpace = "\t\n\v\f\r \xa0"
	pySpace = "\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0"
)

// trimBytes is strings.Trim with a cutset of bytes, not runes: the headers
// are Latin-1 to these backends.
func trimBytes(s, cutset string) string {
	for s != "" && strings.IndexByte(cutset, s[0]) >= 0 {
		s = s[1:]
	}
	for s != "" && strings.IndexByte(cutset, s[len(s)-1]) >= 0 {
		s = s[:len(s)-1]
	}
	return s
}

// phpURLDecode is PHP's urldecode: '+' is a space, a malformed escape is
// kept.
func phpURLDecode(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b = append(b, ' ')
		case c == '%' && i+2 < len(s) && ishex(s[i+1]) && ishex(s[i+2]):
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

// phpName is the name PHP registers a cookie under (php_register_variable_ex):
// leading spaces skipped, ' ' and '.' as '_', "a[x]" as the array a, and a
// '[' without ']' as '_'.
func phpName(s string) string {
	s = strings.TrimLeft(s, " ")
	b := []byte(s)
	for i, c := range b {
		switch c {
		case ' ', '.':
			b[i] = '_'
		case '[':
			if strings.IndexByte(s[i+1:], ']') >= 0 {
				return string(b[:i])
			}
			b[i] = '_'
		}
	}
	return string(b)
}

// stripIdentityHeaders deletes every header under prefix from h: the
// identity rule of cleanRequestHeaders alone, for FuzzIdentityHeaders.
func stripIdentityHeaders(h http.Header, prefix string) {
	for k := range h {
		if isIdentityHeader(k, prefix) {
			delete(h, k)
		}
	}
}

// stripForwardingHeaders deletes every forwarding header from h: the rule
// cleanRequestHeaders applies for a client outside trusted_proxies, alone.
func stripForwardingHeaders(h http.Header) {
	for k := range h {
		if isForwardingHeader(k) {
			delete(h, k)
		}
	}
}
