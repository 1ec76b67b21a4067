package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"time"

	"github.com/spa-gateway/gateway/auth"
)

// NewTransport returns the transport used to reach one route's upstream:
// bounded dial and TLS handshakes, responseTimeout (zero: 30s) for the
// response headers, and enough idle connections per host that a busy route
// reuses connections instead of churning through TCP handshakes (Go's
// default keeps 2). Proxy settings from the environment are ignored: a
// sidecar must talk to its backend directly.
func NewTransport(responseTimeout time.Duration) *http.Transport {
	if responseTimeout == 0 {
		responseTimeout = 30 * time.Second
	}
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		DialContext:           d.DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: responseTimeout,
		ExpectContinueTimeout: time.Second,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
}

func (g *Gateway) newReverseProxy(rt *route, tr http.RoundTripper) *httputil.ReverseProxy {
	// FlushInterval stays zero: ReverseProxy flushes every write at once by
	// itself for server-sent events (text/event-stream) and for answers of
	// unknown length (streams, long polls), and buffers only fixed-length
	// ones. -1 would flush those too, write by write, at the cost of a
	// timer, a goroutine and an extra write per response
	// (docs/PERFORMANCE.md).
	return &httputil.ReverseProxy{
		Rewrite:        g.rewrite,
		Transport:      tr,
		BufferPool:     g.buffers,
		ErrorHandler:   g.upstreamError,
		ModifyResponse: g.modifyResponse,
		ErrorLog:       nil,
	}
}

// forward is what the Rewrite hook needs to know about a request that passed
// the checks.
type forward struct {
	route  *route
	token  *auth.Token // nil: anonymous
	scheme authScheme  // how the Authorization header held a token, if it did
}

type forwardKey struct{}

// rewrite builds the outbound request. ReverseProxy has already removed the
// hop-by-hop headers, including any a client named in Connection, and the
// Forwarded/X-Forwarded-* headers, so nothing the client sent can undo what
// is injected here.
func (g *Gateway) rewrite(pr *httputil.ProxyRequest) {
	fw := pr.In.Context().Value(forwardKey{}).(*forward)
	pr.SetURL(fw.route.Upstream)
	// ReverseProxy drops query parameters it cannot parse; the gateway never
	// reads the query, so the upstream gets it exactly as sent.
	pr.Out.URL.RawQuery = pr.In.URL.RawQuery
	if fw.route.Upstream.RawQuery != "" {
		pr.Out.URL.RawQuery = fw.route.Upstream.RawQuery + "&" + pr.In.URL.RawQuery
	}

	h := pr.Out.Header
	isTrusted := trusted(g.cfg.TrustedProxies, pr.In.RemoteAddr)
	cleanRequestHeaders(h, g.prefix, !isTrusted)
	if isTrusted {
		in := pr.In.Header
		for _, k := range []string{"Forwarded", "X-Forwarded-Host", "X-Forwarded-Proto"} {
			if v, ok := in[k]; ok {
				h[k] = v
			}
		}
		h["X-Forwarded-For"] = in["X-Forwarded-For"]
		host, proto := h["X-Forwarded-Host"], h["X-Forwarded-Proto"]
		pr.SetXForwarded()
		if host != nil {
			h["X-Forwarded-Host"] = host
		}
		if proto != nil {
			h["X-Forwarded-Proto"] = proto
		}
	} else {
		pr.SetXForwarded()
	}
	if !g.cfg.ForwardToken {
		if fw.scheme != schemeNone {
			h.Del("Authorization")
		}
		removeCookie(h, g.cfg.CookieName)
		// A DPoP proof is bound to the token and this request; it is the
		// client's credential, as the token is, and no upstream's business.
		delete(h, headerDPoP)
	}
	if fw.token != nil {
		injectClaims(h, g.claims, fw.token)
	}
}

// modifyResponse applies the response rules (see cleanResponseHeaders) to
// the upstream's header and to its trailers.
//
// Trailers need two passes. ReverseProxy announces the keys res.Trailer
// holds when this hook returns (the trailers the upstream declared, values
// still nil) in the client's Trailer header, and copies res.Trailer after the
// body, where the transport has by then merged every trailer that arrived,
// declared or not, and re-added declared ones deleted here (an undeclared one
// reaches the client through http.TrailerPrefix). So the declarations are
// cleaned now, and the values once the body has been read.
func (g *Gateway) modifyResponse(res *http.Response) error {
	cleanResponseHeaders(res.Header, g.prefix, g.cfg.CookieName)
	if fw, _ := res.Request.Context().Value(forwardKey{}).(*forward); fw != nil && fw.route.CORS {
		dropUpstreamCORS(res.Header)
	}
	if res.StatusCode == http.StatusSwitchingProtocols {
		// No trailers on a tunnel, whose body ReverseProxy needs writable.
		return nil
	}
	cleanResponseHeaders(res.Trailer, g.prefix, g.cfg.CookieName)
	// Only a chunked HTTP/1.1 body or an HTTP/2 (or other RoundTripper's)
	// stream can end in trailers: a fixed-length HTTP/1.1 answer, the
	// common case, is not wrapped.
	if res.Trailer != nil || len(res.TransferEncoding) > 0 || res.ProtoMajor != 1 {
		res.Body = &trailerCleaner{ReadCloser: res.Body, res: res, prefix: g.prefix, cookieName: g.cfg.CookieName}
	}
	return nil
}

// trailerCleaner applies the response rules to res.Trailer when the body
// is closed: the transport has filled res.Trailer (HTTP/1.1) or replaced
// it (HTTP/2) by the Read that returns io.EOF, and ReverseProxy closes the
// body before it copies res.Trailer ("close now, instead of defer, to
// populate res.Trailer", in copyResponse's caller), so Close is the one
// place to clean it.
type trailerCleaner struct {
	io.ReadCloser
	res                *http.Response
	prefix, cookieName string
}

func (b *trailerCleaner) Close() error {
	err := b.ReadCloser.Close()
	cleanResponseHeaders(b.res.Trailer, b.prefix, b.cookieName)
	return err
}

// upstreamError is the one place transport failures become answers: 504 when
// the upstream did not answer in time, 502 for everything else (refused,
// reset, bad response). A client that went away gets nothing.
func (g *Gateway) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	fw := r.Context().Value(forwardKey{}).(*forward)
	if r.Context().Err() != nil && errors.Is(err, context.Canceled) {
		w.WriteHeader(499) // nginx's "client closed request", for the metrics only
		return
	}
	g.m.UpstreamErrors.WithLabelValues(fw.route.Prefix).Inc()
	g.log.Warn("upstream error", "route", fw.route.Prefix, "request_id", r.Header.Get(HeaderRequestID), "err", err)
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout() && !isDialError(err)) {
		writeError(w, http.StatusGatewayTimeout, errGatewayTimeout, "upstream timed out")
		return
	}
	writeError(w, http.StatusBadGateway, errBadGateway, "upstream unavailable")
}

func isDialError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}
