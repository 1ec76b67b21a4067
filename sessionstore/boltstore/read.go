package boltstore

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
)

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
