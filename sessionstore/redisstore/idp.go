package redisstore

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spa-gateway/gateway/sessionstore"
)

// idpNamespace follows the key prefix in the name of every identity
// provider session entry (Store.PutIdPSession): prefix + "idp:" +
// hex(sessionstore.IdPSessionHash(issuer, sid)), a string holding the
// subject. It holds no hash tag: each entry is one key on its own slot,
// read and written alone, never with a session.
const idpNamespace = "idp:"

// scriptPutIdPSession sets an identity provider session entry to its
// subject, expiring at the later of the expiry it has and the one given,
// unless the write is late. An entry that already holds the subject and
// lasts at least as long is an earlier run of this call (or one as good):
// it answers "ok" whatever the time, as the session scripts do for their
// own earlier runs. PEXPIRETIME needs Redis 7.0.
//
//	KEYS: the entry
//	ARGV: subject, expire-at (unix ms), write ID (unused: the check above
//	      is this script's), write deadline
//
// It answers "ok" or "late".
var scriptPutIdPSession = redis.NewScript(lateCheck + `
local at = tonumber(ARGV[2])
local cur = redis.call('PEXPIRETIME', KEYS[1])
if cur >= at and redis.call('GET', KEYS[1]) == ARGV[1] then
	return 'ok'
end
if late(ARGV[#ARGV]) then
	return 'late'
end
if cur >= at then
	redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')
else
	redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
end
return 'ok'
`)

// PutIdPSession records the provider session's subject in one script,
// under the write deadline rules of every write (see Store). The entry
// expires in Redis at until plus Options.ExpiryMargin, as a session key
// does at its deadline, and a later call never shortens it. See
// sessionstore.Store.
func (s *Store) PutIdPSession(ctx context.Context, issuer, sid, subject string, until time.Time) error {
	if err := s.usable(ctx, "put idp session"); err != nil {
		return err
	}
	if issuer == "" || sid == "" || subject == "" {
		return sessionstore.ErrIdPSessionEmpty
	}
	res, err := s.write(ctx, scriptPutIdPSession, []string{s.idpKey(issuer, sid)}, subject, millis(until.Add(s.margin)))
	switch {
	case err != nil:
		return wrapErr("put idp session", err)
	case res == "late":
		return wrapErr("put idp session", errLate)
	case res != "ok":
		return wrapErr("put idp session", fmt.Errorf("unexpected script answer %v", res))
	}
	return nil
}

// IdPSessionSubject reads the provider session's entry: one GET. See
// sessionstore.Store.
func (s *Store) IdPSessionSubject(ctx context.Context, issuer, sid string) (string, error) {
	if err := s.usable(ctx, "idp session subject"); err != nil {
		return "", err
	}
	if issuer == "" || sid == "" {
		return "", sessionstore.ErrNotFound
	}
	subject, err := s.client.Get(ctx, s.idpKey(issuer, sid)).Result()
	if errors.Is(err, redis.Nil) {
		return "", sessionstore.ErrNotFound
	}
	if err != nil {
		return "", wrapErr("idp session subject", err)
	}
	return subject, nil
}

// idpKey is the Redis key of the provider session's entry.
func (s *Store) idpKey(issuer, sid string) string {
	h := sessionstore.IdPSessionHash(issuer, sid)
	return s.prefix + idpNamespace + hex.EncodeToString(h[:])
}
