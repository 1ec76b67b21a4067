package boltstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
	bolt "go.etcd.io/bbolt"
)

// TestOpenRefusesDamagedFiles: a file that exists but is empty, truncated
// or damaged is refused with ErrDamaged, never recreated nor changed, and
// never crashes the process (bbolt faults on a truncated memory map and
// panics on damaged pages).
func TestOpenRefusesDamagedFiles(t *testing.T) {
	good := filepath.Join(t.TempDir(), "good.db")
	s, err := Open(good, &Options{NoSync: true}) // setup only: durability is not under test
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 1000 {
		err := s.Create(t.Context(), sessionstore.Session{
			ID: fmt.Sprintf("session-%06d-%040d", i, i), Subject: fmt.Sprint("user", i%50), JTI: "j",
			IssuedAt: now, CreatedAt: now, RefreshedAt: now, IdleExpiresAt: now.Add(time.Hour), ExpiresAt: now.Add(time.Hour),
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var need int64
	s.db.View(func(tx *bolt.Tx) error { need = tx.Size(); return nil })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	garbage := func(b []byte, from, to int) []byte {
		c := bytes.Clone(b)
		for i := from; i < to && i < len(c); i++ {
			c[i] = byte(i*7 + 3)
		}
		return c
	}
	tests := []struct {
		name string
		file []byte
	}{
		{"empty", nil},
		{"truncated to half", data[:len(data)/2]},
		{"one page short of its last commit", data[:need-4096]},
		{"truncated to two pages", data[:8192]},
		{"both meta pages overwritten", garbage(data, 0, 8192)},
		{"data pages overwritten", garbage(data, 8192, len(data))},
		{"not a bbolt file", []byte("alice:$2b$12$...\n")},
		{"random bytes", garbage(make([]byte, 100000), 0, 100000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sessions.db")
			if err := os.WriteFile(path, tt.file, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(path, &Options{Timeout: 100 * time.Millisecond})
			if err == nil {
				s.Close()
				t.Fatal("Open = nil error, want ErrDamaged")
			}
			if !errors.Is(err, ErrDamaged) {
				t.Errorf("Open = %v, want ErrDamaged", err)
			}
			if !bytes.Contains([]byte(err.Error()), []byte(path)) {
				t.Errorf("Open = %v, want the path named", err)
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(after, tt.file) {
				t.Errorf("the file changed: %d bytes, was %d", len(after), len(tt.file))
			}
		})
	}
}

// TestOpenUsesPreviousCommitWhenLastMetaIsTorn documents bbolt's recovery:
// with the newest meta page unreadable (a write torn by a crash), the file
// opens at the commit before. That commit was the last one acknowledged
// only if the torn one never returned, which is what fsync ordering gives.
func TestOpenUsesPreviousCommitWhenLastMetaIsTorn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions.db")
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 3 {
		if err := s.Create(context.Background(), sessionstore.Session{ID: fmt.Sprint("s", i), Subject: "u", JTI: "j",
			IssuedAt: now, CreatedAt: now, RefreshedAt: now, IdleExpiresAt: now.Add(time.Hour), ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	data, _ := os.ReadFile(path)
	// Tear whichever meta page holds the newest txid (offset 64 of the
	// page: 16 bytes of page header, then 48 bytes into the meta).
	txid := func(off int) uint64 {
		var v uint64
		for i := 7; i >= 0; i-- {
			v = v<<8 | uint64(data[off+64+i])
		}
		return v
	}
	newest := 0
	if txid(4096) > txid(0) {
		newest = 4096
	}
	data[newest+70] ^= 0xff
	os.WriteFile(path, data, 0o600)
	s, err = Open(path, nil)
	if err != nil {
		t.Fatalf("Open with one torn meta page = %v, want the previous commit", err)
	}
	defer s.Close()
	if n, _ := s.Count(t.Context()); n != 2 {
		t.Errorf("Count = %d, want 2 (the last create was not committed)", n)
	}
}
