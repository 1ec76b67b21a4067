package main

import (
	"strings"
	"testing"
)

// TestValidateExternal checks that every problem of [[tokens.external]]
// and accept is named, with its key, in one run.
func TestValidateExternal(t *testing.T) {
	c := Default()
	c.Tokens.KeyFile = "/dev/null"
	r := DefaultRoute()
	r.Prefix, r.Upstream = "/api/", "http://127.0.0.1:9000"
	r.Accept = []string{"gateway", "corp", "nope"}
	c.Route = []RouteConfig{r}
	good := DefaultExternal()
	good.Name, good.Issuer, good.Audience = "corp", "https://idp.example.com", "api"
	dup := good
	dup.Issuer = "https://other.example.com"
	bad := DefaultExternal()
	bad.Name, bad.Issuer, bad.JWKSURL, bad.Audience = "gateway", "https://x.example.com", "http://idp.example.com/jwks", "api"
	bad.Algorithms = []string{"HS256", "none", "RS256"}
	c.Tokens.External = []ExternalTokensConfig{good, dup, bad}
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate = nil, want errors")
	}
	for _, want := range []string{
		"tokens.external[1].name", "tokens.external[2].name", "tokens.external[2].jwks_url",
		"tokens.external[2].algorithms[0]", "tokens.external[2].algorithms[1]", "route[0].accept[2]",
	} {
		if !strings.Contains(err.Error(), want+":") {
			t.Errorf("Validate = %v, want it to name %s", err, want)
		}
	}
	for _, notWant := range []string{"route[0].accept[0]", "route[0].accept[1]", "tokens.external[2].algorithms[2]", "tokens.external[0]"} {
		if strings.Contains(err.Error(), notWant+":") {
			t.Errorf("Validate = %v, should not name %s", err, notWant)
		}
	}
}
