package adversarial

import (
	"bufio"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
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
	"golang.org/x/crypto/bcrypt"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/auth/authtest"
	"github.com/spa-gateway/gateway/metrics"
	"github.com/spa-gateway/gateway/proxy"
	"github.com/spa-gateway/gateway/sessionstore"
	"github.com/spa-gateway/gateway/sessionstore/boltstore"
)

// The fixed identities of the suite.
const (
	issuer   = "gateway"
	audience = "api"
	user     = "alice"
	password = "wonderland"
	// maxHeaderBytes is server.max_header_bytes at its default.
	maxHeaderBytes = 32768
	// marker is the value of every spoofed header and forged identity: it
	// must appear nowhere in what an upstream receives.
	marker = "SPOOFED"
	// upstreamCookie is the gateway's token cookie as a malicious upstream
	// tries to set it; it must never reach the client.
	upstreamCookie = "UPSTREAM-SET-THIS"
)

// epoch is the suite's "now": tokens and sessions are minted around it, and
// the gateway's clock stands still at it.
var epoch = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)

// keyMaterial is one algorithm's gateway key, generated once per test
// process, with every form an attacker could obtain of its public part.
type keyMaterial struct {
	alg  string
	key  *auth.Key
	keys *auth.KeySet
	// priv signs like the gateway does (nil for HS256); secret is the HS256
	// secret.
	priv   crypto.Signer
	secret []byte
	// pubPEM and pubDER are the public key as PKIX PEM and DER: what the
	// JWKS, a certificate or a leaked config would give an attacker.
	pubPEM, pubDER []byte
}

var (
	keysMu    sync.Mutex
	keysByAlg = map[string]*keyMaterial{}
)

func material(tb testing.TB, alg string) *keyMaterial {
	tb.Helper()
	keysMu.Lock()
	defer keysMu.Unlock()
	if km, ok := keysByAlg[alg]; ok {
		return km
	}
	key, err := auth.GenerateKey(alg)
	if err != nil {
		tb.Fatal(err)
	}
	keys, err := auth.NewKeySet(key)
	if err != nil {
		tb.Fatal(err)
	}
	km := &keyMaterial{alg: alg, key: key, keys: keys}
	p, err := key.PrivatePEM()
	if err != nil {
		tb.Fatal(err)
	}
	if alg == auth.HS256 {
		km.secret = []byte(strings.TrimSpace(string(p)))
	} else {
		block, _ := pem.Decode(p)
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			tb.Fatal(err)
		}
		km.priv = k.(crypto.Signer)
		km.pubDER, err = x509.MarshalPKIXPublicKey(km.priv.Public())
		if err != nil {
			tb.Fatal(err)
		}
		km.pubPEM = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: km.pubDER})
	}
	keysByAlg[alg] = km
	return km
}

// signingKey is what golang-jwt signs with for the gateway's own algorithm.
func (km *keyMaterial) signingKey() any {
	if km.alg == auth.HS256 {
		return km.secret
	}
	return km.priv
}

// seen is one request as an upstream received it.
type seen struct {
	Method, RequestURI, Host string
	Header, Trailer          http.Header
	Body                     string
}

// upstream is a real HTTP server that records every request it receives,
// and answers like a careless backend: it tries to set the gateway's token
// cookie and to speak under the identity prefix.
type upstream struct {
	*httptest.Server
	name string
	mu   sync.Mutex
	reqs []seen
	// hold, if not nil, is waited on before answering.
	hold chan struct{}
}

func newUpstream(tb testing.TB, name string) *upstream {
	tb.Helper()
	u := &upstream{name: name}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body) // trailers are read with the body
		u.mu.Lock()
		u.reqs = append(u.reqs, seen{
			Method: r.Method, RequestURI: r.RequestURI, Host: r.Host,
			Header: r.Header.Clone(), Trailer: r.Trailer.Clone(), Body: string(body),
		})
		hold := u.hold
		u.mu.Unlock()
		if hold != nil {
			select {
			case <-hold:
			case <-r.Context().Done():
			}
		}
		h := w.Header()
		h.Add("Set-Cookie", "__Host-gateway="+upstreamCookie+"; Path=/; Secure")
		h.Add("Set-Cookie", "app=1; Path=/")
		h.Set("X-Auth-Subject", upstreamCookie)
		h.Set("x_auth_roles", upstreamCookie)
		io.WriteString(w, u.name)
	}))
	tb.Cleanup(u.Close)
	return u
}

