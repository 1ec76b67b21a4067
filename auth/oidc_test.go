package auth_test

import (
	"errors"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/auth/oidctest"
)

const testCallback = "http://127.0.0.1:9/auth/oidc/callback"

func newTestOIDC(t *testing.T, op *oidctest.OP) *auth.OIDC {
	t.Helper()
	o, err := auth.NewOIDC(auth.OIDCConfig{
		Issuer: op.Issuer, ClientID: oidctest.ClientID, ClientSecret: oidctest.ClientSecret,
		Scopes: []string{"openid", "profile", "email", "offline_access"}, RedirectURL: testCallback,
		Secret: make([]byte, 32), RolesClaim: "amr",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Discover(t.Context()); err != nil {
		t.Fatal(err)
	}
	return o
}

func browser(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar}
}

// login runs Begin, the OP's login page and Finish.
func login(t *testing.T, o *auth.OIDC, op *oidctest.OP, returnTo string) (auth.OIDCLogin, error) {
	t.Helper()
	authURL, sealed, err := o.Begin(returnTo)
	if err != nil {
		t.Fatal(err)
	}
	cb := op.Login(t, browser(t), authURL, oidctest.Alice)
	if !strings.HasPrefix(cb.String(), testCallback) {
		t.Fatalf("the OP redirected to %s, want the callback", cb)
	}
	q := cb.Query()
	return o.Finish(t.Context(), sealed, q.Get("state"), q.Get("code"))
}

// TestOIDCAgainstRealProvider: the relying party's whole protocol against
// the zitadel example OP: a login gives the OP's subject and keeps its ID
// token, sid and sealed refresh token; a replayed code is refused; a
// recheck rotates the provider's refresh token; a restarted provider,
// which forgot its tokens, refuses it; the end-session URL carries the
// hint.
func TestOIDCAgainstRealProvider(t *testing.T) {
	op := oidctest.Start(t, testCallback)
	o := newTestOIDC(t, op)

	authURL, sealed, err := o.Begin("/app")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(authURL)
	q := u.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("nonce") == "" || q.Get("state") == "" {
		t.Fatalf("authorization URL %s lacks PKCE S256, nonce or state", authURL)
	}
	cb := op.Login(t, browser(t), authURL, oidctest.Alice)
	code, state := cb.Query().Get("code"), cb.Query().Get("state")
	if _, err := o.Finish(t.Context(), sealed, state+"x", code); !errors.Is(err, auth.ErrLoginState) {
		t.Fatalf("Finish(wrong state) = %v, want ErrLoginState", err)
	}
	got, err := o.Finish(t.Context(), sealed, state, code)
	if err != nil {
		t.Fatalf("Finish = %v\n%s", err, op.Log())
	}
	id := got.Identity
	if id.Subject != oidctest.Alice.ID || got.ReturnTo != "/app" || id.IdP.Issuer != op.Issuer || id.IdP.IDToken == "" {
		t.Fatalf("Finish = %+v", got)
	}
	if len(id.Roles) == 0 {
		t.Fatalf("roles from the amr claim = %q", id.Roles)
	}
	if id.IdP.RefreshToken == "" {
		t.Fatal("no refresh token with offline_access")
	}
	if _, err := o.Finish(t.Context(), sealed, state, code); !errors.Is(err, auth.ErrIdPRefused) {
		t.Fatalf("Finish(replayed code) = %v, want ErrIdPRefused", err)
	}

	next, err := o.Recheck(t.Context(), id.IdP.RefreshToken)
	if err != nil {
		t.Fatalf("Recheck = %v", err)
	}
	if next == id.IdP.RefreshToken {
		t.Fatal("the OP rotated nothing")
	}
	if _, err := o.Recheck(t.Context(), id.IdP.RefreshToken); !errors.Is(err, auth.ErrIdPRefused) {
		t.Fatalf("Recheck(rotated-away token) = %v, want ErrIdPRefused", err)
	}
	end := o.EndSessionURL(id.IdP.IDToken)
	if !strings.HasPrefix(end, op.Issuer) || !strings.Contains(end, "id_token_hint=") {
		t.Fatalf("EndSessionURL = %q", end)
	}

	op.Restart(t)
	if _, err := o.Recheck(t.Context(), next); !errors.Is(err, auth.ErrIdPRefused) {
		t.Fatalf("Recheck after the OP forgot its tokens = %v, want ErrIdPRefused", err)
	}
	op.Stop()
	if _, err := o.Recheck(t.Context(), next); !errors.Is(err, auth.ErrIdPUnavailable) {
		t.Fatalf("Recheck with the OP down = %v, want ErrIdPUnavailable", err)
	}
}
