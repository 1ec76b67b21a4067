package auth

import (
	"net"
	"net/url"
	"strings"
)

// htuMatches reports whether a proof's htu names the request's target URI
// (RFC 9449 section 4.3, check 9). Both sides are normalised as RFC 9449
// asks, by syntax (RFC 3986 section 6.2.2: scheme and host case,
// percent-encoding, dot segments) and by scheme (section 6.2.3: default
// port, empty path), and then compared exactly.
//
// The request's query and fragment are ignored. The htu must have none
// (section 4.2 defines it "without query and fragment parts"): a proof
// whose htu carries one was not made by a conforming client, and refusing
// it keeps one proof from being valid for several spellings. Only http and
// https URIs with a host and without userinfo match.
func htuMatches(htu, requestURL string) bool {
	if strings.ContainsAny(htu, "?#") {
		return false
	}
	if i := strings.IndexAny(requestURL, "?#"); i >= 0 {
		requestURL = requestURL[:i]
	}
	a, ok := normalizeHTU(htu)
	if !ok {
		return false
	}
	b, ok := normalizeHTU(requestURL)
	return ok && a == b
}

// normalizeHTU returns raw, an absolute http or https URI without query
// or fragment, in normal form.
func normalizeHTU(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || u.User != nil || u.Host == "" {
		return "", false
	}
	scheme := strings.ToLower(u.Scheme)
	host, port := strings.ToLower(u.Hostname()), u.Port()
	switch {
	case host == "":
		return "", false
	case scheme == "http" && port == "80", scheme == "https" && port == "443":
		port = ""
	case scheme != "http" && scheme != "https":
		return "", false
	}
	if port != "" || strings.Contains(host, ":") {
		// JoinHostPort brackets an IPv6 address; with no port it would
		// add a bare colon, so the brackets are put back by hand.
		if port == "" {
			host = "[" + host + "]"
		} else {
			host = net.JoinHostPort(host, port)
		}
	}
	path := removeDotSegments(normalizePercent(u.EscapedPath()))
	if path == "" {
		path = "/"
	}
	return scheme + "://" + host + path, true
}

// normalizePercent applies RFC 3986 section 6.2.2.1 and 6.2.2.2 to an
// escaped path: percent-encoded unreserved characters are decoded, other
// escapes get upper-case hex digits.
func normalizePercent(p string) string {
	if !strings.Contains(p, "%") {
		return p
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c != '%' || i+2 >= len(p) {
			b.WriteByte(c)
			continue
		}
		hi, okHi := unhex(p[i+1])
		lo, okLo := unhex(p[i+2])
		if !okHi || !okLo {
			b.WriteByte(c)
			continue
		}
		d := hi<<4 | lo
		if isUnreserved(d) {
			b.WriteByte(d)
		} else {
			b.WriteByte('%')
			b.WriteByte(hex[d>>4])
			b.WriteByte(hex[d&15])
		}
		i += 2
	}
	return b.String()
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// isUnreserved reports whether c is an RFC 3986 unreserved character.
func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// removeDotSegments is RFC 3986 section 5.2.4's algorithm, for an
// absolute path ("" or starting with "/"), which url.Parse guarantees for
// a URI with a host.
func removeDotSegments(p string) string {
	if !strings.Contains(p, ".") {
		return p
	}
	var out []string
	segments := strings.Split(p, "/")[1:]
	for i, seg := range segments {
		last := i == len(segments)-1
		switch seg {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, seg)
		}
	}
	return "/" + strings.Join(out, "/")
}
