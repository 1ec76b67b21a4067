package redisstore

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spa-gateway/gateway/sessionstore"
	"github.com/spa-gateway/gateway/sessionstore/redisstore/redistest"
	"github.com/spa-gateway/gateway/sessionstore/storetest"
)

// prefixes numbers the key prefixes of the stores a test process opens, so
// that stores sharing one server never see each other's keys.
var prefixes atomic.Int64

// openOn opens a store with a key prefix of its own on the server at url,
// closed at the end of the test.
func openOn(tb testing.TB, url string, opts *Options) *Store {
	tb.Helper()
	o := Options{}
	if opts != nil {
		o = *opts
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = fmt.Sprintf("t%d:", prefixes.Add(1))
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 5 * time.Second
	}
	st, err := Open(tb.Context(), url, &o)
	if err != nil {
		tb.Fatalf("Open(%q) = %v", url, err)
	}
	tb.Cleanup(func() { _ = st.Close() })
	return st
}

func TestContract(t *testing.T) {
	srv := redistest.Start(t)
	storetest.Run(t, func(t testing.TB) sessionstore.Store { return openOn(t, srv.URL(0), nil) })
}

// TestContractCluster runs the contract suite on a Redis Cluster, which
// refuses any command or script touching keys of two hash slots: it proves
// that every operation keeps to one slot per script.
func TestContractCluster(t *testing.T) {
	srv := redistest.StartCluster(t)
	storetest.Run(t, func(t testing.TB) sessionstore.Store { return openOn(t, srv.ClusterURL(), nil) })
}

