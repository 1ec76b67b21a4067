package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/metrics"
	"github.com/spa-gateway/gateway/sessionstore"
)

// usersFile builds a real users file source with fast bcrypt hashes.
func usersFile(t testing.TB, roles map[string][]string, users ...string) *auth.UsersFile {
	t.Helper()
	var b strings.Builder
	for i := 0; i+1 < len(users); i += 2 {
		h, err := bcrypt.GenerateFromPassword([]byte(users[i+1]), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(users[i] + ":" + string(h) + "\n")
	}
	uf, err := auth.ParseUsers(strings.NewReader(b.String()), roles)
	if err != nil {
		t.Fatal(err)
	}
	return uf
}

// newSessionEnv is a gateway with users alice/wonderland (roles reader) and
// bob/builder, a failure limit of 3 a minute, and edit applied last.
func newSessionEnv(t testing.TB, edit func(*Config, *Deps), editSessions ...func(*auth.SessionsConfig, *sessionstore.Store)) *env {
	t.Helper()
	return newEnv(t, func(c *Config, d *Deps) {
		d.Login = usersFile(t, map[string][]string{"alice": {"reader"}}, "alice", "wonderland", "bob", "builder")
		d.Limiter = auth.NewFailureLimiter(3, time.Minute, d.Now)
		if edit != nil {
			edit(c, d)
		}
	}, editSessions...)
}

// login logs user in with a JSON login and no other header.
func (e *env) login(user, pass string) (tokenResponse, *http.Response) {
	e.t.Helper()
	res, tr := e.loginWith(user, pass, nil)
	return tr, res
}

func (e *env) mustLogin(user, pass string) string {
	e.t.Helper()
	tr, res := e.login(user, pass)
	if res.StatusCode != http.StatusOK {
		e.t.Fatalf("login %s: status = %d, want 200", user, res.StatusCode)
	}
	return tr.AccessToken
}

// refresh posts to /auth/refresh with the token and returns the answer and
// the new token (empty unless 200).
func (e *env) refresh(tok string) (*http.Response, string) {
	e.t.Helper()
	res := e.do("POST", "/auth/refresh", bearer(tok), "")
	if res.StatusCode != http.StatusOK {
		return res, ""
	}
	var tr tokenResponse
	if err := json.Unmarshal([]byte(readBody(e.t, res)), &tr); err != nil {
		e.t.Fatal(err)
	}
	return res, tr.AccessToken
}

func (e *env) claims(tok string) *auth.Token {
	e.t.Helper()
	v, err := auth.NewVerifier(auth.VerifierConfig{Keys: e.keys, Algorithm: auth.EdDSA, Issuer: "gateway", Audience: "api", Now: e.clock.Now})
	if err != nil {
		e.t.Fatal(err)
	}
	t, err := v.VerifyExpired(tok)
	if err != nil {
		e.t.Fatalf("minted token does not verify: %v", err)
	}
	return t
}

func wantInvalidToken(t testing.TB, res *http.Response, desc string) {
	t.Helper()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status = %d, want 401", res.StatusCode)
	}
	want := `Bearer realm="gateway", error="invalid_token", error_description="` + desc + `"`
	if got := res.Header.Get("WWW-Authenticate"); got != want {
		t.Errorf("WWW-Authenticate = %q, want %q", got, want)
	}
	if eb := errorOf(t, res); eb.Error != "invalid_token" || eb.Description != desc {
		t.Errorf("body = %+v, want invalid_token %q", eb, desc)
	}
}

func TestLogin(t *testing.T) {
	e := newSessionEnv(t, nil)
	tr, res := e.login("alice", "wonderland")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200", res.StatusCode)
	}
	if tr.TokenType != "Bearer" || tr.ExpiresIn != 900 || tr.RefreshExpiresIn != 3600 {
		t.Errorf("body = %+v, want Bearer, 900, 3600", tr)
	}
	if got := res.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
	tok := e.claims(tr.AccessToken)
	if tok.Subject != "alice" || strings.Join(tok.Roles, ",") != "reader" || tok.SessionID == "" || tok.ID == "" {
		t.Errorf("token = %+v, want alice with role reader, a sid and a jti", tok)
	}
	s, err := e.store.Get(t.Context(), tok.SessionID)
	if err != nil {
		t.Fatalf("session not stored: %v", err)
	}
	if s.JTI != tok.ID || s.Subject != "alice" {
		t.Errorf("session = %+v, want jti %s and subject alice", s, tok.ID)
	}
	if res := e.do("GET", "/api/x", bearer(tr.AccessToken), ""); res.StatusCode != http.StatusOK {
		t.Errorf("proxied call: status = %d, want 200", res.StatusCode)
	}

	form := e.do("POST", "/auth/login", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, "username=bob&password=builder")
	if form.StatusCode != http.StatusOK {
		t.Errorf("form login: status = %d, want 200", form.StatusCode)
	}
	if got := counter(t, e.metrics.Logins.WithLabelValues(metrics.LoginSuccess)); got != 2 {
		t.Errorf("logins{success} = %v, want 2", got)
	}
}

