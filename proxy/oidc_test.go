package proxy

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/auth/oidctest"
	"github.com/spa-gateway/gateway/metrics"
	"github.com/spa-gateway/gateway/sessionstore"
)

// oidcEnv is a gateway with the OpenID Connect login, on the address the
// real OP (oidctest) knows as its callback's.
type oidcEnv struct {
	*env
	op   *oidctest.OP
	base string // http://127.0.0.1:PORT
}

// newOIDCEnv starts the OP and a gateway logging in with it, cookie
// delivery; recheck makes refreshes recheck at the OP.
func newOIDCEnv(t *testing.T, recheck bool) *oidcEnv {
	t.Helper()
	return newOIDCEnvWith(t, recheck, "")
}

// newOIDCEnvClaim is newOIDCEnv with login.oidc.subject_claim claim.
func newOIDCEnvClaim(t *testing.T, claim string) *oidcEnv {
	t.Helper()
	return newOIDCEnvWith(t, false, claim)
}

func newOIDCEnvWith(t *testing.T, recheck bool, subjectClaim string) *oidcEnv {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	op := oidctest.Start(t, base+oidcCallbackPath)
	o, err := auth.NewOIDC(auth.OIDCConfig{
		Issuer: op.Issuer, ClientID: oidctest.ClientID, ClientSecret: oidctest.ClientSecret,
		Scopes:      []string{"openid", "profile", "email", "offline_access"},
		RedirectURL: base + oidcCallbackPath, Secret: make([]byte, 32), SubjectClaim: subjectClaim,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Discover(t.Context()); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *Config, d *Deps) {
		c.Delivery = DeliveryCookie
		d.OIDC = o
	}, func(sc *auth.SessionsConfig, _ *sessionstore.Store) {
		if recheck {
			sc.IdP = o
		}
	})
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: e.gw}}
	srv.Start()
	t.Cleanup(srv.Close)
	return &oidcEnv{env: e, op: op, base: base}
}