// TestExpiry checks the Redis TTL of a session key: its deadline plus the
// margin, moved by a rotation, and a session Redis deleted on its own still
// counted until Sweep cleans its index entries.
func TestExpiry(t *testing.T) {
	srv := redistest.Start(t)
	st := openOn(t, srv.URL(0), &Options{ExpiryMargin: 2 * time.Minute})
	ctx := t.Context()
	now := time.Now()

	s := storetest.NewSession("live", "alice", now)
	if err := st.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	wantExpireAt := func(what string, want time.Time) {
		t.Helper()
		got, err := st.client.PExpireTime(ctx, st.sessionKey(st.bucketOf("live"), "live")).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got != time.Duration(want.UnixMilli())*time.Millisecond {
			t.Fatalf("%s: PEXPIRETIME = %v, want %v (unix ms)", what, got.Milliseconds(), want.UnixMilli())
		}
	}
	wantExpireAt("after Create", s.Deadline().Add(2*time.Minute))
	t1 := now.Add(10 * time.Minute)
	if _, err := st.Rotate(ctx, sessionstore.RotateRequest{SessionID: "live", JTI: s.JTI, NewJTI: "j1", Now: t1, IdleTimeout: 30 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	wantExpireAt("after Rotate", t1.Add(30*time.Minute+2*time.Minute))

	// Ended (by Redis's clock too) before it was even created: Redis
	// deletes the key at once, the indexes keep it until Sweep.
	gone := storetest.NewSession("gone", "alice", now.Add(-3*time.Hour))
	if err := st.Create(ctx, gone); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, "gone"); !errors.Is(err, sessionstore.ErrNotFound) {
		t.Fatalf("Get(gone) = %v, want %v", err, sessionstore.ErrNotFound)
	}
	if n, err := st.Count(ctx); err != nil || n != 2 {
		t.Fatalf("Count() = %d, %v; want 2 (an expired, unswept session counts)", n, err)
	}
	if n, err := st.Sweep(ctx, now); err != nil || n != 1 {
		t.Fatalf("Sweep(now) = %d, %v; want 1", n, err)
	}
	if n, err := st.Count(ctx); err != nil || n != 1 {
		t.Fatalf("Count() after Sweep = %d, %v; want 1", n, err)
	}
	// Its index entries went too.
	b := st.bucketOf("gone")
	if _, err := st.client.ZScore(ctx, b.deadlines, "gone").Result(); !errors.Is(err, redis.Nil) {
		t.Errorf("deadline index entry after Sweep: ZSCORE = %v, want redis.Nil", err)
	}
	if _, err := st.client.ZScore(ctx, b.subject, "alice\x00gone").Result(); !errors.Is(err, redis.Nil) {
		t.Errorf("subject index entry after Sweep: ZSCORE = %v, want redis.Nil", err)
	}
	if ok, err := st.client.HExists(ctx, b.owners, "gone").Result(); err != nil || ok {
		t.Errorf("owner entry after Sweep: HEXISTS = %v, %v; want false", ok, err)
	}
}

// TestRecreateAfterRedisExpiry: an ID whose session Redis deleted at its
// expiry, before any sweep, can be created again, for another subject, and
// the old subject's index entry goes with it.
func TestRecreateAfterRedisExpiry(t *testing.T) {
	srv := redistest.Start(t)
	st := openOn(t, srv.URL(0), nil)
	ctx := t.Context()
	now := time.Now()
	if err := st.Create(ctx, storetest.NewSession("x", "alice", now.Add(-3*time.Hour))); err != nil {
		t.Fatal(err)
	}
	if err := st.Create(ctx, storetest.NewSession("x", "bob", now)); err != nil {
		t.Fatalf("Create(x) over a session Redis deleted = %v, want nil", err)
	}
	for _, tt := range []struct {
		subject string
		want    int
	}{{"alice", 0}, {"bob", 1}} {
		list, err := st.List(ctx, tt.subject, now)
		if err != nil || len(list) != tt.want {
			t.Fatalf("List(%s) = %d sessions, %v; want %d", tt.subject, len(list), err, tt.want)
		}
	}
	if n, err := st.Count(ctx); err != nil || n != 1 {
		t.Fatalf("Count() = %d, %v; want 1", n, err)
	}
	// Sweeping at now finds nothing due: the new session is untouched.
	if n, err := st.Sweep(ctx, now); err != nil || n != 0 {
		t.Fatalf("Sweep(now) = %d, %v; want 0", n, err)
	}
	if _, err := st.Get(ctx, "x"); err != nil {
		t.Fatalf("Get(x) = %v", err)
	}
}

// TestRotateRetry: a Rotate sent twice, as go-redis does when the reply to
// the first was lost, gets the same rotation twice and never counts as
// reuse, even with no grace period.
func TestRotateRetry(t *testing.T) {
	srv := redistest.Start(t)
	st := openOn(t, srv.URL(0), nil)
	ctx := t.Context()
	now := time.Now()
	if err := st.Create(ctx, storetest.NewSession("s", "alice", now)); err != nil {
		t.Fatal(err)
	}
	req := sessionstore.RotateRequest{SessionID: "s", JTI: "s-jti-0", NewJTI: "s-jti-1", Now: now.Add(time.Minute), IdleTimeout: time.Hour}
	first, err := st.Rotate(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := st.Rotate(ctx, req)
	if err != nil || again.Grace || again.Session.JTI != "s-jti-1" || !again.Session.IssuedAt.Equal(first.Session.IssuedAt) {
		t.Fatalf("Rotate() again = %+v, %v; want the same rotation, not grace", again, err)
	}
	// The same jti with another successor, later, is still reuse.
	req.NewJTI, req.Now = "s-jti-other", req.Now.Add(time.Millisecond)
	if _, err := st.Rotate(ctx, req); !errors.Is(err, sessionstore.ErrReuseDetected) {
		t.Fatalf("Rotate(previous jti, other successor) = %v, want %v", err, sessionstore.ErrReuseDetected)
	}
}

// TestUnavailable stops Redis under an open store: every method fails with
// ErrUnavailable (never a rule error that would make the gateway answer 401
// or 200), Ping too; once Redis is back on the same port, the store works
// again by itself, with the data an append-only file kept.
func TestUnavailable(t *testing.T) {
	srv := redistest.Start(t, redistest.Persistent...)
	st := openOn(t, srv.URL(0), nil)
	ctx := t.Context()
	now := time.Now()
	if err := st.Create(ctx, storetest.NewSession("s", "alice", now)); err != nil {
		t.Fatal(err)
	}
	srv.Stop(t)

	calls := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"Ping", st.Ping},
		{"Create", func(ctx context.Context) error { return st.Create(ctx, storetest.NewSession("new", "alice", now)) }},
		{"Get", func(ctx context.Context) error { _, err := st.Get(ctx, "s"); return err }},
		{"Rotate", func(ctx context.Context) error {
			_, err := st.Rotate(ctx, sessionstore.RotateRequest{SessionID: "s", JTI: "s-jti-0", NewJTI: "n", Now: now.Add(time.Minute), IdleTimeout: time.Hour})
			return err
		}},
		{"Revoke", func(ctx context.Context) error {
			_, err := st.Revoke(ctx, "s", sessionstore.ReasonLogout, now)
			return err
		}},
		{"RevokeSubject", func(ctx context.Context) error {
			_, err := st.RevokeSubject(ctx, "alice", sessionstore.ReasonAdmin, now)
			return err
		}},
		{"List", func(ctx context.Context) error { _, err := st.List(ctx, "alice", now); return err }},
		{"Count", func(ctx context.Context) error { _, err := st.Count(ctx); return err }},
		{"Sweep", func(ctx context.Context) error { _, err := st.Sweep(ctx, now.Add(48*time.Hour)); return err }},
	}
	for _, tt := range calls {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			err := tt.call(ctx)
			if !errors.Is(err, sessionstore.ErrUnavailable) {
				t.Fatalf("%s with Redis stopped = %v, want an error wrapping %v", tt.name, err, sessionstore.ErrUnavailable)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("%s took %v to fail, want a few seconds at most", tt.name, d)
			}
		})
	}

	srv.Restart(t)
	deadline := time.Now().Add(10 * time.Second)
	for st.Ping(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("Ping() still fails 10s after Redis restarted: %v", st.Ping(ctx))
		}
		time.Sleep(50 * time.Millisecond)
	}
	res, err := st.Rotate(ctx, sessionstore.RotateRequest{SessionID: "s", JTI: "s-jti-0", NewJTI: "s-jti-1", Now: now.Add(time.Minute), IdleTimeout: time.Hour})
	if err != nil || res.Grace {
		t.Fatalf("Rotate() after restart = %+v, %v; want a rotation (nothing changed while Redis was down)", res, err)
	}
	if n, err := st.Count(ctx); err != nil || n != 1 {
		t.Fatalf("Count() after restart = %d, %v; want 1", n, err)
	}
}

