package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/metrics"
	"github.com/spa-gateway/gateway/proxy"
)

// ExternalTokensConfig is one [[tokens.external]] table: another issuer
// whose tokens routes may accept (validate-only: they name no session of
// the gateway's). DefaultExternal gives the defaults of the keys a table
// leaves out.
type ExternalTokensConfig struct {
	// Name is how routes' accept lists, metrics and logs name the issuer.
	Name string `toml:"name"`
	// Issuer must equal the tokens' "iss".
	Issuer string `toml:"issuer"`
	// JWKSURL is where the issuer publishes its keys. Empty means
	// discovery from Issuer's /.well-known/openid-configuration.
	JWKSURL  string `toml:"jwks_url"`
	Audience string `toml:"audience"`
	// Algorithms are the accepted algs, asymmetric only (auth.ExternalAlgorithms).
	Algorithms []string `toml:"algorithms"`
	// SubjectClaim becomes the subject ([headers.claims]' "sub").
	SubjectClaim string `toml:"subject_claim"`
	// RolesClaim becomes the roles ([headers.claims]' "roles" and
	// require_roles). Empty means none.
	RolesClaim string `toml:"roles_claim"`
	// Leeway is the clock skew allowed on exp, nbf and iat.
	Leeway             Duration `toml:"leeway"`
	MinRefetchInterval Duration `toml:"min_refetch_interval"`
	RefreshInterval    Duration `toml:"refresh_interval"`
	MaxStale           Duration `toml:"max_stale"`
	FetchTimeout       Duration `toml:"fetch_timeout"`
	MaxJWKSBytes       int      `toml:"max_jwks_bytes"`
}

// DefaultExternal is a [[tokens.external]] table's defaults.
func DefaultExternal() ExternalTokensConfig {
	return ExternalTokensConfig{
		Algorithms:         []string{"RS256"},
		SubjectClaim:       "sub",
		MinRefetchInterval: Duration(30 * time.Second),
		RefreshInterval:    Duration(time.Hour),
		MaxStale:           Duration(24 * time.Hour),
		FetchTimeout:       Duration(5 * time.Second),
		MaxJWKSBytes:       1 << 20,
	}
}

// validateExternal checks [[tokens.external]] and the routes' accept
// lists against it.
func (c *Config) validateExternal(p *problems) {
	names := map[string]int{proxy.AcceptGateway: -1}
	issuers := map[string]string{c.Tokens.Issuer: "[tokens]"}
	for i, e := range c.Tokens.External {
		key := fmt.Sprintf("tokens.external[%d]", i)
		switch j, dup := names[e.Name]; {
		case e.Name == "":
			p.add(key+".name", "must not be empty")
		case dup && j < 0:
			p.add(key+".name", "%q is the name of the gateway's own tokens", e.Name)
		case dup:
			p.add(key+".name", "%q is already the name of tokens.external[%d]", e.Name, j)
		case !isToken(e.Name):
			p.add(key+".name", "%q: use letters, digits, '-' and '_'", e.Name)
		default:
			names[e.Name] = i
		}
		if other, dup := issuers[e.Issuer]; dup && e.Issuer != "" {
			p.add(key+".issuer", "%q is already the issuer of %s: a token's iss must say whose it is", e.Issuer, other)
		} else {
			issuers[e.Issuer] = key
		}
		switch {
		case e.Issuer == "":
			p.add(key+".issuer", "must not be empty")
		case e.JWKSURL == "":
			if err := auth.CheckFetchURL(e.Issuer); err != nil {
				p.add(key+".issuer", "with no jwks_url, discovery reads the issuer's URL: %w", err)
			}
		default:
			if err := auth.CheckFetchURL(e.JWKSURL); err != nil {
				p.add(key+".jwks_url", "%w", err)
			}
		}
		if e.Audience == "" {
			p.add(key+".audience", "must not be empty")
		}
		if len(e.Algorithms) == 0 {
			p.add(key+".algorithms", "must name at least one of %s", strings.Join(auth.ExternalAlgorithms, ", "))
		}
		for j, a := range e.Algorithms {
			if !slices.Contains(auth.ExternalAlgorithms, a) {
				p.add(fmt.Sprintf("%s.algorithms[%d]", key, j), "%q is not one of %s (asymmetric only: never none or HS*)", a, strings.Join(auth.ExternalAlgorithms, ", "))
			}
		}
		if e.SubjectClaim == "" {
			p.add(key+".subject_claim", "must not be empty")
		}
		if e.Leeway < 0 || time.Duration(e.Leeway) > 5*time.Minute {
			p.add(key+".leeway", "%v must be between 0s and 5m", e.Leeway)
		}
		positive(p, key+".min_refetch_interval", e.MinRefetchInterval)
		positive(p, key+".fetch_timeout", e.FetchTimeout)
		if e.RefreshInterval < e.MinRefetchInterval {
			p.add(key+".refresh_interval", "%v must be at least min_refetch_interval (%v)", e.RefreshInterval, e.MinRefetchInterval)
		}
		if e.MaxStale < e.RefreshInterval {
			p.add(key+".max_stale", "%v must be at least refresh_interval (%v)", e.MaxStale, e.RefreshInterval)
		}
		if e.MaxJWKSBytes <= 0 {
			p.add(key+".max_jwks_bytes", "%d must be positive", e.MaxJWKSBytes)
		}
	}
	for i, r := range c.Route {
		for j, a := range r.Accept {
			if _, ok := names[a]; !ok {
				p.add(fmt.Sprintf("route[%d].accept[%d]", i, j), "%q is neither %q nor the name of a [[tokens.external]]", a, proxy.AcceptGateway)
			}
		}
		if r.Accept != nil && len(r.Accept) == 0 {
			p.add(fmt.Sprintf("route[%d].accept", i), "must name at least one issuer (leave it out for [\"gateway\"])")
		}
	}
}

// externalVerifiers builds the verifiers of [[tokens.external]], by name,
// reporting their fetches in met.
func externalVerifiers(t TokensConfig, now func() time.Time, met *metrics.Metrics) (map[string]*auth.ExternalVerifier, error) {
	out := make(map[string]*auth.ExternalVerifier, len(t.External))
	for i, e := range t.External {
		name := e.Name
		v, err := auth.NewExternalVerifier(auth.ExternalConfig{
			Name: name, Issuer: e.Issuer, JWKSURL: e.JWKSURL, Audience: e.Audience,
			Algorithms: e.Algorithms, SubjectClaim: e.SubjectClaim, RolesClaim: e.RolesClaim,
			Leeway:             time.Duration(e.Leeway),
			MinRefetchInterval: time.Duration(e.MinRefetchInterval),
			RefreshInterval:    time.Duration(e.RefreshInterval),
			MaxStale:           time.Duration(e.MaxStale),
			FetchTimeout:       time.Duration(e.FetchTimeout),
			MaxJWKSBytes:       int64(e.MaxJWKSBytes),
			Now:                now,
			OnFetch: func(err error) {
				if err != nil {
					met.JWKSFetches.WithLabelValues(name, metrics.JWKSError).Inc()
					return
				}
				met.JWKSFetches.WithLabelValues(name, metrics.JWKSSuccess).Inc()
				met.JWKSLastSuccess.WithLabelValues(name).Set(float64(now().Unix()))
			},
		})
		if err != nil {
			return nil, &ConfigError{Key: fmt.Sprintf("tokens.external[%d]", i), Err: err}
		}
		out[name] = v
	}
	return out, nil
}
