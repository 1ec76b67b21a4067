package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
)

// testSessionLimit: CreateLimited revokes the subject's least recently
// refreshed live sessions beyond the limit, and only those: not another
// subject's, not expired or revoked ones (which do not count).
func testSessionLimit(t *testing.T, open func(t testing.TB) sessionstore.Store) {
	st := open(t)
	now := t0.Add(50 * time.Minute)
	old := newSession("old", "alice", t0)                     // refreshed at t0+40m below: the most recent
	mid := newSession("mid", "alice", t0.Add(10*time.Minute)) // never refreshed
	low := newSession("low", "alice", t0.Add(time.Minute))
	expired := newSession("expired", "alice", t0.Add(-2*time.Hour)) // idle end t0-1h: not live
	gone := newSession("gone", "alice", t0.Add(-time.Minute))
	gone.RevokedAt, gone.RevokeReason = t0, sessionstore.ReasonLogout
	bob := newSession("bob1", "bob", t0)
	create(t, st, old, mid, low, expired, gone, bob, newSession("x1", "alice2", t0))
	rotate(t, st, sessionstore.RotateRequest{SessionID: "old", JTI: "old-jti-0", NewJTI: "old-jti-1", Now: t0.Add(40 * time.Minute), IdleTimeout: idle, Grace: grace})
	// low refreshed before mid: low is the least recently refreshed.
	rotate(t, st, sessionstore.RotateRequest{SessionID: "low", JTI: "low-jti-0", NewJTI: "low-jti-1", Now: t0.Add(5 * time.Minute), IdleTimeout: 4 * idle, Grace: grace})
	wantCount(t, st, 6)

	// Three live sessions and a limit of 3: the fourth login revokes one.
	revoked, err := st.CreateLimited(t.Context(), newSession("new1", "alice", now), 3)
	if err != nil || !slices.Equal(revoked, []string{"low"}) {
		t.Fatalf("CreateLimited(new1, 3) = %q, %v; want [low], nil", revoked, err)
	}
	s := get(t, st, "low")
	if !s.RevokedAt.Equal(now) || s.RevokeReason != sessionstore.ReasonSessionLimit {
		t.Fatalf("Get(low) = revoked at %v for %q, want %v for %q", s.RevokedAt, s.RevokeReason, now, sessionstore.ReasonSessionLimit)
	}
	wantLive(t, st, "alice", now, "mid", "old", "new1")
	wantCount(t, st, 6)

	// A limit of 1 leaves the new session alone, oldest refreshed first.
	now2 := now.Add(time.Second)
	revoked, err = st.CreateLimited(t.Context(), newSession("new2", "alice", now2), 1)
	if err != nil || !slices.Equal(revoked, []string{"mid", "old", "new1"}) {
		t.Fatalf("CreateLimited(new2, 1) = %q, %v; want [mid old new1], nil", revoked, err)
	}
	wantLive(t, st, "alice", now2, "new2")

	// Zero and negative limits: no limit.
	for i, limit := range []int{0, -1} {
		id := fmt.Sprintf("free%d", i)
		revoked, err = st.CreateLimited(t.Context(), newSession(id, "alice", now2), limit)
		if err != nil || revoked != nil {
			t.Fatalf("CreateLimited(%s, %d) = %q, %v; want nil, nil", id, limit, revoked, err)
		}
	}
	wantLive(t, st, "alice", now2, "free0", "free1", "new2")

	// A taken ID is refused and revokes nothing.
	revoked, err = st.CreateLimited(t.Context(), newSession("new2", "alice", now2), 1)
	if !errors.Is(err, sessionstore.ErrExists) || len(revoked) != 0 {
		t.Fatalf("CreateLimited(taken ID) = %q, %v; want nothing, %v", revoked, err, sessionstore.ErrExists)
	}
	wantLive(t, st, "alice", now2, "free0", "free1", "new2")

	// Other subjects were never touched.
	wantSession(t, "Get(bob1)", get(t, st, "bob1"), bob)
	if got := get(t, st, "x1"); got.Revoked() {
		t.Fatalf("Get(x1) of subject alice2 revoked by alice's logins")
	}
	if got := get(t, st, "gone"); got.RevokeReason != sessionstore.ReasonLogout {
		t.Fatalf("Get(gone) reason = %q, want %q (not revoked again)", got.RevokeReason, sessionstore.ReasonLogout)
	}
}

// wantLive checks the subject's live sessions at now, in any order.
func wantLive(tb testing.TB, st sessionstore.Store, subject string, now time.Time, want ...string) {
	tb.Helper()
	list, err := st.List(tb.Context(), subject, now)
	if err != nil {
		tb.Fatalf("List(%q) = %v", subject, err)
	}
	var got []string
	for _, s := range list {
		got = append(got, s.ID)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		tb.Fatalf("List(%q) = %q, want %q", subject, got, want)
	}
}