// TestOpenWaits: Open started while Redis is down succeeds once Redis comes
// up within the connect timeout.
func TestOpenWaits(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop(t)
	type result struct {
		st  *Store
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := Open(t.Context(), srv.URL(0), &Options{ConnectTimeout: 20 * time.Second, KeyPrefix: "waits:"})
		done <- result{st, err}
	}()
	time.Sleep(300 * time.Millisecond) // Let Open fail at least once.
	srv.Restart(t)
	r := <-done
	if r.err != nil {
		t.Fatalf("Open() while Redis starts = %v, want nil", r.err)
	}
	defer r.st.Close()
	if err := r.st.Ping(t.Context()); err != nil {
		t.Fatalf("Ping() = %v", err)
	}
}

// TestOpenFails: Open gives up with a clear error that names the address
// and never the password.
func TestOpenFails(t *testing.T) {
	const secret = "s3cr3t-password"
	down := redistest.Start(t)
	down.Stop(t)
	guarded := redistest.Start(t, "--requirepass", secret)
	tests := []struct {
		name    string
		url     string
		opts    Options
		want    []string
		unavail bool
		within  time.Duration
	}{
		{"nothing listening", "redis://:" + secret + "@" + down.Addr + "/0", Options{ConnectTimeout: 700 * time.Millisecond},
			[]string{"connect to redis://:xxxxx@" + down.Addr, "no answer within 700ms", "connection refused"}, true, 5 * time.Second},
		{"wrong password", "redis://:wrong-" + secret + "@" + guarded.Addr + "/0", Options{},
			[]string{"authentication refused"}, true, 5 * time.Second},
		{"wrong password from options", guarded.URL(0), Options{Password: "wrong-" + secret},
			[]string{"authentication refused"}, true, 5 * time.Second},
		{"bad scheme", "http://" + secret + "@" + guarded.Addr, Options{},
			[]string{`scheme "http"`}, false, time.Second},
		{"sentinel without master", "redis+sentinel://:" + secret + "@" + guarded.Addr, Options{},
			[]string{"master_name"}, false, time.Second},
		{"CA with clear text", guarded.URL(0), Options{RootCAs: x509.NewCertPool()},
			[]string{"needs a rediss scheme"}, false, time.Second},
		{"prefix with a brace", guarded.URL(0), Options{KeyPrefix: "a{b"},
			[]string{"holds { or }"}, false, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			st, err := Open(t.Context(), tt.url, &tt.opts)
			if err == nil {
				st.Close()
				t.Fatalf("Open(%s) = nil error, want one", tt.name)
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("Open() = %q, want it to say %q", msg, w)
				}
			}
			if strings.Contains(msg, secret) {
				t.Errorf("Open() = %q, which holds the password", msg)
			}
			if got := errors.Is(err, sessionstore.ErrUnavailable); got != tt.unavail {
				t.Errorf("errors.Is(%v, ErrUnavailable) = %v, want %v", err, got, tt.unavail)
			}
			if d := time.Since(start); d > tt.within {
				t.Errorf("Open() took %v to fail, want at most %v", d, tt.within)
			}
		})
	}
}

