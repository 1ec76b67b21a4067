// Package storetest is the contract test suite that every
// sessionstore.Store backend must pass. It tests only through the
// sessionstore.Store interface, with explicit times (no sleeps).
//
// A backend's test calls it once:
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, func(t testing.TB) sessionstore.Store { return openTemp(t) })
//	}
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open) })
	}
}

// newSession is a fresh session created at created, with the suite's idle
// and absolute timeouts.
func newSession(id, subject string, created time.Time) sessionstore.Session {
	return sessionstore.Session{
		ID:            id,
		Subject:       subject,
		Roles:         []string{"admin", "ops"},
		JTI:           id + "-jti-0",
		IssuedAt:      created,
		CreatedAt:     created,
		RefreshedAt:   created,
		IdleExpiresAt: created.Add(idle),
		ExpiresAt:     created.Add(abs),
	}
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

func testCreateGet(t *testing.T, open func(t testing.TB) sessionstore.Store) {
	rotated := newSession("rotated", "alice", t0)
	rotated.PrevJTI = "rotated-jti-0"
	rotated.JTI = "rotated-jti-1"
	rotated.IssuedAt = t0.Add(20 * time.Minute)
	rotated.RotatedAt = t0.Add(20 * time.Minute)
	rotated.RefreshedAt = t0.Add(20 * time.Minute)
	rotated.IdleExpiresAt = t0.Add(20*time.Minute + idle)

	revoked := newSession("revoked", "bob", t0)
	revoked.RevokedAt = t0.Add(time.Minute)
	revoked.RevokeReason = sessionstore.ReasonAdmin

	noRoles := newSession("noroles", "carol", t0)
	noRoles.Roles = nil

	utc := newSession("utc", "dave", t0.UTC())

	tests := []struct {
		name string
		s    sessionstore.Session
	}{
		{"new", newSession("new", "alice", t0)},
		{"rotated", rotated},
		{"revoked", revoked},
		{"no roles", noRoles},
		{"utc", utc},
	}
	st := open(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			create(t, st, tt.s)
			wantSession(t, fmt.Sprintf("Get(%q)", tt.s.ID), get(t, st, tt.s.ID), tt.s)
		})
	}
}

func testCreateExists(t *testing.T, open func(t testing.TB) sessionstore.Store) {
	st := open(t)
	first := newSession("s1", "alice", t0)
	create(t, st, first)
	second := newSession("s1", "mallory", t0.Add(time.Minute))
	if err := st.Create(t.Context(), second); !errors.Is(err, sessionstore.ErrExists) {
		t.Fatalf("second Create(%q) = %v, want %v", second.ID, err, sessionstore.ErrExists)
	}
	wantSession(t, "Get after refused Create", get(t, st, "s1"), first)
	wantCount(t, st, 1)
	list, err := st.List(t.Context(), "mallory", t0.Add(2*time.Minute))
	if err != nil || len(list) != 0 {
		t.Fatalf("List(mallory) = %d sessions, %v; want 0, nil", len(list), err)
	}
}

func testNotFound(t *testing.T, open func(t testing.TB) sessionstore.Store) {
	st := open(t)
	create(t, st, newSession("known", "alice", t0))
	tests := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"Get", func(ctx context.Context) error {
			_, err := st.Get(ctx, "unknown")
			return err
		}},
		{"Get empty ID", func(ctx context.Context) error {
			_, err := st.Get(ctx, "")
			return err
		}},
		{"Rotate", func(ctx context.Context) error {
			_, err := st.Rotate(ctx, sessionstore.RotateRequest{
				SessionID: "unknown", JTI: "known-jti-0", NewJTI: "n", Now: t0.Add(time.Minute), IdleTimeout: idle, Grace: grace,
			})
			return err
		}},
		{"Revoke", func(ctx context.Context) error {
			_, err := st.Revoke(ctx, "unknown", sessionstore.ReasonAdmin, t0)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(t.Context()); !errors.Is(err, sessionstore.ErrNotFound) {
				t.Fatalf("%s = %v, want %v", tt.name, err, sessionstore.ErrNotFound)
			}
		})
	}
	wantCount(t, st, 1)
}