// testConcurrentSessionLimit: many concurrent logins of one user never
// leave more than the limit live, each revoked session is reported by
// exactly one call, and the count stays exact.
func testConcurrentSessionLimit(t *testing.T, open func(t testing.TB) sessionstore.Store) {
	const (
		n     = 60
		limit = 5
	)
	st := open(t)
	create(t, st, newSession("pre1", "alice", t0), newSession("pre2", "alice", t0))
	revoked := make([][]string, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			// Distinct times, so that the order is the login order where
			// the calls are serialised.
			at := t0.Add(time.Minute + time.Duration(i)*time.Millisecond)
			revoked[i], errs[i] = st.CreateLimited(t.Context(), newSession(fmt.Sprintf("c%02d", i), "alice", at), limit)
		})
	}
	close(start)
	wg.Wait()
	seen := map[string]bool{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("CreateLimited #%d = %v, want nil", i, err)
		}
		for _, id := range revoked[i] {
			if seen[id] {
				t.Fatalf("session %s reported revoked by two calls", id)
			}
			seen[id] = true
		}
	}
	now := t0.Add(2 * time.Minute)
	list, err := st.List(t.Context(), "alice", now)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != limit {
		t.Fatalf("after %d concurrent logins with a limit of %d: %d live sessions, want %d", n, limit, len(list), limit)
	}
	if len(seen) != n+2-limit {
		t.Fatalf("%d sessions reported revoked, want %d", len(seen), n+2-limit)
	}
	for id := range seen {
		if s := get(t, st, id); s.RevokeReason != sessionstore.ReasonSessionLimit {
			t.Fatalf("Get(%s) reason = %q, want %q", id, s.RevokeReason, sessionstore.ReasonSessionLimit)
		}
	}
	wantCount(t, st, limit)
}

// testWriteDeadline: a write whose ctx ends while it runs either applied
// and said so (nil) or changed nothing and said so (ErrUnavailable), never
// an error with the change applied: the caller answers 503 for it, and the
// client's retry must find the state it left (see sessionstore.Store). The
// deadlines are short, so that many calls end while queued or in flight.
func testWriteDeadline(t *testing.T, open func(t testing.TB) sessionstore.Store) {
	const n = 120
	st := open(t)
	for i := range n {
		create(t, st, newSession(fmt.Sprintf("r%03d", i), fmt.Sprintf("u%03d", i), t0))
	}
	now := t0.Add(time.Minute)
	type outcome struct {
		rotate, revoke, create, limited error
	}
	out := make([]outcome, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			timeout := func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(t.Context(), time.Duration(rand.IntN(20000))*time.Microsecond)
			}
			id := fmt.Sprintf("r%03d", i)
			ctx, cancel := timeout()
			_, out[i].rotate = st.Rotate(ctx, sessionstore.RotateRequest{SessionID: id, JTI: id + "-jti-0", NewJTI: id + "-jti-1", Now: now, IdleTimeout: idle, Grace: grace})
			cancel()
			ctx, cancel = timeout()
			_, out[i].revoke = st.Revoke(ctx, id, sessionstore.ReasonLogout, now)
			cancel()
			ctx, cancel = timeout()
			out[i].create = st.Create(ctx, newSession(fmt.Sprintf("n%03d", i), "bob", now))
			cancel()
			ctx, cancel = timeout()
			_, out[i].limited = st.CreateLimited(ctx, newSession(fmt.Sprintf("l%03d", i), "carol", now), 1000)
			cancel()
		})
	}
	wg.Wait()
	// Every error must be ErrUnavailable and leave no trace; every nil, its change.
	check := func(what string, err error, applied bool) {
		t.Helper()
		switch {
		case err != nil && !errors.Is(err, sessionstore.ErrUnavailable):
			t.Errorf("%s = %v, want nil or an error wrapping %v", what, err, sessionstore.ErrUnavailable)
		case err == nil && !applied:
			t.Errorf("%s = nil, but its change is not there", what)
		case err != nil && applied:
			t.Errorf("%s = %v, but its change was applied", what, err)
		}
	}
	failed := 0
	for i, o := range out {
		s := get(t, st, fmt.Sprintf("r%03d", i))
		check(fmt.Sprintf("Rotate(r%03d)", i), o.rotate, s.PrevJTI != "")
		check(fmt.Sprintf("Revoke(r%03d)", i), o.revoke, s.Revoked())
		_, err := st.Get(t.Context(), fmt.Sprintf("n%03d", i))
		check(fmt.Sprintf("Create(n%03d)", i), o.create, err == nil)
		_, err = st.Get(t.Context(), fmt.Sprintf("l%03d", i))
		check(fmt.Sprintf("CreateLimited(l%03d)", i), o.limited, err == nil)
		for _, err := range []error{o.rotate, o.revoke, o.create, o.limited} {
			if err != nil {
				failed++
			}
		}
	}
	t.Logf("%d of %d writes ended by their deadline", failed, 4*n)
}
