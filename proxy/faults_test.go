package proxy

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/metrics"
	"github.com/spa-gateway/gateway/sessionstore"
)

// failingStore is a real store whose writes, or reads, can be made to fail
// the way a full disk or a broken connection fails them: with an error
// wrapping sessionstore.ErrUnavailable, and nothing changed.
type failingStore struct {
	sessionstore.Store
	writes, reads atomic.Bool
}

var errInjected = fmt.Errorf("%w: injected fault", sessionstore.ErrUnavailable)

func (f *failingStore) Create(ctx context.Context, s sessionstore.Session) error {
	if f.writes.Load() {
		return errInjected
	}
	return f.Store.Create(ctx, s)
}

func (f *failingStore) CreateLimited(ctx context.Context, s sessionstore.Session, limit int) ([]string, error) {
	if f.writes.Load() {
		return nil, errInjected
	}
	return f.Store.CreateLimited(ctx, s, limit)
}

func (f *failingStore) Rotate(ctx context.Context, req sessionstore.RotateRequest) (sessionstore.RotateResult, error) {
	if f.writes.Load() {
		return sessionstore.RotateResult{}, errInjected
	}
	return f.Store.Rotate(ctx, req)
}

func (f *failingStore) Revoke(ctx context.Context, id, reason string, now time.Time) (bool, error) {
	if f.writes.Load() {
		return false, errInjected
	}
	return f.Store.Revoke(ctx, id, reason, now)
}

func (f *failingStore) Get(ctx context.Context, id string) (sessionstore.Session, error) {
	if f.reads.Load() {
		return sessionstore.Session{}, errInjected
	}
	return f.Store.Get(ctx, id)
}

func newFaultEnv(t *testing.T, everyRequest bool) (*env, *failingStore) {
	t.Helper()
	var fs *failingStore
	e := newSessionEnv(t, func(c *Config, _ *Deps) {
		if everyRequest {
			c.Revocation = RevocationEveryRequest
		}
	}, func(_ *auth.SessionsConfig, st *sessionstore.Store) {
		fs = &failingStore{Store: *st}
		*st = fs
	})
	return e, fs
}

// TestStoreWriteFailure: while the store cannot write, login, refresh and
// logout answer 503 and change nothing; once it can, the same tokens work
// as if nothing had happened (the refresh is not taken for a reuse, the
// logout had not happened).
func TestStoreWriteFailure(t *testing.T) {
	e, fs := newFaultEnv(t, false)
	tok := e.mustLogin("alice", "wonderland")
	sid := e.claims(tok).SessionID
	before, err := e.store.Get(t.Context(), sid)
	if err != nil {
		t.Fatal(err)
	}

	fs.writes.Store(true)
	if _, res := e.login("bob", "builder"); res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("login: status = %d, want 503", res.StatusCode)
	}
	if list, _ := e.store.List(t.Context(), "bob", e.clock.Now()); len(list) != 0 {
		t.Errorf("login while failing stored %d sessions, want 0", len(list))
	}
	if got := counter(t, e.metrics.Logins.WithLabelValues(metrics.LoginSuccess)); got != 1 {
		t.Errorf("logins{success} = %v, want 1 (alice's only)", got)
	}
	e.clock.Advance(16 * time.Minute)
	if res, _ := e.refresh(tok); res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("refresh: status = %d, want 503", res.StatusCode)
	}
	if res := e.do("POST", "/auth/logout", bearer(tok), ""); res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("logout: status = %d, want 503", res.StatusCode)
	}
	after, err := e.store.Get(t.Context(), sid)
	if err != nil {
		t.Fatal(err)
	}
	if after.JTI != before.JTI || after.PrevJTI != "" || after.Revoked() {
		t.Errorf("session after the failures: jti %q prev %q revoked %v; want it unchanged", after.JTI, after.PrevJTI, after.Revoked())
	}

	fs.writes.Store(false)
	res, next := e.refresh(tok)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("refresh once the store writes again: status = %d, want 200", res.StatusCode)
	}
	if res := e.do("POST", "/auth/logout", bearer(next), ""); res.StatusCode != http.StatusNoContent {
		t.Errorf("logout once the store writes again: status = %d, want 204", res.StatusCode)
	}
}

// TestStoreReadFailure: under every_request a proxied request whose session
// cannot be read is refused with 503 and never forwarded (fail closed);
// under refresh, the store is not consulted, so the token passes on its
// signature alone (the documented trade-off of that mode).
func TestStoreReadFailure(t *testing.T) {
	tests := []struct {
		everyRequest bool
		status       int
		forwarded    int
	}{
		{true, http.StatusServiceUnavailable, 0},
		{false, http.StatusOK, 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("every_request=%v", tt.everyRequest), func(t *testing.T) {
			e, fs := newFaultEnv(t, tt.everyRequest)
			tok := e.mustLogin("alice", "wonderland")
			fs.reads.Store(true)
			fs.writes.Store(true)
			res := e.do("GET", "/api/x", bearer(tok), "")
			if res.StatusCode != tt.status {
				t.Errorf("status = %d, want %d", res.StatusCode, tt.status)
			}
			if n := len(e.upstream.requests()); n != tt.forwarded {
				t.Errorf("upstream received %d requests, want %d", n, tt.forwarded)
			}
		})
	}
}