func testRotateRefusals(t *testing.T, open func(t testing.TB) sessionstore.Store) {
	// base: created at t0, rotated once at t0+30m (idle deadline t0+90m,
	// absolute t0+24h), so it has a current, a previous and an older jti.
	rotatedAt := t0.Add(30 * time.Minute)
	base := newSession("s", "alice", t0)
	base.PrevJTI = "s-jti-0"
	base.JTI = "s-jti-1"
	base.IssuedAt = rotatedAt
	base.RefreshedAt = rotatedAt
	base.RotatedAt = rotatedAt
	base.IdleExpiresAt = rotatedAt.Add(idle)

	revoked := base
	revoked.RevokedAt = t0.Add(time.Minute)
	revoked.RevokeReason = sessionstore.ReasonLogout

	// nearAbs: refreshed recently, so only the absolute deadline is near.
	nearAbs := base
	nearAbs.RefreshedAt = t0.Add(abs - 10*time.Minute)
	nearAbs.IssuedAt = nearAbs.RefreshedAt
	nearAbs.RotatedAt = nearAbs.RefreshedAt
	nearAbs.IdleExpiresAt = nearAbs.RefreshedAt.Add(idle)

	idleEnd := base.IdleExpiresAt
	absEnd := nearAbs.ExpiresAt

	tests := []struct {
		name string
		s    sessionstore.Session
		jti  string
		now  time.Time
		want error
	}{
		{"revoked, current jti", revoked, "s-jti-1", rotatedAt.Add(time.Minute), sessionstore.ErrRevoked},
		{"revoked before expired", revoked, "s-jti-1", idleEnd.Add(time.Hour), sessionstore.ErrRevoked},
		{"revoked before reuse", revoked, "older", rotatedAt.Add(time.Minute), sessionstore.ErrRevoked},
		{"idle deadline passed", base, "s-jti-1", idleEnd.Add(time.Millisecond), sessionstore.ErrExpired},
		{"exactly at idle deadline", base, "s-jti-1", idleEnd, sessionstore.ErrExpired},
		{"absolute deadline passed", nearAbs, "s-jti-1", absEnd.Add(time.Millisecond), sessionstore.ErrExpired},
		{"exactly at absolute deadline", nearAbs, "s-jti-1", absEnd, sessionstore.ErrExpired},
		{"expired before reuse of an old jti", base, "older", idleEnd, sessionstore.ErrExpired},
		{"expired before previous jti", base, "s-jti-0", idleEnd, sessionstore.ErrExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := open(t)
			create(t, st, tt.s)
			before := count(t, st)
			req := sessionstore.RotateRequest{
				SessionID: tt.s.ID, JTI: tt.jti, NewJTI: "successor", Now: tt.now, IdleTimeout: idle, Grace: grace,
			}
			res, err := st.Rotate(t.Context(), req)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Rotate(jti %q at %v) = %+v, %v; want %v", tt.jti, tt.now, res, err, tt.want)
			}
			// A refusal changes nothing: no rotation, no revocation.
			wantSession(t, "Get after refusal", get(t, st, tt.s.ID), tt.s)
			wantCount(t, st, before)
		})
	}

	// The control: a millisecond before each deadline the same session rotates.
	controls := []struct {
		name string
		s    sessionstore.Session
		now  time.Time
	}{
		{"just before idle deadline", base, idleEnd.Add(-time.Millisecond)},
		{"just before absolute deadline", nearAbs, absEnd.Add(-time.Millisecond)},
	}
	for _, tt := range controls {
		t.Run(tt.name, func(t *testing.T) {
			st := open(t)
			create(t, st, tt.s)
			res := rotate(t, st, sessionstore.RotateRequest{
				SessionID: tt.s.ID, JTI: tt.s.JTI, NewJTI: "successor", Now: tt.now, IdleTimeout: idle, Grace: grace,
			})
			if res.Grace || res.Session.JTI != "successor" {
				t.Fatalf("Rotate() = Grace %v, JTI %q; want false, %q", res.Grace, res.Session.JTI, "successor")
			}
		})
	}
}

