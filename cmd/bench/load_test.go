package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestRoundTrip: the load generator's HTTP/1.1 client reads every framing a
// proxy may answer with, over one keep-alive connection, and reconnects
// when the server closes.
func TestRoundTrip(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/length":
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		case "/chunked":
			io.WriteString(w, "ab")
			w.(http.Flusher).Flush()
			io.WriteString(w, "cd")
		case "/close":
			w.Header().Set("Connection", "close")
			io.WriteString(w, "bye")
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	defer srv.Close()
	c, err := dial(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	tests := []struct {
		path   string
		status int
		body   string
	}{
		{"/length", 200, "hello"},
		{"/chunked", 200, "abcd"},
		{"/close", 200, "bye"},
		{"/length", 200, "hello"}, // after a reconnection
		{"/empty", 204, ""},
		{"/chunked", 200, "abcd"},
	}
	for _, tt := range tests {
		for _, keep := range []bool{true, false} {
			req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: x\r\n\r\n", tt.path)
			status, body, err := c.roundTrip([]byte(req), keep)
			want := tt.body
			if !keep {
				want = ""
			}
			if err != nil || status != tt.status || string(body) != want {
				t.Errorf("GET %s (keep %v) = %d %q, %v; want %d %q", tt.path, keep, status, body, err, tt.status, want)
			}
		}
	}
}

// TestRunLoad: a run records only its window, counts the answers it does
// not want as errors, and stops when its token pool is used up.
func TestRunLoad(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer bad" {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	defer srv.Close()
	pool := &poolCursor{pool: []string{"a", "b", "bad", "c"}}
	before, after := 0, 0
	res, err := runLoad(srv.Listener.Addr().String(), 2, newProxyLoad(pool), 100*time.Millisecond, time.Hour,
		func() error { before++; return nil }, func() error { after++; return nil })
	// The pool runs out during the warm-up: an error, not a window.
	if err == nil || res.n != 0 {
		t.Errorf("runLoad on a pool used up in the warm-up = %+v, %v; want an error", res, err)
	}
	pool = &poolCursor{pool: make([]string, 2000)}
	for i := range pool.pool {
		pool.pool[i] = fmt.Sprint("t", i)
	}
	pool.pool[1900] = "bad"
	res, err = runLoad(srv.Listener.Addr().String(), 2, newProxyLoad(pool), time.Millisecond, time.Hour,
		func() error { before++; return nil }, func() error { after++; return nil })
	if err != nil || !res.exhausted || res.errs != 1 || res.n+res.errs > 2000 || res.n < 1000 || len(res.lat) != res.n {
		t.Errorf("runLoad = n %d, errs %d, exhausted %v, %d latencies, %v; want the pool used up with 1 error", res.n, res.errs, res.exhausted, len(res.lat), err)
	}
	if before != 1 || after != 1 {
		t.Errorf("before and after ran %d and %d times, want once each", before, after)
	}
}

func TestAccessTokenOf(t *testing.T) {
	tests := []struct {
		body string
		want string
		ok   bool
	}{
		{`{"access_token":"a.b.c","token_type":"Bearer"}`, "a.b.c", true},
		{`{"token_type":"Bearer","access_token":"x"}`, "x", true},
		{`{"access_token":""}`, "", false},
		{`{"error":"invalid_token"}`, "", false},
	}
	for _, tt := range tests {
		if got, ok := accessTokenOf([]byte(tt.body)); got != tt.want || ok != tt.ok {
			t.Errorf("accessTokenOf(%s) = %q, %v; want %q, %v", tt.body, got, ok, tt.want, tt.ok)
		}
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
	}
	for _, tt := range tests {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
