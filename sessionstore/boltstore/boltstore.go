// Package boltstore is the embedded sessionstore.Store: one bbolt file,
// locked by the one gateway process that has it open.
//
// The file holds four buckets:
//
//	sessions   session ID -> encoded Session
//	subjects   subject + 0x00 + session ID -> empty (List, RevokeSubject)
//	deadlines  8-byte big-endian unix nanoseconds of Deadline() + session ID
//	           -> empty (Sweep walks it from the start, so it costs O(expired))
//	meta       schema version, and the number of unrevoked sessions
//	           (maintained in the same transaction as every change, so Count
//	           and Open never scan)
//
// There is no jti index: every token carries its session ID ("sid"), and the
// session names its current and previous jti.
//
// Every method is one bbolt transaction, and every method that changed
// something has been fsynced when it returns (unless Options.NoSync). Methods
// that find nothing to change roll back instead of committing, so refusals,
// grace answers and empty sweeps cost no disk write.
package boltstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Bucket names and meta keys of the file layout. Changing any of them, or the
// encoding of a value, needs a new schemaVersion.
var (
	bucketSessions  = []byte("sessions")
	bucketSubjects  = []byte("subjects")
	bucketDeadlines = []byte("deadlines")
	bucketMeta      = []byte("meta")

	keySchemaVersion = []byte("schema_version")
	keyLiveSessions  = []byte("live_sessions")
)

// schemaVersion is the layout this code reads and writes. Open refuses a file
// with a newer one.
const schemaVersion = 1

// defaultTimeout is how long Open waits for the file lock when
// Options.Timeout is zero.
const defaultTimeout = time.Second

// ErrLocked is returned (wrapped, with the path) by Open when another process,
// normally another gateway, holds the file's lock for longer than
// Options.Timeout.
var ErrLocked = errors.New("file is locked")

// ErrDamaged is returned (wrapped, with the path and what is wrong) by Open
// for a file that exists but is not a complete session file: empty,
// truncated, or with damaged pages. Open never recreates such a file: the
// operator restores a backup or moves it away (a new file logs every user
// out; it cannot bring a revoked session back, since an unknown session
// refreshes nothing).
var ErrDamaged = errors.New("damaged session file")

// errNoChange rolls back a write transaction that found nothing to change, so
// that it costs no fsync. It never leaves this package.
var errNoChange = errors.New("no change")

// Options configures Open. A nil *Options means the zero Options, whose
// fields all mean the defaults.
type Options struct {
	// Timeout is how long Open waits for the file lock before failing with
	// ErrLocked. Zero or negative means 1s: a second gateway on the same file
	// fails fast with a clear error instead of hanging.
	Timeout time.Duration

	// NoSync skips the fsync after each commit.
	//
	// UNSAFE: a crash can lose or corrupt sessions, and a rotation that was
	// answered may be forgotten, which reopens the reuse window. For
	// benchmarks only; never in production.
	NoSync bool

	// MaxBatchSize and MaxBatchDelay tune the group commit of Create and
	// Rotate: a call that finds other writes in progress joins a batch, and
	// the batch commits (one fsync for all of it) when it holds
	// MaxBatchSize calls or MaxBatchDelay after its first call, whichever
	// comes first. A call alone commits at once. Zero means the defaults
	// (DefaultMaxBatchSize, DefaultMaxBatchDelay); a negative MaxBatchSize
	// turns batching off (one commit per call).
	MaxBatchSize  int
	MaxBatchDelay time.Duration
}

// Group commit defaults, chosen with the refresh phase of the load
// benchmark (docs/PERFORMANCE.md): 64 clients refreshing in a loop get
// about 7,000 refreshes/s with these, 4,400/s with bbolt's own defaults
// (1,000 calls, 10ms: every batch waits out its delay) and 1,100/s with one
// commit per call. A full batch commits at once; the delay only bounds the
// wait of a call when fewer writers are about.
const (
	DefaultMaxBatchSize  = 64
	DefaultMaxBatchDelay = 5 * time.Millisecond
)

