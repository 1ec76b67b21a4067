package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/auth"
)

// TestProofPool: every proof of a pool is accepted by the gateway's own
// verifier for the bench's request and token, once; the pools of later
// rounds reuse no jti; and a load run sends each proof once with its
// token, then stops when the pool is used up.
func TestProofPool(t *testing.T) {
	o := options{warmup: 500 * time.Millisecond, duration: 2 * time.Second}
	for _, alg := range []string{auth.ES256, auth.EdDSA} {
		t.Run(alg, func(t *testing.T) {
			k, err := newProofKey(alg)
			if err != nil {
				t.Fatal(err)
			}
			made := time.Unix(1_700_000_000, 0)
			now := made
			v, err := auth.NewDPoPVerifier(auth.DPoPConfig{MaxAge: o.proofMaxAge(), Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			const token = "the.bound.token"
			// The gateway's URL of the bench's request: http, its Host, the
			// path; the query is ignored.
			req := auth.DPoPRequest{Method: "GET", URL: "http://bench.example/api/bench?page=1", AccessToken: token, JKT: k.jkt}
			for round := range 2 {
				pool, err := k.proofs(token, 300, made)
				if err != nil {
					t.Fatal(err)
				}
				// The proofs are checked at the end of a pair's runs.
				now = made.Add(2 * (o.warmup + o.duration))
				for i, p := range pool {
					if _, err := v.Verify(context.Background(), []string{p}, req); err != nil {
						t.Fatalf("round %d, proof %d: %v", round, i, err)
					}
				}
				if _, err := v.Verify(context.Background(), pool[:1], req); err == nil {
					t.Errorf("round %d: a proof was accepted twice", round)
				}
			}
			other := req
			other.AccessToken = "another.token"
			pool, _ := k.proofs(token, 1, made)
			if _, err := v.Verify(context.Background(), pool, other); err == nil {
				t.Error("a proof was accepted with another token than its ath's")
			}
		})
	}
}

func TestBoundLoad(t *testing.T) {
	k, err := newProofKey(auth.ES256)
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewDPoPVerifier(auth.DPoPConfig{})
	if err != nil {
		t.Fatal(err)
	}
	const token = "the.bound.token"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "DPoP ")
		url := "http://" + r.Host + r.URL.EscapedPath()
		if _, err := v.Verify(r.Context(), r.Header["Dpop"], auth.DPoPRequest{Method: r.Method, URL: url, AccessToken: tok, JKT: k.jkt}); !ok || err != nil {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	defer srv.Close()
	pool, err := k.proofs(token, 2000, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	res, err := runLoad(srv.Listener.Addr().String(), 2, newBoundLoad(token, &poolCursor{pool: pool}), time.Millisecond, time.Hour,
		func() error { return nil }, func() error { return nil })
	if err != nil || !res.exhausted || res.errs != 0 || res.n < 1000 || res.n > len(pool) {
		t.Errorf("runLoad = n %d, errs %d (first: %s), exhausted %v, %v; want the pool used up without errors", res.n, res.errs, res.firstErr, res.exhausted, err)
	}
}

func TestSelectModes(t *testing.T) {
	names := func(ms []mode) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.String())
		}
		return out
	}
	def := names(selectModes(nil, true))
	if len(def) != 13 || !slices.Contains(def, "EdDSA refresh bound") || slices.Contains(def, "ES256 refresh bound") {
		t.Errorf("default modes = %q; want the 12 unbound ones and EdDSA refresh bound", def)
	}
	got := names(selectModes(regexp.MustCompile("ES256 every_request bound"), false))
	if want := []string{"ES256 every_request reused", "ES256 every_request bound"}; !slices.Equal(got, want) {
		t.Errorf("selectModes(ES256 every_request bound) = %q, want %q (the unbound one it is compared with)", got, want)
	}
	if all := selectModes(regexp.MustCompile("."), false); len(all) != 18 {
		t.Errorf("selectModes(.) = %d modes, want 18", len(all))
	}
}

func TestProofMaxAge(t *testing.T) {
	tests := []struct {
		warmup, duration, want time.Duration
	}{
		{500 * time.Millisecond, 2 * time.Second, time.Minute},
		{5 * time.Second, 20 * time.Second, time.Minute},
		{time.Second, 30 * time.Second, 67 * time.Second},
		{time.Minute, time.Hour, 10 * time.Minute},
	}
	for _, tt := range tests {
		o := options{warmup: tt.warmup, duration: tt.duration}
		if got := o.proofMaxAge(); got != tt.want {
			t.Errorf("proofMaxAge(%v + %v) = %v, want %v", tt.warmup, tt.duration, got, tt.want)
		}
	}
}
