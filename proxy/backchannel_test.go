package proxy

import (
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/auth/oidctest"
)

// postLogout posts logout_token as the provider does.
func (o *oidcEnv) postLogout(t *testing.T, token string) *http.Response {
	t.Helper()
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	return o.do("POST", backchannelLogoutPath, h, url.Values{"logout_token": {token}}.Encode())
}

// idpSID is the provider's sid of the session our token tok names.
func (o *oidcEnv) idpSID(t *testing.T, tok string) string {
	t.Helper()
	var c jwt.MapClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &c); err != nil {
		t.Fatal(err)
	}
	sid, _ := c["sid"].(string)
	sess, err := o.store.Get(t.Context(), sid)
	if err != nil || sess.IdPSessionID == "" {
		t.Fatalf("session %s: IdPSessionID %q, %v; want the OP's sid", sid, sess.IdPSessionID, err)
	}
	return sess.IdPSessionID
}

// refreshes reports whether tok's session still refreshes; it returns the
// successor (tok when refused) and, when refused, the error description.
func (o *oidcEnv) refreshes(t *testing.T, tok string) (next, refused string) {
	t.Helper()
	res := o.do("POST", "/auth/refresh", bearer(tok), "")
	if res.StatusCode == http.StatusOK {
		return oidcToken(t, res), ""
	}
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("refresh = %s, want 200 or 401", res.Status)
	}
	return tok, errorOf(t, res).Description
}

