package boltstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
	"github.com/spa-gateway/gateway/sessionstore/storetest"
	bolt "go.etcd.io/bbolt"
)

// TestWriteQueuedPastDeadline: a write whose ctx ends while it waits for
// the write lock (alone, or queued in a group commit) changes nothing, now
// or once the lock is free, and says so: its caller answered 503, and the
// client's retry must find the state it left (issue 11, item 2).
func TestWriteQueuedPastDeadline(t *testing.T) {
	tests := []struct {
		name    string
		batched bool // another writer is counted, so the call joins a batch
	}{
		{"alone", false},
		{"in a batch", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, _ := openTemp(t, nil)
			if err := st.Create(t.Context(), storetest.NewSession("s", "alice", t0)); err != nil {
				t.Fatal(err)
			}
			// A long write transaction holds the lock, as a slow fsync would.
			locked, release := make(chan struct{}), make(chan struct{})
			held := make(chan error, 1)
			go func() {
				held <- st.db.Update(func(*bolt.Tx) error { close(locked); <-release; return nil })
			}()
			<-locked
			if tt.batched {
				st.writers.Add(1)
				defer st.writers.Add(-1)
			}

			type result struct {
				name string
				err  error
			}
			results := make(chan result, 3)
			now := t0.Add(time.Minute)
			ctxs := make([]context.Context, 3)
			for i := range ctxs {
				ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
				defer cancel()
				ctxs[i] = ctx
			}
			go func() {
				results <- result{"Create", st.Create(ctxs[0], storetest.NewSession("new", "alice", now))}
			}()
			go func() {
				_, err := st.Rotate(ctxs[1], sessionstore.RotateRequest{SessionID: "s", JTI: "s-jti-0", NewJTI: "next", Now: now, IdleTimeout: time.Hour, Grace: time.Second})
				results <- result{"Rotate", err}
			}()
			go func() {
				_, err := st.Revoke(ctxs[2], "s", sessionstore.ReasonLogout, now)
				results <- result{"Revoke", err}
			}()
			for _, ctx := range ctxs { // every ctx has ended, the calls still queued
				<-ctx.Done()
			}
			close(release)
			if err := <-held; err != nil {
				t.Fatal(err)
			}
			for range 3 {
				r := <-results
				if !errors.Is(r.err, sessionstore.ErrUnavailable) || !errors.Is(r.err, context.DeadlineExceeded) {
					t.Errorf("%s queued past its deadline = %v, want an error wrapping %v and %v", r.name, r.err, sessionstore.ErrUnavailable, context.DeadlineExceeded)
				}
			}
			if _, err := st.Get(t.Context(), "new"); !errors.Is(err, sessionstore.ErrNotFound) {
				t.Errorf("Get(new) after a Create that gave up = %v, want %v", err, sessionstore.ErrNotFound)
			}
			s, err := st.Get(t.Context(), "s")
			if err != nil || s.JTI != "s-jti-0" || s.Revoked() {
				t.Errorf("Get(s) after a Rotate and a Revoke that gave up = jti %q, revoked %v, %v; want s-jti-0, not revoked", s.JTI, s.Revoked(), err)
			}
		})
	}
}