func TestLoginFailures(t *testing.T) {
	e := newSessionEnv(t, nil)
	tests := []struct {
		name, ct, body string
		want           int
		code           string
	}{
		{"wrong password", "application/json", `{"username":"alice","password":"x"}`, 401, "invalid_grant"},
		{"unknown user", "application/json", `{"username":"mallory","password":"x"}`, 401, "invalid_grant"},
		{"malformed json", "application/json", `{"username":`, 400, "invalid_request"},
		{"missing password", "application/json", `{"username":"alice"}`, 400, "invalid_request"},
		{"wrong content type", "text/plain", `alice:wonderland`, 400, "invalid_request"},
		{"too large", "application/json", `{"username":"` + strings.Repeat("a", 70<<10) + `"}`, 413, "request_too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.do("POST", "/auth/login", http.Header{"Content-Type": {tt.ct}}, tt.body)
			if res.StatusCode != tt.want {
				t.Fatalf("status = %d, want %d", res.StatusCode, tt.want)
			}
			if got := errorOf(t, res).Error; got != tt.code {
				t.Errorf("error = %q, want %q", got, tt.code)
			}
		})
	}
	if res := e.do("GET", "/auth/login", http.Header{}, ""); res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /auth/login: status = %d, want 405", res.StatusCode)
	}
}

func TestLoginRateLimit(t *testing.T) {
	e := newSessionEnv(t, nil)
	for i := range 3 {
		if _, res := e.login("alice", "wrong"); res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attempt %d: status = %d, want 401", i, res.StatusCode)
		}
	}
	// The right password does not help once the limit is reached.
	_, res := e.login("alice", "wonderland")
	if res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status = %d, want 429", res.StatusCode)
	}
	ra, err := strconv.Atoi(res.Header.Get("Retry-After"))
	if err != nil || ra < 1 || ra > 60 {
		t.Errorf("Retry-After = %q, want 1..60 seconds", res.Header.Get("Retry-After"))
	}
	// Same client address, other user: the address is limited too.
	if _, res := e.login("bob", "builder"); res.StatusCode != http.StatusTooManyRequests {
		t.Errorf("other user from the same address: status = %d, want 429", res.StatusCode)
	}
	e.clock.Advance(61 * time.Second)
	if _, res := e.login("alice", "wonderland"); res.StatusCode != http.StatusOK {
		t.Errorf("after the window: status = %d, want 200", res.StatusCode)
	}
	if got := counter(t, e.metrics.Logins.WithLabelValues(metrics.LoginRateLimited)); got != 2 {
		t.Errorf("logins{rate_limited} = %v, want 2", got)
	}
}

func TestLoginUpstream(t *testing.T) {
	legacy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		v, _ := url.ParseQuery(string(body))
		if r.Header.Get("Content-Type") == "application/x-www-form-urlencoded" && v.Get("username") == "legacy" && v.Get("password") == "pw" {
			w.Header().Set("X-Legacy-User", "legacy-42")
			w.WriteHeader(http.StatusOK)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, "legacy says no")
	}))
	t.Cleanup(legacy.Close)
	e := newSessionEnv(t, func(c *Config, d *Deps) {
		d.Login = &auth.UpstreamLogin{URL: legacy.URL, SubjectHeader: "X-Legacy-User", Roles: map[string][]string{"legacy-42": {"admin"}}}
	})
	res := e.do("POST", "/auth/login", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, "username=legacy&password=pw")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200", res.StatusCode)
	}
	var tr tokenResponse
	json.Unmarshal([]byte(readBody(t, res)), &tr)
	if tok := e.claims(tr.AccessToken); tok.Subject != "legacy-42" || strings.Join(tok.Roles, ",") != "admin" {
		t.Errorf("token sub/roles = %q/%q, want legacy-42/admin", tok.Subject, tok.Roles)
	}
	res = e.do("POST", "/auth/login", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, "username=legacy&password=bad")
	if res.StatusCode != http.StatusForbidden {
		t.Fatalf("refused: status = %d, want the upstream's 403", res.StatusCode)
	}
	if got := readBody(t, res); got != "legacy says no" {
		t.Errorf("refused: body = %q, want the upstream's body unchanged", got)
	}
}