// browser is a cookie jar that follows no redirect.
func newBrowser(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (o *oidcEnv) get(t *testing.T, c *http.Client, target string) *http.Response {
	t.Helper()
	if strings.HasPrefix(target, "/") {
		target = o.base + target
	}
	res, err := c.Get(target)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res
}

// begin starts a login in browser c and returns the provider's URL.
func (o *oidcEnv) begin(t *testing.T, c *http.Client, returnTo string) string {
	t.Helper()
	res := o.get(t, c, oidcLoginPath+"?return_to="+url.QueryEscape(returnTo))
	loc := res.Header.Get("Location")
	if res.StatusCode != http.StatusFound || !strings.HasPrefix(loc, o.op.Issuer) {
		t.Fatalf("GET /auth/oidc/login = %s, Location %q; want 302 to the OP", res.Status, loc)
	}
	return loc
}

// login logs user in through the OP's page; it returns the callback's
// answer.
func (o *oidcEnv) login(t *testing.T, c *http.Client, returnTo string, u oidctest.User) *http.Response {
	t.Helper()
	cb := o.op.Login(t, c, o.begin(t, c, returnTo), u)
	return o.get(t, c, cb.String())
}

// oidcToken is the token the answer set as the token cookie.
func oidcToken(t *testing.T, res *http.Response) string {
	t.Helper()
	for _, c := range res.Cookies() {
		if c.Name == "__Host-gateway" && c.Value != "" {
			return c.Value
		}
	}
	t.Fatalf("%s: no token cookie in %q", res.Status, res.Header.Values("Set-Cookie"))
	return ""
}

// TestOIDCLogin: through the real OP's login page, the callback creates our
// session for the OP's subject and redirects to return_to; the upstream
// sees the subject; our refresh rotates; the old token after the grace is
// reuse and revokes the session; the logout of another session answers the
// OP's end-session URL, and following it ends the OP's session too: the
// OP's refresh tokens for that user are gone, which a rechecking refresh
// of a third session then finds.
func TestOIDCLogin(t *testing.T) {
	o := newOIDCEnv(t, true)
	c := newBrowser(t)
	res := o.login(t, c, "/api/me?x=1", oidctest.Alice)
	if res.StatusCode != http.StatusFound || res.Header.Get("Location") != "/api/me?x=1" {
		t.Fatalf("callback = %s, Location %q; want 302 to /api/me?x=1", res.Status, res.Header.Get("Location"))
	}
	tok := oidcToken(t, res)
	for _, sc := range res.Header.Values("Set-Cookie") {
		if strings.Contains(sc, oidcCookieName) && !strings.Contains(sc, "Max-Age=0") {
			t.Errorf("the login state is not cleared: %q", sc)
		}
	}
	if got := testutil.ToFloat64(o.metrics.OIDCLogins.WithLabelValues(metrics.OIDCSuccess)); got != 1 {
		t.Errorf("gateway_oidc_logins_total{success} = %v, want 1", got)
	}
	if res := o.do("GET", "/api/me", bearer(tok), ""); res.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/me = %s", res.Status)
	}
	if got := o.upstream.last(t).Header.Get("X-Auth-Subject"); got != oidctest.Alice.ID {
		t.Fatalf("X-Auth-Subject = %q, want the OP's subject %q", got, oidctest.Alice.ID)
	}

	o.clock.Advance(16 * time.Minute)
	res = o.do("POST", "/auth/refresh", bearer(tok), "")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("refresh = %s: %s", res.Status, readBody(t, res))
	}
	next := oidcToken(t, res)
	o.clock.Advance(11 * time.Second)
	if res := o.do("POST", "/auth/refresh", bearer(tok), ""); errorOf(t, res).Description != "token reuse detected" {
		t.Fatalf("old token after the grace = %s, want reuse", res.Status)
	}
	if res := o.do("POST", "/auth/refresh", bearer(next), ""); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("successor after reuse = %s, want 401", res.Status)
	}

	// Two more sessions of Alice: the logout of one ends the OP's session.
	keep := oidcToken(t, o.login(t, newBrowser(t), "/", oidctest.Alice))
	out := oidcToken(t, o.login(t, newBrowser(t), "/", oidctest.Alice))
	res = o.do("POST", "/auth/logout", bearer(out), "")
	var body struct {
		EndSessionURL string `json:"end_session_url"`
	}
	if res.StatusCode != http.StatusOK || json.NewDecoder(res.Body).Decode(&body) != nil {
		t.Fatalf("logout = %s, want 200 with end_session_url", res.Status)
	}
	end, _ := url.Parse(body.EndSessionURL)
	if !strings.HasPrefix(body.EndSessionURL, o.op.Issuer) || end.Query().Get("id_token_hint") == "" {
		t.Fatalf("end_session_url = %q", body.EndSessionURL)
	}
	// Before the OP's logout, the other session refreshes (at the OP too).
	o.clock.Advance(16 * time.Minute)
	res = o.do("POST", "/auth/refresh", bearer(keep), "")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("refresh of the kept session = %s: %s", res.Status, readBody(t, res))
	}
	keep = oidcToken(t, res)
	follow := &http.Client{Jar: c.Jar}
	if res, err := follow.Get(body.EndSessionURL); err != nil || res.StatusCode >= 400 {
		t.Fatalf("following end_session_url: %v %v\n%s", res, err, o.op.Log())
	}
	o.clock.Advance(16 * time.Minute)
	res = o.do("POST", "/auth/refresh", bearer(keep), "")
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("refresh after the OP's logout = %s, want 401 (the OP ended its session)", res.Status)
	}
	if got := testutil.ToFloat64(o.metrics.SessionsRevoked.WithLabelValues(auth.ReasonIdPRefused)); got != 1 {
		t.Errorf("sessions revoked idp_refused = %v, want 1", got)
	}
}

