package redisstore

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// sweepBatch bounds how many sessions one Sweep script deletes, so that a
// large backlog never blocks Redis for long.
const sweepBatch = 500

// Sweep deletes the sessions whose Deadline is at or before now, with their
// index entries: a pipelined read of each bucket's deadline index up to now,
// then one script per bucket with due sessions (at most 500 per script, so
// that a backlog never blocks Redis for long). It costs O(64 + deleted).
// Several gateways may sweep at once: each session is deleted, and counted,
// once.
func (s *Store) Sweep(ctx context.Context, now time.Time) (int, error) {
	if err := s.usable(ctx, "sweep"); err != nil {
		return 0, err
	}
	limit := millis(now)
	pending := make([]int, numBuckets)
	for i := range pending {
		pending[i] = i
	}
	n := 0
	for len(pending) > 0 {
		pipe := s.client.Pipeline()
		cmds := make([]*redis.StringSliceCmd, len(pending))
		for j, i := range pending {
			cmds[j] = pipe.ZRangeByScore(ctx, s.buckets[i].deadlines, &redis.ZRangeBy{Min: "-inf", Max: limit, Count: sweepBatch})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return n, wrapErr("sweep", err)
		}
		var more []int
		for j, i := range pending {
			due := cmds[j].Val()
			if len(due) == 0 {
				continue
			}
			b := &s.buckets[i]
			keys := make([]string, 0, 4+len(due))
			args := make([]any, 0, 1+len(due))
			keys = append(keys, b.deadlines, b.owners, b.live, b.subject)
			args = append(args, limit)
			for _, id := range due {
				keys = append(keys, s.sessionKey(b, id))
				args = append(args, id)
			}
			k, err := scriptSweep.Run(ctx, s.client, keys, args...).Int()
			if err != nil {
				return n, wrapErr("sweep", err)
			}
			n += k
			if len(due) == sweepBatch {
				more = append(more, i)
			}
		}
		pending = more
	}
	return n, nil
}
