package proxy

import (
	"bytes"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The gateway counts its token cookie (cookieValues) and removes it before
// forwarding (removeCookie) under every spelling of its name that a common
// backend would read as that name, not only the one a browser sends. Were it
// stricter than a backend, a client could hand the backend a token cookie the
// gateway never saw: past forward_token = false, and past the rules that
// refuse two different tokens in one request. Only the name itself, spaces
// around it aside, authenticates (see cookieValues). The leniencies, found
// in the cookie parsers of common backends:
//   - spaces around the name and the value: "NAME =v" (Go's net/http, Node's
//     cookie, Django, Werkzeug, Tomcat), and with them, in Python's
//     str.strip and JavaScript's trim over Latin-1 headers, the bytes 0x85 and
//     0xA0;
//   - percent-decoding of the name, '+' as a space (PHP, Rack, ASP.NET Core);
//   - in PHP, leading spaces skipped after decoding, ' ' and '.' read as '_',
//     and "NAME[x]" as an element of the array NAME (CVE-2022-31629 is
//     "..Host-" taken for "__Host-");
//   - names without case (ASP.NET Core's cookie collection is
//     OrdinalIgnoreCase; Java's equalsIgnoreCase), Unicode simple case
//     folding included ("ſ" is 'S' to .NET);
//   - ',' as a separator besides ';' (RFC 2109: Rack 2, Tomcat's legacy
//     parser, Jetty's RFC 2965 mode);
//   - a double-quoted value (Go, Node, Werkzeug unquote it).
//
// A name is compared in its folded form (foldCookieName) without case
// (foldEqual), so that folding is applied to both sides the same way; a
// cookie that only one backend would take for the token cookie is still the
// token cookie here. Removing more than a given backend would read costs
// nothing: no browser sends such names for another cookie.

// removeCookie deletes the cookie named name, under every spelling a common
// backend would read as name, from the request's Cookie headers, leaving
// every other cookie as the client sent it. A ';'-separated part that holds
// the cookie as a ','-separated pair is removed whole.
func removeCookie(h http.Header, name string) {
	lines := h["Cookie"]
	if len(lines) == 0 {
		return
	}
	var nb [64]byte
	want := foldCookieName(nb[:0], name, false)
	first := -1
	for i, line := range lines {
		if lineNames(line, want) {
			first = i
			break
		}
	}
	if first < 0 {
		return // the common case: nothing to remove, nothing allocated
	}
	out := append(make([]string, 0, len(lines)), lines[:first]...)
	for _, line := range lines[first:] {
		if !lineNames(line, want) {
			out = append(out, line)
			continue
		}
		var kept []string
		for part := range strings.SplitSeq(line, ";") {
			if p := strings.TrimSpace(part); p != "" && !partNames(part, want) {
				kept = append(kept, p)
			}
		}
		if len(kept) > 0 {
			out = append(out, strings.Join(kept, "; "))
		}
	}
	if len(out) == 0 {
		delete(h, "Cookie")
		return
	}
	h["Cookie"] = out
}

// lineNames reports whether a Cookie line holds a part that partNames.
func lineNames(line string, want []byte) bool {
	for part := range strings.SplitSeq(line, ";") {
		if partNames(part, want) {
			return true
		}
	}
	return false
}

// partNames reports whether one ';'-separated part of a Cookie line is the
// cookie whose folded name is want, as a whole or in one of its
// ','-separated pairs. A part without '=' is a name without a value to Go's
// net/http, so it counts too.
func partNames(part string, want []byte) bool {
	n, _, _ := strings.Cut(part, "=")
	if cookieNamed(n, want) {
		return true
	}
	if strings.IndexByte(part, ',') < 0 {
		return false
	}
	for pair := range strings.SplitSeq(part, ",") {
		if n, _, _ := strings.Cut(pair, "="); cookieNamed(n, want) {
			return true
		}
	}
	return false
}

// cookieValues returns the values of every cookie named name in the request,
// under every spelling a common backend would read as name, without
// allocating. Values are trimmed and unquoted; a name without '=' is the
// cookie with an empty value, as Go's net/http reads it. A part that holds
// ','-separated pairs gives its whole value and the value of each pair
// named name: which one a backend reads depends on the backend, so they must
// agree.
//
// Every spelling counts in n and conflict, but first is "" unless the cookie
// came under its own name (spaces around it aside) in a ';'-separated part:
// the other spellings are no browser's way of sending the gateway's cookie,
// and one of them ("%5F%5FHost-gateway", "..Host-gateway", "a=1,
// __Host-gateway=") can be set by a sibling site past the __Host- prefix's
// rules, so its value must never authenticate a request: it can only make
// one ambiguous (adversarial TestAttacks/headers/token_cookie_after_a_comma).
func cookieValues(h http.Header, name string) (first string, n int, conflict bool) {
	var nb [64]byte
	want := foldCookieName(nb[:0], name, false)
	own := false
	add := func(v string) {
		v = trimCookieSpace(strings.Trim(trimCookieSpace(v), `"`))
		if n == 0 {
			first = v
		} else if v != first {
			conflict = true
		}
		n++
	}
	for _, line := range h["Cookie"] {
		for part := range strings.SplitSeq(line, ";") {
			if k, v, _ := strings.Cut(part, "="); cookieNamed(k, want) {
				add(v)
				own = own || strings.Trim(k, " \t") == name
			}
			if strings.IndexByte(part, ',') < 0 {
				continue
			}
			for pair := range strings.SplitSeq(part, ",") {
				if k, v, _ := strings.Cut(pair, "="); cookieNamed(k, want) {
					add(v)
				}
			}
		}
	}
	if !own {
		first = ""
	}
	return first, n, conflict
}

// cookieNamed reports whether raw, a cookie name as a client or an upstream
// wrote it, is the name whose folded form is want.
func cookieNamed(raw string, want []byte) bool {
	l := raw // leading space trimmed
	for len(l) > 0 && cookieSpace(l[0]) {
		l = l[1:]
	}
	t := l // and trailing
	for len(t) > 0 && cookieSpace(t[len(t)-1]) {
		t = t[:len(t)-1]
	}
	// Without '%', '+', '[' or a non-ASCII byte, folding keeps the length
	// and is a comparison byte by byte: most names are told apart without
	// folding, and the common one is found without it.
	plain := plainCookieName(t)
	var b [64]byte
	if !plain || len(t) == len(want) {
		eq, ascii := false, false
		if plain {
			eq, ascii = plainFoldEqual(t, want)
		}
		if !ascii {
			eq = foldEqual(foldCookieName(b[:0], t, true), want)
		}
		if eq {
			return true
		}
	}
	// PHP trims leading spaces only, and reads a trailing one, sent or
	// decoded, as '_': "tok =" and "tok%20" are "tok_" to it.
	if plain && len(l) == len(t) {
		return false // no trailing space, none to decode: the same fold
	}
	return foldEqual(foldCookieName(b[:0], l, false), want)
}

// plainFoldEqual is foldEqual(foldCookieName(s), want) for a plain s of
// want's length, while want is ASCII; ascii reports whether it was.
func plainFoldEqual(s string, want []byte) (eq, ascii bool) {
	for i := 0; i < len(s); i++ {
		c, w := s[i], want[i]
		if w >= utf8.RuneSelf {
			return false, false
		}
		switch {
		case c == ' ' || c == '.':
			c = '_'
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		if 'A' <= w && w <= 'Z' {
			w += 'a' - 'A'
		}
		if c != w {
			return false, true
		}
	}
	return true, true
}

func plainCookieName(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '%' || c == '+' || c == '[' || c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// foldCookieName appends to dst name as the most lenient backend reads it:
// trimmed (at the end only if trimEnd), percent-decoded once ('+' as a
// space; a malformed escape kept as is, as PHP does), trimmed again, ' ' and
// '.' as '_', and cut at a '[' that a ']' follows (a PHP array element).
// Case is left to foldEqual.
func foldCookieName(dst []byte, name string, trimEnd bool) []byte {
	start := len(dst)
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '+':
			c = ' '
		case c == '%' && i+2 < len(name) && ishex(name[i+1]) && ishex(name[i+2]):
			c = unhex(name[i+1])<<4 | unhex(name[i+2])
			i += 2
		}
		dst = append(dst, c)
	}
	lo, hi := start, len(dst)
	for lo < hi && cookieSpace(dst[lo]) {
		lo++
	}
	for trimEnd && hi > lo && cookieSpace(dst[hi-1]) {
		hi--
	}
	dst = append(dst[:start], dst[lo:hi]...)
	for i := start; i < len(dst); i++ {
		switch dst[i] {
		case ' ', '.':
			dst[i] = '_'
		case '[':
			if bytes.IndexByte(dst[i+1:], ']') >= 0 {
				return dst[:i]
			}
			dst[i] = '_'
		}
	}
	return dst
}

// foldEqual reports whether a and b are equal without case, in the most
// lenient of the common comparisons: ASCII case, Unicode simple folding
// (Go's strings.EqualFold), and equal upper (or lower of upper) case forms
// (.NET's OrdinalIgnoreCase, Java's equalsIgnoreCase: 'ı' is 'i' to them).
func foldEqual(a, b []byte) bool {
	for len(a) > 0 && len(b) > 0 {
		ra, na := rune(a[0]), 1
		if ra >= utf8.RuneSelf {
			ra, na = utf8.DecodeRune(a)
		}
		rb, nb := rune(b[0]), 1
		if rb >= utf8.RuneSelf {
			rb, nb = utf8.DecodeRune(b)
		}
		a, b = a[na:], b[nb:]
		if ra == rb {
			continue
		}
		if ra < utf8.RuneSelf && rb < utf8.RuneSelf {
			if 'A' <= ra && ra <= 'Z' {
				ra += 'a' - 'A'
			}
			if 'A' <= rb && rb <= 'Z' {
				rb += 'a' - 'A'
			}
			if ra != rb {
				return false
			}
			continue
		}
		if !runeFold(ra, rb) {
			return false
		}
	}
	return len(a) == 0 && len(b) == 0
}

func runeFold(a, b rune) bool {
	ua, ub := unicode.ToUpper(a), unicode.ToUpper(b)
	if ua == ub || unicode.ToLower(ua) == unicode.ToLower(ub) {
		return true
	}
	for r := unicode.SimpleFold(a); r != a; r = unicode.SimpleFold(r) {
		if r == b {
			return true
		}
	}
	return false
}

// cookieSpace reports whether some common backend trims c around a cookie
// name or value: ASCII white space (the control characters among them never
// pass net/http's header checks, but cost nothing here) and, for Python's
// str.strip and JavaScript's trim over a header read as Latin-1, 0x1C-0x1F,
// 0x85 and 0xA0.
func cookieSpace(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\v', '\f', '\r', 0x1c, 0x1d, 0x1e, 0x1f, 0x85, 0xa0:
		return true
	}
	return false
}

func trimCookieSpace(s string) string {
	for len(s) > 0 && cookieSpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && cookieSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
