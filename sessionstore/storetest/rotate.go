package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
)

// refusalSessions are the sessions testRotateRefusals presents tokens of.
// base: created at t0, rotated once at t0+30m (idle deadline t0+90m,
// absolute t0+24h), so it has a current, a previous and an older jti.
// revoked: base, logged out at t0+1m. nearAbs: base refreshed recently, so
// only the absolute deadline is near.
func refusalSessions() (base, revoked, nearAbs sessionstore.Session) {
	base = rotated(newSession("s", "alice", t0), "s-jti-1", t0.Add(30*time.Minute), idle, "", "")

	revoked = base
	revoked.RevokedAt = t0.Add(time.Minute)
	revoked.RevokeReason = sessionstore.ReasonLogout

	nearAbs = rotated(newSession("s", "alice", t0), "s-jti-1", t0.Add(abs-10*time.Minute), idle, "", "")
	return base, revoked, nearAbs
}

func testRotateRefusals(t *testing.T, open func(t testing.TB) sessionstore.Store) {
	base, revoked, nearAbs := refusalSessions()
	rotatedAt := base.RotatedAt
	idleEnd := base.IdleExpiresAt
	absEnd := nearAbs.ExpiresAt

	tests := []struct {
		name string
		s    sessionstore.Session
		jti  string
		now  time.Time
		want error
	}{
		{"revoked, current jti", revoked, "s-jti-1", rotatedAt.Add(time.Minute), sessionstore.ErrRevoked},
		{"revoked before expired", revoked, "s-jti-1", idleEnd.Add(time.Hour), sessionstore.ErrRevoked},
		{"revoked before reuse", revoked, "older", rotatedAt.Add(time.Minute), sessionstore.ErrRevoked},
		{"idle deadline passed", base, "s-jti-1", idleEnd.Add(time.Millisecond), sessionstore.ErrExpired},
		{"exactly at idle deadline", base, "s-jti-1", idleEnd, sessionstore.ErrExpired},
		{"absolute deadline passed", nearAbs, "s-jti-1", absEnd.Add(time.Millisecond), sessionstore.ErrExpired},
		{"exactly at absolute deadline", nearAbs, "s-jti-1", absEnd, sessionstore.ErrExpired},
		{"expired before reuse of an old jti", base, "older", idleEnd, sessionstore.ErrExpired},
		{"expired before previous jti", base, "s-jti-0", idleEnd, sessionstore.ErrExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := open(t)
			create(t, st, tt.s)
			before := count(t, st)
			req := sessionstore.RotateRequest{
				SessionID: tt.s.ID, JTI: tt.jti, NewJTI: "successor", Now: tt.now, IdleTimeout: idle, Grace: grace,
			}
			res, err := st.Rotate(t.Context(), req)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Rotate(jti %q at %v) = %+v, %v; want %v", tt.jti, tt.now, res, err, tt.want)
			}
			// A refusal changes nothing: no rotation, no revocation.
			wantSession(t, "Get after refusal", get(t, st, tt.s.ID), tt.s)
			wantCount(t, st, before)
		})
	}

	// The control: a millisecond before each deadline the same session rotates.
	controls := []struct {
		name string
		s    sessionstore.Session
		now  time.Time
	}{
		{"just before idle deadline", base, idleEnd.Add(-time.Millisecond)},
		{"just before absolute deadline", nearAbs, absEnd.Add(-time.Millisecond)},
	}
	for _, tt := range controls {
		t.Run(tt.name, func(t *testing.T) {
			st := open(t)
			create(t, st, tt.s)
			res := rotate(t, st, sessionstore.RotateRequest{
				SessionID: tt.s.ID, JTI: tt.s.JTI, NewJTI: "successor", Now: tt.now, IdleTimeout: idle, Grace: grace,
			})
			if res.Grace || res.Session.JTI != "successor" {
				t.Fatalf("Rotate() = Grace %v, JTI %q; want false, %q", res.Grace, res.Session.JTI, "successor")
			}
		})
	}
}

