package proxy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/metrics"
	"github.com/spa-gateway/gateway/sessionstore"
	"github.com/spa-gateway/gateway/sessionstore/boltstore"
)

// recorder is a real upstream that records what reached it.
type recorder struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []recorded
	// respond, if set, writes the answer; the default is 200 "ok".
	respond func(w http.ResponseWriter, r *http.Request)
}

type recorded struct {
	Method, Path, RawPath, RawQuery, Host string
	RequestURI                            string
	Header                                http.Header
	Body                                  string
}

func newRecorder(t testing.TB) *recorder {
	t.Helper()
	rec := &recorder{}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, recorded{
			Method: r.Method, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery,
			Host: r.Host, RequestURI: r.RequestURI, Header: r.Header.Clone(), Body: string(body),
		})
		respond := rec.respond
		rec.mu.Unlock()
		if respond != nil {
			respond(w, r)
			return
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(rec.Close)
	return rec
}

func (rec *recorder) requests() []recorded {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]recorded(nil), rec.reqs...)
}

func (rec *recorder) last(t testing.TB) recorded {
	t.Helper()
	reqs := rec.requests()
	if len(reqs) == 0 {
		t.Fatal("upstream was not called")
	}
	return reqs[len(reqs)-1]
}

func (rec *recorder) url(t testing.TB) *url.URL {
	t.Helper()
	u, err := url.Parse(rec.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// clock is a settable clock for the time rules.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// env is a gateway under test with everything real: keys, a bbolt file, an
// upstream and the gateway itself on 127.0.0.1.
type env struct {
	t        testing.TB
	clock    *clock
	key      *auth.Key
	keys     *auth.KeySet
	minter   *auth.Minter
	store    sessionstore.Store
	reg      *prometheus.Registry
	metrics  *metrics.Metrics
	gw       *Gateway
	srv      *httptest.Server
	upstream *recorder
	cfg      Config
	sessions auth.SessionsConfig
}

// testConfig is a typical configuration: a protected /api/, a public
// /public/, with routes pointing at upstream.
func testConfig(upstream *url.URL) Config {
	return Config{
		Routes: []Route{
			{Prefix: "/api/", Upstream: upstream, Auth: AuthRequired},
			{Prefix: "/public/", Upstream: upstream, Auth: AuthNone},
			{Prefix: "/maybe/", Upstream: upstream, Auth: AuthOptional},
			{Prefix: "/admin-api/", Upstream: upstream, Auth: AuthRequired, RequireRoles: []string{"admin"}},
		},
		IdentityPrefix: "X-Auth-",
		Claims:         map[string]string{"X-Auth-Subject": "sub", "X-Auth-Roles": "roles", "X-Auth-Email": "email"},
		CookieName:     "__Host-gateway",
	}
}

// testSessions is the session rules of a typical configuration.
func testSessions() auth.SessionsConfig {
	return auth.SessionsConfig{
		AccessTTL:       15 * time.Minute,
		IdleTimeout:     time.Hour,
		AbsoluteTimeout: 24 * time.Hour,
		RefreshGrace:    10 * time.Second,
	}
}

// newEnv starts a gateway; edit may change the configuration and deps
// first, and editSessions the session rules and the store that
// auth.Sessions is then built from (the clock: deps.Now, as edited).
func newEnv(t testing.TB, edit func(*Config, *Deps), editSessions ...func(*auth.SessionsConfig, *sessionstore.Store)) *env {
	t.Helper()
	e := &env{t: t, clock: newClock(), upstream: newRecorder(t)}
	var err error
	e.key, err = auth.GenerateKey(auth.EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	e.keys, err = auth.NewKeySet(e.key)
	if err != nil {
		t.Fatal(err)
	}
	e.minter = auth.NewMinter(e.keys, "gateway", "api")
	verifier, err := auth.NewVerifier(auth.VerifierConfig{
		Keys: e.keys, Algorithm: auth.EdDSA, Issuer: "gateway", Audience: "api", Now: e.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "sessions.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.store = st
	e.reg = prometheus.NewRegistry()
	e.metrics, err = metrics.New(e.reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(e.upstream.url(t))
	deps := Deps{
		Verifier: verifier, Keys: e.keys,
		Metrics: e.metrics, Now: e.clock.Now,
	}
	if edit != nil {
		edit(&cfg, &deps)
	}
	e.cfg = cfg
	e.sessions = testSessions()
	e.sessions.Now = deps.Now
	e.sessions.ObserveStore = func(op string, d time.Duration) {
		e.metrics.StoreOperationLength.WithLabelValues(op).Observe(d.Seconds())
	}
	var sessionStore sessionstore.Store = st
	for _, f := range editSessions {
		f(&e.sessions, &sessionStore)
	}
	deps.Sessions = auth.NewSessions(sessionStore, e.minter, e.sessions)
	e.gw, err = New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(e.gw)
	t.Cleanup(e.srv.Close)
	return e
}

// session stores a live session for subject and returns a token of it.
func (e *env) session(subject string, roles ...string) (string, sessionstore.Session) {
	e.t.Helper()
	now := e.clock.Now()
	s := sessionstore.Session{
		ID: "sid-" + subject + "-" + now.Format("150405.000000000"), Subject: subject, Roles: roles,
		JTI: "jti-1-" + subject, IssuedAt: now, CreatedAt: now, RefreshedAt: now,
		IdleExpiresAt: now.Add(e.sessions.IdleTimeout), ExpiresAt: now.Add(e.sessions.AbsoluteTimeout),
	}
	if err := e.store.Create(e.t.Context(), s); err != nil {
		e.t.Fatal(err)
	}
	return e.mint(auth.MintClaims{Subject: subject, SessionID: s.ID, ID: s.JTI, Roles: roles,
		IssuedAt: now, ExpiresAt: now.Add(e.sessions.AccessTTL)}), s
}

func (e *env) mint(c auth.MintClaims) string {
	e.t.Helper()
	tok, err := e.minter.Mint(c)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// do sends a request to the gateway over a new connection. The request
// target is sent exactly as written, with no client-side cleaning.
func (e *env) do(method, target string, header http.Header, body string) *http.Response {
	e.t.Helper()
	return rawDo(e.t, e.srv.Listener.Addr().String(), method, target, header, body)
}

func rawDo(t testing.TB, addr, method, target string, header http.Header, body string) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\n", method, target)
	if header.Get("Host") == "" {
		fmt.Fprintf(&b, "Host: %s\r\n", addr)
	}
	header.Write(&b)
	if body != "" || method == http.MethodPost {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("Connection: close\r\n\r\n")
	b.WriteString(body)
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	return res
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// with is a copy of h (nil is empty) with the header lines kv (name,
// value, ...) added.
func with(h http.Header, kv ...string) http.Header {
	h = h.Clone()
	if h == nil {
		h = http.Header{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// loginWith posts user's JSON login with the header h (nil is none) and
// returns the answer, with its body decoded if the status is 200.
func (e *env) loginWith(user, pass string, h http.Header) (*http.Response, tokenResponse) {
	e.t.Helper()
	body, _ := json.Marshal(map[string]string{"username": user, "password": pass})
	res := e.do("POST", "/auth/login", with(h, "Content-Type", "application/json"), string(body))
	var tr tokenResponse
	if res.StatusCode == http.StatusOK {
		if err := json.Unmarshal([]byte(readBody(e.t, res)), &tr); err != nil {
			e.t.Fatal(err)
		}
	}
	return res, tr
}

// awaitCond polls cond until it holds, failing the test after 10 seconds.
func awaitCond(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: not yet %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func readBody(t testing.TB, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// errorOf decodes the JSON error body and checks its content type.
func errorOf(t testing.TB, res *http.Response) errorBody {
	t.Helper()
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var eb errorBody
	if err := json.Unmarshal([]byte(readBody(t, res)), &eb); err != nil {
		t.Fatalf("error body: %v", err)
	}
	return eb
}

func counter(t testing.TB, c prometheus.Collector) float64 {
	t.Helper()
	return testutil.ToFloat64(c)
}

func mustPrefixes(t testing.TB, cidrs ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}
