package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
)

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
