package boltstore

import (
	"context"
	"errors"

	"github.com/spa-gateway/gateway/sessionstore"
	bolt "go.etcd.io/bbolt"
)

// errNoChange rolls back a write transaction that found nothing to change, so
// that it costs no fsync. It never leaves this package.
var errNoChange = errors.New("no change")

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
// answered 503) never finds its change applied afterwards; in a batch it is
// left out without failing the batch, so the others run once. A call whose fn
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
		var dropped error
		err = s.db.Batch(func(tx *bolt.Tx) error {
			// A call whose ctx ended while it was queued is dropped: it
			// applies nothing and lets the batch commit. Failing it instead
			// would make bbolt roll the whole batch back, run every other
			// call again and then run this one alone: under overload, when
			// deadlines pass in the queue, that multiplies the work.
			// dropped is set on every run, as bbolt may run fn again.
			if dropped = ctx.Err(); dropped != nil {
				return nil
			}
			_, err := fn(bucketsOf(tx))
			return err
		})
		if err == nil {
			err = dropped
		}
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
