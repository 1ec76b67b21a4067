package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
)

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