// TestOIDCRecheck: with recheck, a provider that cannot be reached answers
// 503 and changes nothing; one that no longer knows the refresh token (it
// restarted) revokes the session; without recheck neither matters.
func TestOIDCRecheck(t *testing.T) {
	t.Run("refresh", func(t *testing.T) {
		o := newOIDCEnv(t, true)
		tok := oidcToken(t, o.login(t, newBrowser(t), "/", oidctest.Alice))
		sid := o.sessionOf(t, tok)
		o.op.Stop()
		o.clock.Advance(16 * time.Minute)
		res := o.do("POST", "/auth/refresh", bearer(tok), "")
		if res.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("refresh with the OP down = %s, want 503", res.Status)
		}
		if s, err := o.store.Get(t.Context(), sid); err != nil || s.Revoked() || s.PrevJTI != "" {
			t.Fatalf("session after a 503: %+v, %v; want unchanged", s, err)
		}
		o.op.Restart(t)
		res = o.do("POST", "/auth/refresh", bearer(tok), "")
		if p := errorOf(t, res); res.StatusCode != http.StatusUnauthorized || p.Description != "session revoked" {
			t.Fatalf("refresh after the OP forgot the token = %s %+v, want 401 session revoked", res.Status, p)
		}
		if s, _ := o.store.Get(t.Context(), sid); s.RevokeReason != auth.ReasonIdPRefused {
			t.Fatalf("revoke reason = %q, want %q", s.RevokeReason, auth.ReasonIdPRefused)
		}
	})
	t.Run("never", func(t *testing.T) {
		o := newOIDCEnv(t, false)
		tok := oidcToken(t, o.login(t, newBrowser(t), "/", oidctest.Bob))
		o.op.Restart(t)
		o.clock.Advance(16 * time.Minute)
		if res := o.do("POST", "/auth/refresh", bearer(tok), ""); res.StatusCode != http.StatusOK {
			t.Fatalf("refresh without recheck = %s, want 200", res.Status)
		}
	})
}

// sessionOf is the session ID of one of the gateway's tokens.
func (o *oidcEnv) sessionOf(t *testing.T, tok string) string {
	t.Helper()
	v, err := o.gw.deps.Verifier.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	return v.SessionID
}

// TestOIDCCallbackAttacks: a callback that is not the answer to this
// browser's own login creates nothing: no login state, a wrong state,
// another browser's login state, a replayed code, the provider's error.
func TestOIDCCallbackAttacks(t *testing.T) {
	o := newOIDCEnv(t, false)
	victim, attacker := newBrowser(t), newBrowser(t)

	// The attacker's own login, stopped at the callback.
	cb := o.op.Login(t, attacker, o.begin(t, attacker, "/"), oidctest.Bob)
	q := cb.Query()
	before := o.count(t)
	refused := func(name string, c *http.Client, target, wantCode string) {
		t.Helper()
		res, err := c.Get(o.base + target)
		if err != nil {
			t.Fatal(err)
		}
		if p := errorOf(t, res); res.StatusCode != http.StatusBadRequest || p.Error != wantCode {
			t.Errorf("%s: %s %+v, want 400 %s", name, res.Status, p, wantCode)
		}
		for _, sc := range res.Header.Values("Set-Cookie") {
			if strings.HasPrefix(sc, "__Host-gateway=") {
				t.Errorf("%s: a token cookie was set", name)
			}
		}
		if n := o.count(t); n != before {
			t.Errorf("%s: %d sessions, want %d", name, n, before)
		}
	}
	// Login CSRF: the victim's browser is sent the attacker's callback.
	refused("no login state", victim, cb.RequestURI(), errInvalidRequest)
	o.begin(t, victim, "/")
	refused("the victim's own login state", victim, cb.RequestURI(), errInvalidRequest)
	refused("wrong state", attacker, oidcCallbackPath+"?code="+url.QueryEscape(q.Get("code"))+"&state=forged", errInvalidRequest)
	refused("missing state", attacker, oidcCallbackPath+"?code="+url.QueryEscape(q.Get("code")), errInvalidRequest)
	refused("provider error", attacker, oidcCallbackPath+"?error=access_denied&state="+url.QueryEscape(q.Get("state")), errAccessDenied)

	// The attacker's own callback works once (its state was cleared by the
	// refusals above, so it starts again)...
	cb = o.op.Login(t, attacker, o.begin(t, attacker, "/"), oidctest.Bob)
	var sealed string
	u, _ := url.Parse(o.base + oidcCookiePath)
	for _, c := range attacker.Jar.Cookies(u) {
		if c.Name == oidcCookieName {
			sealed = c.Value
		}
	}
	if res := o.get(t, attacker, cb.RequestURI()); res.StatusCode != http.StatusFound {
		t.Fatalf("the attacker's own callback = %s", res.Status)
	}
	before = o.count(t)
	// ...and its code, replayed with the same login state, is refused by
	// the OP.
	if sealed == "" {
		t.Fatal("no login state cookie in the attacker's jar")
	}
	replay := newBrowser(t)
	replay.Jar.SetCookies(u, []*http.Cookie{{Name: oidcCookieName, Value: sealed, Path: oidcCookiePath}})
	refused("replayed code", replay, cb.RequestURI(), errAccessDenied)
}

