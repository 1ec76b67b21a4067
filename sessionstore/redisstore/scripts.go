package redisstore

import "github.com/redis/go-redis/v9"

// The Lua scripts below are every change the store makes: each is one atomic
// step on the keys of one bucket (one Cluster hash slot), and every key it
// touches is declared in KEYS. Times arrive as decimal unix milliseconds
// computed by Go (ARGV), so that the scripts never read Redis's clock and
// never format a large number themselves, except where a new expiry is
// derived (string.format("%.0f") prints every millisecond count exactly).
//
// A session hash holds the fields
//
//	sub, jti, iat, cre, ref, idle, exp   always
//	roles (JSON), pjti, rot, rva, rvr    only when not empty or zero
//
// and is revoked exactly when it has an rva field.
//
// redis.Script calls each by its SHA1 (EVALSHA), and sends the source only
// when the server does not know it yet (after a restart or a failover).

// scriptCreate stores a new session and its index entries.
//
//	KEYS: session, deadlines, owners, unrevoked, subjects
//	ARGV: id, subject, deadline, expire-at, revoked ("1" or "0"), then the
//	      session's field/value pairs
//
// It answers "exists" or "ok". An owner entry without its session key is a
// session Redis deleted at its expiry before any sweep: its subject entry
// goes, and the ID is free again.
var scriptCreate = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
	return 'exists'
end
local old = redis.call('HGET', KEYS[3], ARGV[1])
if old then
	redis.call('ZREM', KEYS[5], old .. '\0' .. ARGV[1])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[5], 0, ARGV[2] .. '\0' .. ARGV[1])
if ARGV[5] == '1' then
	redis.call('SREM', KEYS[4], ARGV[1])
else
	redis.call('SADD', KEYS[4], ARGV[1])
end
return 'ok'
`)

// scriptRotate applies the refresh rules of sessionstore.Store.Rotate in
// their order, and rotates.
//
//	KEYS: session, deadlines, unrevoked
//	ARGV: id, jti, new jti, now, now+idle timeout, grace (ms, may be
//	      fractional), expiry margin (ms), reuse reason
//
// It answers {"notfound"}, {"revoked"}, {"expired"}, {"reuse"} (having
// revoked the session), or {"ok" | "grace", field, value, ...} with the
// session after the call.
//
// A call whose reply was lost and that go-redis sends again finds its own
// rotation done (the presented jti is now the previous one, the new jti the
// current one, rotated at the same now): it answers "ok" again instead of
// taking its own successor for reuse, so that a retry never revokes a
// session, even with no grace period. New jtis are random, so no other
// request can match.
var scriptRotate = redis.NewScript(`
local function answer(code)
	local r = redis.call('HGETALL', KEYS[1])
	table.insert(r, 1, code)
	return r
end
local f = redis.call('HMGET', KEYS[1], 'jti', 'pjti', 'rot', 'idle', 'exp', 'rva')
if not f[5] then
	return {'notfound'}
end
if f[6] then
	return {'revoked'}
end
local now = tonumber(ARGV[4])
local exp = tonumber(f[5])
if now >= math.min(tonumber(f[4]), exp) then
	return {'expired'}
end
if ARGV[2] == f[1] then
	redis.call('HSET', KEYS[1], 'pjti', f[1], 'jti', ARGV[3], 'iat', ARGV[4], 'ref', ARGV[4], 'rot', ARGV[4], 'idle', ARGV[5])
	local deadline = ARGV[5]
	if exp < tonumber(ARGV[5]) then
		deadline = f[5]
	end
	redis.call('ZADD', KEYS[2], deadline, ARGV[1])
	redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', tonumber(deadline) + tonumber(ARGV[7])))
	return answer('ok')
end
if f[2] and f[2] ~= '' and ARGV[2] == f[2] then
	if ARGV[3] == f[1] and ARGV[4] == f[3] then
		return answer('ok')
	end
	if f[3] and now < tonumber(f[3]) + tonumber(ARGV[6]) then
		return answer('grace')
	end
end
redis.call('HSET', KEYS[1], 'rva', ARGV[4], 'rvr', ARGV[8])
redis.call('SREM', KEYS[3], ARGV[1])
return {'reuse'}
`)

// scriptRevoke revokes one session.
//
//	KEYS: session, unrevoked
//	ARGV: id, now, reason
//
// It answers "notfound", "unchanged" (already revoked) or "ok".
var scriptRevoke = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
	return 'notfound'
end
if redis.call('HEXISTS', KEYS[1], 'rva') == 1 then
	return 'unchanged'
end
redis.call('HSET', KEYS[1], 'rva', ARGV[2], 'rvr', ARGV[3])
redis.call('SREM', KEYS[2], ARGV[1])
return 'ok'
`)

// scriptRevokeSubject revokes the given sessions of one bucket that still
// belong to the subject and are not revoked yet.
//
//	KEYS: unrevoked, session 1, session 2, ...
//	ARGV: subject, now, reason, id 1, id 2, ...
//
// It answers how many it revoked.
var scriptRevokeSubject = redis.NewScript(`
local n = 0
for i = 4, #ARGV do
	local k = KEYS[i - 2]
	if redis.call('HGET', k, 'sub') == ARGV[1] and redis.call('HEXISTS', k, 'rva') == 0 then
		redis.call('HSET', k, 'rva', ARGV[2], 'rvr', ARGV[3])
		redis.call('SREM', KEYS[1], ARGV[i])
		n = n + 1
	end
end
return n
`)

// scriptSweep deletes the given sessions of one bucket whose deadline is
// still at or before now (a rotation may have moved it since they were
// listed), with their index entries, whether Redis already deleted the
// session key at its expiry or not.
//
//	KEYS: deadlines, owners, unrevoked, subjects, session 1, session 2, ...
//	ARGV: now, id 1, id 2, ...
//
// It answers how many it deleted.
var scriptSweep = redis.NewScript(`
local n = 0
local now = tonumber(ARGV[1])
for i = 2, #ARGV do
	local id = ARGV[i]
	local score = redis.call('ZSCORE', KEYS[1], id)
	if score and tonumber(score) <= now then
		local sub = redis.call('HGET', KEYS[2], id)
		if sub then
			redis.call('ZREM', KEYS[4], sub .. '\0' .. id)
		end
		redis.call('ZREM', KEYS[1], id)
		redis.call('HDEL', KEYS[2], id)
		redis.call('SREM', KEYS[3], id)
		redis.call('DEL', KEYS[i + 3])
		n = n + 1
	end
end
return n
`)

// scripts are loaded at Open, so that a server refusing them fails there.
var scripts = []*redis.Script{scriptCreate, scriptRotate, scriptRevoke, scriptRevokeSubject, scriptSweep}
