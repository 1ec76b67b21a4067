package boltstore

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
	bolt "go.etcd.io/bbolt"
)

// buckets are the buckets of one transaction, valid only for its lifetime.
type buckets struct {
	sessions, subjects, deadlines, meta *bolt.Bucket
}

func bucketsOf(tx *bolt.Tx) buckets {
	return buckets{
		sessions:  tx.Bucket(bucketSessions),
		subjects:  tx.Bucket(bucketSubjects),
		deadlines: tx.Bucket(bucketDeadlines),
		meta:      tx.Bucket(bucketMeta),
	}
}

// get decodes the session with the given ID; the result owns its memory.
func (b buckets) get(id string) (sessionstore.Session, error) {
	if id == "" {
		return sessionstore.Session{}, sessionstore.ErrNotFound
	}
	v := b.sessions.Get([]byte(id))
	if v == nil {
		return sessionstore.Session{}, sessionstore.ErrNotFound
	}
	return decodeSession(v)
}

// ofSubject decodes every stored session of subject, in index (ID) order.
func (b buckets) ofSubject(subject string) ([]sessionstore.Session, error) {
	prefix := subjectKey(subject, "")
	var out []sessionstore.Session
	c := b.subjects.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		sess, err := b.get(string(k[len(prefix):]))
		if errors.Is(err, sessionstore.ErrNotFound) {
			continue // A stray index entry; Sweep never leaves one.
		}
		if err != nil {
			return nil, err
		}
		out = append(out, sess)
	}
	return out, nil
}

// insert stores a new session with its index entries and counts it.
func (b buckets) insert(sess *sessionstore.Session) error {
	if err := b.put(sess); err != nil {
		return err
	}
	if err := b.subjects.Put(subjectKey(sess.Subject, sess.ID), nil); err != nil {
		return err
	}
	if err := b.deadlines.Put(deadlineKey(sess.Deadline(), sess.ID), nil); err != nil {
		return err
	}
	if sess.Revoked() {
		return nil
	}
	return b.addLive(1)
}

// replace stores the new state of a session, moving its deadline index entry
// if the deadline moved. Subject, ID and revocation must not change.
func (b buckets) replace(old, sess *sessionstore.Session) error {
	if !old.Deadline().Equal(sess.Deadline()) {
		if err := b.deadlines.Delete(deadlineKey(old.Deadline(), old.ID)); err != nil {
			return err
		}
		if err := b.deadlines.Put(deadlineKey(sess.Deadline(), sess.ID), nil); err != nil {
			return err
		}
	}
	return b.put(sess)
}

// revoke marks an unrevoked session revoked and uncounts it.
func (b buckets) revoke(sess *sessionstore.Session, reason string, now time.Time) error {
	sess.RevokedAt = now
	sess.RevokeReason = reason
	if err := b.put(sess); err != nil {
		return err
	}
	return b.addLive(-1)
}

// delete removes a session and its index entries, uncounting it unless it
// was revoked.
func (b buckets) delete(sess *sessionstore.Session) error {
	if err := b.sessions.Delete([]byte(sess.ID)); err != nil {
		return err
	}
	if err := b.subjects.Delete(subjectKey(sess.Subject, sess.ID)); err != nil {
		return err
	}
	if err := b.deadlines.Delete(deadlineKey(sess.Deadline(), sess.ID)); err != nil {
		return err
	}
	if sess.Revoked() {
		return nil
	}
	return b.addLive(-1)
}

func (b buckets) put(sess *sessionstore.Session) error {
	v, err := encodeSession(sess)
	if err != nil {
		return err
	}
	return b.sessions.Put([]byte(sess.ID), v)
}

func (b buckets) live() (uint64, error) {
	v := b.meta.Get(keyLiveSessions)
	if len(v) != 8 {
		return 0, errors.New("live session count missing: damaged file")
	}
	return binary.BigEndian.Uint64(v), nil
}

// addLive moves the live session counter by delta, never below zero.
func (b buckets) addLive(delta int) error {
	n, err := b.live()
	if err != nil {
		return err
	}
	switch {
	case delta < 0 && uint64(-delta) > n:
		n = 0
	case delta < 0:
		n -= uint64(-delta)
	default:
		n += uint64(delta)
	}
	return b.meta.Put(keyLiveSessions, encodeUint64(n))
}

// subjectKey is subject + 0x00 + id. Create refuses subjects holding 0x00,
// so the first 0x00 ends the subject and one subject's prefix never matches
// another's keys.
func subjectKey(subject, id string) []byte {
	k := make([]byte, 0, len(subject)+1+len(id))
	k = append(k, subject...)
	k = append(k, 0)
	return append(k, id...)
}

// deadlineKey is the 8-byte big-endian unix nanoseconds of deadline + id, so
// that keys sort by deadline.
func deadlineKey(deadline time.Time, id string) []byte {
	k := make([]byte, 8, 8+len(id))
	binary.BigEndian.PutUint64(k, unixNanos(deadline))
	return append(k, id...)
}

// unixNanos is t in unix nanoseconds, clamped to what an unsigned 64-bit
// key orders correctly: times before 1970 are 0, after 2262 the maximum.
func unixNanos(t time.Time) uint64 {
	switch {
	case t.Before(time.Unix(0, 0)):
		return 0
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxUint64
	}
	return uint64(t.UnixNano())
}

func encodeUint64(v uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, v)
}

// encodeSession and decodeSession are the one place that knows the value
// encoding (JSON, with nanosecond times), so that it can be swapped for a
// faster one under a new schemaVersion.
func encodeSession(sess *sessionstore.Session) ([]byte, error) {
	return json.Marshal(sess)
}

// decodeSession copies everything it needs out of v, which may be bbolt
// memory valid only during the transaction.
func decodeSession(v []byte) (sessionstore.Session, error) {
	var sess sessionstore.Session
	if err := json.Unmarshal(v, &sess); err != nil {
		return sessionstore.Session{}, fmt.Errorf("decode session: %w", err)
	}
	return sess, nil
}
