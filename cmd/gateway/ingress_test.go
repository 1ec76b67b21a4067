package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v2"
)

// TestShippedIngressConfigs: the forward-auth configurations of deploy/
// copy every identity header the default [headers.claims] injects, and
// ask /auth/verify. nginx's and Caddy's are also run by proxy's
// TestNginxForwardAuth and TestCaddyForwardAuth; Traefik's is only
// checked here (no Traefik package in Debian).
func TestShippedIngressConfigs(t *testing.T) {
	var want []string
	for h := range Default().Headers.Claims {
		want = append(want, strings.ToLower(h))
	}
	slices.Sort(want)

	var traefik struct {
		HTTP struct {
			Middlewares map[string]struct {
				ForwardAuth *struct {
					Address             string   `yaml:"address"`
					TrustForwardHeader  bool     `yaml:"trustForwardHeader"`
					AuthResponseHeaders []string `yaml:"authResponseHeaders"`
				} `yaml:"forwardAuth"`
			} `yaml:"middlewares"`
		} `yaml:"http"`
	}
	b, err := os.ReadFile("../../deploy/traefik/dynamic.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &traefik); err != nil {
		t.Fatalf("deploy/traefik/dynamic.yml: %v", err)
	}
	fa := traefik.HTTP.Middlewares["gateway-auth"].ForwardAuth
	if fa == nil || !strings.HasSuffix(fa.Address, "/auth/verify") || fa.TrustForwardHeader {
		t.Fatalf("traefik: forwardAuth %+v, want the address of /auth/verify, trustForwardHeader false", fa)
	}
	sameHeaders(t, "traefik authResponseHeaders", fa.AuthResponseHeaders, want)

	caddy := ingressFile(t, "../../deploy/caddy/Caddyfile")
	m := regexp.MustCompile(`(?m)^\s*copy_headers (.+)$`).FindStringSubmatch(caddy)
	if m == nil || !strings.Contains(caddy, "uri /auth/verify") {
		t.Fatal("caddy: no copy_headers, or not asking /auth/verify")
	}
	sameHeaders(t, "caddy copy_headers", strings.Fields(m[1]), want)

	nginx := ingressFile(t, "../../deploy/nginx/gateway.conf")
	var copied []string
	for _, m := range regexp.MustCompile(`auth_request_set \$\w+ \$upstream_http_(x_auth_\w+);`).FindAllStringSubmatch(nginx, -1) {
		copied = append(copied, strings.ReplaceAll(m[1], "_", "-"))
	}
	sameHeaders(t, "nginx auth_request_set", copied, want)
}

func ingressFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sameHeaders compares header names without case.
func sameHeaders(t *testing.T, what string, got, want []string) {
	t.Helper()
	var g []string
	for _, h := range got {
		g = append(g, strings.ToLower(h))
	}
	slices.Sort(g)
	if !slices.Equal(g, want) {
		t.Errorf("%s = %v, want the default claims' headers %v", what, g, want)
	}
}
