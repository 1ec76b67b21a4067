package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
	bolt "go.etcd.io/bbolt"
)

// Sweep deletes the sessions whose Deadline is at or before now, in one write
// transaction. It reads the deadline index from its start and stops at the
// first key after now, so it reads the expired keys plus one; and so for
// the identity provider session entries (sweepIdPSessions).
func (s *Store) Sweep(ctx context.Context, now time.Time) (int, error) {
	n := 0
	err := s.update(ctx, "sweep", func(b buckets) error {
		n = 0 // In case bbolt ever retries the function.
		limit := unixNanos(now)
		due, read := dueKeys(b.deadlines, limit)
		s.sweepVisited.Add(int64(read))
		idp, err := b.sweepIdPSessions(limit)
		if err != nil {
			return err
		}
		if len(due) == 0 && idp == 0 {
			return errNoChange
		}
		// Delete after the walk: deleting under a bbolt cursor skips keys.
		for _, k := range due {
			// The key itself goes first, in case it is a stray entry (damaged
			// or shorter than 8 bytes) that the session's own key is not.
			if err := b.deadlines.Delete(k); err != nil {
				return err
			}
			if len(k) < 8 {
				continue
			}
			sess, err := b.get(string(k[8:]))
			if errors.Is(err, sessionstore.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if err := b.delete(&sess); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// dueKeys copies out the keys of the deadline index d (8-byte big-endian
// unix nanoseconds, then a name) at or before limit, and shorter stray keys,
// walking d from its start and stopping at the first key after limit; read
// is how many keys it read, that one included. The copies outlive the
// transaction's cursor, so the caller may delete them.
func dueKeys(d *bolt.Bucket, limit uint64) (due [][]byte, read int) {
	c := d.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		read++
		if len(k) >= 8 && binary.BigEndian.Uint64(k[:8]) > limit {
			break
		}
		due = append(due, bytes.Clone(k))
	}
	return due, read
}