func testRotateSuccess(t *testing.T, open func(t testing.TB) sessionstore.Store) {
	st := open(t)
	orig := newSession("s", "alice", t0)
	create(t, st, orig)

	t1 := t0.Add(15*time.Minute + 123*time.Millisecond)
	res := rotate(t, st, sessionstore.RotateRequest{
		SessionID: "s", JTI: "s-jti-0", NewJTI: "s-jti-1", Now: t1, IdleTimeout: idle, Grace: grace,
	})
	want := rotated(orig, "s-jti-1", t1, idle, "", "")
	if res.Grace {
		t.Fatalf("first Rotate() Grace = true, want false")
	}
	wantSession(t, "first Rotate() Session", res.Session, want)
	wantSession(t, "Get after first Rotate", get(t, st, "s"), want)

	// The successor rotates in turn, with another idle timeout.
	t2 := t1.Add(45 * time.Minute)
	res = rotate(t, st, sessionstore.RotateRequest{
		SessionID: "s", JTI: "s-jti-1", NewJTI: "s-jti-2", Now: t2, IdleTimeout: 2 * idle, Grace: grace,
	})
	want = rotated(want, "s-jti-2", t2, 2*idle, "", "")
	if res.Grace {
		t.Fatalf("second Rotate() Grace = true, want false")
	}
	wantSession(t, "second Rotate() Session", res.Session, want)
	wantSession(t, "Get after second Rotate", get(t, st, "s"), want)
	wantCount(t, st, 1)
}

func testGrace(t *testing.T, open func(t testing.TB) sessionstore.Store) {
	t1 := t0.Add(20 * time.Minute)
	tests := []struct {
		name      string
		grace     time.Duration
		after     time.Duration // since the rotation
		wantGrace bool
	}{
		{"same instant", grace, 0, true},
		{"within grace", grace, grace / 2, true},
		{"last millisecond of grace", grace, grace - time.Millisecond, true},
		{"exactly at grace", grace, grace, false},
		{"after grace", grace, grace + time.Millisecond, false},
		{"zero grace", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := open(t)
			create(t, st, newSession("s", "alice", t0))
			rotated := rotate(t, st, sessionstore.RotateRequest{
				SessionID: "s", JTI: "s-jti-0", NewJTI: "s-jti-1", Now: t1, IdleTimeout: idle, Grace: tt.grace,
			}).Session

			req := sessionstore.RotateRequest{
				SessionID: "s", JTI: "s-jti-0", NewJTI: "s-jti-other", Now: t1.Add(tt.after), IdleTimeout: idle, Grace: tt.grace,
			}
			res, err := st.Rotate(t.Context(), req)
			if !tt.wantGrace {
				if !errors.Is(err, sessionstore.ErrReuseDetected) {
					t.Fatalf("Rotate(previous jti, %v after) = %+v, %v; want %v", tt.after, res, err, sessionstore.ErrReuseDetected)
				}
				return
			}
			if err != nil {
				t.Fatalf("Rotate(previous jti, %v after) = %v, want nil", tt.after, err)
			}
			if !res.Grace {
				t.Fatalf("Rotate(previous jti) Grace = false, want true")
			}
			if res.Session.JTI != "s-jti-1" || !res.Session.IssuedAt.Equal(t1) {
				t.Fatalf("Rotate(previous jti) = JTI %q, IssuedAt %v; want %q, %v", res.Session.JTI, res.Session.IssuedAt, "s-jti-1", t1)
			}
			wantSession(t, "grace Rotate() Session", res.Session, rotated)
			wantSession(t, "Get after grace", get(t, st, "s"), rotated)
			wantCount(t, st, 1)
		})
	}
}