// forgedLogouts are logout tokens that must change nothing, each made from
// the good claims of the session sid of alice.
func forgedLogouts(t *testing.T, op *oidctest.OP, sid string) map[string]string {
	t.Helper()
	good := func() jwt.MapClaims { return op.LogoutClaims(oidctest.ClientID, oidctest.Alice.ID, sid) }
	edit := func(f func(jwt.MapClaims)) string {
		c := good()
		f(c)
		return op.SignLogout(t, c)
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(m jwt.SigningMethod, key any, kid, typ string) string {
		tok := jwt.NewWithClaims(m, good())
		tok.Header["kid"], tok.Header["typ"] = kid, typ
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	now := time.Now()
	return map[string]string{
		"wrong aud":           edit(func(c jwt.MapClaims) { c["aud"] = "another-client" }),
		"wrong iss":           edit(func(c jwt.MapClaims) { c["iss"] = "http://evil.example/" }),
		"nonce present":       edit(func(c jwt.MapClaims) { c["nonce"] = "n-0S6_WzA2Mj" }),
		"no events":           edit(func(c jwt.MapClaims) { delete(c, "events") }),
		"events without it":   edit(func(c jwt.MapClaims) { c["events"] = map[string]any{"http://example.com/other": map[string]any{}} }),
		"event not an object": edit(func(c jwt.MapClaims) { c["events"] = map[string]any{oidctest.LogoutEvent: "yes"} }),
		"events an array":     edit(func(c jwt.MapClaims) { c["events"] = []any{oidctest.LogoutEvent} }),
		"expired": edit(func(c jwt.MapClaims) {
			c["iat"], c["exp"] = now.Add(-90*time.Second).Unix(), now.Add(-time.Second).Unix()
		}),
		"iat too old":            edit(func(c jwt.MapClaims) { c["iat"], c["exp"] = now.Add(-10*time.Minute).Unix(), now.Add(time.Hour).Unix() }),
		"iat in the future":      edit(func(c jwt.MapClaims) { c["iat"], c["exp"] = now.Add(10*time.Minute).Unix(), now.Add(time.Hour).Unix() }),
		"no iat":                 edit(func(c jwt.MapClaims) { delete(c, "iat") }),
		"no jti":                 edit(func(c jwt.MapClaims) { delete(c, "jti") }),
		"neither sid nor sub":    edit(func(c jwt.MapClaims) { delete(c, "sid"); delete(c, "sub") }),
		"unknown key":            sign(jwt.SigningMethodRS256, other, "unknown-kid", "logout+jwt"),
		"another key, OP kid":    sign(jwt.SigningMethodRS256, other, oidctest.KeyID, "logout+jwt"),
		"alg none":               sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, oidctest.KeyID, "logout+jwt"),
		"HS256 with a secret":    sign(jwt.SigningMethodHS256, []byte(oidctest.ClientSecret), oidctest.KeyID, "logout+jwt"),
		"typ of an access token": sign(jwt.SigningMethodRS256, op.Key, oidctest.KeyID, "at+jwt"),
		"not a JWT":              "not-a-jwt",
	}
}

// TestBackchannelLogout: against the real OP, Alice logs in twice (two
// sessions, two sids of the OP) and Bob once. Forged logout tokens change
// nothing (400); one signed by the OP's key with the first sid ends
// exactly that session, and its replay changes nothing (400); a sub-only
// token ends Alice's other session and leaves Bob's.
func TestBackchannelLogout(t *testing.T) {
	o := newOIDCEnv(t, false)
	first := oidcToken(t, o.login(t, newBrowser(t), "/", oidctest.Alice))
	second := oidcToken(t, o.login(t, newBrowser(t), "/", oidctest.Alice))
	bob := oidcToken(t, o.login(t, newBrowser(t), "/", oidctest.Bob))
	sid1, sid2 := o.idpSID(t, first), o.idpSID(t, second)
	if sid1 == sid2 {
		t.Fatalf("two logins share the OP's sid %q", sid1)
	}
	o.clock.Advance(16 * time.Minute) // every token expired: each may refresh

	for name, tok := range forgedLogouts(t, o.op, sid1) {
		res := o.postLogout(t, tok)
		if got := errorOf(t, res); res.StatusCode != http.StatusBadRequest || got.Error != errInvalidRequest {
			t.Errorf("%s: logout = %s %q, want 400 invalid_request", name, res.Status, got.Error)
		}
	}
	for name, h := range map[string]http.Header{"no content type": {}, "JSON": {"Content-Type": {"application/json"}}} {
		if res := o.do("POST", backchannelLogoutPath, h, `{"logout_token":"x"}`); res.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: logout = %s, want 400", name, res.Status)
		}
	}
	if got := testutil.ToFloat64(o.metrics.SessionsRevoked.WithLabelValues(auth.ReasonIdPLogout)); got != 0 {
		t.Fatalf("after forged tokens: sessions revoked idp_logout = %v, want 0", got)
	}
	var refused string
	for _, tok := range []*string{&first, &second, &bob} {
		if *tok, refused = o.refreshes(t, *tok); refused != "" {
			t.Fatalf("after forged tokens: refresh refused: %s", refused)
		}
	}

	good := o.op.SignLogout(t, o.op.LogoutClaims(oidctest.ClientID, oidctest.Alice.ID, sid1))
	res := o.postLogout(t, good)
	if res.StatusCode != http.StatusOK || res.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("logout by sid = %s (Cache-Control %q), want 200 no-store: %s", res.Status, res.Header.Get("Cache-Control"), readBody(t, res))
	}
	if got := testutil.ToFloat64(o.metrics.SessionsRevoked.WithLabelValues(auth.ReasonIdPLogout)); got != 1 {
		t.Errorf("sessions revoked idp_logout = %v, want 1", got)
	}
	o.clock.Advance(16 * time.Minute)
	if _, refused = o.refreshes(t, first); refused != "session revoked" {
		t.Fatalf("refresh of the logged-out session: refused %q, want session revoked", refused)
	}
	if second, refused = o.refreshes(t, second); refused != "" {
		t.Fatalf("refresh of Alice's other session: %s, want 200 (another sid)", refused)
	}
	if res := o.postLogout(t, good); res.StatusCode != http.StatusBadRequest {
		t.Fatalf("replayed logout token = %s, want 400", res.Status)
	}
	o.clock.Advance(16 * time.Minute)
	if second, refused = o.refreshes(t, second); refused != "" {
		t.Fatalf("after the replay: refresh of Alice's other session refused: %s", refused)
	}

	sidOnly := o.op.SignLogout(t, o.op.LogoutClaims(oidctest.ClientID, "", sid2))
	if res := o.postLogout(t, sidOnly); res.StatusCode != http.StatusOK {
		t.Errorf("sid-only logout token = %s, want 200 (found by the sid's entry)", res.Status)
	}
	bySub := o.op.SignLogout(t, o.op.LogoutClaims(oidctest.ClientID, oidctest.Alice.ID, ""))
	if res := o.postLogout(t, bySub); res.StatusCode != http.StatusOK {
		t.Fatalf("logout by sub = %s, want 200", res.Status)
	}
	o.clock.Advance(16 * time.Minute)
	if _, refused = o.refreshes(t, second); refused != "session revoked" {
		t.Fatalf("after the logout by sub: Alice's session refused %q, want session revoked", refused)
	}
	if _, refused = o.refreshes(t, bob); refused != "" {
		t.Fatalf("after Alice's logout by sub: Bob's session refused: %s", refused)
	}
}