func (u *upstream) requests() []seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seen(nil), u.reqs...)
}

func (u *upstream) url(tb testing.TB) *url.URL {
	tb.Helper()
	p, err := url.Parse(u.URL)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// trap is a listener that must never receive a connection: jku, x5u and
// friends point at it.
type trap struct {
	ln    net.Listener
	conns atomic.Int64
}

func newTrap(tb testing.TB) *trap {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tr := &trap{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tr.conns.Add(1)
			c.Close()
		}
	}()
	tb.Cleanup(func() { ln.Close() })
	return tr
}

func (tr *trap) url(path string) string { return "http://" + tr.ln.Addr().String() + path }

// env is one gateway under attack: its own keys' algorithm, bbolt file,
// upstreams (a behind /api/, /public/, /maybe/, /admin-api/; b behind
// /other/), trap listener and http.Server on 127.0.0.1 configured as serve
// configures it.
type env struct {
	tb     testing.TB
	km     *keyMaterial
	minter *auth.Minter
	store  *boltstore.Store
	reg    *prometheus.Registry
	met    *metrics.Metrics
	gw     *proxy.Gateway
	srv    *http.Server
	addr   string
	a, b   *upstream
	trap   *trap
	// last is the session of the last token expired() made.
	last sessionstore.Session
}

// envOptions change the environment; the zero value is the suite's default
// (EdDSA, delivery both, strip spoofed headers).
type envOptions struct {
	alg    string
	config func(*proxy.Config)
	deps   func(*proxy.Deps)
	// sessions edits the session rules and the store they are applied
	// over (the suite's bbolt file unless replaced).
	sessions func(*auth.SessionsConfig, *sessionstore.Store)
	server   func(*http.Server)
}

