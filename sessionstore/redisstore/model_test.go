package redisstore

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
	"github.com/spa-gateway/gateway/sessionstore/boltstore"
	"github.com/spa-gateway/gateway/sessionstore/redisstore/redistest"
)

// TestMatchesBolt runs the same random sequence of operations on this store
// and on the bbolt store, the reference, and requires the same answer to
// every call: errors, sessions, lists, counts and sweep counts. It explores
// interleavings the contract suite does not spell out (rotations after
// revocations, sweeps between rotations, IDs created again after a sweep).
func TestMatchesBolt(t *testing.T) {
	tests := []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"standalone", func(t *testing.T) string { return redistest.Start(t).URL(0) }},
		{"cluster", func(t *testing.T) string { return redistest.StartCluster(t).ClusterURL() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ref, err := boltstore.Open(filepath.Join(t.TempDir(), "ref.db"), &boltstore.Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			defer ref.Close()
			runModel(t, ref, openOn(t, tt.url(t), nil), 2000)
		})
	}
}

// runModel applies steps random operations to both stores and fails at the
// first answer that differs. Times are in 2031, ahead of the wall clock, so
// that Redis's own expiry never interferes.
func runModel(t *testing.T, ref, st sessionstore.Store, steps int) {
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(1, 2))
	ids := []string{"s0", "s1", "s2", "s3", "s4", "s5"}
	subjects := []string{"alice", "ali", "bob"}
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	minutes := func(lo, hi int) time.Duration { return time.Duration(lo+rng.IntN(hi-lo+1)) * time.Minute }
	// A year ahead of the wall clock: Redis expires keys by its own clock.
	now := time.Now().AddDate(1, 0, 0).Truncate(time.Second).Add(678 * time.Millisecond).UTC()
	jtis := 0
	newJTI := func() string { jtis++; return fmt.Sprintf("j%d", jtis) }
	// seen are jtis presented before, for reuse attempts.
	seen := []string{"never-issued"}
	counts := map[string]int{}

	for step := range steps {
		// Mostly short steps, so that grace periods come into play, and
		// now and then a long one, so that sessions end.
		if rng.IntN(4) == 0 {
			now = now.Add(time.Duration(rng.IntN(3*60_000)) * time.Millisecond)
		} else {
			now = now.Add(time.Duration(rng.IntN(5_000)) * time.Millisecond)
		}
		var (
			name string
			op   func(st sessionstore.Store) string
		)
		switch r := rng.IntN(100); {
		case r < 20:
			s := sessionstore.Session{
				ID: pick(ids), Subject: pick(subjects), JTI: newJTI(),
				IssuedAt: now, CreatedAt: now, RefreshedAt: now,
				IdleExpiresAt: now.Add(minutes(5, 60)), ExpiresAt: now.Add(minutes(30, 180)),
			}
			if rng.IntN(3) == 0 {
				s.Roles = []string{"r1", "r2"}
			}
			if rng.IntN(20) == 0 {
				s.RevokedAt, s.RevokeReason = now, sessionstore.ReasonAdmin
			}
			name = fmt.Sprintf("Create(%s, %s)", s.ID, s.Subject)
			op = func(st sessionstore.Store) string { return describe(nil, st.Create(ctx, s)) }
		case r < 60:
			id := pick(ids)
			// The current jti (read from the reference), the previous one,
			// or an older one.
			cur, _ := ref.Get(ctx, id)
			jti := cur.JTI
			switch r := rng.IntN(20); {
			case r < 5:
				jti = cur.PrevJTI
			case r < 7:
				jti = pick(seen)
			}
			seen = append(seen, jti)
			req := sessionstore.RotateRequest{
				SessionID: id, JTI: jti, NewJTI: newJTI(), Now: now,
				IdleTimeout: minutes(5, 60), Grace: time.Duration(rng.IntN(4)) * 10 * time.Second,
			}
			name = fmt.Sprintf("Rotate(%s, %s, grace %v)", id, jti, req.Grace)
			op = func(st sessionstore.Store) string {
				res, err := st.Rotate(ctx, req)
				return describe(fmt.Sprintf("grace=%v %s", res.Grace, sessionString(res.Session)), err)
			}
		case r < 68:
			id := pick(ids)
			name = "Get(" + id + ")"
			op = func(st sessionstore.Store) string {
				s, err := st.Get(ctx, id)
				return describe(sessionString(s), err)
			}
		case r < 73:
			id := pick(ids)
			reason := pick([]string{sessionstore.ReasonLogout, sessionstore.ReasonAdmin})
			name = "Revoke(" + id + ")"
			op = func(st sessionstore.Store) string {
				ok, err := st.Revoke(ctx, id, reason, now)
				return describe(ok, err)
			}
		case r < 75:
			sub := pick(subjects)
			name = "RevokeSubject(" + sub + ")"
			op = func(st sessionstore.Store) string {
				n, err := st.RevokeSubject(ctx, sub, sessionstore.ReasonAdmin, now)
				return describe(n, err)
			}
		case r < 85:
			sub := pick(subjects)
			name = "List(" + sub + ")"
			op = func(st sessionstore.Store) string {
				list, err := st.List(ctx, sub, now)
				parts := make([]string, len(list))
				for i, s := range list {
					parts[i] = sessionString(s)
				}
				return describe(strings.Join(parts, "; "), err)
			}
		case r < 93:
			name = "Count()"
			op = func(st sessionstore.Store) string {
				n, err := st.Count(ctx)
				return describe(n, err)
			}
		default:
			name = "Sweep()"
			op = func(st sessionstore.Store) string {
				n, err := st.Sweep(ctx, now)
				return describe(n, err)
			}
		}
		want, got := op(ref), op(st)
		if got != want {
			t.Fatalf("step %d, %s at %v:\n got %s\nwant %s (bbolt)", step, name, now, got, want)
		}
		answer := want
		if i := strings.IndexAny(answer, "{0123456789"); i > 0 {
			answer = answer[:i]
		}
		counts[strings.Split(name, "(")[0]+": "+strings.TrimSpace(answer)]++
	}
	t.Logf("%d steps, answers: %v", steps, counts)
}

// describe is a call's answer as text: the sentinel error it matches, or
// its value.
func describe(v any, err error) string {
	for _, e := range []error{sessionstore.ErrNotFound, sessionstore.ErrRevoked, sessionstore.ErrExpired, sessionstore.ErrReuseDetected, sessionstore.ErrExists} {
		if errors.Is(err, e) {
			return "error: " + e.Error()
		}
	}
	if err != nil {
		return "unexpected error: " + err.Error()
	}
	if v == nil {
		return "ok"
	}
	return fmt.Sprintf("ok %v", v)
}

// sessionString shows every field, times in unix milliseconds.
func sessionString(s sessionstore.Session) string {
	ms := func(t time.Time) int64 {
		if t.IsZero() {
			return 0
		}
		return t.UnixMilli()
	}
	return fmt.Sprintf("{%s %s %q %s@%d prev %s@%d cre %d ref %d idle %d exp %d rev %d %s}",
		s.ID, s.Subject, s.Roles, s.JTI, ms(s.IssuedAt), s.PrevJTI, ms(s.RotatedAt),
		ms(s.CreatedAt), ms(s.RefreshedAt), ms(s.IdleExpiresAt), ms(s.ExpiresAt), ms(s.RevokedAt), s.RevokeReason)
}