func TestRefreshFlow(t *testing.T) {
	e := newSessionEnv(t, nil)
	first := e.mustLogin("alice", "wonderland")
	sid := e.claims(first).SessionID

	res, _ := e.refresh(first)
	wantInvalidToken(t, res, "token not expired")

	e.clock.Advance(16 * time.Minute)
	res, second := e.refresh(first)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("refresh after expiry: status = %d, want 200", res.StatusCode)
	}
	c1, c2 := e.claims(first), e.claims(second)
	if c2.ID == c1.ID || c2.SessionID != sid || c2.Subject != "alice" {
		t.Errorf("successor jti %s sid %s, want a new jti and sid %s", c2.ID, c2.SessionID, sid)
	}
	if res := e.do("GET", "/api/x", bearer(second), ""); res.StatusCode != http.StatusOK {
		t.Errorf("successor on /api/: status = %d, want 200", res.StatusCode)
	}

	// Within the grace, the rotated token gets the very same successor.
	e.clock.Advance(5 * time.Second)
	res, again := e.refresh(first)
	if res.StatusCode != http.StatusOK || again != second {
		t.Fatalf("within grace: status %d, same token %v; want 200 and the same successor", res.StatusCode, again == second)
	}

	// After it, it is reuse: the whole session is revoked.
	e.clock.Advance(6 * time.Second)
	res, _ = e.refresh(first)
	wantInvalidToken(t, res, "token reuse detected")
	e.clock.Advance(15 * time.Minute)
	res, _ = e.refresh(second)
	wantInvalidToken(t, res, "session revoked")

	for _, c := range []struct {
		result string
		want   float64
	}{{metrics.RefreshSuccess, 1}, {metrics.RefreshGrace, 1}, {metrics.RefreshNotExpired, 1}, {metrics.RefreshReuseDetected, 1}, {metrics.RefreshRevoked, 1}} {
		if got := counter(t, e.metrics.Refreshes.WithLabelValues(c.result)); got != c.want {
			t.Errorf("refreshes{%s} = %v, want %v", c.result, got, c.want)
		}
	}
	if got := counter(t, e.metrics.SessionsRevoked.WithLabelValues(sessionstore.ReasonReuseDetected)); got != 1 {
		t.Errorf("sessions_revoked{reuse_detected} = %v, want 1", got)
	}
}

func TestRefreshBeforeExpiry(t *testing.T) {
	e := newSessionEnv(t, nil, func(c *auth.SessionsConfig, _ *sessionstore.Store) { c.RefreshBeforeExpiry = 2 * time.Minute })
	tok := e.mustLogin("alice", "wonderland")
	e.clock.Advance(12 * time.Minute)
	res, _ := e.refresh(tok)
	wantInvalidToken(t, res, "token not expired")
	e.clock.Advance(2 * time.Minute)
	if res, _ := e.refresh(tok); res.StatusCode != http.StatusOK {
		t.Errorf("in the last 2 minutes: status = %d, want 200", res.StatusCode)
	}
}

func TestRefreshRefusesOtherTokens(t *testing.T) {
	e := newSessionEnv(t, nil)
	other, _ := auth.GenerateKey(auth.EdDSA)
	otherKeys, _ := auth.NewKeySet(other)
	now := e.clock.Now()
	c := auth.MintClaims{Subject: "alice", SessionID: "x", ID: "y", IssuedAt: now.Add(-time.Hour), ExpiresAt: now.Add(-time.Minute)}
	foreign, _ := auth.NewMinter(otherKeys, "gateway", "api").Mint(c)
	wrongIss, _ := auth.NewMinter(e.keys, "someone-else", "api").Mint(c)
	wrongAud, _ := auth.NewMinter(e.keys, "gateway", "other").Mint(c)
	for name, tok := range map[string]string{"foreign key": foreign, "wrong issuer": wrongIss, "wrong audience": wrongAud} {
		res, _ := e.refresh(tok)
		if res.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: status = %d, want 401", name, res.StatusCode)
		}
	}
	// A well-signed expired token of an unknown session.
	unknown := e.mint(c)
	res, _ := e.refresh(unknown)
	wantInvalidToken(t, res, "session revoked")
	if got := counter(t, e.metrics.Refreshes.WithLabelValues(metrics.RefreshUnknownSession)); got != 1 {
		t.Errorf("refreshes{unknown_session} = %v, want 1", got)
	}
}

