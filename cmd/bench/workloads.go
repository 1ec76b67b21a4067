package main

import (
	"bytes"
	"sync/atomic"
)

// tokenSource gives the token of each proxied request.
type tokenSource interface {
	// next returns the next token; false when a pool of fresh tokens is
	// used up.
	next() (string, bool)
}

// fixedToken is one token reused on every request.
type fixedToken string

func (t fixedToken) next() (string, bool) { return string(t), true }

// poolCursor hands out the tokens of a pool once each (or, with wrap,
// round and round: for the bare proxy, which does not look at them).
type poolCursor struct {
	pool []string
	wrap bool
	i    atomic.Int64
}

func (c *poolCursor) next() (string, bool) {
	i := int(c.i.Add(1) - 1)
	if c.wrap {
		i %= len(c.pool)
	}
	if i >= len(c.pool) {
		return "", false
	}
	return c.pool[i], true
}

// left is how many tokens the cursor has not handed out.
func (c *poolCursor) left() int { return max(len(c.pool)-int(c.i.Load()), 0) }

// proxyLoad is GET /api/bench with a bearer token: the same bytes go to the
// bare proxy and to the gateway.
type proxyLoad struct {
	prefix, suffix []byte
	tokens         tokenSource
}

func newProxyLoad(tokens tokenSource) *proxyLoad {
	return &proxyLoad{
		prefix: []byte("GET /api/bench?page=1 HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: gateway-bench\r\n" +
			"Accept: application/json\r\nAuthorization: Bearer "),
		suffix: []byte("\r\n\r\n"),
		tokens: tokens,
	}
}

func (l *proxyLoad) request(_ int, buf []byte) ([]byte, bool) {
	tok, ok := l.tokens.next()
	if !ok {
		return buf, false
	}
	buf = append(buf, l.prefix...)
	buf = append(buf, tok...)
	return append(buf, l.suffix...), true
}

func (l *proxyLoad) response(_ int, status int, _ []byte) bool { return status == 200 }

func (l *proxyLoad) wantBody() bool { return false }

// refreshLoad is one session per connection, each refreshing its current
// token in a loop: POST /auth/refresh, then the answer's token is the next
// one to present.
type refreshLoad struct {
	tokens []string // per connection
}

func (l *refreshLoad) request(w int, buf []byte) ([]byte, bool) {
	buf = append(buf, "POST /auth/refresh HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: gateway-bench\r\nContent-Length: 0\r\nAuthorization: Bearer "...)
	buf = append(buf, l.tokens[w]...)
	return append(buf, "\r\n\r\n"...), true
}

func (l *refreshLoad) response(w int, status int, body []byte) bool {
	if status != 200 {
		return false
	}
	tok, ok := accessTokenOf(body)
	if ok {
		l.tokens[w] = tok
	}
	return ok
}

func (l *refreshLoad) wantBody() bool { return true }

// accessTokenOf finds "access_token" in a login or refresh answer. The
// gateway's JSON is compact, and a token is base64url and dots, so a search
// is enough.
func accessTokenOf(body []byte) (string, bool) {
	const key = `"access_token":"`
	i := bytes.Index(body, []byte(key))
	if i < 0 {
		return "", false
	}
	rest := body[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j <= 0 {
		return "", false
	}
	return string(rest[:j]), true
}
