package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// OpenID Connect errors, as OIDC's methods return them (wrapped: match
// them with errors.Is).
var (
	// ErrIdPUnavailable means the identity provider could not be asked:
	// its discovery has not succeeded yet, or it was unreachable, timed
	// out or failed (5xx, an unreadable answer). Nothing changed; the
	// caller answers 503 and the client may retry.
	ErrIdPUnavailable = errors.New("identity provider unavailable")
	// ErrIdPRefused means the identity provider refused: the code of a
	// callback (used, expired, not ours), or a refresh token (invalid_grant:
	// the user was disabled or signed out there).
	ErrIdPRefused = errors.New("identity provider refused")
	// ErrLoginState means a callback's login state is missing, expired,
	// forged, or not the state the provider returned: the callback is not
	// the answer to a login this browser started.
	ErrLoginState = errors.New("login state missing or wrong")
	// ErrIDToken means the provider's ID token was refused: signature,
	// iss, aud, azp, exp, iat, nonce, at_hash, or no subject.
	ErrIDToken = errors.New("id token refused")
)

// Defaults of OIDCConfig.
const (
	defaultOIDCLoginTTL = 10 * time.Minute
	defaultOIDCTimeout  = 10 * time.Second
	// oidcClockSkew is how far in the future an ID token's iat may be:
	// the provider's clock may run a little ahead of ours.
	oidcClockSkew = time.Minute
)

// DefaultOIDCScopes are the scopes of an OIDCConfig without Scopes.
var DefaultOIDCScopes = []string{oidc.ScopeOpenID, "profile", "email"}

// OIDCConfig is an OpenID Connect relying party: the gateway's login with an
// identity provider. Issuer, ClientID, RedirectURL and Secret are
// required; the zero value of every other field is documented.
type OIDCConfig struct {
	// Issuer is the provider's issuer URL, exactly as its ID tokens carry
	// it; its discovery document is Issuer + "/.well-known/openid-configuration".
	Issuer       string
	ClientID     string
	ClientSecret string // "" for a public client
	// Scopes are requested at login; nil means DefaultOIDCScopes. "openid"
	// is added if missing. A provider issues a refresh token for
	// "offline_access" (most) or by its own client settings.
	Scopes []string
	// RedirectURL is the gateway's callback, as registered at the provider.
	RedirectURL string
	// SubjectClaim is the ID token claim that becomes our subject; "" means
	// "sub". RolesClaim is the claim (a string or an array of strings; a
	// dotted path reaches into objects, as Keycloak's
	// "realm_access.roles") that becomes our roles; "" means none.
	SubjectClaim string
	RolesClaim   string
	// ExtraAuthParams are added to the authorization request (prompt,
	// audience, ...); they never replace the flow's own parameters.
	ExtraAuthParams map[string]string
	// PostLogoutRedirectURL is the post_logout_redirect_uri of
	// EndSessionURL; "" sends none (the provider shows its own page).
	PostLogoutRedirectURL string
	// Secret seals the login state and, at rest, the provider's refresh
	// tokens (AES-256-GCM); 32 bytes, derived from the signing key so that
	// replicas share it (Key.DeriveSecret("oidc")).
	Secret []byte
	// LoginTTL bounds the time from the redirect to the provider to the
	// callback; zero means 10 minutes.
	LoginTTL time.Duration
	// Timeout bounds every call to the provider (discovery, the code
	// exchange, a refresh, the JWKS); zero means 10s.
	Timeout time.Duration
	// HTTPClient reaches the provider; nil means a client with Timeout.
	HTTPClient *http.Client
	// Now is the clock of the login state and the ID token's checks; nil
	// means time.Now.
	Now func() time.Time
}

// OIDC is the gateway's OpenID Connect login: it discovers the provider,
// sends the browser there (Begin), checks its answer (Finish), refreshes
// at the provider (Recheck) and builds the provider's logout URL
// (EndSessionURL). The protocol is go-oidc's and x/oauth2's. It is safe for
// concurrent use; until Discover has succeeded, every method that needs the
// provider returns ErrIdPUnavailable.
type OIDC struct {
	cfg    OIDCConfig
	seal   *sealer
	client *http.Client
	now    func() time.Time
	p      atomic.Pointer[oidcProvider]
}

// oidcProvider is what discovery found.
type oidcProvider struct {
	oauth      oauth2.Config
	verifier   *oidc.IDTokenVerifier
	logout     *oidc.IDTokenVerifier // of back-channel logout tokens
	endSession string                // "" when the provider has none
}