func testRotateSuccess(t *testing.T, open func(t testing.TB) sessionstore.Store) {
	st := open(t)
	orig := newSession("s", "alice", t0)
	create(t, st, orig)

	t1 := t0.Add(15*time.Minute + 123*time.Millisecond)
	res := rotate(t, st, sessionstore.RotateRequest{
		SessionID: "s", JTI: "s-jti-0", NewJTI: "s-jti-1", Now: t1, IdleTimeout: idle, Grace: grace,
	})
	want := orig
	want.PrevJTI = "s-jti-0"
	want.JTI = "s-jti-1"
	want.IssuedAt = t1
	want.RefreshedAt = t1
	want.RotatedAt = t1
	want.IdleExpiresAt = t1.Add(idle)
	if res.Grace {
		t.Fatalf("first Rotate() Grace = true, want false")
	}
	wantSession(t, "first Rotate() Session", res.Session, want)
	wantSession(t, "Get after first Rotate", get(t, st, "s"), want)

	// The successor rotates in turn, with another idle timeout.
	t2 := t1.Add(45 * time.Minute)
	res = rotate(t, st, sessionstore.RotateRequest{
		SessionID: "s", JTI: "s-jti-1", NewJTI: "s-jti-2", Now: t2, IdleTimeout: 2 * idle, Grace: grace,
	})
	want.PrevJTI = "s-jti-1"
	want.JTI = "s-jti-2"
	want.IssuedAt = t2
	want.RefreshedAt = t2
	want.RotatedAt = t2
	want.IdleExpiresAt = t2.Add(2 * idle)
	if res.Grace {
		t.Fatalf("second Rotate() Grace = true, want false")
	}
	wantSession(t, "second Rotate() Session", res.Session, want)
	wantSession(t, "Get after second Rotate", get(t, st, "s"), want)
	wantCount(t, st, 1)
}

func testGrace(t *testing.T, open func(t testing.TB) sessionstore.Store) {
	t1 := t0.Add(20 * time.Minute)
	tests := []struct {
		name      string
		grace     time.Duration
		after     time.Duration // since the rotation
		wantGrace bool
	}{
		{"same instant", grace, 0, true},
		{"within grace", grace, grace / 2, true},
		{"last millisecond of grace", grace, grace - time.Millisecond, true},
		{"exactly at grace", grace, grace, false},
		{"after grace", grace, grace + time.Millisecond, false},
		{"zero grace", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := open(t)
			create(t, st, newSession("s", "alice", t0))
			rotated := rotate(t, st, sessionstore.RotateRequest{
				SessionID: "s", JTI: "s-jti-0", NewJTI: "s-jti-1", Now: t1, IdleTimeout: idle, Grace: tt.grace,
			}).Session

			req := sessionstore.RotateRequest{
				SessionID: "s", JTI: "s-jti-0", NewJTI: "s-jti-other", Now: t1.Add(tt.after), IdleTimeout: idle, Grace: tt.grace,
			}
			res, err := st.Rotate(t.Context(), req)
			if !tt.wantGrace {
				if !errors.Is(err, sessionstore.ErrReuseDetected) {
					t.Fatalf("Rotate(previous jti, %v after) = %+v, %v; want %v", tt.after, res, err, sessionstore.ErrReuseDetected)
				}
				return
			}
			if err != nil {
				t.Fatalf("Rotate(previous jti, %v after) = %v, want nil", tt.after, err)
			}
			if !res.Grace {
				t.Fatalf("Rotate(previous jti) Grace = false, want true")
			}
			if res.Session.JTI != "s-jti-1" || !res.Session.IssuedAt.Equal(t1) {
				t.Fatalf("Rotate(previous jti) = JTI %q, IssuedAt %v; want %q, %v", res.Session.JTI, res.Session.IssuedAt, "s-jti-1", t1)
			}
			wantSession(t, "grace Rotate() Session", res.Session, rotated)
			wantSession(t, "Get after grace", get(t, st, "s"), rotated)
			wantCount(t, st, 1)
		})
	}
}

