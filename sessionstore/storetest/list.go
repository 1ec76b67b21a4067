package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
)

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