// TestPassword: the password may come from the URL or from Options, which
// wins.
func TestPassword(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "pw")
	tests := []struct {
		name string
		url  string
		opts Options
	}{
		{"in the URL", "redis://:pw@" + srv.Addr + "/0", Options{}},
		{"from options", srv.URL(0), Options{Password: "pw"}},
		{"options over the URL", "redis://:stale@" + srv.Addr + "/0", Options{Password: "pw"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := openOn(t, tt.url, &tt.opts)
			if err := st.Create(t.Context(), storetest.NewSession("s", "alice", time.Now())); err != nil {
				t.Fatalf("Create() = %v", err)
			}
		})
	}
}

// TestSchema: a prefix holding another layout version is refused.
func TestSchema(t *testing.T) {
	srv := redistest.Start(t)
	if got := srv.Do(t, "SET", "other:schema", "2"); got != "+OK" {
		t.Fatalf("SET = %q", got)
	}
	st, err := Open(t.Context(), srv.URL(0), &Options{KeyPrefix: "other:"})
	if err == nil {
		st.Close()
		t.Fatal("Open() on a prefix with layout version 2 = nil error, want one")
	}
	if !strings.Contains(err.Error(), `layout version "2"`) {
		t.Errorf("Open() = %v, want it to name the version", err)
	}
}