func TestIdleAndAbsoluteTimeouts(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		e := newSessionEnv(t, nil)
		tok := e.mustLogin("alice", "wonderland")
		e.clock.Advance(time.Hour)
		res, _ := e.refresh(tok)
		wantInvalidToken(t, res, "session expired")
	})
	t.Run("absolute", func(t *testing.T) {
		e := newSessionEnv(t, nil, func(c *auth.SessionsConfig, _ *sessionstore.Store) { c.AbsoluteTimeout = 3 * time.Hour })
		tok := e.mustLogin("alice", "wonderland")
		for i := range 5 {
			e.clock.Advance(50 * time.Minute)
			res, next := e.refresh(tok)
			if i < 3 && res.StatusCode != http.StatusOK {
				t.Fatalf("refresh %d at %v: status = %d, want 200", i, time.Duration(i+1)*50*time.Minute, res.StatusCode)
			}
			if i == 3 {
				wantInvalidToken(t, res, "session expired")
				return
			}
			tok = next
		}
	})
}

func TestConcurrentRefreshesYieldOneSuccessor(t *testing.T) {
	e := newSessionEnv(t, nil)
	tok := e.mustLogin("alice", "wonderland")
	e.clock.Advance(16 * time.Minute)
	const n = 20
	var wg sync.WaitGroup
	got := make([]string, n)
	codes := make([]int, n)
	for i := range n {
		wg.Go(func() {
			res := rawDo(t, e.srv.Listener.Addr().String(), "POST", "/auth/refresh", bearer(tok), "")
			codes[i] = res.StatusCode
			var tr tokenResponse
			json.NewDecoder(res.Body).Decode(&tr)
			got[i] = tr.AccessToken
		})
	}
	wg.Wait()
	for i := range n {
		if codes[i] != http.StatusOK || got[i] != got[0] {
			t.Fatalf("refresh %d: status %d, same successor %v; want 200 and one successor", i, codes[i], got[i] == got[0])
		}
	}
	if s := counter(t, e.metrics.Refreshes.WithLabelValues(metrics.RefreshSuccess)); s != 1 {
		t.Errorf("refreshes{success} = %v, want exactly 1", s)
	}
}

func TestLogout(t *testing.T) {
	for _, every := range []bool{false, true} {
		t.Run("every_request="+strconv.FormatBool(every), func(t *testing.T) {
			e := newSessionEnv(t, func(c *Config, _ *Deps) {
				if every {
					c.Revocation = RevocationEveryRequest
				}
			})
			tok := e.mustLogin("alice", "wonderland")
			res := e.do("POST", "/auth/logout", bearer(tok), "")
			if res.StatusCode != http.StatusNoContent {
				t.Fatalf("logout: status = %d, want 204", res.StatusCode)
			}
			proxied := e.do("GET", "/api/x", bearer(tok), "")
			if every {
				wantInvalidToken(t, proxied, "session revoked")
			} else if proxied.StatusCode != http.StatusOK {
				t.Errorf("refresh mode: unexpired token after logout: status = %d, want 200 until exp", proxied.StatusCode)
			}
			e.clock.Advance(16 * time.Minute)
			res, _ = e.refresh(tok)
			wantInvalidToken(t, res, "session revoked")
			// Logging out again, with an expired token, is still 204.
			if res := e.do("POST", "/auth/logout", bearer(tok), ""); res.StatusCode != http.StatusNoContent {
				t.Errorf("second logout: status = %d, want 204", res.StatusCode)
			}
			if got := counter(t, e.metrics.SessionsRevoked.WithLabelValues(sessionstore.ReasonLogout)); got != 1 {
				t.Errorf("sessions_revoked{logout} = %v, want 1", got)
			}
		})
	}
	t.Run("foreign token", func(t *testing.T) {
		e := newSessionEnv(t, nil)
		res := e.do("POST", "/auth/logout", bearer("a.b.c"), "")
		if res.StatusCode != http.StatusUnauthorized {
			t.Errorf("status = %d, want 401", res.StatusCode)
		}
	})
}