func newEnv(tb testing.TB, opts envOptions) *env {
	tb.Helper()
	if opts.alg == "" {
		opts.alg = auth.EdDSA
	}
	e := &env{tb: tb, km: material(tb, opts.alg), a: newUpstream(tb, "a"), b: newUpstream(tb, "b"), trap: newTrap(tb)}
	e.minter = auth.NewMinter(e.km.keys, issuer, audience)
	now := func() time.Time { return epoch }
	verifier, err := auth.NewVerifier(auth.VerifierConfig{Keys: e.km.keys, Algorithm: opts.alg, Issuer: issuer, Audience: audience, Now: now})
	if err != nil {
		tb.Fatal(err)
	}
	e.store, err = boltstore.Open(filepath.Join(tb.TempDir(), "sessions.db"), nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.store.Close() })
	e.reg = prometheus.NewRegistry()
	if e.met, err = metrics.New(e.reg, nil); err != nil {
		tb.Fatal(err)
	}
	users := usersFile(tb, bcrypt.MinCost)
	cfg := proxy.Config{
		Routes: []proxy.Route{
			{Prefix: "/api/", Upstream: e.a.url(tb), Auth: proxy.AuthRequired},
			{Prefix: "/public/", Upstream: e.a.url(tb), Auth: proxy.AuthNone},
			{Prefix: "/maybe/", Upstream: e.a.url(tb), Auth: proxy.AuthOptional},
			{Prefix: "/admin-api/", Upstream: e.a.url(tb), Auth: proxy.AuthRequired, RequireRoles: []string{"admin"}},
			{Prefix: "/other/", Upstream: e.b.url(tb), Auth: proxy.AuthRequired},
		},
		// 127.0.0.2 is a trusted proxy; the suite's clients connect from
		// 127.0.0.1 unless a case says otherwise.
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")},
		IdentityPrefix: "X-Auth-",
		Claims:         map[string]string{"X-Auth-Subject": "sub", "X-Auth-Roles": "roles"},
		Delivery:       proxy.DeliveryBoth,
		CookieName:     "__Host-gateway",
	}
	if opts.config != nil {
		opts.config(&cfg)
	}
	deps := proxy.Deps{
		Verifier: verifier, Keys: e.km.keys, Login: users,
		Limiter: auth.NewFailureLimiter(1000, time.Minute, now),
		Metrics: e.met, Now: now,
	}
	if opts.deps != nil {
		opts.deps(&deps)
	}
	rules := auth.SessionsConfig{
		AccessTTL:       15 * time.Minute,
		IdleTimeout:     time.Hour,
		AbsoluteTimeout: 24 * time.Hour,
		RefreshGrace:    10 * time.Second,
		Now:             deps.Now,
		ObserveStore: func(op string, d time.Duration) {
			e.met.StoreOperationLength.WithLabelValues(op).Observe(d.Seconds())
		},
	}
	var st sessionstore.Store = e.store
	if opts.sessions != nil {
		opts.sessions(&rules, &st)
	}
	deps.Sessions = auth.NewSessions(st, e.minter, rules)
	if e.gw, err = proxy.New(cfg, deps); err != nil {
		tb.Fatal(err)
	}
	e.srv = &http.Server{
		Handler:           e.gw,
		MaxHeaderBytes:    maxHeaderBytes,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	if opts.server != nil {
		opts.server(e.srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	e.addr = ln.Addr().String()
	go e.srv.Serve(ln)
	tb.Cleanup(func() { e.srv.Close() })
	return e
}

// usersByCost holds, per bcrypt cost, the parsed users file of usersFile.
var usersByCost sync.Map // int → func() (*auth.UsersFile, error)

// usersFile is alice / wonderland (roles reader) at the given bcrypt cost,
// parsed once per cost: bcrypt under the race detector is slow, and a
// UsersFile is immutable.
func usersFile(tb testing.TB, cost int) *auth.UsersFile {
	tb.Helper()
	f, _ := usersByCost.LoadOrStore(cost, sync.OnceValues(func() (*auth.UsersFile, error) {
		hash, err := bcrypt.GenerateFromPassword([]byte(password), cost)
		if err != nil {
			return nil, err
		}
		return auth.ParseUsers(strings.NewReader(user+":"+string(hash)+"\n"), map[string][]string{user: {"reader"}})
	}))
	users, err := f.(func() (*auth.UsersFile, error))()
	if err != nil {
		tb.Fatal(err)
	}
	return users
}

// clock is a clock a test sets, for a rule it must move past while the
// rest of the gateway stands at epoch. It starts at epoch.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.Set(epoch)
	return c
}

func (c *clock) Set(t time.Time) { c.ns.Store(t.UnixNano()) }
func (c *clock) Now() time.Time  { return time.Unix(0, c.ns.Load()).UTC() }

// stored describes a session for storedSession. The zero value is a live
// session of alice without roles, issued a minute before epoch, whose
// idle and absolute deadlines are an hour and a day after that.
type stored struct {
	// subject is the session's user; "" means alice.
	subject string
	roles   []string
	// iat is when the session and its current token were issued; zero
	// means a minute before epoch.
	iat time.Time
	// idle and absolute are the deadlines after iat; zero means an hour
	// and a day.
	idle, absolute time.Duration
	// sid, if set, is the session the token names instead of its own.
	sid string
}

// storedSession stores the session st describes and returns it with its
// current token (expiring 15 minutes after iat), minted by the gateway's
// own Minter.
func (e *env) storedSession(st stored) (string, sessionstore.Session) {
	e.tb.Helper()
	if st.subject == "" {
		st.subject = user
	}
	if st.iat.IsZero() {
		st.iat = epoch.Add(-time.Minute)
	}
	if st.idle == 0 {
		st.idle = time.Hour
	}
	if st.absolute == 0 {
		st.absolute = 24 * time.Hour
	}
	id := randomID(e.tb)
	s := sessionstore.Session{
		ID: id, Subject: st.subject, Roles: st.roles, JTI: "jti-" + id,
		IssuedAt: st.iat, CreatedAt: st.iat, RefreshedAt: st.iat,
		IdleExpiresAt: st.iat.Add(st.idle), ExpiresAt: st.iat.Add(st.absolute),
	}
	if err := e.store.Create(e.tb.Context(), s); err != nil {
		e.tb.Fatal(err)
	}
	sid := st.sid
	if sid == "" {
		sid = s.ID
	}
	return e.mint(s, sid), s
}

// mint is the current token of session s, naming session sid, minted by
// the gateway's own Minter.
func (e *env) mint(s sessionstore.Session, sid string) string {
	e.tb.Helper()
	tok, err := e.minter.Mint(auth.MintClaims{
		Subject: s.Subject, SessionID: sid, ID: s.JTI, Roles: s.Roles,
		IssuedAt: s.IssuedAt, ExpiresAt: s.IssuedAt.Add(15 * time.Minute),
	})
	if err != nil {
		e.tb.Fatal(err)
	}
	return tok
}

// token stores a session of alice (roles reader) whose current token is
// valid (expired false) or expired 5 minutes ago (expired true), and
// returns the token and the session. The session itself is live either way.
func (e *env) token(expired bool) (string, sessionstore.Session) {
	e.tb.Helper()
	st := stored{roles: []string{"reader"}}
	if expired {
		st.iat = epoch.Add(-20 * time.Minute)
	}
	return e.storedSession(st)
}

// session is token's session with the claims of its token.
func (e *env) session(expired bool) (sessionstore.Session, map[string]any) {
	e.tb.Helper()
	_, s := e.token(expired)
	claims := map[string]any{
		"iss": issuer, "aud": audience, "sub": s.Subject, "sid": s.ID, "jti": s.JTI,
		"roles": s.Roles, "iat": s.IssuedAt.Unix(), "exp": s.IssuedAt.Add(15 * time.Minute).Unix(),
	}
	return s, claims
}

// header is the JOSE header the gateway's Minter writes.
func (e *env) header() map[string]any {
	return map[string]any{"alg": e.km.alg, "typ": "JWT", "kid": e.km.key.ID()}
}

// byGateway signs exactly as the gateway does: its algorithm, its key.
func (e *env) byGateway() authtest.Signer { return authtest.SignAs(e.km.alg, e.km.signingKey()) }

// fixedSig is a signature that is the given bytes whatever is signed.
func fixedSig(b []byte) authtest.Signer { return func(testing.TB, string) []byte { return b } }

var idCounter atomic.Int64

func randomID(tb testing.TB) string {
	return fmt.Sprintf("%s-%d", strings.ReplaceAll(tb.Name(), "/", "-"), idCounter.Add(1))
}

// rawReq is a request written byte for byte on a fresh TCP connection.
type rawReq struct {
	method, target string
	// proto is the request line's version; "" means HTTP/1.1.
	proto string
	// lines are header lines exactly as sent ("Name: value"); a Host line
	// with the gateway's address comes first unless noHost.
	lines  []string
	noHost bool
	// body follows the header; a Content-Length line is added for it
	// unless framed (the lines already frame it).
	body   string
	framed bool
	// from is the local address to connect from; "" means 127.0.0.1.
	from string
}

func get(target string, lines ...string) rawReq {
	return rawReq{method: "GET", target: target, lines: lines}
}

func post(target, body string, lines ...string) rawReq {
	return rawReq{method: "POST", target: target, lines: lines, body: body}
}

func bearer(tok string) string { return "Authorization: Bearer " + tok }

func (r rawReq) bytes(addr string) []byte {
	var b strings.Builder
	proto := r.proto
	if proto == "" {
		proto = "HTTP/1.1"
	}
	fmt.Fprintf(&b, "%s %s %s\r\n", r.method, r.target, proto)
	if !r.noHost {
		fmt.Fprintf(&b, "Host: %s\r\n", addr)
	}
	for _, l := range r.lines {
		b.WriteString(l + "\r\n")
	}
	if !r.framed && (r.body != "" || r.method == "POST") {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(r.body))
	}
	b.WriteString("\r\n")
	b.WriteString(r.body)
	return []byte(b.String())
}

