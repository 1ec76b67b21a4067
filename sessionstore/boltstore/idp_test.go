package boltstore

import (
	"errors"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
	bolt "go.etcd.io/bbolt"
)

// TestIdPSessionSweep: Sweep removes an identity provider session entry
// at its until, not before; an entry extended by a later put stays past
// its first until (its old deadline key goes without it); and a file
// written before the entries existed gets their buckets at Open.
func TestIdPSessionSweep(t *testing.T) {
	st, path := openTemp(t, nil)
	// An older file: no identity provider buckets.
	if err := st.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketIdPSessions); err != nil {
			return err
		}
		return tx.DeleteBucket(bucketIdPDeadlines)
	}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	st, err := Open(path, nil)
	if err != nil {
		t.Fatalf("Open(older file) = %v", err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := t.Context()
	t0 := time.Unix(1_900_000_000, 0)
	for sid, until := range map[string]time.Time{"a": t0.Add(time.Hour), "b": t0.Add(2 * time.Hour)} {
		if err := st.PutIdPSession(ctx, "iss", sid, "alice", until); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.PutIdPSession(ctx, "iss", "a", "alice", t0.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	found := func(sid string) bool {
		_, err := st.IdPSessionSubject(ctx, "iss", sid)
		if err != nil && !errors.Is(err, sessionstore.ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	steps := []struct {
		at   time.Duration
		a, b bool
	}{{time.Hour - time.Nanosecond, true, true}, {time.Hour, true, true}, {2 * time.Hour, true, false}, {3 * time.Hour, false, false}}
	for _, s := range steps {
		if _, err := st.Sweep(ctx, t0.Add(s.at)); err != nil {
			t.Fatal(err)
		}
		if a, b := found("a"), found("b"); a != s.a || b != s.b {
			t.Fatalf("after Sweep at t0+%v: a found %v, b %v; want %v, %v", s.at, a, b, s.a, s.b)
		}
	}
	if err := st.Check(ctx); err != nil {
		t.Fatal(err)
	}
	st.db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket(bucketIdPDeadlines).Stats().KeyN; n != 0 {
			t.Errorf("%d idp_deadlines keys left, want 0", n)
		}
		return nil
	})
}