func testReuse(t *testing.T, open func(t testing.TB) sessionstore.Store) {
	t1 := t0.Add(20 * time.Minute)
	t2 := t1.Add(20 * time.Minute)
	tests := []struct {
		name string
		jti  string
		now  time.Time
	}{
		{"previous jti after grace", "s-jti-1", t2.Add(grace)},
		{"older jti within grace", "s-jti-0", t2.Add(time.Millisecond)},
		{"older jti after grace", "s-jti-0", t2.Add(time.Minute)},
		{"unknown jti", "never-issued", t2.Add(time.Millisecond)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := open(t)
			create(t, st, newSession("s", "alice", t0), newSession("other", "alice", t0))
			rotate(t, st, sessionstore.RotateRequest{SessionID: "s", JTI: "s-jti-0", NewJTI: "s-jti-1", Now: t1, IdleTimeout: idle, Grace: grace})
			before := rotate(t, st, sessionstore.RotateRequest{SessionID: "s", JTI: "s-jti-1", NewJTI: "s-jti-2", Now: t2, IdleTimeout: idle, Grace: grace}).Session
			wantCount(t, st, 2)

			res, err := st.Rotate(t.Context(), sessionstore.RotateRequest{
				SessionID: "s", JTI: tt.jti, NewJTI: "s-jti-stolen", Now: tt.now, IdleTimeout: idle, Grace: grace,
			})
			if !errors.Is(err, sessionstore.ErrReuseDetected) {
				t.Fatalf("Rotate(jti %q) = %+v, %v; want %v", tt.jti, res, err, sessionstore.ErrReuseDetected)
			}
			want := before
			want.RevokedAt = tt.now
			want.RevokeReason = sessionstore.ReasonReuseDetected
			wantSession(t, "Get after reuse", get(t, st, "s"), want)
			wantCount(t, st, 1)

			// Every token of the session stops refreshing, the current one too.
			for _, jti := range []string{"s-jti-2", "s-jti-1", tt.jti} {
				_, err := st.Rotate(t.Context(), sessionstore.RotateRequest{
					SessionID: "s", JTI: jti, NewJTI: "again", Now: tt.now.Add(time.Millisecond), IdleTimeout: idle, Grace: grace,
				})
				if !errors.Is(err, sessionstore.ErrRevoked) {
					t.Fatalf("Rotate(jti %q) after reuse = %v, want %v", jti, err, sessionstore.ErrRevoked)
				}
			}
			wantSession(t, "Get after refusals", get(t, st, "s"), want)
			// The subject's other session is untouched.
			wantSession(t, "Get(other)", get(t, st, "other"), newSession("other", "alice", t0))
		})
	}
}

func testRevoke(t *testing.T, open func(t testing.TB) sessionstore.Store) {
	st := open(t)
	orig := newSession("s", "alice", t0)
	create(t, st, orig, newSession("other", "alice", t0))
	t1 := t0.Add(time.Minute)

	revoked, err := st.Revoke(t.Context(), "s", sessionstore.ReasonLogout, t1)
	if err != nil || !revoked {
		t.Fatalf("first Revoke() = %v, %v; want true, nil", revoked, err)
	}
	want := orig
	want.RevokedAt = t1
	want.RevokeReason = sessionstore.ReasonLogout
	wantSession(t, "Get after Revoke", get(t, st, "s"), want)
	wantCount(t, st, 1)

	revoked, err = st.Revoke(t.Context(), "s", sessionstore.ReasonAdmin, t1.Add(time.Minute))
	if err != nil || revoked {
		t.Fatalf("second Revoke() = %v, %v; want false, nil", revoked, err)
	}
	wantSession(t, "Get after second Revoke", get(t, st, "s"), want)
	wantCount(t, st, 1)

	_, err = st.Rotate(t.Context(), sessionstore.RotateRequest{SessionID: "s", JTI: "s-jti-0", NewJTI: "n", Now: t1.Add(time.Minute), IdleTimeout: idle, Grace: grace})
	if !errors.Is(err, sessionstore.ErrRevoked) {
		t.Fatalf("Rotate() after Revoke = %v, want %v", err, sessionstore.ErrRevoked)
	}
}