// Store is a sessionstore.Store backed by one bbolt file. It is safe for
// concurrent use. The zero value is not usable; call Open.
type Store struct {
	db   *bolt.DB
	path string

	// sweepVisited counts the deadline index keys Sweep has read, so that
	// an in-package test can prove Sweep costs O(expired).
	sweepVisited atomic.Int64

	// writers counts the Create and Rotate calls in progress: one alone
	// commits at once rather than waiting for a batch to fill. batched is
	// false when Options turned the group commit off.
	writers atomic.Int64
	batched bool
}

var _ sessionstore.Store = (*Store)(nil)

// Open opens (creating it with mode 0600 if needed) the session file at path
// and holds its lock until Close. It creates the buckets of a new file and
// refuses a file written by a newer schema. It reads no session, so it costs
// the same on an empty file and on one with a million sessions.
func Open(path string, opts *Options) (_ *Store, err error) {
	if opts == nil {
		opts = &Options{}
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	// bbolt initialises an empty file as a new one: refuse it instead, as
	// every other damage (see ErrDamaged).
	if st, err := os.Stat(path); err == nil && st.Mode().IsRegular() && st.Size() == 0 {
		return nil, fmt.Errorf("boltstore: open %s: %w: the file is empty", path, ErrDamaged)
	}
	// bbolt trusts the file: a damaged page makes it panic, and a truncated
	// file makes it fault on its memory map, which crashes the process with
	// a stack trace rather than an error (found by the hardening tests).
	// SetPanicOnFault turns this goroutine's faults into panics, and both
	// become ErrDamaged here.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("boltstore: open %s: %w: %v", path, ErrDamaged, r)
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: timeout,
		NoSync:  opts.NoSync,
		// The hashmap freelist allocates in O(1) where the array one scans;
		// it matters on a large, often swept file. bbolt plans to make it
		// the default.
		FreelistType: bolt.FreelistMapType,
	})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("boltstore: open %s: %w: another gateway holds it (gave up after %v)", path, ErrLocked, timeout)
	}
	if errors.Is(err, berrors.ErrInvalid) || errors.Is(err, berrors.ErrChecksum) || errors.Is(err, berrors.ErrVersionMismatch) {
		return nil, fmt.Errorf("boltstore: open %s: %w: %w", path, ErrDamaged, err)
	}
	if err != nil {
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	if err := checkComplete(db, path); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("boltstore: open %s: %w: %w", path, ErrDamaged, err)
	}
	if err := db.Update(initFile); err != nil && !errors.Is(err, errNoChange) {
		_ = db.Close() // The init error is the one to report.
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	db.MaxBatchSize, db.MaxBatchDelay = DefaultMaxBatchSize, DefaultMaxBatchDelay
	if opts.MaxBatchSize != 0 {
		db.MaxBatchSize = opts.MaxBatchSize
	}
	if opts.MaxBatchDelay > 0 {
		db.MaxBatchDelay = opts.MaxBatchDelay
	}
	return &Store{db: db, path: path, batched: db.MaxBatchSize > 0}, nil
}

// checkComplete refuses a file shorter than its last commit says it is: a
// truncated copy or a file cut by a full disk. bbolt would map it and fault
// on the first missing page, perhaps long after Open, in a request.
func checkComplete(db *bolt.DB, path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	return db.View(func(tx *bolt.Tx) error {
		if need := tx.Size(); st.Size() < need {
			return fmt.Errorf("truncated: %d bytes, its last commit needs %d", st.Size(), need)
		}
		return nil
	})
}

