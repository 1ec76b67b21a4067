package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/metrics"
)

// heldLegacyLogin is a legacy login endpoint whose answer depends on the
// password: "right" logs in as the username, "wrong" is 401, "unavailable"
// 503, "drop" closes the connection without an answer. Passwords in held
// wait for release (or for the gateway to give up) before the answer.
type heldLegacyLogin struct {
	*httptest.Server
	held    map[string]bool
	arrived atomic.Int64 // held requests received
	release chan struct{}
}

func newHeldLegacyLogin(t testing.TB, held ...string) *heldLegacyLogin {
	t.Helper()
	l := &heldLegacyLogin{held: map[string]bool{}, release: make(chan struct{})}
	for _, p := range held {
		l.held[p] = true
	}
	l.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		v, _ := url.ParseQuery(string(body))
		pass := v.Get("password")
		if l.held[pass] {
			l.arrived.Add(1)
			select {
			case <-l.release:
			case <-r.Context().Done():
				return
			}
		}
		switch pass {
		case "right":
			w.Header().Set("X-Legacy-User", v.Get("username"))
		case "unavailable":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "drop":
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
		default:
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	t.Cleanup(l.Close)
	t.Cleanup(l.open) // runs before Close: held handlers return
	return l
}

func (l *heldLegacyLogin) open() {
	select {
	case <-l.release:
	default:
		close(l.release)
	}
}

// newHeldLegacyEnv is newSessionEnv (a failure limit of 3 a minute) logging in
// through legacy.
func newHeldLegacyEnv(t testing.TB, legacy *heldLegacyLogin) *env {
	t.Helper()
	return newSessionEnv(t, func(c *Config, d *Deps) {
		d.Login = &auth.UpstreamLogin{URL: legacy.URL, SubjectHeader: "X-Legacy-User"}
	})
}

// postLoginForm logs in with a form, through Go's client.
func postLoginForm(ctx context.Context, e *env, user, pass string) (int, error) {
	body := url.Values{"username": {user}, "password": {pass}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.srv.URL+"/auth/login", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := e.srv.Client().Do(req)
	if err != nil {
		return 0, err
	}
	res.Body.Close()
	return res.StatusCode, nil
}

func mustPostLoginForm(t *testing.T, e *env, user, pass string) int {
	t.Helper()
	status, err := postLoginForm(t.Context(), e, user, pass)
	if err != nil {
		t.Fatal(err)
	}
	return status
}

// TestLoginLimitSourceFailureReleases: an attempt whose password could not
// be checked because the login source failed (a 5xx, a dropped
// connection) does not count against the user: an outage of the legacy
// login endpoint must not lock everybody out once it recovers.
func TestLoginLimitSourceFailureReleases(t *testing.T) {
	e := newHeldLegacyEnv(t, newHeldLegacyLogin(t))
	for i := range 5 {
		if got := mustPostLoginForm(t, e, "alice", "unavailable"); got != http.StatusServiceUnavailable {
			t.Fatalf("upstream 503, attempt %d: status = %d, want the upstream's 503", i, got)
		}
		if got := mustPostLoginForm(t, e, "alice", "drop"); got != http.StatusBadGateway {
			t.Fatalf("upstream dropped, attempt %d: status = %d, want 502", i, got)
		}
	}
	if got := mustPostLoginForm(t, e, "alice", "right"); got != http.StatusOK {
		t.Fatalf("right password after 10 source failures: status = %d, want 200", got)
	}
	// The limiter is at work all the same: wrong passwords count.
	for i := range 3 {
		if got := mustPostLoginForm(t, e, "alice", "wrong"); got != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: status = %d, want 401", i, got)
		}
	}
	if got := mustPostLoginForm(t, e, "alice", "right"); got != http.StatusTooManyRequests {
		t.Errorf("right password after 3 wrong ones: status = %d, want 429", got)
	}
}

// TestLoginLimitInFlight: logins in flight count against the limit until
// they end; the right password gives its attempt back when it does.
func TestLoginLimitInFlight(t *testing.T) {
	legacy := newHeldLegacyLogin(t, "right")
	e := newHeldLegacyEnv(t, legacy)
	statuses := make([]int, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range statuses {
		wg.Go(func() { statuses[i], errs[i] = postLoginForm(t.Context(), e, "alice", "right") })
	}
	awaitCond(t, "3 logins held by the login endpoint", func() bool { return legacy.arrived.Load() == 3 })
	// Three attempts in flight: the limit is reached for alice and for
	// the address, although nothing has failed.
	if got := mustPostLoginForm(t, e, "alice", "wrong"); got != http.StatusTooManyRequests {
		t.Errorf("wrong password with 3 logins in flight: status = %d, want 429", got)
	}
	if got := mustPostLoginForm(t, e, "bob", "wrong"); got != http.StatusTooManyRequests {
		t.Errorf("other user, same address, with 3 logins in flight: status = %d, want 429", got)
	}
	legacy.open()
	wg.Wait()
	for i := range statuses {
		if errs[i] != nil || statuses[i] != http.StatusOK {
			t.Errorf("held login %d: status = %d, %v; want 200", i, statuses[i], errs[i])
		}
	}
	// They succeeded: the budget is whole again.
	for i := range 3 {
		if got := mustPostLoginForm(t, e, "alice", "wrong"); got != http.StatusUnauthorized {
			t.Errorf("wrong password %d after the logins ended: status = %d, want 401", i, got)
		}
	}
	if got := mustPostLoginForm(t, e, "alice", "wrong"); got != http.StatusTooManyRequests {
		t.Errorf("fourth wrong password: status = %d, want 429", got)
	}
}

// TestLoginLimitAbandonedCounts: a client that gives up while its password
// is being checked keeps its attempt counted: the login source may have
// checked the password already, and giving up must not buy a new guess.
func TestLoginLimitAbandonedCounts(t *testing.T) {
	legacy := newHeldLegacyLogin(t, "wrong")
	e := newHeldLegacyEnv(t, legacy)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { postLoginForm(ctx, e, "alice", "wrong") })
	}
	awaitCond(t, "3 logins held by the login endpoint", func() bool { return legacy.arrived.Load() == 3 })
	cancel()
	wg.Wait()
	// The gateway has ended the abandoned logins once it counts them.
	awaitCond(t, "3 abandoned logins ended", func() bool {
		return counter(t, e.metrics.Logins.WithLabelValues(metrics.LoginFailure)) == 3
	})
	legacy.open()
	if got := mustPostLoginForm(t, e, "alice", "right"); got != http.StatusTooManyRequests {
		t.Errorf("right password after 3 abandoned attempts: status = %d, want 429", got)
	}
}