// NewOIDC returns the relying party of cfg, not yet discovered (see
// Discover and Run).
func NewOIDC(cfg OIDCConfig) (*OIDC, error) {
	if cfg.Issuer == "" || cfg.ClientID == "" || cfg.RedirectURL == "" {
		return nil, errors.New("oidc: issuer, client_id and redirect_url are required")
	}
	s, err := newSealer(cfg.Secret)
	if err != nil {
		return nil, fmt.Errorf("oidc: %w", err)
	}
	if cfg.LoginTTL <= 0 {
		cfg.LoginTTL = defaultOIDCLoginTTL
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultOIDCTimeout
	}
	if cfg.SubjectClaim == "" {
		cfg.SubjectClaim = "sub"
	}
	if cfg.Scopes == nil {
		cfg.Scopes = DefaultOIDCScopes
	}
	if !contains(cfg.Scopes, oidc.ScopeOpenID) {
		cfg.Scopes = append([]string{oidc.ScopeOpenID}, cfg.Scopes...)
	}
	o := &OIDC{cfg: cfg, seal: s, client: cfg.HTTPClient, now: cfg.Now}
	if o.client == nil {
		o.client = &http.Client{Timeout: cfg.Timeout}
	}
	if o.now == nil {
		o.now = time.Now
	}
	return o, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Issuer is the provider's issuer URL.
func (o *OIDC) Issuer() string { return o.cfg.Issuer }

// Discovered reports whether Discover has succeeded.
func (o *OIDC) Discovered() bool { return o.p.Load() != nil }

// Discover reads the provider's discovery document, once. The error wraps
// ErrIdPUnavailable; the issuer in the document must be Issuer exactly.
func (o *OIDC) Discover(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(o.ctx(ctx), o.cfg.Timeout)
	defer cancel()
	p, err := oidc.NewProvider(ctx, o.cfg.Issuer)
	if err != nil {
		return fmt.Errorf("%w: discovery of %s: %w", ErrIdPUnavailable, o.cfg.Issuer, err)
	}
	var extra struct {
		EndSession string   `json:"end_session_endpoint"`
		JWKSURI    string   `json:"jwks_uri"`
		Algs       []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := p.Claims(&extra); err != nil {
		return fmt.Errorf("%w: discovery of %s: %w", ErrIdPUnavailable, o.cfg.Issuer, err)
	}
	if extra.JWKSURI == "" {
		return fmt.Errorf("%w: discovery of %s: no jwks_uri", ErrIdPUnavailable, o.cfg.Issuer)
	}
	// The provider's keys, shared by the ID token and logout token
	// verifiers, and fetched as providerKeys says (not go-oidc's
	// RemoteKeySet, which fetches again for every forged token). The algs
	// are the announced ones go-oidc supports, as its own verifier takes
	// them; none announced means RS256.
	keys := newProviderKeys(extra.JWKSURI, o.client, o.now, o.cfg.Timeout)
	var algs []string
	for _, a := range extra.Algs {
		if slices.Contains(ExternalAlgorithms, a) {
			algs = append(algs, a)
		}
	}
	o.p.Store(&oidcProvider{
		oauth: oauth2.Config{
			ClientID:     o.cfg.ClientID,
			ClientSecret: o.cfg.ClientSecret,
			Endpoint:     p.Endpoint(),
			RedirectURL:  o.cfg.RedirectURL,
			Scopes:       o.cfg.Scopes,
		},
		verifier:   oidc.NewVerifier(o.cfg.Issuer, keys, &oidc.Config{ClientID: o.cfg.ClientID, Now: o.now, SupportedSigningAlgs: algs}),
		logout:     logoutVerifier(o.cfg.Issuer, keys, algs, o.cfg.ClientID, o.now),
		endSession: extra.EndSession,
	})
	return nil
}

// Run calls Discover until it succeeds or ctx ends, waiting from a second
// up to 30s between tries, and tells onError of each failure (nil: not
// told). A gateway starts while its provider is down: its OIDC login
// answers 503 until then, its other logins and sessions work.
func (o *OIDC) Run(ctx context.Context, onError func(error)) {
	wait := time.Second
	for {
		err := o.Discover(ctx)
		if err == nil {
			return
		}
		if onError != nil {
			onError(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// ctx carries the provider's HTTP client for go-oidc and x/oauth2.
func (o *OIDC) ctx(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, o.client)
}

func (o *OIDC) provider() (*oidcProvider, error) {
	p := o.p.Load()
	if p == nil {
		return nil, fmt.Errorf("%w: %s not discovered yet", ErrIdPUnavailable, o.cfg.Issuer)
	}
	return p, nil
}

// loginState is what the browser holds, sealed, between Begin and Finish.
type loginState struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	ReturnTo string `json:"r"`
	Expires  int64  `json:"e"` // unix seconds
}

// Sealing purposes: a value sealed for one never opens as the other.
const (
	sealLogin        = "oidc login state"
	sealRefreshToken = "oidc refresh token"
)

// Begin starts a login that returns to returnTo (which the caller has
// checked is a path of its own): the authorization URL to send the browser
// to (code flow, PKCE S256, random state and nonce) and the sealed login
// state for the browser to hold until the callback, valid for LoginTTL.
// The error wraps ErrIdPUnavailable.
func (o *OIDC) Begin(returnTo string) (authURL, sealed string, err error) {
	p, err := o.provider()
	if err != nil {
		return "", "", err
	}
	st := loginState{
		State:    randomText(),
		Nonce:    randomText(),
		Verifier: oauth2.GenerateVerifier(),
		ReturnTo: returnTo,
		Expires:  o.now().Add(o.cfg.LoginTTL).Unix(),
	}
	if sealed, err = o.seal.sealJSON(sealLogin, &st); err != nil {
		return "", "", err
	}
	opts := make([]oauth2.AuthCodeOption, 0, len(o.cfg.ExtraAuthParams)+2)
	for k, v := range o.cfg.ExtraAuthParams {
		opts = append(opts, oauth2.SetAuthURLParam(k, v))
	}
	// After the extra parameters, so that none replaces the flow's own.
	opts = append(opts, oauth2.S256ChallengeOption(st.Verifier), oidc.Nonce(st.Nonce))
	return p.oauth.AuthCodeURL(st.State, opts...), sealed, nil
}

// OIDCLogin is a login the provider vouched for (Finish).
type OIDCLogin struct {
	// Identity is the user, with Identity.IdP set.
	Identity Identity
	// ReturnTo is Begin's returnTo.
	ReturnTo string
}

// Finish checks a callback: sealed is the login state Begin handed out (""
// if the browser sent none), state and code the callback's parameters. It
// checks the state (constant time), exchanges the code with the PKCE
// verifier and verifies the ID token (go-oidc: signature from the
// provider's JWKS, iss, aud, exp; then iat, nonce, azp, at_hash). The
// error wraps ErrLoginState, ErrIdPRefused, ErrIDToken or
// ErrIdPUnavailable.
func (o *OIDC) Finish(ctx context.Context, sealed, state, code string) (OIDCLogin, error) {
	var st loginState
	if sealed == "" || o.seal.openJSON(sealLogin, sealed, &st) != nil {
		return OIDCLogin{}, ErrLoginState
	}
	if o.now().Unix() >= st.Expires {
		return OIDCLogin{}, fmt.Errorf("%w: expired", ErrLoginState)
	}
	if state == "" || subtle.ConstantTimeCompare([]byte(state), []byte(st.State)) != 1 {
		return OIDCLogin{}, ErrLoginState
	}
	if code == "" {
		return OIDCLogin{}, fmt.Errorf("%w: no code", ErrIdPRefused)
	}
	p, err := o.provider()
	if err != nil {
		return OIDCLogin{}, err
	}
	ctx, cancel := context.WithTimeout(o.ctx(ctx), o.cfg.Timeout)
	defer cancel()
	tok, err := p.oauth.Exchange(ctx, code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		return OIDCLogin{}, tokenEndpointError("code exchange", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return OIDCLogin{}, fmt.Errorf("%w: the token answer holds no id_token", ErrIDToken)
	}
	id, err := o.verifyIDToken(ctx, p, raw, st.Nonce, tok.AccessToken)
	if err != nil {
		return OIDCLogin{}, err
	}
	if tok.RefreshToken != "" {
		if id.IdP.RefreshToken, err = o.seal.seal(sealRefreshToken, []byte(tok.RefreshToken)); err != nil {
			return OIDCLogin{}, err
		}
	}
	return OIDCLogin{Identity: id, ReturnTo: st.ReturnTo}, nil
}

// verifyIDToken verifies raw and reads our identity from it.
func (o *OIDC) verifyIDToken(ctx context.Context, p *oidcProvider, raw, nonce, accessToken string) (Identity, error) {
	idt, err := verifyProviderToken(ctx, p.verifier, raw, ErrIDToken)
	if err != nil {
		return Identity{}, err
	}
	if idt.Nonce == "" || subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return Identity{}, fmt.Errorf("%w: nonce is not this login's", ErrIDToken)
	}
	// go-oidc leaves iat unchecked: a token issued in the future is forged
	// or from a broken clock.
	if idt.IssuedAt.After(o.now().Add(oidcClockSkew)) {
		return Identity{}, fmt.Errorf("%w: issued in the future", ErrIDToken)
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(accessToken); err != nil {
			return Identity{}, fmt.Errorf("%w: %w", ErrIDToken, err)
		}
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return Identity{}, fmt.Errorf("%w: %w", ErrIDToken, err)
	}
	// OpenID Connect Core 3.1.3.7: with several audiences azp must be
	// there, and where there it must be us.
	azp, hasAZP := claims["azp"]
	if (hasAZP && azp != o.cfg.ClientID) || (!hasAZP && len(idt.Audience) > 1) {
		return Identity{}, fmt.Errorf("%w: azp is not the client", ErrIDToken)
	}
	sub, _ := claimPath(claims, o.cfg.SubjectClaim).(string)
	if sub == "" {
		return Identity{}, fmt.Errorf("%w: no %q claim", ErrIDToken, o.cfg.SubjectClaim)
	}
	id := Identity{Subject: sub}
	if o.cfg.RolesClaim != "" {
		id.Roles = claimStrings(claimPath(claims, o.cfg.RolesClaim))
	}
	sid, _ := claims["sid"].(string)
	id.IdP = IdPLogin{Issuer: idt.Issuer, SessionID: sid, IDToken: raw}
	return id, nil
}

// claimPath is the claim at a dotted path ("realm_access.roles"), or nil.
// A claim whose own name holds a dot is found first.
func claimPath(claims map[string]any, path string) any {
	if v, ok := claims[path]; ok {
		return v
	}
	var v any = claims
	for part := range strings.SplitSeq(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[part]
	}
	return v
}

// claimStrings reads a roles claim: a string, or an array of strings
// (other elements skipped); anything else is none.
func claimStrings(v any) []string {
	switch v := v.(type) {
	case string:
		if v != "" {
			return []string{v}
		}
	case []any:
		var out []string
		for _, x := range v {
			if s, ok := x.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// tokenEndpointError maps an answer of the provider's token endpoint:
// invalid_grant (the code or refresh token is not, or no longer, good) is
// ErrIdPRefused, anything else (an unreachable provider, a 5xx, a broken
// client configuration) ErrIdPUnavailable, so that a misconfiguration or
// an outage never ends anyone's session. The provider's error description
// is kept; the token never is in it.
func tokenEndpointError(op string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
		return fmt.Errorf("%w: %s: %s %s", ErrIdPRefused, op, re.ErrorCode, re.ErrorDescription)
	}
	if errors.As(err, &re) {
		return fmt.Errorf("%w: %s: %d %s %s", ErrIdPUnavailable, op, re.Response.StatusCode, re.ErrorCode, re.ErrorDescription)
	}
	return fmt.Errorf("%w: %s: %w", ErrIdPUnavailable, op, redactURLError(err))
}

// Recheck refreshes at the provider with a session's sealed refresh token
// (IdPLogin.RefreshToken) and returns the sealed successor the provider
// rotated to (sealed itself when it rotated nothing). The error wraps
// ErrIdPRefused (the provider said invalid_grant: the session must end) or
// ErrIdPUnavailable (nothing is known; nothing must change).
func (o *OIDC) Recheck(ctx context.Context, sealed string) (string, error) {
	p, err := o.provider()
	if err != nil {
		return "", err
	}
	rt, err := o.seal.open(sealRefreshToken, sealed)
	if err != nil {
		// Sealed with another key: the signing key changed since the
		// login. The provider cannot be asked, so the session cannot be
		// rechecked, which is what the operator asked for.
		return "", fmt.Errorf("%w: refresh token sealed with another key", ErrIdPRefused)
	}
	ctx, cancel := context.WithTimeout(o.ctx(ctx), o.cfg.Timeout)
	defer cancel()
	tok, err := p.oauth.TokenSource(ctx, &oauth2.Token{RefreshToken: string(rt)}).Token()
	if err != nil {
		return "", tokenEndpointError("refresh", err)
	}
	if tok.RefreshToken == "" || tok.RefreshToken == string(rt) {
		return sealed, nil
	}
	return o.seal.seal(sealRefreshToken, []byte(tok.RefreshToken))
}

// EndSessionURL is the provider's end_session_endpoint with id_token_hint,
// client_id, post_logout_redirect_uri (PostLogoutRedirectURL, if set) and
// a random state (OpenID Connect RP-Initiated Logout 1.0), for the client
// to follow; "" when the provider has no such endpoint or is not yet
// discovered.
func (o *OIDC) EndSessionURL(idToken string) string {
	p := o.p.Load()
	if p == nil || p.endSession == "" {
		return ""
	}
	u, err := url.Parse(p.endSession)
	if err != nil {
		return ""
	}
	q := u.Query()
	if idToken != "" {
		q.Set("id_token_hint", idToken)
	}
	q.Set("client_id", o.cfg.ClientID)
	if o.cfg.PostLogoutRedirectURL != "" {
		q.Set("post_logout_redirect_uri", o.cfg.PostLogoutRedirectURL)
	}
	q.Set("state", randomText())
	u.RawQuery = q.Encode()
	return u.String()
}