func testRevokeSubject(t *testing.T, open func(t testing.TB) sessionstore.Store) {
	st := open(t)
	create(t, st,
		newSession("a1", "alice", t0),
		newSession("a2", "alice", t0.Add(time.Second)),
		newSession("a3", "alice", t0.Add(2*time.Second)),
		newSession("b1", "bob", t0),
		newSession("p1", "ali", t0),    // a prefix of alice
		newSession("x1", "alice2", t0), // alice is a prefix of it
	)
	if _, err := st.Revoke(t.Context(), "a3", sessionstore.ReasonLogout, t0.Add(time.Minute)); err != nil {
		t.Fatalf("Revoke(a3) = %v", err)
	}
	wantCount(t, st, 5)

	t1 := t0.Add(2 * time.Minute)
	tests := []struct {
		subject string
		want    int
	}{
		{"alice", 2},
		{"alice", 0},
		{"nobody", 0},
	}
	for _, tt := range tests {
		got, err := st.RevokeSubject(t.Context(), tt.subject, sessionstore.ReasonAdmin, t1)
		if err != nil || got != tt.want {
			t.Fatalf("RevokeSubject(%q) = %d, %v; want %d, nil", tt.subject, got, err, tt.want)
		}
	}
	wantCount(t, st, 3)

	for _, want := range []sessionstore.Session{newSession("a1", "alice", t0), newSession("a2", "alice", t0.Add(time.Second))} {
		want.RevokedAt = t1
		want.RevokeReason = sessionstore.ReasonAdmin
		wantSession(t, "Get("+want.ID+")", get(t, st, want.ID), want)
	}
	a3 := get(t, st, "a3")
	if !a3.RevokedAt.Equal(t0.Add(time.Minute)) || a3.RevokeReason != sessionstore.ReasonLogout {
		t.Fatalf("Get(a3) = revoked at %v for %q, want %v for %q (not revoked again)", a3.RevokedAt, a3.RevokeReason, t0.Add(time.Minute), sessionstore.ReasonLogout)
	}
	for _, s := range []sessionstore.Session{newSession("b1", "bob", t0), newSession("p1", "ali", t0), newSession("x1", "alice2", t0)} {
		wantSession(t, "Get("+s.ID+")", get(t, st, s.ID), s)
	}
}

func testList(t *testing.T, open func(t testing.TB) sessionstore.Store) {
	st := open(t)
	now := t0.Add(2 * time.Hour)
	// Created in an order unrelated to IDs and to creation time.
	old := newSession("zz-old", "alice", t0.Add(90*time.Minute))
	mid := newSession("aa-mid", "alice", t0.Add(100*time.Minute))
	young := newSession("mm-young", "alice", t0.Add(110*time.Minute))
	revoked := newSession("revoked", "alice", t0.Add(95*time.Minute))
	idleOver := newSession("idle-over", "alice", t0) // idle deadline t0+1h < now
	atDeadline := newSession("at-deadline", "alice", now.Add(-idle))
	create(t, st, young, idleOver, mid, revoked, old, atDeadline,
		newSession("bob1", "bob", t0.Add(100*time.Minute)),
		newSession("prefix", "ali", t0.Add(100*time.Minute)),
		newSession("longer", "alice2", t0.Add(100*time.Minute)),
	)
	if _, err := st.Revoke(t.Context(), "revoked", sessionstore.ReasonLogout, t0.Add(96*time.Minute)); err != nil {
		t.Fatalf("Revoke() = %v", err)
	}

	tests := []struct {
		subject string
		want    []sessionstore.Session
	}{
		{"alice", []sessionstore.Session{old, mid, young}},
		{"bob", []sessionstore.Session{newSession("bob1", "bob", t0.Add(100*time.Minute))}},
		{"ali", []sessionstore.Session{newSession("prefix", "ali", t0.Add(100*time.Minute))}},
		{"nobody", nil},
	}
	for _, tt := range tests {
		got, err := st.List(t.Context(), tt.subject, now)
		if err != nil {
			t.Fatalf("List(%q) = %v", tt.subject, err)
		}
		if got == nil {
			t.Fatalf("List(%q) = nil slice, want non-nil", tt.subject)
		}
		if len(got) != len(tt.want) {
			ids := make([]string, len(got))
			for i, s := range got {
				ids[i] = s.ID
			}
			t.Fatalf("List(%q) = %q, want %d sessions", tt.subject, ids, len(tt.want))
		}
		for i := range got {
			wantSession(t, fmt.Sprintf("List(%q)[%d]", tt.subject, i), got[i], tt.want[i])
		}
	}
}