func TestCookieDelivery(t *testing.T) {
	e := newSessionEnv(t, func(c *Config, _ *Deps) {
		c.Delivery = DeliveryCookie
		c.AllowedOrigins = []string{"https://app.example"}
	})
	tr, res := e.login("alice", "wonderland")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("login: status = %d", res.StatusCode)
	}
	if tr.AccessToken != "" {
		t.Errorf("cookie delivery: body has access_token, want none")
	}
	sc := res.Header.Get("Set-Cookie")
	for _, want := range []string{"__Host-gateway=", "Path=/", "Max-Age=3600", "HttpOnly", "Secure", "SameSite=Strict"} {
		if !strings.Contains(sc, want) {
			t.Errorf("Set-Cookie = %q, want %q in it", sc, want)
		}
	}
	if strings.Contains(strings.ToLower(sc), "domain") {
		t.Errorf("Set-Cookie = %q, want no Domain", sc)
	}
	cookie := strings.SplitN(sc, ";", 2)[0]
	withCookie := func(kv ...string) http.Header { return with(http.Header{"Cookie": {cookie}}, kv...) }
	tests := []struct {
		name, method, path string
		h                  http.Header
		want               int
	}{
		{"GET needs no header", "GET", "/api/x", withCookie(), 200},
		{"POST without X-Requested-With", "POST", "/api/x", withCookie(), 403},
		{"POST with X-Requested-With", "POST", "/api/x", withCookie("X-Requested-With", "fetch"), 200},
		{"POST from a foreign origin", "POST", "/api/x", withCookie("X-Requested-With", "fetch", "Origin", "https://evil.example"), 403},
		{"POST from an allowed origin", "POST", "/api/x", withCookie("X-Requested-With", "fetch", "Origin", "https://app.example"), 200},
		{"POST from its own origin", "POST", "/api/x", withCookie("X-Requested-With", "fetch", "Origin", "http://"+e.srv.Listener.Addr().String()), 200},
		{"refresh without X-Requested-With", "POST", "/auth/refresh", withCookie(), 403},
		{"logout without X-Requested-With", "POST", "/auth/logout", withCookie(), 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if res := e.do(tt.method, tt.path, tt.h, ""); res.StatusCode != tt.want {
				t.Errorf("status = %d, want %d", res.StatusCode, tt.want)
			}
		})
	}
	if got := e.upstream.last(t).Header.Get("Cookie"); got != "" {
		t.Errorf("upstream Cookie = %q, want the token cookie removed", got)
	}
	e.clock.Advance(16 * time.Minute)
	res = e.do("POST", "/auth/refresh", withCookie("X-Requested-With", "fetch"), "")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("cookie refresh: status = %d, want 200", res.StatusCode)
	}
	newCookie := strings.SplitN(res.Header.Get("Set-Cookie"), ";", 2)[0]
	if newCookie == cookie || !strings.HasPrefix(newCookie, "__Host-gateway=") {
		t.Errorf("refresh Set-Cookie = %q, want a new token cookie", newCookie)
	}
	res = e.do("POST", "/auth/logout", http.Header{"Cookie": {newCookie}, "X-Requested-With": {"fetch"}}, "")
	if res.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: status = %d, want 204", res.StatusCode)
	}
	if sc := res.Header.Get("Set-Cookie"); !strings.Contains(sc, "Max-Age=0") {
		t.Errorf("logout Set-Cookie = %q, want Max-Age=0", sc)
	}
}

func TestStoreFailureIs503(t *testing.T) {
	e := newSessionEnv(t, func(c *Config, _ *Deps) { c.Revocation = RevocationEveryRequest })
	tok := e.mustLogin("alice", "wonderland")
	e.store.Close()
	if _, res := e.login("alice", "wonderland"); res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("login: status = %d, want 503", res.StatusCode)
	}
	if res := e.do("GET", "/api/x", bearer(tok), ""); res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("every_request proxied: status = %d, want 503", res.StatusCode)
	}
	if res := e.do("POST", "/auth/logout", bearer(tok), ""); res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("logout: status = %d, want 503", res.StatusCode)
	}
	e.clock.Advance(16 * time.Minute)
	if res, _ := e.refresh(tok); res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("refresh: status = %d, want 503", res.StatusCode)
	}
}
