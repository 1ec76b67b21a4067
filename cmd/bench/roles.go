package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The bench binary re-executes itself in these roles, so that the upstream
// and the bare proxy each have a process of their own whose CPU time can be
// read from /proc, like the gateway's.
const (
	roleUpstream = "upstream"
	roleBare     = "bare"
)

// upstreamBody is what the upstream answers to every request.
var upstreamBody = []byte("ok\n")

// runUpstream serves upstreamBody on 127.0.0.1 until ctx ends.
func runUpstream(ctx context.Context, stderr io.Writer) error {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd["Content-Type"] = []string{"text/plain"}
		hd["Content-Length"] = []string{strconv.Itoa(len(upstreamBody))}
		w.Write(upstreamBody)
	})
	return serveUntil(ctx, stderr, h, nil)
}

// runBare is the baseline: an httputil.ReverseProxy in front of upstream
// with nothing but a tuned Transport (enough idle connections per host for
// the load; Go's default keeps 2) and no BufferPool, plus a /metrics
// listener with the same Go runtime collector as the gateway's, so that
// allocations are counted the same way for both.
func runBare(ctx context.Context, upstream string, stderr io.Writer) error {
	target, err := url.Parse(upstream)
	if err != nil || target.Host == "" {
		return fmt.Errorf("bare: bad -upstream %q", upstream)
	}
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		Transport: &http.Transport{
			DialContext:         d.DialContext,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
		},
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := http.NewServeMux()
	metrics.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return serveUntil(ctx, stderr, rp, metrics)
}

// serveUntil serves h (and admin, if not nil, on a second port) on
// 127.0.0.1 until ctx ends. It announces its addresses on stderr with the
// same JSON log line as the gateway ("msg":"listening", "addr",
// "admin_addr"), which is how the driver learns them.
func serveUntil(ctx context.Context, stderr io.Writer, h, admin http.Handler) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	line := map[string]string{"msg": "listening", "addr": ln.Addr().String()}
	if admin != nil {
		aln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		asrv := &http.Server{Handler: admin, ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- asrv.Serve(aln) }()
		defer asrv.Close()
		line["admin_addr"] = aln.Addr().String()
	}
	b, _ := json.Marshal(line)
	fmt.Fprintf(stderr, "%s\n", b)
	select {
	case <-ctx.Done():
		srv.Close()
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}
