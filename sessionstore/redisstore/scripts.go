package redisstore

import (
	"time"

	"github.com/redis/go-redis/v9"
)

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
//	lua, lcl, rua, rcl, jkt              only when not empty (a session
//	                                     stored before they existed has
//	                                     none); rua and rcl are set, maybe
//	                                     empty, by every rotation
//
// and is revoked exactly when it has an rva field.
//
// redis.Script calls each by its SHA1 (EVALSHA), and sends the source only
// when the server does not know it yet (after a restart or a failover).
//
// # Deadlines
//
// Every script that changes a session (all but scriptSweep) takes two more
// ARGV, last: a write ID (random, one per Store call) and the write's
// deadline (unix ms, from the caller's ctx). A script first looks for its
// own earlier run (the write ID stored in the session's "wid" field, or,
// for a rotation, its own successor): found, it answers as that run did,
// so that a call sent again (by go-redis or by Store.write) after a lost
// reply never does its change twice nor reports it as not done. Otherwise,
// if Redis's clock (TIME) has reached the deadline, it changes nothing and
// answers "late": a call the gateway stopped waiting for, queued on a
// stalled server or a slow connection, never applies when Redis resumes
// (issue 11, item 2). scriptSweep has no deadline: deleting ended sessions
// is the same whenever it happens.

// lateCheck defines late(deadline): whether Redis's clock has reached the
// write deadline (unix ms). It starts every script with a deadline. TIME is
// allowed in scripts since Redis 5 replicates their effects, not the
// scripts.
const lateCheck = `
local function late(deadline)
	local t = redis.call('TIME')
	return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) >= tonumber(deadline)
end
`

// insertSession defines insert(from): it stores the new session and its
// index entries, for scriptCreate and scriptCreateLimited, whose KEYS and
// first five ARGV are the same (KEYS: session, deadlines, owners,
// unrevoked, subjects; ARGV: id, subject, deadline, expire-at, revoked) and
// whose session field/value pairs start at ARGV[from] and end before the
// write ID and deadline. An owner entry without its session key is a
// session Redis deleted at its expiry before any sweep: its subject entry
// goes, and the ID is free again.
const insertSession = `
local function insert(from)
	local old = redis.call('HGET', KEYS[3], ARGV[1])
	if old then
		redis.call('ZREM', KEYS[5], old .. '\0' .. ARGV[1])
	end
	redis.call('HSET', KEYS[1], 'wid', ARGV[#ARGV - 1], unpack(ARGV, from, #ARGV - 2))
	redis.call('PEXPIREAT', KEYS[1], ARGV[4])
	redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
	redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
	redis.call('ZADD', KEYS[5], 0, ARGV[2] .. '\0' .. ARGV[1])
	if ARGV[5] == '1' then
		redis.call('SREM', KEYS[4], ARGV[1])
	else
		redis.call('SADD', KEYS[4], ARGV[1])
	end
end
`

// scriptCreate stores a new session and its index entries.
//
//	KEYS: session, deadlines, owners, unrevoked, subjects
//	ARGV: id, subject, deadline, expire-at, revoked ("1" or "0"), then the
//	      session's field/value pairs, then write ID, write deadline
//
// It answers "exists", "late" or "ok" (see insertSession for an ID whose
// session Redis deleted at its expiry).
var scriptCreate = redis.NewScript(lateCheck + insertSession + `
if redis.call('EXISTS', KEYS[1]) == 1 then
	if redis.call('HGET', KEYS[1], 'wid') == ARGV[#ARGV - 1] then
		return 'ok'
	end
	return 'exists'
end
if late(ARGV[#ARGV]) then
	return 'late'
end
insert(6)
return 'ok'
`)

