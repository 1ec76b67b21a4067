package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/proxy"
)

// OIDCConfig is the [login.oidc] table: the OpenID Connect login into the
// gateway's own sessions. With Issuer empty (the default) there is none.
// It works alongside or instead of login.users_file and login.upstream.
type OIDCConfig struct {
	// Issuer is the provider's issuer URL, exactly as its tokens carry it.
	Issuer string `toml:"issuer"`
	// ClientID is the gateway's client at the provider; ClientSecretFile
	// holds its secret (none: a public client, PKCE only).
	ClientID         string `toml:"client_id"`
	ClientSecretFile string `toml:"client_secret_file"`
	// Scopes requested at login; "openid" is added if missing. Ask for
	// "offline_access" (most providers) for a refresh token, which recheck
	// = "refresh" needs.
	Scopes []string `toml:"scopes"`
	// RedirectURL is the gateway's callback as registered at the provider:
	// its public origin + "/auth/oidc/callback".
	RedirectURL string `toml:"redirect_url"`
	// SubjectClaim is the ID token claim that becomes the subject;
	// RolesClaim the one that becomes the roles ("" none; a dotted path
	// reaches into objects: "realm_access.roles").
	SubjectClaim string `toml:"subject_claim"`
	RolesClaim   string `toml:"roles_claim"`
	// ExtraAuthParams are added to the authorization request.
	ExtraAuthParams map[string]string `toml:"extra_auth_params"`
	// Recheck is RecheckNever or RecheckRefresh: whether each of our
	// refreshes of an OIDC session also refreshes at the provider.
	Recheck Recheck `toml:"recheck"`
	// PostLogoutRedirectURL is the post_logout_redirect_uri of the
	// end-session URL the logout answers; "" sends none. It must be
	// registered at the provider.
	PostLogoutRedirectURL string `toml:"post_logout_redirect_url"`
	// Timeout bounds each call to the provider.
	Timeout Duration `toml:"timeout"`
}

// Enabled reports whether the OpenID Connect login is configured.
func (o *OIDCConfig) Enabled() bool { return o.Issuer != "" }

// Recheck is login.oidc.recheck. The zero value means RecheckNever.
type Recheck string

// The words of login.oidc.recheck.
const (
	// RecheckNever: our refresh never asks the provider.
	RecheckNever Recheck = "never"
	// RecheckRefresh: our refresh of an OIDC session also refreshes at the
	// provider; its refusal revokes the session (reason idp_refused).
	RecheckRefresh Recheck = "refresh"
)

var recheckWords = []Recheck{RecheckNever, RecheckRefresh}

// MarshalText returns the word of r, or an error naming the allowed ones.
func (r Recheck) MarshalText() ([]byte, error) {
	if r == "" {
		r = RecheckNever
	}
	if !slices.Contains(recheckWords, r) {
		return nil, fmt.Errorf("%q is not one of never, refresh", string(r))
	}
	return []byte(r), nil
}

// UnmarshalText sets r from its word: never or refresh; any other text is
// an error naming them, and leaves r as it was.
func (r *Recheck) UnmarshalText(text []byte) error {
	if !slices.Contains(recheckWords, Recheck(text)) {
		return fmt.Errorf("%q is not one of never, refresh", string(text))
	}
	*r = Recheck(text)
	return nil
}

// defaultOIDC is [login.oidc]'s defaults.
func defaultOIDC() OIDCConfig {
	return OIDCConfig{
		Scopes:       slices.Clone(auth.DefaultOIDCScopes),
		SubjectClaim: "sub",
		Recheck:      RecheckNever,
		Timeout:      Duration(10 * time.Second),
		// Empty, not nil: as the example file's empty table decodes.
		ExtraAuthParams: map[string]string{},
	}
}

// validateOIDC checks [login.oidc] when it is enabled.
func (c *Config) validateOIDC(p *problems) {
	o := &c.Login.OIDC
	if !o.Enabled() {
		return
	}
	checkURL(p, "login.oidc.issuer", o.Issuer)
	checkURL(p, "login.oidc.redirect_url", o.RedirectURL)
	if o.RedirectURL != "" {
		if u, err := url.Parse(o.RedirectURL); err == nil && u.Path != "/auth/oidc/callback" {
			p.add("login.oidc.redirect_url", "path %q must be /auth/oidc/callback", u.Path)
		}
	}
	if o.PostLogoutRedirectURL != "" {
		checkURL(p, "login.oidc.post_logout_redirect_url", o.PostLogoutRedirectURL)
	}
	if o.ClientID == "" {
		p.add("login.oidc.client_id", "is required with login.oidc.issuer")
	}
	if o.ClientSecretFile != "" {
		checkReadable(p, "login.oidc.client_secret_file", o.ClientSecretFile)
	}
	if o.SubjectClaim == "" {
		p.add("login.oidc.subject_claim", "must not be empty")
	}
	for i, s := range o.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\"\\") {
			p.add(fmt.Sprintf("login.oidc.scopes[%d]", i), "%q is not a scope", s)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(o.ExtraAuthParams)) {
		switch k {
		case "", "response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge", "code_challenge_method":
			p.add(joinKey("login.oidc.extra_auth_params", k), "the login sets this parameter itself")
		}
	}
	checkWord(p, "login.oidc.recheck", o.Recheck)
	positive(p, "login.oidc.timeout", o.Timeout)
	if c.Tokens.Delivery == proxy.DeliveryBearer {
		p.add("tokens.delivery", `must be "cookie" or "both" with login.oidc: the callback's redirect can only carry the token as a cookie`)
	}
	if c.Tokens.DPoP == proxy.DPoPRequired {
		p.add("tokens.dpop", `cannot be "required" with login.oidc: a browser's redirect from the provider carries no DPoP proof`)
	}
}