func testCount(t *testing.T, open func(t testing.TB) sessionstore.Store) {
	st := open(t)
	wantCount(t, st, 0)
	revokedAtCreate := newSession("pre-revoked", "alice", t0)
	revokedAtCreate.RevokedAt = t0
	revokedAtCreate.RevokeReason = sessionstore.ReasonAdmin
	create(t, st, newSession("a", "alice", t0), newSession("b", "alice", t0), newSession("c", "bob", t0), newSession("d", "bob", t0.Add(time.Hour)), revokedAtCreate)
	wantCount(t, st, 4)

	steps := []struct {
		name string
		do   func(ctx context.Context) error
		want int
	}{
		{"refused Create", func(ctx context.Context) error {
			if err := st.Create(ctx, newSession("a", "alice", t0)); !errors.Is(err, sessionstore.ErrExists) {
				return fmt.Errorf("Create = %v, want ErrExists", err)
			}
			return nil
		}, 4},
		{"Revoke", func(ctx context.Context) error {
			_, err := st.Revoke(ctx, "a", sessionstore.ReasonLogout, t0.Add(time.Minute))
			return err
		}, 3},
		{"Revoke again", func(ctx context.Context) error {
			_, err := st.Revoke(ctx, "a", sessionstore.ReasonLogout, t0.Add(time.Minute))
			return err
		}, 3},
		{"Rotate", func(ctx context.Context) error {
			_, err := st.Rotate(ctx, sessionstore.RotateRequest{SessionID: "b", JTI: "b-jti-0", NewJTI: "b-jti-1", Now: t0.Add(time.Minute), IdleTimeout: idle, Grace: grace})
			return err
		}, 3},
		{"reuse", func(ctx context.Context) error {
			_, err := st.Rotate(ctx, sessionstore.RotateRequest{SessionID: "b", JTI: "b-jti-0", NewJTI: "x", Now: t0.Add(time.Hour), IdleTimeout: idle, Grace: grace})
			if !errors.Is(err, sessionstore.ErrReuseDetected) {
				return fmt.Errorf("Rotate = %v, want ErrReuseDetected", err)
			}
			return nil
		}, 2},
		{"expired, not swept", func(ctx context.Context) error {
			_, err := st.Rotate(ctx, sessionstore.RotateRequest{SessionID: "c", JTI: "c-jti-0", NewJTI: "x", Now: t0.Add(idle), IdleTimeout: idle, Grace: grace})
			if !errors.Is(err, sessionstore.ErrExpired) {
				return fmt.Errorf("Rotate = %v, want ErrExpired", err)
			}
			return nil
		}, 2},
		{"sweep of c and the revoked ones", func(ctx context.Context) error {
			_, err := st.Sweep(ctx, t0.Add(90*time.Minute))
			return err
		}, 1},
		{"RevokeSubject", func(ctx context.Context) error {
			_, err := st.RevokeSubject(ctx, "bob", sessionstore.ReasonAdmin, t0.Add(90*time.Minute))
			return err
		}, 0},
		{"sweep of revoked d", func(ctx context.Context) error {
			_, err := st.Sweep(ctx, t0.Add(3*time.Hour))
			return err
		}, 0},
		{"Create after sweep", func(ctx context.Context) error {
			return st.Create(ctx, newSession("a", "alice", t0.Add(3*time.Hour)))
		}, 1},
	}
	for _, step := range steps {
		if err := step.do(t.Context()); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if got := count(t, st); got != step.want {
			t.Fatalf("Count() after %s = %d, want %d", step.name, got, step.want)
		}
	}
}