// initFile creates the buckets of a new file and checks the schema version of
// an existing one.
func initFile(tx *bolt.Tx) error {
	for _, name := range [][]byte{bucketSessions, bucketSubjects, bucketDeadlines, bucketMeta} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %q: %w", name, err)
		}
	}
	meta := tx.Bucket(bucketMeta)
	v := meta.Get(keySchemaVersion)
	switch {
	case v == nil:
		if k, _ := tx.Bucket(bucketSessions).Cursor().First(); k != nil {
			return errors.New("file holds sessions but no schema version: not a gateway session file, or damaged")
		}
		if err := meta.Put(keySchemaVersion, encodeUint64(schemaVersion)); err != nil {
			return err
		}
		return meta.Put(keyLiveSessions, encodeUint64(0))
	case len(v) != 8:
		return fmt.Errorf("schema version is %d bytes, want 8: damaged file", len(v))
	}
	got := binary.BigEndian.Uint64(v)
	if got > schemaVersion {
		return fmt.Errorf("schema version %d is newer than %d, the newest this gateway knows: upgrade the gateway or move the file away", got, schemaVersion)
	}
	if got < schemaVersion {
		return fmt.Errorf("schema version %d is unknown (this gateway reads %d): damaged file", got, schemaVersion)
	}
	if len(meta.Get(keyLiveSessions)) != 8 {
		return errors.New("live session count missing: damaged file")
	}
	// Nothing changed on an existing file: roll back rather than commit.
	return errNoChange
}

// Close releases the file and its lock. Calls after Close return errors
// wrapping sessionstore.ErrUnavailable; closing again returns nil.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("boltstore: close %s: %w", s.path, err)
	}
	return nil
}

// Create stores a new session. It returns sessionstore.ErrExists if s.ID is
// taken, and refuses an empty ID or a subject holding a 0x00 byte (which
// would make the subject index ambiguous).
func (s *Store) Create(ctx context.Context, sess sessionstore.Session) error {
	if sess.ID == "" {
		return errors.New("boltstore: create: empty session ID")
	}
	if strings.IndexByte(sess.Subject, 0) >= 0 {
		return errors.New("boltstore: create: subject holds a NUL byte")
	}
	exists := false
	err := s.groupUpdate(ctx, "create", func(b buckets) (bool, error) {
		exists = b.sessions.Get([]byte(sess.ID)) != nil
		if exists {
			return false, nil
		}
		return true, b.insert(&sess)
	})
	if err == nil && exists {
		return sessionstore.ErrExists
	}
	return err
}

// CreateLimited stores a new session and revokes the subject's least
// recently refreshed live sessions beyond limit, in one write transaction
// (found through the subject index). See sessionstore.Store.
func (s *Store) CreateLimited(ctx context.Context, sess sessionstore.Session, limit int) ([]string, error) {
	if limit <= 0 {
		return nil, s.Create(ctx, sess)
	}
	if sess.ID == "" {
		return nil, errors.New("boltstore: create: empty session ID")
	}
	if strings.IndexByte(sess.Subject, 0) >= 0 {
		return nil, errors.New("boltstore: create: subject holds a NUL byte")
	}
	var (
		exists  bool
		revoked []string
	)
	err := s.groupUpdate(ctx, "create", func(b buckets) (bool, error) {
		exists, revoked = b.sessions.Get([]byte(sess.ID)) != nil, nil
		if exists {
			return false, nil
		}
		if !sess.Revoked() {
			all, err := b.ofSubject(sess.Subject)
			if err != nil {
				return false, err
			}
			live := all[:0]
			for _, o := range all {
				if o.Live(sess.CreatedAt) {
					live = append(live, o)
				}
			}
			if excess := len(live) + 1 - limit; excess > 0 {
				slices.SortFunc(live, sessionstore.CompareRefreshed)
				for i := range live[:excess] {
					if err := b.revoke(&live[i], sessionstore.ReasonSessionLimit, sess.CreatedAt); err != nil {
						return false, err
					}
					revoked = append(revoked, live[i].ID)
				}
			}
		}
		return true, b.insert(&sess)
	})
	if err != nil {
		return nil, err
	}
	if exists {
		return nil, sessionstore.ErrExists
	}
	return revoked, nil
}

// Get returns the session with the given ID, revoked or not, or
// sessionstore.ErrNotFound, in one read transaction.
func (s *Store) Get(ctx context.Context, id string) (sessionstore.Session, error) {
	var sess sessionstore.Session
	err := s.view(ctx, "get", func(b buckets) error {
		var err error
		sess, err = b.get(id)
		return err
	})
	return sess, err
}