// answer is the gateway's response as the client read it.
type answer struct {
	status int
	header http.Header
	body   string
}

// send writes r on a new connection and reads one response. A connection
// closed without a response is status 0.
func (e *env) send(r rawReq) answer {
	e.tb.Helper()
	return sendTo(e.tb, e.addr, r)
}

func sendTo(tb testing.TB, addr string, r rawReq) answer {
	tb.Helper()
	conn, err := dialFrom(addr, r.from)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	// Write from a goroutine: the server may answer (431, 413) and close
	// before reading everything an oversized request holds.
	go conn.Write(r.bytes(addr))
	res, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: r.method})
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isReset(err) {
			return answer{}
		}
		tb.Fatalf("read response: %v", err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return answer{status: res.StatusCode, header: res.Header, body: string(body)}
}

// dialFrom connects to addr from the local address from ("" means any).
func dialFrom(addr, from string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	return d.Dial("tcp", addr)
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && !ne.Timeout()
}

// check inspects the environment after a request and reports what reached
// an upstream (or changed) that must not have; nil means nothing wrong.
type check func(e *env) error

// nothing: no request at all may reach any upstream.
func nothing(e *env) error {
	if n := len(e.a.requests()) + len(e.b.requests()); n > 0 {
		return fmt.Errorf("%d request(s) reached an upstream, want none", n)
	}
	return nil
}