func testSweep(t *testing.T, open func(t testing.TB) sessionstore.Store) {
	st := open(t)
	now := t0.Add(2 * time.Hour)
	at := func(id, subject string, deadline time.Time) sessionstore.Session {
		// Created so that the idle deadline (the nearer one) is deadline.
		return newSession(id, subject, deadline.Add(-idle))
	}
	before := at("before", "alice", now.Add(-time.Millisecond))
	exactly := at("exactly", "alice", now)
	after := at("after", "alice", now.Add(time.Millisecond))
	revokedDue := at("revoked-due", "bob", now.Add(-time.Minute))
	revokedLive := at("revoked-live", "bob", now.Add(time.Minute))
	// absDue: its absolute deadline (not the idle one) is due.
	absDue := newSession("abs-due", "bob", now.Add(-abs))
	absDue.RefreshedAt = now.Add(-time.Minute)
	absDue.IdleExpiresAt = now.Add(idle - time.Minute)
	// moved: created due at now, but rotated since, which moved its deadline.
	moved := at("moved", "carol", now)
	// movedIn: created live at now, but its idle timeout was shortened by a
	// rotation so that it is due.
	movedIn := at("moved-in", "carol", now.Add(30*time.Minute))
	create(t, st, before, exactly, after, revokedDue, revokedLive, absDue, moved, movedIn)
	for _, id := range []string{"revoked-due", "revoked-live"} {
		if _, err := st.Revoke(t.Context(), id, sessionstore.ReasonLogout, t0); err != nil {
			t.Fatalf("Revoke(%q) = %v", id, err)
		}
	}
	rotate(t, st, sessionstore.RotateRequest{SessionID: "moved", JTI: "moved-jti-0", NewJTI: "moved-jti-1", Now: now.Add(-time.Minute), IdleTimeout: idle, Grace: grace})
	rotate(t, st, sessionstore.RotateRequest{SessionID: "moved-in", JTI: "moved-in-jti-0", NewJTI: "moved-in-jti-1", Now: now.Add(-time.Minute), IdleTimeout: time.Minute, Grace: grace})
	wantCount(t, st, 6)

	n, err := st.Sweep(t.Context(), now)
	if err != nil || n != 5 {
		t.Fatalf("Sweep(now) = %d, %v; want 5, nil", n, err)
	}
	gone := []string{"before", "exactly", "revoked-due", "abs-due", "moved-in"}
	for _, id := range gone {
		if _, err := st.Get(t.Context(), id); !errors.Is(err, sessionstore.ErrNotFound) {
			t.Fatalf("Get(%q) after Sweep = %v, want %v", id, err, sessionstore.ErrNotFound)
		}
	}
	for _, id := range []string{"after", "revoked-live", "moved"} {
		get(t, st, id)
	}
	wantCount(t, st, 2) // after, moved

	// The subject index lost them too: nothing is listed, nothing revoked.
	list, err := st.List(t.Context(), "alice", now.Add(-time.Hour))
	if err != nil || len(list) != 1 || list[0].ID != "after" {
		t.Fatalf("List(alice) after Sweep = %d sessions, %v; want only %q", len(list), err, "after")
	}
	if got, err := st.RevokeSubject(t.Context(), "carol", sessionstore.ReasonAdmin, now); err != nil || got != 1 {
		t.Fatalf("RevokeSubject(carol) after Sweep = %d, %v; want 1 (moved only)", got, err)
	}
	wantCount(t, st, 1)

	// Nothing more is due at now; a swept ID can be created again.
	if n, err := st.Sweep(t.Context(), now); err != nil || n != 0 {
		t.Fatalf("second Sweep(now) = %d, %v; want 0, nil", n, err)
	}
	create(t, st, newSession("before", "alice", now))
	wantCount(t, st, 2)

	// Later, everything left is due.
	if n, err := st.Sweep(t.Context(), now.Add(abs)); err != nil || n != 4 {
		t.Fatalf("Sweep(now+24h) = %d, %v; want 4, nil", n, err)
	}
	wantCount(t, st, 0)
}

