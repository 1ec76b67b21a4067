package proxy

import (
	"net/url"
	"strings"
	"unicode/utf8"
)

// maxDecodeDepth is how many rounds of percent-decoding checkPath looks
// through. A backend that decodes more often than that is broken anyway; the
// point is that "%252e%252e" (".." encoded twice) cannot slip past a check
// that decodes once.
const maxDecodeDepth = 3

// checkPath decides whether a request path may be forwarded, and returns the
// path to route on. escaped is the path as the client sent it (and as the
// upstream will receive it: the gateway never rewrites it).
//
// A path is refused, with a reason for the 400 answer, when at any level of
// percent-decoding it holds:
//   - a dot segment ("." or ".."), which a backend would resolve into another
//     route than the one the gateway matched ("/public/../api");
//   - an empty segment ("//api"), which many backends merge into "/api";
//   - a ';' (path parameters: Tomcat and others strip ";x" from a segment, so
//     "/api;x/secret" would route as "/api;x/" here and as "/api/" there);
//   - a backslash, raw or encoded (IIS and others read it as '/');
//   - an encoded '/' unless allowEncodedSlash (then a first-level "%2F" is
//     forwarded as is and routed as the three characters "%2F"; a
//     double-encoded one is still refused);
//   - a control character, or a malformed escape;
//   - bytes that are not UTF-8 once decoded: overlong forms such as
//     "%c0%ae" ('.') and "%c0%af" ('/') are decoded as those characters by
//     lax decoders (Tomcat CVE-2008-2938, old IIS), so "/public/%c0%ae%c0%ae/api"
//     would reach a protected route through a public one (found by the
//     adversarial suite). Paths in legacy 8-bit encodings are refused too.
//
// This follows Spring Security's StrictHttpFirewall: refuse what is
// ambiguous rather than guess how the backend normalises it.
//
// The routing path is the path decoded once, except that "%2F" stays encoded
// (it can only be there with allowEncodedSlash), so "/%61pi/x" routes as
// "/api/x", exactly as the upstream will read it. Whether decoding it further
// would route it elsewhere is checkRedecoded's question (routes.go).
func checkPath(escaped string, allowEncodedSlash bool) (routePath, reason string) {
	if escaped == "" || escaped[0] != '/' {
		return "", "path must start with /"
	}
	s := escaped
	for depth := 0; ; depth++ {
		if r := checkSegments(s); r != "" {
			return "", r
		}
		if strings.IndexByte(s, '%') < 0 {
			break
		}
		if depth == maxDecodeDepth {
			return "", "path is encoded too many times"
		}
		if containsFold(s, "%5c") {
			return "", "encoded backslash in path"
		}
		if containsFold(s, "%2f") && (!allowEncodedSlash || depth > 0) {
			return "", "encoded slash in path"
		}
		d, err := url.PathUnescape(s)
		if err != nil {
			return "", "malformed percent-encoding in path"
		}
		s = d
	}
	if strings.IndexByte(escaped, '%') < 0 {
		return escaped, ""
	}
	if !allowEncodedSlash {
		d, _ := url.PathUnescape(escaped) // checked above
		return d, ""
	}
	parts := splitFold(escaped, "%2f")
	for i, p := range parts {
		parts[i], _ = url.PathUnescape(p)
	}
	return strings.Join(parts, "%2F"), ""
}

// checkSegments refuses the ambiguous forms of one decoding level of a path.
func checkSegments(p string) string {
	if !utf8.ValidString(p) {
		return "path is not UTF-8"
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c < 0x20 || c == 0x7f:
			return "control character in path"
		case c == '\\':
			return "backslash in path"
		case c == ';':
			return "path parameter (';') in path"
		}
	}
	// p starts with '/': walk the segments after it. A trailing empty
	// segment ("/api/") is the usual directory form and is allowed.
	rest := p[1:]
	for {
		seg, tail, more := strings.Cut(rest, "/")
		switch {
		case seg == "." || seg == "..":
			return "dot segment in path"
		case seg == "" && more:
			return "empty segment in path"
		}
		if !more {
			return ""
		}
		rest = tail
	}
}

// containsFold reports whether s contains sub, ignoring ASCII case; sub must
// be lower case.
func containsFold(s, sub string) bool {
	return indexFold(s, sub) >= 0
}

func indexFold(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return i
		}
	}
	return -1
}

// splitFold is strings.Split ignoring ASCII case in sep.
func splitFold(s, sep string) []string {
	var out []string
	for {
		i := indexFold(s, sep)
		if i < 0 {
			return append(out, s)
		}
		out = append(out, s[:i])
		s = s[i+len(sep):]
	}
}
