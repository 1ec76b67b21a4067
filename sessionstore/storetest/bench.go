package storetest

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
)

// The benchmarks every backend runs the same way. Each takes an open store
// and the sessions' creation time: a backend whose expiry runs on its own
// clock (Redis TTLs) passes one ahead of the wall clock. Seeding the store
// with other sessions first, as a real one holds, is the caller's: each
// backend has a faster way to do it than Create.

// BenchmarkCreate measures Create of a new session, the login's write.
func BenchmarkCreate(b *testing.B, st sessionstore.Store, created time.Time) {
	i := 0
	for b.Loop() {
		if err := st.Create(b.Context(), NthSession(i, created)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkRotate measures Rotate of one session, the refresh's write: it
// creates the session "s" and rotates it in a loop, a millisecond apart.
func BenchmarkRotate(b *testing.B, st sessionstore.Store, created time.Time) {
	r, err := newRotator(b.Context(), st, "s", created)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := r.rotate(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRotateParallel is the refresh load: 64 goroutines, each
// rotating a session of its own in a loop.
func BenchmarkRotateParallel(b *testing.B, st sessionstore.Store, created time.Time) {
	var seq atomic.Int64
	b.SetParallelism(max(64/runtime.GOMAXPROCS(0), 1))
	b.RunParallel(func(pb *testing.PB) {
		r, err := newRotator(b.Context(), st, fmt.Sprintf("p%03d", seq.Add(1)), created)
		if err != nil {
			b.Error(err) // not Fatal: this is not the benchmark's goroutine
			return
		}
		for pb.Next() {
			if err := r.rotate(b.Context()); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkCreateParallel is the login load: 64 goroutines creating
// sessions.
func BenchmarkCreateParallel(b *testing.B, st sessionstore.Store, created time.Time) {
	var seq atomic.Int64
	b.SetParallelism(max(64/runtime.GOMAXPROCS(0), 1))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := st.Create(b.Context(), NthSession(int(seq.Add(1)), created)); err != nil {
				b.Error(err) // not Fatal: this is not the benchmark's goroutine
				return
			}
		}
	})
}

// rotator refreshes one session again and again, as a client keeping its
// token fresh does, each time with the token the last rotation issued.
type rotator struct {
	st  sessionstore.Store
	id  string
	jti string
	now time.Time
	n   int
}

// newRotator creates the session id at created.
func newRotator(ctx context.Context, st sessionstore.Store, id string, created time.Time) (*rotator, error) {
	s := NewSession(id, "alice", created)
	if err := st.Create(ctx, s); err != nil {
		return nil, err
	}
	return &rotator{st: st, id: id, jti: s.JTI, now: created}, nil
}

// rotate rotates the session to its next JTI, a millisecond after the last
// rotation; a rotation inside the grace window (a retry) is an error, for
// each presents the current token.
func (r *rotator) rotate(ctx context.Context) error {
	r.n++
	r.now = r.now.Add(time.Millisecond)
	next := fmt.Sprintf("%s-jti-%d", r.id, r.n)
	res, err := r.st.Rotate(ctx, sessionstore.RotateRequest{
		SessionID: r.id, JTI: r.jti, NewJTI: next, Now: r.now, IdleTimeout: time.Hour, Grace: time.Second,
	})
	if err != nil || res.Grace {
		return fmt.Errorf("Rotate() = %+v, %v", res, err)
	}
	r.jti = next
	return nil
}