func testReuse(t *testing.T, open func(t testing.TB) sessionstore.Store) {
	t1 := t0.Add(20 * time.Minute)
	t2 := t1.Add(20 * time.Minute)
	tests := []struct {
		name string
		jti  string
		now  time.Time
	}{
		{"previous jti after grace", "s-jti-1", t2.Add(grace)},
		{"older jti within grace", "s-jti-0", t2.Add(time.Millisecond)},
		{"older jti after grace", "s-jti-0", t2.Add(time.Minute)},
		{"unknown jti", "never-issued", t2.Add(time.Millisecond)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := open(t)
			create(t, st, newSession("s", "alice", t0), newSession("other", "alice", t0))
			rotate(t, st, sessionstore.RotateRequest{SessionID: "s", JTI: "s-jti-0", NewJTI: "s-jti-1", Now: t1, IdleTimeout: idle, Grace: grace})
			before := rotate(t, st, sessionstore.RotateRequest{SessionID: "s", JTI: "s-jti-1", NewJTI: "s-jti-2", Now: t2, IdleTimeout: idle, Grace: grace}).Session
			wantCount(t, st, 2)

			res, err := st.Rotate(t.Context(), sessionstore.RotateRequest{
				SessionID: "s", JTI: tt.jti, NewJTI: "s-jti-stolen", Now: tt.now, IdleTimeout: idle, Grace: grace,
			})
			if !errors.Is(err, sessionstore.ErrReuseDetected) {
				t.Fatalf("Rotate(jti %q) = %+v, %v; want %v", tt.jti, res, err, sessionstore.ErrReuseDetected)
			}
			want := before
			want.RevokedAt = tt.now
			want.RevokeReason = sessionstore.ReasonReuseDetected
			wantSession(t, "Get after reuse", get(t, st, "s"), want)
			wantCount(t, st, 1)

			// Every token of the session stops refreshing, the current one too.
			for _, jti := range []string{"s-jti-2", "s-jti-1", tt.jti} {
				_, err := st.Rotate(t.Context(), sessionstore.RotateRequest{
					SessionID: "s", JTI: jti, NewJTI: "again", Now: tt.now.Add(time.Millisecond), IdleTimeout: idle, Grace: grace,
				})
				if !errors.Is(err, sessionstore.ErrRevoked) {
					t.Fatalf("Rotate(jti %q) after reuse = %v, want %v", jti, err, sessionstore.ErrRevoked)
				}
			}
			wantSession(t, "Get after refusals", get(t, st, "s"), want)
			// The subject's other session is untouched.
			wantSession(t, "Get(other)", get(t, st, "other"), newSession("other", "alice", t0))
		})
	}
}

func testConcurrentRotate(t *testing.T, open func(t testing.TB) sessionstore.Store) {
	const n = 100
	st := open(t)
	create(t, st, newSession("s", "alice", t0))
	now := t0.Add(30 * time.Minute)

	type result struct {
		res sessionstore.RotateResult
		err error
	}
	results := make([]result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			res, err := st.Rotate(t.Context(), sessionstore.RotateRequest{
				SessionID: "s", JTI: "s-jti-0", NewJTI: fmt.Sprintf("s-jti-%d", i+1), Now: now, IdleTimeout: idle, Grace: grace,
			})
			results[i] = result{res, err}
		})
	}
	close(start)
	wg.Wait()

	rotated := 0
	winner := ""
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("Rotate #%d = %v, want nil", i, r.err)
		}
		if !r.res.Grace {
			rotated++
			winner = fmt.Sprintf("s-jti-%d", i+1)
		}
	}
	if rotated != 1 {
		t.Fatalf("%d of %d concurrent Rotate calls rotated, want exactly 1", rotated, n)
	}
	for i, r := range results {
		if r.res.Session.JTI != winner {
			t.Fatalf("Rotate #%d Session.JTI = %q, want the one successor %q", i, r.res.Session.JTI, winner)
		}
	}
	s := get(t, st, "s")
	if s.JTI != winner || s.PrevJTI != "s-jti-0" || s.Revoked() {
		t.Fatalf("Get() = JTI %q, PrevJTI %q, revoked %v; want %q, %q, false", s.JTI, s.PrevJTI, s.Revoked(), winner, "s-jti-0")
	}
}
