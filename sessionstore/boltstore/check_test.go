package boltstore

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
	bolt "go.etcd.io/bbolt"
)

// TestCheck: a file used through every method checks clean, and each kind
// of disagreement between the sessions and their indexes is reported.
func TestCheck(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	fresh := func(t *testing.T) *Store {
		s, err := Open(filepath.Join(t.TempDir(), "s.db"), &Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		for i := range 6 {
			err := s.Create(t.Context(), sessionstore.Session{ID: fmt.Sprint("s", i), Subject: fmt.Sprint("u", i%2), JTI: "j",
				IssuedAt: now, CreatedAt: now, RefreshedAt: now, IdleExpiresAt: now.Add(time.Duration(i+1) * time.Hour), ExpiresAt: now.Add(24 * time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
		}
		ctx := t.Context()
		s.Rotate(ctx, sessionstore.RotateRequest{SessionID: "s0", JTI: "j", NewJTI: "k", Now: now.Add(time.Minute), IdleTimeout: 3 * time.Hour})
		s.Revoke(ctx, "s1", sessionstore.ReasonLogout, now)
		s.RevokeSubject(ctx, "u1", sessionstore.ReasonAdmin, now)
		s.Sweep(ctx, now.Add(90*time.Minute))
		return s
	}
	if err := fresh(t).Check(t.Context()); err != nil {
		t.Fatalf("Check after normal use = %v, want nil", err)
	}
	tests := []struct {
		name   string
		damage func(tx *bolt.Tx) error
		want   string
	}{
		{"subject index entry missing", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketSubjects).Delete(subjectKey("u0", "s2"))
		}, `session "s2": no subject index entry`},
		{"stray deadline entry", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketDeadlines).Put(deadlineKey(now, "ghost"), nil)
		}, `names no such session`},
		{"counter off", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(keyLiveSessions, encodeUint64(99))
		}, "live session counter is 99"},
		{"undecodable session", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketSessions).Put([]byte("s2"), []byte("{"))
		}, `session "s2": decode session`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := fresh(t)
			if err := s.db.Update(tt.damage); err != nil {
				t.Fatal(err)
			}
			err := s.Check(t.Context())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Check = %v, want %q", err, tt.want)
			}
		})
	}
}