// Rotate applies the refresh rules, and rotates, in one write transaction.
// See sessionstore.Store.
func (s *Store) Rotate(ctx context.Context, req sessionstore.RotateRequest) (sessionstore.RotateResult, error) {
	var (
		res     sessionstore.RotateResult
		outcome error // a refusal, or ErrReuseDetected after the revocation
	)
	err := s.groupUpdate(ctx, "rotate", func(b buckets) (bool, error) {
		// Every attempt decides anew from what it reads: a batch that fails
		// is run again (see groupUpdate), and only the attempt whose
		// transaction committed is reported.
		res, outcome = sessionstore.RotateResult{}, nil
		sess, err := b.get(req.SessionID)
		if errors.Is(err, sessionstore.ErrNotFound) {
			outcome = err
			return false, nil
		}
		if err != nil {
			return false, err
		}
		switch {
		case sess.Revoked():
			outcome = sessionstore.ErrRevoked
			return false, nil
		case !req.Now.Before(sess.Deadline()):
			outcome = sessionstore.ErrExpired
			return false, nil
		// jti values are not secrets (a jti is worth nothing without the
		// signed token that carries it), so == is fine here.
		case req.JTI == sess.JTI:
			old := sess
			sess.PrevJTI = sess.JTI
			sess.JTI = req.NewJTI
			sess.IssuedAt = req.Now
			sess.RefreshedAt = req.Now
			sess.RotatedAt = req.Now
			sess.IdleExpiresAt = req.Now.Add(req.IdleTimeout)
			if err := b.replace(&old, &sess); err != nil {
				return false, err
			}
			res = sessionstore.RotateResult{Session: sess}
			return true, nil
		case sess.PrevJTI != "" && req.JTI == sess.PrevJTI && req.Now.Before(sess.RotatedAt.Add(req.Grace)):
			res = sessionstore.RotateResult{Session: sess, Grace: true}
			return false, nil
		default:
			// Reuse: revoke and commit, then report.
			outcome = sessionstore.ErrReuseDetected
			return true, b.revoke(&sess, sessionstore.ReasonReuseDetected, req.Now)
		}
	})
	if err != nil {
		return sessionstore.RotateResult{}, err
	}
	if outcome != nil {
		return sessionstore.RotateResult{}, outcome
	}
	return res, nil
}

// Revoke revokes one session. See sessionstore.Store.
func (s *Store) Revoke(ctx context.Context, id, reason string, now time.Time) (bool, error) {
	revoked := false
	err := s.update(ctx, "revoke", func(b buckets) error {
		sess, err := b.get(id)
		if err != nil {
			return err
		}
		if sess.Revoked() {
			return errNoChange
		}
		revoked = true
		return b.revoke(&sess, reason, now)
	})
	if err != nil {
		return false, err
	}
	return revoked, nil
}

