package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
	bolt "go.etcd.io/bbolt"
)

// The identity provider session entries (Store.PutIdPSession) live in two
// buckets of their own, beside the sessions':
//
//	idp_sessions   sessionstore.IdPSessionHash(issuer, sid) -> 8-byte
//	               big-endian unix nanoseconds of until + subject
//	idp_deadlines  8-byte until + the 32-byte hash -> empty, so that Sweep
//	               finds the expired entries in O(expired), as sessions'
//
// A file written before they existed gets them at Open (adding buckets
// changes nothing an older gateway reads, so the schema version stays).
var (
	bucketIdPSessions  = []byte("idp_sessions")
	bucketIdPDeadlines = []byte("idp_deadlines")
)

// PutIdPSession records the provider session's subject until at least
// until, in one write transaction. See sessionstore.Store.
func (s *Store) PutIdPSession(ctx context.Context, issuer, sid, subject string, until time.Time) error {
	if issuer == "" || sid == "" || subject == "" {
		return sessionstore.ErrIdPSessionEmpty
	}
	h := sessionstore.IdPSessionHash(issuer, sid)
	return s.update(ctx, "put idp session", func(b buckets) error {
		entries, deadlines := b.idpSessions(), b.idpDeadlines()
		old := entries.Get(h[:])
		at := unixNanos(until)
		if len(old) >= 8 {
			prev := binary.BigEndian.Uint64(old[:8])
			if prev >= at && string(old[8:]) == subject {
				return errNoChange
			}
			if err := deadlines.Delete(idpDeadlineKey(prev, h[:])); err != nil {
				return err
			}
			at = max(at, prev)
		}
		v := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(subject)), at)
		if err := entries.Put(h[:], append(v, subject...)); err != nil {
			return err
		}
		return deadlines.Put(idpDeadlineKey(at, h[:]), nil)
	})
}

// IdPSessionSubject returns the provider session's subject, in one read
// transaction. See sessionstore.Store.
func (s *Store) IdPSessionSubject(ctx context.Context, issuer, sid string) (string, error) {
	if issuer == "" || sid == "" {
		return "", sessionstore.ErrNotFound
	}
	h := sessionstore.IdPSessionHash(issuer, sid)
	var subject string
	err := s.view(ctx, "idp session subject", func(b buckets) error {
		v := b.idpSessions().Get(h[:])
		if len(v) <= 8 {
			return sessionstore.ErrNotFound
		}
		subject = string(v[8:]) // copied: v is valid only in the transaction
		return nil
	})
	return subject, err
}

// sweepIdPSessions deletes the entries whose until is at or before limit
// (unix nanoseconds), walking idp_deadlines from its start as Sweep walks
// the sessions' index, and returns how many it deleted.
func (b buckets) sweepIdPSessions(limit uint64) (int, error) {
	entries, deadlines := b.idpSessions(), b.idpDeadlines()
	due, _ := dueKeys(deadlines, limit)
	// Delete after the walk: deleting under a bbolt cursor skips keys.
	for _, k := range due {
		if err := deadlines.Delete(k); err != nil {
			return 0, err
		}
		if len(k) < 8 {
			continue // a stray, damaged key: gone with the line above
		}
		// The entry goes only if this key is still its deadline: a later
		// PutIdPSession moved it (and deleted this key, so this is a stray).
		if v := entries.Get(k[8:]); len(v) >= 8 && bytes.Equal(v[:8], k[:8]) {
			if err := entries.Delete(k[8:]); err != nil {
				return 0, err
			}
		}
	}
	return len(due), nil
}

// idpDeadlineKey is the idp_deadlines key of an entry: until (unix
// nanoseconds), then its hash.
func idpDeadlineKey(until uint64, hash []byte) []byte {
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(hash)), until), hash...)
}

// idpSessions and idpDeadlines are the transaction's identity provider
// buckets, looked up when used rather than by bucketsOf: each lookup
// allocates, and Get, on every_request's hot path, needs neither.
func (b buckets) idpSessions() *bolt.Bucket  { return b.sessions.Tx().Bucket(bucketIdPSessions) }
func (b buckets) idpDeadlines() *bolt.Bucket { return b.sessions.Tx().Bucket(bucketIdPDeadlines) }

// createIdPBuckets creates the identity provider session buckets of a
// file written before they existed, and reports whether it did.
func createIdPBuckets(tx *bolt.Tx) (created bool, err error) {
	for _, name := range [][]byte{bucketIdPSessions, bucketIdPDeadlines} {
		if tx.Bucket(name) != nil {
			continue
		}
		if _, err := tx.CreateBucket(name); err != nil {
			return false, fmt.Errorf("create bucket %q: %w", name, err)
		}
		created = true
	}
	return created, nil
}