// scriptCreateLimited is scriptCreate that first revokes the subject's least
// recently refreshed live sessions beyond the limit, in the same step
// (sessionstore.Store.CreateLimited). The subject's sessions are spread
// over every bucket: the script reads the 64 buckets' subject indexes
// (declared) and then the sessions they name, whose keys it derives from
// the index's bucket tag without declaring them, since no caller can know
// them before the script runs without a race. Reading undeclared keys and
// keys of many hash slots is what only a single server (standalone or
// Sentinel) allows; a Cluster uses createConverge instead.
//
//	KEYS: session, deadlines, owners, unrevoked, subjects (the new
//	      session's bucket), then the 64 buckets' subject indexes, then
//	      their unrevoked sets, in bucket order
//	ARGV: id, subject, deadline, expire-at, revoked ("1" or "0"), limit,
//	      now, reason, then the session's field/value pairs, then write ID,
//	      write deadline
//
// It answers {"exists"}, {"late"}, or {"ok", revoked ID, ...}. A run that
// finds its own earlier run answers the sessions that run revoked (their
// write ID).
var scriptCreateLimited = redis.NewScript(lateCheck + insertSession + `
local wid = ARGV[#ARGV - 1]
local subj, live = 6, 6 + 64
local first, after = ARGV[2] .. '\0', ARGV[2] .. '\1'
local function each(fn)
	for b = 0, 63 do
		local tag = string.sub(KEYS[subj + b], 1, -5)
		for _, m in ipairs(redis.call('ZRANGEBYLEX', KEYS[subj + b], '[' .. first, '(' .. after)) do
			local id = string.sub(m, #first + 1)
			fn(b, id, tag .. 's:' .. id)
		end
	end
end
if redis.call('EXISTS', KEYS[1]) == 1 then
	if redis.call('HGET', KEYS[1], 'wid') ~= wid then
		return {'exists'}
	end
	local r = {'ok'}
	each(function(b, id, k)
		if id ~= ARGV[1] and redis.call('HGET', k, 'wid') == wid then
			table.insert(r, id)
		end
	end)
	return r
end
if late(ARGV[#ARGV]) then
	return {'late'}
end
local r = {'ok'}
local now, limit = tonumber(ARGV[7]), tonumber(ARGV[6])
if ARGV[5] ~= '1' then
	local alive = {}
	each(function(b, id, k)
		local f = redis.call('HMGET', k, 'ref', 'cre', 'idle', 'exp', 'rva')
		if f[4] and not f[5] and now < math.min(tonumber(f[3]), tonumber(f[4])) then
			table.insert(alive, {ref = tonumber(f[1]), cre = tonumber(f[2]), id = id, b = b, k = k})
		end
	end)
	if #alive >= limit then
		table.sort(alive, function(a, b)
			if a.ref ~= b.ref then
				return a.ref < b.ref
			end
			if a.cre ~= b.cre then
				return a.cre < b.cre
			end
			return a.id < b.id
		end)
		for j = 1, #alive - limit + 1 do
			local s = alive[j]
			redis.call('HSET', s.k, 'rva', ARGV[7], 'rvr', ARGV[8], 'wid', wid)
			redis.call('SREM', KEYS[live + s.b], s.id)
			table.insert(r, s.id)
		end
	end
end
insert(9)
return r
`)

// scriptRotate applies the refresh rules of sessionstore.Store.Rotate in
// their order, and rotates.
//
//	KEYS: session, deadlines, unrevoked
//	ARGV: id, jti, new jti, now, now+idle timeout, grace (ms, may be
//	      fractional), expiry margin (ms), reuse reason, the refresh's
//	      user agent, its client, the IdP refresh token ("" keeps the
//	      stored one), "1" when replicas must confirm the rotation (it is
//	      then marked unconfirmed, "ucf", until Store.Rotate clears the
//	      mark), write ID, write deadline
//
// It answers {"notfound"}, {"revoked"}, {"expired"}, {"reuse"} (having
// revoked the session), {"late"}, or {"ok" | "grace", field, value, ...}
// with the session after the call.
//
// A call whose reply was lost and that is sent again finds its own
// rotation done (the presented jti is now the previous one, the new jti the
// current one, rotated at the same now), or its own revocation for reuse
// (its write ID): it answers "ok" (or "reuse") again instead of taking its
// own successor for reuse, so that a retry never revokes a session, even
// with no grace period, and never reports a rotation it made as late. New
// jtis and write IDs are random, so no other request can match. The
// session hash's "wid" is not read by decodeSession, nor is "ucf": the
// current jti, set by the rotation itself when replicas must confirm it and
// cleared once they did (scriptClearUnconfirmed), which makes the previous
// jti answer "grace" past the
// grace period, until the next rotation and for at most UnconfirmedGrace
// after the rotation (see Store, "Replicated writes").
var scriptRotate = redis.NewScript(lateCheck + `
local function answer(code)
	local r = redis.call('HGETALL', KEYS[1])
	table.insert(r, 1, code)
	return r
end
local f = redis.call('HMGET', KEYS[1], 'jti', 'pjti', 'rot', 'idle', 'exp', 'rva', 'wid', 'ucf')
if not f[5] then
	return {'notfound'}
end
if f[6] then
	if f[7] == ARGV[13] then
		return {'reuse'}
	end
	return {'revoked'}
end
if f[2] and ARGV[2] == f[2] and ARGV[3] == f[1] and ARGV[4] == f[3] then
	return answer('ok')
end
if late(ARGV[14]) then
	return {'late'}
end
local now = tonumber(ARGV[4])
local exp = tonumber(f[5])
if now >= math.min(tonumber(f[4]), exp) then
	return {'expired'}
end
if ARGV[2] == f[1] then
	redis.call('HSET', KEYS[1], 'pjti', f[1], 'jti', ARGV[3], 'iat', ARGV[4], 'ref', ARGV[4], 'rot', ARGV[4], 'idle', ARGV[5],
		'rua', ARGV[9], 'rcl', ARGV[10])
	if ARGV[11] ~= '' then
		redis.call('HSET', KEYS[1], 'irt', ARGV[11])
	end
	if ARGV[12] == '1' then
		-- Unconfirmed until the replicas have it (Store.Rotate clears the
		-- mark once they do): set with the rotation itself, so that no
		-- failover can keep the one and lose the other.
		redis.call('HSET', KEYS[1], 'ucf', ARGV[3])
	else
		redis.call('HDEL', KEYS[1], 'ucf')
	end
	local deadline = ARGV[5]
	if exp < tonumber(ARGV[5]) then
		deadline = f[5]
	end
	redis.call('ZADD', KEYS[2], deadline, ARGV[1])
	redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', tonumber(deadline) + tonumber(ARGV[7])))
	return answer('ok')
end
if f[2] and f[2] ~= '' and ARGV[2] == f[2] then
	if f[3] and (now < tonumber(f[3]) + tonumber(ARGV[6]) or (f[8] == f[1] and now < tonumber(f[3]) + ` + unconfirmedGraceMillis + `)) then
		return answer('grace')
	end
end
redis.call('HSET', KEYS[1], 'rva', ARGV[4], 'rvr', ARGV[8], 'wid', ARGV[13])
redis.call('SREM', KEYS[3], ARGV[1])
return {'reuse'}
`)

