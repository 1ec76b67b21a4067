package boltstore

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
	"github.com/spa-gateway/gateway/sessionstore/storetest"
	bolt "go.etcd.io/bbolt"
)

// TestGroupCommit: concurrent Create and Rotate calls share commits, and
// every call gets the answer it would have got alone: rotations, grace
// answers, refusals and ErrExists, each reflected in the file.
func TestGroupCommit(t *testing.T) {
	// A long delay, so that the batches certainly fill.
	st, _ := openTemp(t, &Options{MaxBatchDelay: 20 * time.Millisecond, MaxBatchSize: 1000})
	ctx := t.Context()
	const n = 32
	for i := range n {
		if err := st.Create(ctx, storetest.NewSession(fmt.Sprintf("s%02d", i), "alice", t0)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Revoke(ctx, "s00", sessionstore.ReasonLogout, t0); err != nil {
		t.Fatal(err)
	}
	before := st.txID(t)
	now := t0.Add(time.Minute)
	rot := func(id, jti, next string) (sessionstore.RotateResult, error) {
		return st.Rotate(ctx, sessionstore.RotateRequest{SessionID: id, JTI: jti, NewJTI: next, Now: now, IdleTimeout: time.Hour, Grace: time.Minute})
	}
	const rounds = 3
	var wg sync.WaitGroup
	for i := 1; i < n; i++ {
		wg.Go(func() {
			id := fmt.Sprintf("s%02d", i)
			jti := id + "-jti-0"
			for r := 1; r <= rounds; r++ {
				next := fmt.Sprintf("%s-jti-%d", id, r)
				res, err := rot(id, jti, next)
				if err != nil || res.Grace || res.Session.JTI != next || res.Session.PrevJTI != jti {
					t.Errorf("Rotate(%s, %s) = %+v, %v; want rotated to %s", id, jti, res, err, next)
					return
				}
				// The token just rotated away from, again: the grace answer.
				res, err = rot(id, jti, "unused")
				if err != nil || !res.Grace || res.Session.JTI != next {
					t.Errorf("Rotate(%s, %s) again = %+v, %v; want the grace answer with %s", id, jti, res, err, next)
					return
				}
				jti = next
			}
		})
	}
	wg.Go(func() {
		if _, err := rot("s00", "s00-jti-0", "x"); !errors.Is(err, sessionstore.ErrRevoked) {
			t.Errorf("Rotate(revoked) = %v, want ErrRevoked", err)
		}
	})
	wg.Go(func() {
		if err := st.Create(ctx, storetest.NewSession("s05", "bob", t0)); !errors.Is(err, sessionstore.ErrExists) {
			t.Errorf("Create(taken ID) = %v, want ErrExists", err)
		}
	})
	wg.Wait()

	calls := (n-1)*rounds*2 + 2
	commits := st.txID(t) - before
	t.Logf("%d calls, %d commits", calls, commits)
	if commits >= (n-1)*rounds {
		t.Errorf("%d commits for %d rotations: no group commit", commits, (n-1)*rounds)
	}
	for i := 1; i < n; i++ {
		id := fmt.Sprintf("s%02d", i)
		s, err := st.Get(ctx, id)
		want := fmt.Sprintf("%s-jti-%d", id, rounds)
		if err != nil || s.JTI != want || s.Subject != "alice" {
			t.Errorf("Get(%s) = %+v, %v; want jti %s of alice", id, s, err, want)
		}
	}
	if got, err := st.Count(ctx); err != nil || got != n-1 {
		t.Errorf("Count() = %d, %v; want %d", got, err, n-1)
	}
}

// TestGroupCommitFailingCall: when one function of a batch fails, bbolt
// rolls the batch back and runs the others again; each Rotate must still
// rotate exactly once and answer as if alone, and nothing of the failed
// function may remain.
func TestGroupCommitFailingCall(t *testing.T) {
	st, _ := openTemp(t, &Options{MaxBatchDelay: 5 * time.Millisecond, MaxBatchSize: 1000})
	ctx := t.Context()
	const n = 16
	for i := range n {
		if err := st.Create(ctx, storetest.NewSession(fmt.Sprintf("s%02d", i), "alice", t0)); err != nil {
			t.Fatal(err)
		}
	}
	boom := errors.New("boom")
	for round := 1; round <= 10; round++ {
		now := t0.Add(time.Duration(round) * time.Second)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				id := fmt.Sprintf("s%02d", i)
				jti, next := fmt.Sprintf("%s-jti-%d", id, round-1), fmt.Sprintf("%s-jti-%d", id, round)
				if round == 1 {
					jti = id + "-jti-0"
				}
				res, err := st.Rotate(ctx, sessionstore.RotateRequest{SessionID: id, JTI: jti, NewJTI: next, Now: now, IdleTimeout: time.Hour})
				if err != nil || res.Grace || res.Session.JTI != next || res.Session.PrevJTI != jti || !res.Session.RotatedAt.Equal(now) {
					t.Errorf("round %d: Rotate(%s) = %+v, %v; want rotated from %s to %s", round, id, res, err, jti, next)
				}
			})
			if i == n/2 {
				// In the middle of the batch: a function that writes, then
				// fails.
				wg.Go(func() {
					err := st.db.Batch(func(tx *bolt.Tx) error {
						if err := tx.Bucket(bucketSessions).Put([]byte("s00"), []byte("garbage")); err != nil {
							return err
						}
						return boom
					})
					if !errors.Is(err, boom) {
						t.Errorf("failing batch function: %v, want boom", err)
					}
				})
			}
		}
		wg.Wait()
		if t.Failed() {
			return
		}
	}
	for i := range n {
		id := fmt.Sprintf("s%02d", i)
		if s, err := st.Get(ctx, id); err != nil || s.JTI != id+"-jti-10" {
			t.Errorf("Get(%s) = %+v, %v; want jti %s-jti-10", id, s, err, id)
		}
	}
}

// TestGroupCommitAloneIsImmediate: a call with no other write in progress
// does not wait for a batch to fill, however long the batch delay.
func TestGroupCommitAloneIsImmediate(t *testing.T) {
	st, _ := openTemp(t, &Options{MaxBatchDelay: time.Hour, MaxBatchSize: 1000})
	done := make(chan error, 1)
	go func() { done <- st.Create(t.Context(), storetest.NewSession("s", "alice", t0)) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("a lone Create waited for the batch delay")
	}
}
