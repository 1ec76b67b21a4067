// Package storetest is the contract test suite that every
// sessionstore.Store backend must pass. It tests only through the
// sessionstore.Store interface, with explicit times (no sleeps).
//
// A backend's test calls it once:
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, func(t testing.TB) sessionstore.Store { return openTemp(t) })
//	}
//
// It also holds what the backends' own tests share: the session fixtures
// (NewSession, NthSession) and the store benchmarks (BenchmarkCreate,
// BenchmarkRotate and their parallel forms), so that both backends are
// measured by the same loop.
package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
)

// Durations used by the suite. t0 has millisecond precision and a non-UTC
// zone, so a backend that keeps milliseconds and returns UTC still passes.
// It is a year ahead of the wall clock, never a fixed date: a backend whose
// expiry runs on its own clock (Redis TTLs) must not drop the suite's
// sessions once that date has passed.
var (
	t0 = time.Now().AddDate(1, 0, 0).Truncate(time.Second).Add(890 * time.Millisecond).In(time.FixedZone("UTC+2", 2*60*60))
)

const (
	idle  = time.Hour
	abs   = 24 * time.Hour
	grace = 10 * time.Second
)

// Run runs the contract suite as subtests of t. open must return a new, empty,
// open store for each call and arrange its cleanup (for example Close in
// t.Cleanup); the suite may Close the store itself first, so closing twice
// must not panic.
func Run(t *testing.T, open func(t testing.TB) sessionstore.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, open func(t testing.TB) sessionstore.Store)
	}{
		{"CreateGet", testCreateGet},
		{"CreateExists", testCreateExists},
		{"NotFound", testNotFound},
		{"RotateRefusals", testRotateRefusals},
		{"RotateSuccess", testRotateSuccess},
		{"Grace", testGrace},
		{"Reuse", testReuse},
		{"Revoke", testRevoke},
		{"RevokeSubject", testRevokeSubject},
		{"List", testList},
		{"Count", testCount},
		{"Sweep", testSweep},
		{"ConcurrentRotate", testConcurrentRotate},
		{"Closed", testClosed},
		{"CanceledContext", testCanceledContext},
		{"SessionLimit", testSessionLimit},
		{"ConcurrentSessionLimit", testConcurrentSessionLimit},
		{"WriteDeadline", testWriteDeadline},
		{"ClientContext", testClientContext},
		{"IdentityProvider", testIdentityProvider},
		{"IdPSessions", testIdPSessions},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open) })
	}
}

// NewSession is a fresh session: its token the first of the session
// (JTI id+"-jti-0", issued at created), one role ("user"), an idle deadline
// an hour after created and an absolute one a day after.
func NewSession(id, subject string, created time.Time) sessionstore.Session {
	return sessionstore.Session{
		ID:            id,
		Subject:       subject,
		Roles:         []string{"user"},
		JTI:           id + "-jti-0",
		IssuedAt:      created,
		CreatedAt:     created,
		RefreshedAt:   created,
		IdleExpiresAt: created.Add(idle),
		ExpiresAt:     created.Add(abs),
	}
}

// NthSession is the i-th of many sessions created at created: a
// random-looking but reproducible ID (as real IDs spread over a file's
// pages) and one of 1,000 subjects.
func NthSession(i int, created time.Time) sessionstore.Session {
	return NewSession(fmt.Sprintf("%016x", uint64(i)*0x9E3779B97F4A7C15), fmt.Sprintf("user%d", i%1000), created)
}

// newSession is NewSession with two roles, so that a backend that keeps
// only one of a list fails.
func newSession(id, subject string, created time.Time) sessionstore.Session {
	s := NewSession(id, subject, created)
	s.Roles = []string{"admin", "ops"}
	return s
}

// rotated is s as Store.Rotate leaves it when it rotates s to jti at the
// moment at, for a refresh from userAgent and client with the idle timeout
// idleTimeout: PrevJTI=JTI, JTI=jti, IssuedAt=RefreshedAt=RotatedAt=at,
// IdleExpiresAt=at+idleTimeout, RefreshUserAgent=userAgent,
// RefreshClient=client (see sessionstore.Store.Rotate).
func rotated(s sessionstore.Session, jti string, at time.Time, idleTimeout time.Duration, userAgent, client string) sessionstore.Session {
	s.PrevJTI, s.JTI = s.JTI, jti
	s.IssuedAt, s.RefreshedAt, s.RotatedAt = at, at, at
	s.IdleExpiresAt = at.Add(idleTimeout)
	s.RefreshUserAgent, s.RefreshClient = userAgent, client
	return s
}