// scriptRevoke revokes one session.
//
//	KEYS: session, unrevoked
//	ARGV: id, now, reason, write ID, write deadline
//
// It answers "notfound", "unchanged" (already revoked), "late" or "ok".
var scriptRevoke = redis.NewScript(lateCheck + `
if redis.call('EXISTS', KEYS[1]) == 0 then
	return 'notfound'
end
if redis.call('HEXISTS', KEYS[1], 'rva') == 1 then
	if redis.call('HGET', KEYS[1], 'wid') == ARGV[4] then
		return 'ok'
	end
	return 'unchanged'
end
if late(ARGV[5]) then
	return 'late'
end
redis.call('HSET', KEYS[1], 'rva', ARGV[2], 'rvr', ARGV[3], 'wid', ARGV[4])
redis.call('SREM', KEYS[2], ARGV[1])
return 'ok'
`)

// scriptRevokeSubject revokes the given sessions of one bucket that still
// belong to the subject and are not revoked yet.
//
//	KEYS: unrevoked, session 1, session 2, ...
//	ARGV: subject, now, reason, id 1, id 2, ..., write ID, write deadline
//
// It answers how many it revoked (counting those an earlier run of the same
// call revoked), or -1 for late.
var scriptRevokeSubject = redis.NewScript(lateCheck + `
local wid = ARGV[#ARGV - 1]
local n = 0
local todo = {}
for i = 4, #ARGV - 2 do
	local k = KEYS[i - 2]
	local f = redis.call('HMGET', k, 'sub', 'rva', 'wid')
	if f[1] == ARGV[1] then
		if not f[2] then
			table.insert(todo, i)
		elseif f[3] == wid then
			n = n + 1
		end
	end
end
if n > 0 or #todo == 0 then
	return n
end
if late(ARGV[#ARGV]) then
	return -1
end
for _, i in ipairs(todo) do
	redis.call('HSET', KEYS[i - 2], 'rva', ARGV[2], 'rvr', ARGV[3], 'wid', wid)
	redis.call('SREM', KEYS[1], ARGV[i])
	n = n + 1
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
var scripts = []*redis.Script{scriptCreate, scriptCreateLimited, scriptRotate, scriptRevoke, scriptRevokeSubject, scriptSweep, scriptClearUnconfirmed, scriptPutIdPSession}

// UnconfirmedGrace is how long after a rotation the replicas did not
// confirm its previous token still gets the successor (answered "grace"):
// the client that got 503 retries within the failover's error window
// (seconds: docs/PERFORMANCE.md), and a thief holding that previous token
// must not get the successor silently for longer. Past it, the previous
// token is reuse again, as after refresh_grace.
const UnconfirmedGrace = 2 * time.Minute

// unconfirmedGraceMillis is UnconfirmedGrace for the scripts.
const unconfirmedGraceMillis = "120000"

// scriptClearUnconfirmed clears the unconfirmed mark of a rotation the
// replicas confirmed, if the mark is still that rotation's: the previous
// token is then reuse past the grace, as without replicas.
//
//	KEYS: session
//	ARGV: the rotation's new jti
//
// It has no deadline: it only narrows the grace of the rotation it names.
var scriptClearUnconfirmed = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'ucf') == ARGV[1] then
	redis.call('HDEL', KEYS[1], 'ucf')
	return 1
end
return 0
`)
