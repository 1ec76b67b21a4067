package main

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
)

// TestSweeperRemovesEndedSessions runs the real Main with a short
// store.sweep_interval and checks that sessions past their deadline are
// removed from the store, and live ones are not.
func TestSweeperRemovesEndedSessions(t *testing.T) {
	cfg, err := loadConfig(writeSetup(t, t.TempDir(), ""))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store.SweepInterval = Duration(20 * time.Millisecond)
	m, err := newMain(cfg, false, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ended := func(id string, ago time.Duration) sessionstore.Session {
		return sessionstore.Session{ID: id, Subject: "alice", JTI: "j-" + id, IssuedAt: now.Add(-2 * ago),
			CreatedAt: now.Add(-2 * ago), RefreshedAt: now.Add(-2 * ago), IdleExpiresAt: now.Add(-ago), ExpiresAt: now.Add(time.Hour)}
	}
	live := sessionstore.Session{ID: "live", Subject: "alice", JTI: "j-live", IssuedAt: now, CreatedAt: now,
		RefreshedAt: now, IdleExpiresAt: now.Add(time.Hour), ExpiresAt: now.Add(24 * time.Hour)}
	for _, s := range []sessionstore.Session{ended("a", time.Minute), ended("b", time.Second), live} {
		if err := m.store.Create(t.Context(), s); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	}()

	deadline := time.Now().Add(10 * time.Second)
	for {
		_, errA := m.store.Get(t.Context(), "a")
		_, errB := m.store.Get(t.Context(), "b")
		if errors.Is(errA, sessionstore.ErrNotFound) && errors.Is(errB, sessionstore.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ended sessions still stored after 10s: %v, %v", errA, errB)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := m.store.Get(t.Context(), "live"); err != nil {
		t.Errorf("live session: Get = %v, want it kept", err)
	}
	if n, err := m.store.Count(t.Context()); err != nil || n != 1 {
		t.Errorf("Count = %d, %v; want 1", n, err)
	}
}
