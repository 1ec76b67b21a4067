package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
)

func testCreateGet(t *testing.T, open func(t testing.TB) sessionstore.Store) {
	afterRotation := rotated(newSession("rotated", "alice", t0), "rotated-jti-1", t0.Add(20*time.Minute), idle, "", "")

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
		{"rotated", afterRotation},
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
