// Package boltstore is the embedded sessionstore.Store: one bbolt file,
// locked by the one gateway process that has it open.
//
// The file holds four buckets of sessions (and two of identity provider
// sessions: see idp.go):
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
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
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
	added, err := createIdPBuckets(tx)
	if err != nil {
		return err
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
	if added {
		return nil // an older file gained the identity provider buckets
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
