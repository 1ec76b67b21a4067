package auth

import (
	"errors"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/spa-gateway/gateway/auth/oidctest"
)

const internalCallback = "http://127.0.0.1:9/auth/oidc/callback"

func discovered(t *testing.T, op *oidctest.OP, edit func(*OIDCConfig)) *OIDC {
	t.Helper()
	cfg := OIDCConfig{
		Issuer: op.Issuer, ClientID: oidctest.ClientID, ClientSecret: oidctest.ClientSecret,
		RedirectURL: internalCallback, Secret: make([]byte, 32),
	}
	if edit != nil {
		edit(&cfg)
	}
	o, err := NewOIDC(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Discover(t.Context()); err != nil {
		t.Fatal(err)
	}
	return o
}

// opLogin logs Alice in at the OP for authURL and returns the callback's
// state and code.
func opLogin(t *testing.T, op *oidctest.OP, authURL string) (state, code string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	cb := op.Login(t, &http.Client{Jar: jar}, authURL, oidctest.Alice)
	return cb.Query().Get("state"), cb.Query().Get("code")
}

// TestOIDCIDTokenRefusals: the ID token checks on a real provider's tokens.
// A login state whose nonce is not the one the provider put in the token
// (the state and the verifier being right) is refused; so is the real
// token for another client (aud), after its exp, and a token signed by a
// key the provider's JWKS does not hold, or with alg none.
func TestOIDCIDTokenRefusals(t *testing.T) {
	op := oidctest.Start(t, internalCallback)
	o := discovered(t, op, nil)

	authURL, sealed, err := o.Begin("/")
	if err != nil {
		t.Fatal(err)
	}
	var st loginState
	if err := o.seal.openJSON(sealLogin, sealed, &st); err != nil {
		t.Fatal(err)
	}
	st.Nonce = "another-login's-nonce"
	forged, _ := o.seal.sealJSON(sealLogin, &st)
	state, code := opLogin(t, op, authURL)
	if _, err := o.Finish(t.Context(), forged, state, code); !errors.Is(err, ErrIDToken) || !strings.Contains(err.Error(), "nonce") {
		t.Fatalf("Finish(nonce mismatch) = %v, want ErrIDToken (nonce)", err)
	}

	// A good login, for its real ID token.
	authURL, sealed, _ = o.Begin("/")
	state, code = opLogin(t, op, authURL)
	login, err := o.Finish(t.Context(), sealed, state, code)
	if err != nil {
		t.Fatal(err)
	}
	raw := login.Identity.IdP.IDToken
	p, _ := o.provider()
	if _, err := o.verifyIDToken(t.Context(), p, raw, st.Nonce, ""); !errors.Is(err, ErrIDToken) {
		t.Fatalf("verify(wrong nonce) = %v, want ErrIDToken", err)
	}
	other := discovered(t, op, func(c *OIDCConfig) { c.ClientID = oidctest.PublicClient })
	op2, _ := other.provider()
	if _, err := other.verifyIDToken(t.Context(), op2, raw, "", ""); !errors.Is(err, ErrIDToken) || !strings.Contains(err.Error(), "audience") {
		t.Fatalf("verify(another client's token) = %v, want ErrIDToken (audience)", err)
	}
	later := discovered(t, op, func(c *OIDCConfig) { c.Now = func() time.Time { return time.Now().Add(24 * time.Hour) } })
	lp, _ := later.provider()
	if _, err := later.verifyIDToken(t.Context(), lp, raw, "", ""); !errors.Is(err, ErrIDToken) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("verify(expired) = %v, want ErrIDToken (expired)", err)
	}

	claims := map[string]any{"iss": op.Issuer, "aud": oidctest.ClientID, "sub": "mallory",
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(), "nonce": "n"}
	key, _ := GenerateKey(RS256)
	signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key.private}, nil)
	foreign, _ := jwt.Signed(signer).Claims(claims).Serialize()
	if _, err := o.verifyIDToken(t.Context(), p, foreign, "n", ""); !errors.Is(err, ErrIDToken) {
		t.Fatalf("verify(unknown key) = %v, want ErrIDToken", err)
	}
	parts := strings.Split(foreign, ".")
	none := "eyJhbGciOiJub25lIn0." + parts[1] + "."
	if _, err := o.verifyIDToken(t.Context(), p, none, "n", ""); !errors.Is(err, ErrIDToken) {
		t.Fatalf("verify(alg none) = %v, want ErrIDToken", err)
	}
}

// TestOIDCLoginState: the sealed login state expires, opens for no other
// purpose, and a value sealed with another key does not open.
func TestOIDCLoginState(t *testing.T) {
	now := time.Now()
	o, err := NewOIDC(OIDCConfig{Issuer: "http://127.0.0.1:9/", ClientID: "c", RedirectURL: internalCallback,
		Secret: make([]byte, 32), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	st := loginState{State: "s", Expires: now.Add(time.Minute).Unix()}
	sealed, _ := o.seal.sealJSON(sealLogin, &st)
	if _, err := o.Finish(t.Context(), sealed, "s", "code"); !errors.Is(err, ErrIdPUnavailable) {
		t.Fatalf("Finish(good state, provider not discovered) = %v, want ErrIdPUnavailable", err)
	}
	now = now.Add(2 * time.Minute)
	if _, err := o.Finish(t.Context(), sealed, "s", "code"); !errors.Is(err, ErrLoginState) {
		t.Fatalf("Finish(expired state) = %v, want ErrLoginState", err)
	}
	asToken, _ := o.seal.sealJSON(sealRefreshToken, &st)
	if _, err := o.Finish(t.Context(), asToken, "s", "code"); !errors.Is(err, ErrLoginState) {
		t.Fatalf("Finish(a value sealed as a refresh token) = %v, want ErrLoginState", err)
	}
	key := make([]byte, 32)
	key[0] = 1
	otherKey, _ := newSealer(key)
	foreign, _ := otherKey.sealJSON(sealLogin, &st)
	if _, err := o.Finish(t.Context(), foreign, "s", "code"); !errors.Is(err, ErrLoginState) {
		t.Fatalf("Finish(another key's state) = %v, want ErrLoginState", err)
	}
}
