package boltstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
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

// queuedPastDeadline is a ctx whose deadline passes while its call waits in a
// batch: live at the check on entry, ended at every check after it.
type queuedPastDeadline struct {
	context.Context
	checks atomic.Int32
}

func (c *queuedPastDeadline) Err() error {
	if c.checks.Add(1) == 1 {
		return nil
	}
	return context.DeadlineExceeded
}

// TestBatchWithCallsPastDeadline: calls whose deadline passed while queued
// are dropped from their batch without failing it, so the live calls in the
// same batch each run once and apply, and the batch is not run again. (Each
// expired call used to fail the batch, so that bbolt rolled it back and ran
// all the others again: 120 runs for these 20 live calls, under overload,
// when deadlines pass in the queue.)
func TestBatchWithCallsPastDeadline(t *testing.T) {
	const live, expired = 20, 5
	// The batch runs when it is full, with every call in it.
	st, _ := openTemp(t, &Options{MaxBatchSize: live + expired, MaxBatchDelay: time.Minute})
	st.writers.Add(1) // another writer is counted, so every call joins the batch
	defer st.writers.Add(-1)
	var runs [live + expired]atomic.Int32
	errs := make([]error, live+expired)
	var wg sync.WaitGroup
	for i := range live + expired {
		wg.Go(func() {
			var ctx context.Context = t.Context()
			if i >= live {
				ctx = &queuedPastDeadline{Context: ctx}
			}
			sess := storetest.NewSession(fmt.Sprintf("s%02d", i), "alice", t0)
			errs[i] = st.groupUpdate(ctx, "create", func(b buckets) (bool, error) {
				runs[i].Add(1)
				return true, b.insert(&sess)
			})
		})
	}
	wg.Wait()
	for i := range live + expired {
		id := fmt.Sprintf("s%02d", i)
		_, getErr := st.Get(t.Context(), id)
		if i < live {
			if errs[i] != nil || runs[i].Load() != 1 || getErr != nil {
				t.Errorf("live call %s = %v, its function ran %d times, Get = %v; want nil, once, found", id, errs[i], runs[i].Load(), getErr)
			}
			continue
		}
		if !errors.Is(errs[i], sessionstore.ErrUnavailable) || !errors.Is(errs[i], context.DeadlineExceeded) || runs[i].Load() != 0 || !errors.Is(getErr, sessionstore.ErrNotFound) {
			t.Errorf("call %s past its deadline = %v, its function ran %d times, Get = %v; want an error wrapping %v and %v, never, %v",
				id, errs[i], runs[i].Load(), getErr, sessionstore.ErrUnavailable, context.DeadlineExceeded, sessionstore.ErrNotFound)
		}
	}
}