// TestBackchannelLogoutNotConfigured: without the OpenID Connect login the
// path is no endpoint of the gateway's (404), and with a subject_claim
// other than sub a logout token cannot name our sessions (501).
func TestBackchannelLogoutNotConfigured(t *testing.T) {
	e := newEnv(t, nil)
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	if res := e.do("POST", backchannelLogoutPath, h, "logout_token=x"); res.StatusCode != http.StatusNotFound {
		t.Errorf("without OIDC: logout = %s, want 404", res.Status)
	}
	o, err := auth.NewOIDC(auth.OIDCConfig{Issuer: "http://127.0.0.1:1/", ClientID: "c", RedirectURL: "http://127.0.0.1/cb",
		SubjectClaim: "email", Secret: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	e = newEnv(t, func(c *Config, d *Deps) { c.Delivery, d.OIDC = DeliveryCookie, o })
	res := e.do("POST", backchannelLogoutPath, h, "logout_token=x")
	if res.StatusCode != http.StatusNotImplemented || !strings.Contains(errorOf(t, res).Description, "subject_claim") {
		t.Errorf("subject_claim email: logout = %s, want 501", res.Status)
	}
}

// TestBackchannelLogoutBySID: against the real OP, a logout token with a
// sid and no sub, signed by the OP's key, ends exactly that sid's session
// (Alice's other sid and Bob survive), found by the entry the login
// recorded; its replay is refused (400); a sid we never saw is 200 with
// nothing ended (section 2.8: nothing left to log out). Under
// subject_claim "client_id" (a claim testop's ID tokens carry, the same
// for every user: our subject is then "web", never the OP's sub), a token
// with sub and sid is found by its sid too, still ending that sid's
// session only, and one with a sub alone is 501.
func TestBackchannelLogoutBySID(t *testing.T) {
	for _, claim := range []string{"sub", "client_id"} {
		t.Run(claim, func(t *testing.T) {
			o := newOIDCEnvClaim(t, claim)
			first := oidcToken(t, o.login(t, newBrowser(t), "/", oidctest.Alice))
			second := oidcToken(t, o.login(t, newBrowser(t), "/", oidctest.Alice))
			bob := oidcToken(t, o.login(t, newBrowser(t), "/", oidctest.Bob))
			sid1 := o.idpSID(t, first)
			revoked := func() float64 {
				return testutil.ToFloat64(o.metrics.SessionsRevoked.WithLabelValues(auth.ReasonIdPLogout))
			}

			unknown := o.op.SignLogout(t, o.op.LogoutClaims(oidctest.ClientID, "", "never-seen-sid"))
			if res := o.postLogout(t, unknown); res.StatusCode != http.StatusOK || revoked() != 0 {
				t.Fatalf("logout of an unknown sid = %s, %v revoked; want 200, none", res.Status, revoked())
			}
			sub := "" // sid only
			if claim != "sub" {
				sub = oidctest.Alice.ID // the OP's sub, not our subject: found by sid
			}
			good := o.op.SignLogout(t, o.op.LogoutClaims(oidctest.ClientID, sub, sid1))
			if res := o.postLogout(t, good); res.StatusCode != http.StatusOK {
				t.Fatalf("logout by sid = %s, want 200: %s", res.Status, readBody(t, res))
			}
			if got := revoked(); got != 1 {
				t.Errorf("sessions revoked idp_logout = %v, want 1", got)
			}
			if res := o.postLogout(t, good); res.StatusCode != http.StatusBadRequest {
				t.Errorf("replayed logout token = %s, want 400", res.Status)
			}
			o.clock.Advance(16 * time.Minute)
			var refused string
			if _, refused = o.refreshes(t, first); refused != "session revoked" {
				t.Fatalf("refresh of the logged-out session: refused %q, want session revoked", refused)
			}
			for name, tok := range map[string]string{"Alice's other sid": second, "Bob's": bob} {
				if _, refused = o.refreshes(t, tok); refused != "" {
					t.Errorf("%s session refused: %s", name, refused)
				}
			}
			if claim == "sub" {
				return
			}
			bySub := o.op.SignLogout(t, o.op.LogoutClaims(oidctest.ClientID, oidctest.Alice.ID, ""))
			if res := o.postLogout(t, bySub); res.StatusCode != http.StatusNotImplemented {
				t.Errorf("subject_claim client_id: logout by sub alone = %s, want 501", res.Status)
			}
		})
	}
}