func create(tb testing.TB, st sessionstore.Store, sessions ...sessionstore.Session) {
	tb.Helper()
	for _, s := range sessions {
		if err := st.Create(tb.Context(), s); err != nil {
			tb.Fatalf("Create(%q) = %v, want nil", s.ID, err)
		}
	}
}

func get(tb testing.TB, st sessionstore.Store, id string) sessionstore.Session {
	tb.Helper()
	s, err := st.Get(tb.Context(), id)
	if err != nil {
		tb.Fatalf("Get(%q) = %v, want nil", id, err)
	}
	return s
}

func count(tb testing.TB, st sessionstore.Store) int {
	tb.Helper()
	n, err := st.Count(tb.Context())
	if err != nil {
		tb.Fatalf("Count() = %v, want nil", err)
	}
	return n
}

func wantCount(tb testing.TB, st sessionstore.Store, want int) {
	tb.Helper()
	if got := count(tb, st); got != want {
		tb.Fatalf("Count() = %d, want %d", got, want)
	}
}

func rotate(tb testing.TB, st sessionstore.Store, req sessionstore.RotateRequest) sessionstore.RotateResult {
	tb.Helper()
	res, err := st.Rotate(tb.Context(), req)
	if err != nil {
		tb.Fatalf("Rotate(%+v) = %v, want nil", req, err)
	}
	return res
}

// wantListed stores limited with CreateLimited (within its limit) and then
// other with Create, both of one subject and live at at, and wants
// List(subject, at) to be exactly them, as stored, in that order.
func wantListed(tb testing.TB, st sessionstore.Store, limited, other sessionstore.Session, at time.Time) {
	tb.Helper()
	if _, err := st.CreateLimited(tb.Context(), limited, 5); err != nil {
		tb.Fatalf("CreateLimited(%q) = %v, want nil", limited.ID, err)
	}
	create(tb, st, other)
	list, err := st.List(tb.Context(), limited.Subject, at)
	if err != nil || len(list) != 2 {
		tb.Fatalf("List(%q) = %d sessions, %v; want 2, nil", limited.Subject, len(list), err)
	}
	wantSession(tb, "List[0]", list[0], limited)
	wantSession(tb, "List[1]", list[1], other)
}

// diffSession describes how got differs from want (times compared with
// Equal, Roles nil and empty alike), or returns "".
func diffSession(got, want sessionstore.Session) string {
	var diffs []string
	str := func(name, g, w string) {
		if g != w {
			diffs = append(diffs, fmt.Sprintf("%s = %q, want %q", name, g, w))
		}
	}
	tm := func(name string, g, w time.Time) {
		if !g.Equal(w) {
			diffs = append(diffs, fmt.Sprintf("%s = %v, want %v", name, g, w))
		}
	}
	str("ID", got.ID, want.ID)
	str("Subject", got.Subject, want.Subject)
	if !slices.Equal(got.Roles, want.Roles) {
		diffs = append(diffs, fmt.Sprintf("Roles = %q, want %q", got.Roles, want.Roles))
	}
	str("JTI", got.JTI, want.JTI)
	tm("IssuedAt", got.IssuedAt, want.IssuedAt)
	str("PrevJTI", got.PrevJTI, want.PrevJTI)
	tm("RotatedAt", got.RotatedAt, want.RotatedAt)
	tm("CreatedAt", got.CreatedAt, want.CreatedAt)
	tm("RefreshedAt", got.RefreshedAt, want.RefreshedAt)
	tm("IdleExpiresAt", got.IdleExpiresAt, want.IdleExpiresAt)
	tm("ExpiresAt", got.ExpiresAt, want.ExpiresAt)
	tm("RevokedAt", got.RevokedAt, want.RevokedAt)
	str("RevokeReason", got.RevokeReason, want.RevokeReason)
	str("LoginUserAgent", got.LoginUserAgent, want.LoginUserAgent)
	str("LoginClient", got.LoginClient, want.LoginClient)
	str("RefreshUserAgent", got.RefreshUserAgent, want.RefreshUserAgent)
	str("RefreshClient", got.RefreshClient, want.RefreshClient)
	str("JKT", got.JKT, want.JKT)
	str("Issuer", got.Issuer, want.Issuer)
	str("IdPSessionID", got.IdPSessionID, want.IdPSessionID)
	str("IdPRefreshToken", got.IdPRefreshToken, want.IdPRefreshToken)
	str("IDToken", got.IDToken, want.IDToken)
	if diffs == nil {
		return ""
	}
	return fmt.Sprint(diffs)
}

func wantSession(tb testing.TB, what string, got, want sessionstore.Session) {
	tb.Helper()
	if d := diffSession(got, want); d != "" {
		tb.Fatalf("%s: %s", what, d)
	}
}
