package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// replayNamespace follows the key prefix in the name of every key of a
// ReplayCache: prefix + "replay:" + hex(id). It holds no hash tag: each
// key is one command on its own slot.
const replayNamespace = "replay:"

// ReplayCache records opaque IDs in the store's Redis, each once, so that
// every gateway sharing that Redis agrees on which it has seen: the
// gateway's DPoP replay cache (auth.DPoPReplayCache), where a proof
// replayed at another replica is then refused too. An ID is kept as
// hex in the key's name (the caller passes a hash, never a secret: for
// DPoP a hash of the proof's key and jti); the value is the random mark of
// the call that recorded it. The zero ReplayCache is not usable; make one
// with Store.ReplayCache.
//
// It needs Redis 7.0 or later (SET with both NX and GET).
type ReplayCache struct {
	s   *Store
	now func() time.Time
}

// ReplayCache returns the store's replay cache, whose expiries are
// counted from now (nil means time.Now): the clock the callers' untils
// come from.
func (s *Store) ReplayCache(now func() time.Time) *ReplayCache {
	if now == nil {
		now = time.Now
	}
	return &ReplayCache{s: s, now: now}
}

// Seen records id until until and reports whether it was already
// recorded, in one atomic step shared by every gateway on this Redis: of
// any number of concurrent calls with one id, on any gateways, exactly one
// reports false.
//
// The key expires in Redis at until plus Options.ExpiryMargin, counted on
// this gateway's clock from now (a relative expiry: Redis's clock does not
// matter), so that a replica whose clock is behind this one's by less than
// the margin, and so still accepts the proof a little longer, still finds
// it.
//
// The call waits for Redis at most Options.WriteTimeout (or until ctx's
// deadline, if nearer). An error wraps sessionstore.ErrUnavailable and
// means the answer is unknown: the caller must refuse what it was
// checking. The ID may still have been recorded (an answer that did not
// arrive), which can only make a later call report it as seen: a replay
// cache that errs fails closed. A command go-redis sends again after a
// lost answer finds its own mark and reports false, as the first would
// have.
func (c *ReplayCache) Seen(ctx context.Context, id string, until time.Time) (bool, error) {
	if err := c.s.usable(ctx, "replay"); err != nil {
		return false, err
	}
	ttl := max(until.Sub(c.now())+c.s.margin, time.Millisecond)
	ctx, cancel := context.WithTimeout(ctx, c.s.writeTimeout)
	defer cancel()
	mark := rand.Text()
	prev, err := c.s.client.SetArgs(ctx, c.key(id), mark, redis.SetArgs{Mode: "NX", TTL: ttl, Get: true}).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return false, nil // there was no key: this call recorded it
	case err != nil:
		return false, wrapErr("replay", err)
	}
	return prev != mark, nil
}

// key is the Redis key of id.
func (c *ReplayCache) key(id string) string {
	return c.s.prefix + replayNamespace + hex.EncodeToString([]byte(id))
}
