package main

import (
	"testing"

	"github.com/spa-gateway/gateway/proxy"
)

// TestRefreshWithoutTokenCountsMissing: a POST /auth/refresh that carries
// no token (an SPA's interceptor firing on a 401) is answered 401 "token
// missing" and counted as gateway_refreshes_total{result="missing"}; it
// used to count as result="invalid_token", which inflates the
// refresh-failure alert. A token that does not verify still counts as
// invalid_token.
func TestRefreshWithoutTokenCountsMissing(t *testing.T) {
	tests := []struct {
		name     string
		delivery proxy.Delivery
		header   []string
		want     string // the result counted
	}{
		{"bearer: no header", proxy.DeliveryBearer, nil, "missing"},
		{"bearer: another scheme", proxy.DeliveryBearer, []string{"Authorization", "Basic YWxpY2U6eA=="}, "missing"},
		{"bearer: a token that does not verify", proxy.DeliveryBearer, []string{"Authorization", "Bearer not.a.token"}, "invalid_token"},
		{"cookie: no cookie", proxy.DeliveryCookie, []string{"X-Requested-With", "fetch"}, "missing"},
		{"cookie: a cookie that does not verify", proxy.DeliveryCookie, []string{"X-Requested-With", "fetch", "Cookie", "__Host-gateway=not.a.token"}, "invalid_token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, t.TempDir(), okUpstream(t))
			cfg.Tokens.Delivery = tt.delivery
			g := startMain(t, cfg)
			before := map[string]float64{}
			body := g.scrape()
			for _, r := range []string{"missing", "invalid_token"} {
				v, ok := sample(body, `gateway_refreshes_total{result="`+r+`"}`)
				if !ok {
					t.Fatalf(`gateway_refreshes_total{result=%q} absent from /metrics before any refresh`, r)
				}
				before[r] = v
			}

			code, _, h := g.request("POST", g.base+"/auth/refresh", "", tt.header...)
			if code != 401 {
				t.Errorf("POST /auth/refresh: status %d, want 401", code)
			}
			if h.Get("Www-Authenticate") == "" {
				t.Error("POST /auth/refresh: no WWW-Authenticate challenge")
			}

			body = g.scrape()
			for _, r := range []string{"missing", "invalid_token"} {
				got, _ := sample(body, `gateway_refreshes_total{result="`+r+`"}`)
				want := before[r]
				if r == tt.want {
					want++
				}
				if got != want {
					t.Errorf(`gateway_refreshes_total{result=%q} = %v, want %v`, r, got, want)
				}
			}
		})
	}
}