func (o *oidcEnv) count(t *testing.T) int {
	t.Helper()
	n, err := o.store.Count(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestOIDCReturnTo: return_to is only ever a path of our own origin; every
// trick that a browser would read as another site becomes "/", at the
// login and again after the real OP's round trip.
func TestOIDCReturnTo(t *testing.T) {
	for in, want := range map[string]string{
		"/app/x?y=1#z":                         "/app/x?y=1#z",
		"/":                                    "/",
		"":                                     "/",
		"//evil.example":                       "/",
		"///evil.example":                      "/",
		`/\evil.example`:                       "/",
		`/app\..\..\evil.example`:              "/",
		"https://evil.example":                 "/",
		"https:evil.example":                   "/",
		"javascript:alert(1)":                  "/",
		"evil.example":                         "/",
		"/\t/evil.example":                     "/",
		"/\n/evil.example":                     "/",
		"/\x00x":                               "/",
		"\\\\evil.example":                     "/",
		"/%2F%2Fevil.example":                  "/%2F%2Fevil.example", // a path: browsers do not decode it into a host
		"/" + strings.Repeat("a", maxReturnTo): "/",
	} {
		if got := safeReturnTo(in); got != want {
			t.Errorf("safeReturnTo(%q) = %q, want %q", in, got, want)
		}
	}
	o := newOIDCEnv(t, false)
	for _, evil := range []string{"//evil.example/x", "https://evil.example/", `/\evil.example`} {
		res := o.login(t, newBrowser(t), evil, oidctest.Alice)
		if res.StatusCode != http.StatusFound || res.Header.Get("Location") != "/" {
			t.Errorf("return_to %q: callback %s Location %q, want 302 to /", evil, res.Status, res.Header.Get("Location"))
		}
	}
}

// TestOIDCNeedsCookieDelivery: the callback's redirect can only carry the
// token as a cookie.
func TestOIDCNeedsCookieDelivery(t *testing.T) {
	o, err := auth.NewOIDC(auth.OIDCConfig{Issuer: "http://127.0.0.1:9/", ClientID: "c", RedirectURL: "http://x/cb", Secret: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, nil)
	_, err = New(e.cfg, Deps{Verifier: e.gw.deps.Verifier, Keys: e.keys, Sessions: e.gw.deps.Sessions, Metrics: e.metrics, OIDC: o})
	if err == nil {
		t.Fatal("New(bearer delivery, OIDC) = nil error")
	}
	// Not discovered: the login answers 503.
	e = newEnv(t, func(c *Config, d *Deps) { c.Delivery = DeliveryBoth; d.OIDC = o })
	if res := e.do("GET", oidcLoginPath, nil, ""); res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("login before discovery = %s, want 503", res.Status)
	}
}