// RevokeSubject revokes every unrevoked session of subject in one write
// transaction. See sessionstore.Store.
func (s *Store) RevokeSubject(ctx context.Context, subject, reason string, now time.Time) (int, error) {
	n := 0
	err := s.update(ctx, "revoke subject", func(b buckets) error {
		n = 0 // In case bbolt ever retries the function.
		sessions, err := b.ofSubject(subject)
		if err != nil {
			return err
		}
		for i := range sessions {
			if sessions[i].Revoked() {
				continue
			}
			if err := b.revoke(&sessions[i], reason, now); err != nil {
				return err
			}
			n++
		}
		if n == 0 {
			return errNoChange
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// List returns the subject's live sessions at now, oldest (by CreatedAt)
// first, in one read transaction. See sessionstore.Store.
func (s *Store) List(ctx context.Context, subject string, now time.Time) ([]sessionstore.Session, error) {
	var all []sessionstore.Session
	err := s.view(ctx, "list", func(b buckets) error {
		var err error
		all, err = b.ofSubject(subject)
		return err
	})
	if err != nil {
		return nil, err
	}
	live := make([]sessionstore.Session, 0, len(all))
	for _, sess := range all {
		if sess.Live(now) {
			live = append(live, sess)
		}
	}
	slices.SortFunc(live, func(a, b sessionstore.Session) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	return live, nil
}

// Count returns the number of stored unrevoked sessions from the maintained
// counter. See sessionstore.Store.
func (s *Store) Count(ctx context.Context) (int, error) {
	n := 0
	err := s.view(ctx, "count", func(b buckets) error {
		v, err := b.live()
		n = int(v)
		return err
	})
	return n, err
}

// Sweep deletes the sessions whose Deadline is at or before now, in one write
// transaction. It reads the deadline index from its start and stops at the
// first key after now, so it reads the expired keys plus one.
func (s *Store) Sweep(ctx context.Context, now time.Time) (int, error) {
	n := 0
	err := s.update(ctx, "sweep", func(b buckets) error {
		n = 0 // In case bbolt ever retries the function.
		limit := unixNanos(now)
		var due [][]byte
		c := b.deadlines.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			s.sweepVisited.Add(1)
			if len(k) >= 8 && binary.BigEndian.Uint64(k[:8]) > limit {
				break
			}
			due = append(due, bytes.Clone(k))
		}
		if len(due) == 0 {
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

// update runs fn in one write transaction. fn returning errNoChange rolls
// back and counts as success.
func (s *Store) update(ctx context.Context, op string, fn func(buckets) error) error {
	if err := ctx.Err(); err != nil {
		return wrapErr(op, err)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		// Checked again once the write lock is ours: a call whose caller
		// gave up while it waited must not apply (see sessionstore.Store).
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(bucketsOf(tx))
	})
	if errors.Is(err, errNoChange) {
		return nil
	}
	return wrapErr(op, err)
}

// groupUpdate runs fn in a write transaction and returns once what it
// changed is committed and fsynced, like update, but shares the transaction
// (and its fsync) with concurrent calls: bbolt's group commit, DB.Batch.
// That is what makes many concurrent logins and refreshes cheap: the commit
// of a transaction costs one fsync, whatever it holds.
//
// fn reports whether it changed anything. It must decide everything from
// what it reads in the transaction it is given, and keep its results in
// variables it sets on every run: bbolt runs a batch again when one of its
// functions fails (without the failing one, which then runs alone), so fn
// may run more than once, and only its last run counts. A call that finds
// no other write in progress runs alone at once, without waiting for
// company; alone, a call that changed nothing rolls back and costs no
// fsync. In a batch it commits with the others.
//
// ctx is checked again inside the transaction, just before fn: a call whose
// ctx ended while it waited for the write lock or for its batch changes
// nothing and returns ctx's error, so that a caller that gave up (and
// answered 503) never finds its change applied afterwards. A call whose fn
// ran before ctx ended waits for the commit and reports it, whatever ctx
// says by then.
func (s *Store) groupUpdate(ctx context.Context, op string, fn func(buckets) (changed bool, err error)) error {
	if err := ctx.Err(); err != nil {
		return wrapErr(op, err)
	}
	var err error
	if s.writers.Add(1) == 1 || !s.batched {
		err = s.db.Update(func(tx *bolt.Tx) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			changed, err := fn(bucketsOf(tx))
			if err == nil && !changed {
				return errNoChange
			}
			return err
		})
	} else {
		err = s.db.Batch(func(tx *bolt.Tx) error {
			// A call whose ctx ended while it was queued fails here, so
			// bbolt runs the batch again without it and then runs it
			// alone, where it fails again: it never applies.
			if err := ctx.Err(); err != nil {
				return err
			}
			_, err := fn(bucketsOf(tx))
			return err
		})
	}
	s.writers.Add(-1)
	if errors.Is(err, errNoChange) {
		return nil
	}
	return wrapErr(op, err)
}

// view runs fn in one read transaction.
func (s *Store) view(ctx context.Context, op string, fn func(buckets) error) error {
	if err := ctx.Err(); err != nil {
		return wrapErr(op, err)
	}
	return wrapErr(op, s.db.View(func(tx *bolt.Tx) error { return fn(bucketsOf(tx)) }))
}

// wrapErr is sessionstore.WrapUnavailable for this backend (its failures:
// I/O, a closed file, a damaged value, a done context).
func wrapErr(op string, err error) error { return sessionstore.WrapUnavailable("boltstore", op, err) }

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