// all combines checks.
func all(checks ...check) check {
	return func(e *env) error {
		var errs []error
		for _, c := range checks {
			if err := c(e); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
}

// absent: none of the strings may appear (without case) in the request
// target, a header name or value, a trailer or the body of any request an
// upstream received.
func absent(words ...string) check {
	return func(e *env) error {
		for _, u := range []*upstream{e.a, e.b} {
			for _, r := range u.requests() {
				var b strings.Builder
				b.WriteString(r.RequestURI + "\n" + r.Body + "\n")
				for _, h := range []http.Header{r.Header, r.Trailer} {
					for k, vs := range h {
						b.WriteString(k + ": " + strings.Join(vs, ", ") + "\n")
					}
				}
				all := strings.ToLower(b.String())
				for _, w := range words {
					if strings.Contains(all, strings.ToLower(w)) {
						return fmt.Errorf("upstream %s received %q:\n%s", u.name, w, b.String())
					}
				}
			}
		}
		return nil
	}
}

// identity: exactly one request reached upstream a, and its identity
// headers are exactly the verified ones (subject "" means anonymous: none
// at all).
func identity(subject string) check {
	return func(e *env) error {
		reqs := e.a.requests()
		if len(reqs) != 1 || len(e.b.requests()) != 0 {
			return fmt.Errorf("upstreams received a:%d b:%d requests, want a:1 b:0", len(reqs), len(e.b.requests()))
		}
		got := map[string][]string{}
		for k, v := range reqs[0].Header {
			if n := strings.ReplaceAll(strings.ToLower(k), "_", "-"); strings.HasPrefix(n, "x-auth-") {
				got[k] = v
			}
		}
		want := map[string][]string{}
		if subject != "" {
			want = map[string][]string{"X-Auth-Subject": {subject}, "X-Auth-Roles": {"reader"}}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("identity headers upstream = %v, want %v", got, want)
		}
		return nil
	}
}

// reached: exactly one request reached upstream u with this request
// target, and none reached the other.
func reached(which, target string) check {
	return func(e *env) error {
		u, other := e.a, e.b
		if which == "b" {
			u, other = e.b, e.a
		}
		reqs := u.requests()
		if len(reqs) != 1 || len(other.requests()) != 0 {
			return fmt.Errorf("upstream %s received %d requests and %s %d, want 1 and 0", u.name, len(reqs), other.name, len(other.requests()))
		}
		if reqs[0].RequestURI != target {
			return fmt.Errorf("upstream %s received %q, want %q", u.name, reqs[0].RequestURI, target)
		}
		return nil
	}
}

// unchanged: the session is stored exactly as it was (not rotated, not
// revoked).
func unchanged(s sessionstore.Session) check {
	return func(e *env) error {
		got, err := e.store.Get(e.tb.Context(), s.ID)
		if err != nil {
			return fmt.Errorf("session %s: %w", s.ID, err)
		}
		if got.JTI != s.JTI || got.PrevJTI != "" || got.Revoked() {
			return fmt.Errorf("session changed: jti %q prev %q revoked %v, want jti %q, never rotated nor revoked", got.JTI, got.PrevJTI, got.Revoked(), s.JTI)
		}
		return nil
	}
}

// invariants hold after every case: the trap saw no connection, and the
// client never received what the upstream tried to set.
func (e *env) invariants(a answer) error {
	var errs []error
	if n := e.trap.conns.Load(); n != 0 {
		errs = append(errs, fmt.Errorf("the gateway opened %d connection(s) to the jku/x5u trap", n))
	}
	for _, c := range a.header.Values("Set-Cookie") {
		if strings.Contains(c, upstreamCookie) {
			errs = append(errs, fmt.Errorf("the client received the upstream's Set-Cookie %q", c))
		}
	}
	for k, v := range a.header {
		if strings.Contains(strings.Join(v, ","), upstreamCookie) {
			errs = append(errs, fmt.Errorf("the client received the upstream's %s: %v", k, v))
		}
	}
	return errors.Join(errs...)
}

// settle waits, without sleeping on the happy path, until f holds or the
// deadline passes, and reports whether it held.
func settle(d time.Duration, f func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if f() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}
