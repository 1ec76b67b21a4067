package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Identity is who a login proved to be.
type Identity struct {
	// Subject becomes the token's "sub"; never empty on success.
	Subject string
	// Roles become the token's "roles"; nil or empty for none.
	Roles []string
	// IdP is the identity provider of an OpenID Connect login (OIDC.Finish),
	// kept with the session, server-side; the zero value for every other
	// login.
	IdP IdPLogin
}

// IdPLogin is what an OpenID Connect login keeps with its session, never
// sent to the browser: the provider's Issuer, its "sid" claim (SessionID,
// "" when it sent none, kept for back-channel logout), its refresh token
// sealed with OIDCConfig.Secret (RefreshToken, "" when it issued none), and
// the raw ID token (the id_token_hint of the provider's logout). The zero
// value is no provider.
type IdPLogin struct {
	Issuer       string
	SessionID    string
	RefreshToken string
	IDToken      string
}

// Credentials is what a client sent to POST /auth/login.
type Credentials struct {
	// Username and Password are the decoded credentials (JSON or form).
	Username, Password string
	// ContentType and Body are the client's request Content-Type and body
	// exactly as received, which UpstreamLogin forwards unchanged.
	ContentType string
	Body        []byte
}

// Authenticator checks credentials.
//
// Authenticate returns the proven Identity, or an error: ErrBadCredentials
// (possibly wrapped, or an *UpstreamRejected with a 4xx status, which
// matches it) when the credentials are wrong or the user unknown, the two
// being indistinguishable; an *UpstreamRejected with another status; an
// error wrapping ErrUpstreamUnavailable when the credentials could not be
// checked; or ctx's error.
type Authenticator interface {
	Authenticate(ctx context.Context, c Credentials) (Identity, error)
}

// Login errors.
var (
	// ErrBadCredentials means the username is unknown or the password
	// wrong; callers must not tell which.
	ErrBadCredentials = errors.New("bad credentials")
	// ErrUpstreamUnavailable means the upstream login endpoint could not be
	// reached, failed at the transport, or gave an unusable answer (a 2xx
	// without the subject header, a rejection body over 1 MiB).
	ErrUpstreamUnavailable = errors.New("upstream login unavailable")
)

// upstreamTimeout is the timeout of UpstreamLogin's default client.
const upstreamTimeout = 10 * time.Second

// maxUpstreamBody is the largest rejection body UpstreamLogin relays.
const maxUpstreamBody = 1 << 20

// UpstreamLogin is an Authenticator that forwards the client's login request
// to a legacy login endpoint (login.upstream). Its fields must not change
// once Authenticate may be called.
type UpstreamLogin struct {
	// URL receives the client's body by POST, with the client's
	// Content-Type.
	URL string
	// SubjectHeader names the response header in which a 2xx answer names
	// the user.
	SubjectHeader string
	// Roles maps subjects to their roles; nil means nobody has any.
	Roles map[string][]string
	// Client sends the request; nil means a client with a 10s timeout
	// over http.DefaultTransport. Whatever Client's CheckRedirect, a 3xx
	// answer is never followed: it is returned as an *UpstreamRejected.
	Client *http.Client
}

// UpstreamRejected is the upstream login endpoint's non-2xx answer, to be
// relayed to the client unchanged. With a 4xx Status it matches
// ErrBadCredentials (errors.Is), so callers count it as a failed login.
type UpstreamRejected struct {
	Status int
	// Header is the upstream's response header, hop-by-hop fields
	// included: the relaying handler chooses what to copy (Content-Type,
	// WWW-Authenticate), never Set-Cookie of the gateway's own cookie.
	Header http.Header
	Body   []byte
}

// Error reports the status only: the body may hold anything.
func (e *UpstreamRejected) Error() string {
	return fmt.Sprintf("upstream login rejected: status %d", e.Status)
}

// Is reports whether target is ErrBadCredentials and the status is 4xx.
func (e *UpstreamRejected) Is(target error) bool {
	return target == ErrBadCredentials && e.Status >= 400 && e.Status < 500
}

// Authenticate forwards c.Body to u.URL and reads the answer: a 2xx names
// the subject in u.SubjectHeader (missing or empty: an error wrapping
// ErrUpstreamUnavailable, not a login); any other status, 3xx included, is
// an *UpstreamRejected with the body read up to 1 MiB.
func (u *UpstreamLogin) Authenticate(ctx context.Context, c Credentials) (Identity, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.URL, bytes.NewReader(c.Body))
	if err != nil {
		return Identity{}, fmt.Errorf("upstream login: %w: %w", ErrUpstreamUnavailable, redactURLError(err))
	}
	if c.ContentType != "" {
		req.Header.Set("Content-Type", c.ContentType)
	}
	resp, err := u.client().Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return Identity{}, fmt.Errorf("upstream login: %w", ctxErr)
		}
		return Identity{}, fmt.Errorf("upstream login: %w: %w", ErrUpstreamUnavailable, redactURLError(err))
	}
	defer resp.Body.Close()

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		// Drain a little so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		subject := strings.TrimSpace(resp.Header.Get(u.SubjectHeader))
		if subject == "" {
			return Identity{}, fmt.Errorf("upstream login: %w: %d answer without %s header", ErrUpstreamUnavailable, resp.StatusCode, u.SubjectHeader)
		}
		return Identity{Subject: subject, Roles: slices.Clone(u.Roles[subject])}, nil
	}

	body, err := io.ReadAll(io.LimitReader(resp.Body, maxUpstreamBody+1))
	if err != nil {
		return Identity{}, fmt.Errorf("upstream login: %w: read answer: %w", ErrUpstreamUnavailable, redactURLError(err))
	}
	if len(body) > maxUpstreamBody {
		return Identity{}, fmt.Errorf("upstream login: %w: %d answer body over %d bytes", ErrUpstreamUnavailable, resp.StatusCode, maxUpstreamBody)
	}
	return Identity{}, &UpstreamRejected{Status: resp.StatusCode, Header: resp.Header.Clone(), Body: body}
}

// client returns u.Client, or the default one, with redirects disabled.
func (u *UpstreamLogin) client() *http.Client {
	var c http.Client
	if u.Client != nil {
		c = *u.Client
	} else {
		c.Timeout = upstreamTimeout
	}
	// A redirect could send the user's credentials to another host: the
	// 3xx is relayed to the client instead.
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// redactURLError drops the URL from a *url.Error: the configured login URL
// may carry credentials in its userinfo or query.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}