func TestCheckURL(t *testing.T) {
	tests := []struct {
		url  string
		want string // "" means valid
	}{
		{"redis://localhost:6379/0", ""},
		{"redis://localhost", ""},
		{"rediss://user:pw@redis.example.com:6380/2?dial_timeout=3s", ""},
		{"redis+sentinel://s1:26379/0?master_name=mymaster&addr=s2:26379&addr=s3:26379", ""},
		{"rediss+sentinel://s1:26379?master_name=m", ""},
		{"redis+cluster://n1:6379?addr=n2:6379&addr=n3:6379", ""},
		{"rediss+cluster://n1:6379/0", ""},
		{"redis+cluster://n1:6379/3", "only database 0"},
		{"redis+sentinel://s1:26379", "master_name"},
		{"redis://localhost/x", "invalid database number"},
		{"redis://localhost?bogus=1", "unexpected option"},
		{"redis://localhost?password=s3cr3t", "unexpected option"},
		{"redis+ring://localhost", `scheme "redis+ring"`},
		{"http://localhost", `scheme "http"`},
		{"localhost:6379", "is not a URL"},
		{"redis:///0", "has no host"},
		{"redis://:s3cr3t@local host", "is not a URL"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			err := CheckURL(tt.url)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("CheckURL() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("CheckURL() = %v, want an error saying %q", err, tt.want)
			case err != nil && strings.Contains(err.Error(), "s3cr3t"):
				t.Fatalf("CheckURL() = %v, which holds the password", err)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	tests := []struct{ url, want string }{
		{"redis://:pw@h:6379/0", "redis://:xxxxx@h:6379/0"},
		{"redis://user:pw@h:6379/0", "redis://user:xxxxx@h:6379/0"},
		{"redis://h:6379/0", "redis://h:6379/0"},
		{"redis+sentinel://h:26379?master_name=m&password=pw", "redis+sentinel://h:26379?master_name=m&password=xxxxx"},
		{"redis://:pw@local host", "the configured URL"},
		{"redis://pw@h:6379", "redis://xxxxx@h:6379"},
	}
	for _, tt := range tests {
		if got := redact(tt.url); got != tt.want {
			t.Errorf("redact(%q) = %q, want %q", tt.url, got, tt.want)
		}
	}
}

// TestDecodesOldSessions: a session hash written before the client context
// and the DPoP binding were recorded decodes, with them empty, and a
// rotation adds the refresh's.
func TestDecodesOldSessions(t *testing.T) {
	srv := redistest.Start(t)
	st := openOn(t, srv.URL(0), nil)
	ctx := t.Context()
	now := time.Now().AddDate(1, 0, 0)
	ms := func(t time.Time) string { return millis(t) }
	key := st.sessionKey(st.bucketOf("old"), "old")
	if err := st.client.HSet(ctx, key, "sub", "alice", "jti", "j0", "iat", ms(now), "cre", ms(now), "ref", ms(now),
		"idle", ms(now.Add(time.Hour)), "exp", ms(now.Add(24*time.Hour))).Err(); err != nil {
		t.Fatal(err)
	}
	got, err := st.Get(ctx, "old")
	if err != nil {
		t.Fatalf("Get(old) = %v, want nil", err)
	}
	if got.Subject != "alice" || got.LoginUserAgent != "" || got.RefreshClient != "" || got.Bound() {
		t.Fatalf("Get(old) = %+v, want alice's session, no client context, unbound", got)
	}
	res, err := st.Rotate(ctx, sessionstore.RotateRequest{SessionID: "old", JTI: "j0", NewJTI: "j1", Now: now.Add(time.Minute),
		IdleTimeout: time.Hour, UserAgent: "curl/8", Client: "192.0.2.1"})
	if err != nil || res.Session.RefreshUserAgent != "curl/8" || res.Session.RefreshClient != "192.0.2.1" || res.Session.LoginUserAgent != "" {
		t.Fatalf("Rotate(old) = %+v, %v; want the refresh's client context, the login's empty", res.Session, err)
	}
}

// TestOpenLoadsScripts: Open loads every write script, so that a server
// refusing one fails there and no first call pays for a NOSCRIPT round
// trip.
func TestOpenLoadsScripts(t *testing.T) {
	st := openOn(t, redistest.Start(t).URL(0), nil)
	all := map[string]*redis.Script{
		"create": scriptCreate, "create limited": scriptCreateLimited, "rotate": scriptRotate,
		"revoke": scriptRevoke, "revoke subject": scriptRevokeSubject, "sweep": scriptSweep,
		"clear unconfirmed": scriptClearUnconfirmed, "put idp session": scriptPutIdPSession,
	}
	for name, sc := range all {
		ok, err := sc.Exists(t.Context(), st.client).Result()
		if err != nil || len(ok) != 1 || !ok[0] {
			t.Errorf("after Open, script %s loaded = %v, %v; want true, nil", name, ok, err)
		}
	}
}