// checkURL requires an absolute http or https URL without userinfo or
// fragment; https unless it is a loopback host (a provider in a test).
func checkURL(p *problems, key, s string) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		p.add(key, "%w", err)
	case u.Scheme != "https" && u.Scheme != "http", u.Host == "":
		p.add(key, "%q must be an absolute https URL", s)
	case u.User != nil:
		p.add(key, "%q must not hold credentials", s)
	case u.Fragment != "":
		p.add(key, "%q must not have a fragment", s)
	case u.Scheme == "http" && !loopbackHost(u.Hostname()):
		p.add(key, "%q must be https (http only for localhost)", s)
	}
}

func loopbackHost(h string) bool {
	return h == "localhost" || strings.HasPrefix(h, "127.") || h == "::1"
}

// buildOIDC makes the OpenID Connect login of [login.oidc], if any: its
// sealing key is derived from the signing key, so that replicas sharing
// the key file open each other's login states and refresh tokens. It does
// not reach the provider: Run discovers it in the background.
func (m *Main) buildOIDC() error {
	o := m.cfg.Login.OIDC
	if !o.Enabled() {
		return nil
	}
	secret := ""
	if o.ClientSecretFile != "" {
		s, err := loadSecretFile(o.ClientSecretFile)
		if err != nil {
			return &ConfigError{Key: "login.oidc.client_secret_file", Err: err}
		}
		secret = s
	}
	key, err := m.keys.SigningKey().DeriveSecret("oidc login")
	if err != nil {
		return &ConfigError{Key: "login.oidc", Err: err}
	}
	m.oidcBuiltFrom = oidcFingerprint(o, secret, m.keys.SigningKey().ID())
	m.oidc, err = auth.NewOIDC(auth.OIDCConfig{
		Issuer: o.Issuer, ClientID: o.ClientID, ClientSecret: secret, Scopes: o.Scopes,
		RedirectURL: o.RedirectURL, SubjectClaim: o.SubjectClaim, RolesClaim: o.RolesClaim,
		ExtraAuthParams: o.ExtraAuthParams, PostLogoutRedirectURL: o.PostLogoutRedirectURL,
		Secret: key, Timeout: time.Duration(o.Timeout), Now: m.now,
	})
	if err != nil {
		return &ConfigError{Key: "login.oidc", Err: err}
	}
	return nil
}

// newSessions is the sessions service of m's store, minter and
// configuration, asking m's OpenID Provider again at each refresh where
// login.oidc.recheck is "refresh".
func (m *Main) newSessions() *auth.Sessions {
	scfg := sessionsConfig(m.cfg, m.now, m.met)
	if m.oidc != nil && m.cfg.Login.OIDC.Recheck == RecheckRefresh {
		scfg.IdP = m.oidc
	}
	scfg.LogoutReplay = m.logoutRC // back-channel logout
	return auth.NewSessions(m.store, m.minter, scfg)
}

// keepOIDC makes a successor n use prev's relying party where nothing it
// was built from changed (the [login.oidc] settings, the client secret,
// the signing key its login state is sealed with): a discovered provider
// stays discovered, and login states sealed before the reload still open.
// A relying party built anew is discovered by startOIDC, once n is live.
func (n *Main) keepOIDC(prev *Main) {
	if n.oidc != nil && prev.oidc != nil && n.oidcBuiltFrom == prev.oidcBuiltFrom {
		n.oidc = prev.oidc
		n.stopDiscovery = prev.stopDiscovery
	}
}

// startOIDC, run when successor n has replaced prev, discovers n's relying
// party in the background until ctx ends if it is a new one, and stops the
// discovery of prev's if n no longer uses it. So a reload that fails starts
// nothing, and a provider replaced before it answered is not retried for
// ever. (The start-up Main's discovery runs on Run's context; a reload that
// replaces its provider leaves it until it answers or the gateway stops.)
func (n *Main) startOIDC(ctx context.Context, prev *Main) {
	if prev.oidc != n.oidc && prev.stopDiscovery != nil {
		prev.stopDiscovery()
	}
	if n.oidc == nil || n.oidc == prev.oidc {
		return
	}
	dctx, stop := context.WithCancel(ctx)
	n.stopDiscovery = stop
	go n.discoverOIDC(dctx)
}

// discoverOIDC discovers the provider until it answers or ctx ends: the
// gateway serves meanwhile, and its OIDC login answers 503 until then.
func (m *Main) discoverOIDC(ctx context.Context) {
	if m.oidc == nil {
		return
	}
	m.oidc.Run(ctx, func(err error) {
		m.log.Warn("oidc discovery failed; retrying", "issuer", m.oidc.Issuer(), "err", err)
	})
	if m.oidc.Discovered() {
		m.log.Info("oidc provider discovered", "issuer", m.oidc.Issuer())
	}
}

// oidcFingerprint is a digest of what a relying party is built from: equal
// digests, the same relying party.
func oidcFingerprint(o OIDCConfig, secret, keyID string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%#v\x00%s\x00%s", o, secret, keyID)
	return hex.EncodeToString(h.Sum(nil))
}
