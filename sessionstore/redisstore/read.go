package redisstore

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spa-gateway/gateway/sessionstore"
)

// Get returns the session with the given ID, revoked or not, or
// sessionstore.ErrNotFound: one HGETALL, one round trip.
func (s *Store) Get(ctx context.Context, id string) (sessionstore.Session, error) {
	if err := s.usable(ctx, "get"); err != nil {
		return sessionstore.Session{}, err
	}
	if id == "" {
		return sessionstore.Session{}, sessionstore.ErrNotFound
	}
	h, err := s.client.HGetAll(ctx, s.sessionKey(s.bucketOf(id), id)).Result()
	if err != nil {
		return sessionstore.Session{}, wrapErr("get", err)
	}
	sess, err := decodeSession(id, h)
	return sess, wrapErr("get", err)
}

// List returns the subject's live sessions at now, oldest (by CreatedAt)
// first: one pipelined read of the 64 buckets' subject index, then one of
// the sessions found. See sessionstore.Store.
func (s *Store) List(ctx context.Context, subject string, now time.Time) ([]sessionstore.Session, error) {
	if err := s.usable(ctx, "list"); err != nil {
		return nil, err
	}
	ids, err := s.subjectIDs(ctx, subject)
	if err != nil {
		return nil, wrapErr("list", err)
	}
	type read struct {
		id  string
		cmd *redis.MapStringStringCmd
	}
	var reads []read
	pipe := s.client.Pipeline()
	for i, list := range ids {
		for _, id := range list {
			reads = append(reads, read{id, pipe.HGetAll(ctx, s.sessionKey(&s.buckets[i], id))})
		}
	}
	live := make([]sessionstore.Session, 0, len(reads))
	if len(reads) == 0 {
		return live, nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, wrapErr("list", err)
	}
	for _, r := range reads {
		sess, err := decodeSession(r.id, r.cmd.Val())
		switch {
		case errors.Is(err, sessionstore.ErrNotFound):
			continue // Redis deleted it at its expiry; Sweep cleans the index.
		case err != nil:
			return nil, wrapErr("list", err)
		}
		if sess.Live(now) {
			live = append(live, sess)
		}
	}
	slices.SortFunc(live, func(a, b sessionstore.Session) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	return live, nil
}

// subjectIDs reads the subject's session IDs in every bucket, in one
// pipeline.
func (s *Store) subjectIDs(ctx context.Context, subject string) ([numBuckets][]string, error) {
	var ids [numBuckets][]string
	pipe := s.client.Pipeline()
	cmds := make([]*redis.StringSliceCmd, numBuckets)
	first := subject + "\x00"
	for i := range s.buckets {
		cmds[i] = pipe.ZRangeByLex(ctx, s.buckets[i].subject, &redis.ZRangeBy{Min: "[" + first, Max: "(" + subject + "\x01"})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return ids, err
	}
	for i, cmd := range cmds {
		for _, m := range cmd.Val() {
			ids[i] = append(ids[i], strings.TrimPrefix(m, first))
		}
	}
	return ids, nil
}

// Count returns the number of stored unrevoked sessions: the sum of the 64
// buckets' "live" set sizes, read in one pipeline of O(1) commands. See
// sessionstore.Store.
func (s *Store) Count(ctx context.Context) (int, error) {
	if err := s.usable(ctx, "count"); err != nil {
		return 0, err
	}
	pipe := s.client.Pipeline()
	cmds := make([]*redis.IntCmd, numBuckets)
	for i := range s.buckets {
		cmds[i] = pipe.SCard(ctx, s.buckets[i].live)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, wrapErr("count", err)
	}
	n := 0
	for _, cmd := range cmds {
		n += int(cmd.Val())
	}
	return n, nil
}