func testConcurrentRotate(t *testing.T, open func(t testing.TB) sessionstore.Store) {
	const n = 100
	st := open(t)
	create(t, st, newSession("s", "alice", t0))
	now := t0.Add(30 * time.Minute)

	type result struct {
		res sessionstore.RotateResult
		err error
	}
	results := make([]result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			res, err := st.Rotate(t.Context(), sessionstore.RotateRequest{
				SessionID: "s", JTI: "s-jti-0", NewJTI: fmt.Sprintf("s-jti-%d", i+1), Now: now, IdleTimeout: idle, Grace: grace,
			})
			results[i] = result{res, err}
		})
	}
	close(start)
	wg.Wait()

	rotated := 0
	winner := ""
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("Rotate #%d = %v, want nil", i, r.err)
		}
		if !r.res.Grace {
			rotated++
			winner = fmt.Sprintf("s-jti-%d", i+1)
		}
	}
	if rotated != 1 {
		t.Fatalf("%d of %d concurrent Rotate calls rotated, want exactly 1", rotated, n)
	}
	for i, r := range results {
		if r.res.Session.JTI != winner {
			t.Fatalf("Rotate #%d Session.JTI = %q, want the one successor %q", i, r.res.Session.JTI, winner)
		}
	}
	s := get(t, st, "s")
	if s.JTI != winner || s.PrevJTI != "s-jti-0" || s.Revoked() {
		t.Fatalf("Get() = JTI %q, PrevJTI %q, revoked %v; want %q, %q, false", s.JTI, s.PrevJTI, s.Revoked(), winner, "s-jti-0")
	}
}

// calls are every Store method except Close, for the error-path tests.
func calls(st sessionstore.Store) []struct {
	name string
	call func(ctx context.Context) error
} {
	return []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"Create", func(ctx context.Context) error { return st.Create(ctx, newSession("new", "alice", t0)) }},
		{"CreateLimited", func(ctx context.Context) error {
			_, err := st.CreateLimited(ctx, newSession("new", "alice", t0), 1)
			return err
		}},
		{"Get", func(ctx context.Context) error { _, err := st.Get(ctx, "s"); return err }},
		{"Rotate", func(ctx context.Context) error {
			_, err := st.Rotate(ctx, sessionstore.RotateRequest{SessionID: "s", JTI: "s-jti-0", NewJTI: "n", Now: t0.Add(time.Minute), IdleTimeout: idle, Grace: grace})
			return err
		}},
		{"Revoke", func(ctx context.Context) error {
			_, err := st.Revoke(ctx, "s", sessionstore.ReasonLogout, t0.Add(time.Minute))
			return err
		}},
		{"RevokeSubject", func(ctx context.Context) error {
			_, err := st.RevokeSubject(ctx, "alice", sessionstore.ReasonAdmin, t0.Add(time.Minute))
			return err
		}},
		{"List", func(ctx context.Context) error { _, err := st.List(ctx, "alice", t0.Add(time.Minute)); return err }},
		{"Count", func(ctx context.Context) error { _, err := st.Count(ctx); return err }},
		{"Sweep", func(ctx context.Context) error { _, err := st.Sweep(ctx, t0.Add(48*time.Hour)); return err }},
	}
}

func testClosed(t *testing.T, open func(t testing.TB) sessionstore.Store) {
	st := open(t)
	create(t, st, newSession("s", "alice", t0))
	if err := st.Close(); err != nil {
		t.Fatalf("Close() = %v, want nil", err)
	}
	for _, tt := range calls(st) {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("%s on a closed store panicked: %v", tt.name, r)
				}
			}()
			if err := tt.call(t.Context()); !errors.Is(err, sessionstore.ErrUnavailable) {
				t.Fatalf("%s on a closed store = %v, want an error wrapping %v", tt.name, err, sessionstore.ErrUnavailable)
			}
		})
	}
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("second Close() panicked: %v", r)
			}
		}()
		_ = st.Close() // Either result is fine; no panic.
	}()
}

func testCanceledContext(t *testing.T, open func(t testing.TB) sessionstore.Store) {
	st := open(t)
	orig := newSession("s", "alice", t0)
	create(t, st, orig)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for _, tt := range calls(st) {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(ctx)
			if !errors.Is(err, context.Canceled) || !errors.Is(err, sessionstore.ErrUnavailable) {
				t.Fatalf("%s with a canceled context = %v, want an error wrapping %v and %v", tt.name, err, context.Canceled, sessionstore.ErrUnavailable)
			}
		})
	}
	// Nothing changed.
	wantSession(t, "Get after canceled calls", get(t, st, "s"), orig)
	if _, err := st.Get(t.Context(), "new"); !errors.Is(err, sessionstore.ErrNotFound) {
		t.Fatalf("Get(new) after canceled Create = %v, want %v", err, sessionstore.ErrNotFound)
	}
	wantCount(t, st, 1)
}
