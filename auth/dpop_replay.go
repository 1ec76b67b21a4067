package auth

import (
	"context"
	"errors"
	"hash/maphash"
	"sync"
	"time"
)

// DefaultDPoPReplayEntries is the capacity of the replay cache a
// DPoPVerifier makes when DPoPConfig.Replay is nil, in about 20 MiB
// (MemoryDPoPReplay: about 80 bytes an entry). It holds a whole default
// minute at about 4,000 proofs a second; beyond that the window shrinks
// (MemoryDPoPReplay). Refusing fresh proofs by flooding it needs about
// capacity / DefaultDPoPMaxFutureSkew = 50,000 verified proofs a second,
// each one signature check, which is more than two cores verify.
const DefaultDPoPReplayEntries = 250_000

// ErrDPoPReplayFull is what a DPoPReplayCache may return when it cannot
// record a proof for lack of room: the proof cannot be checked for a
// replay, and the verifier refuses it as a server-side failure (forgetting
// an entry early would let its proof be replayed). MemoryDPoPReplay no
// longer returns it: it shrinks its window instead (ErrDPoPProofTooOld).
var ErrDPoPReplayFull = errors.New("dpop replay cache full")

// ErrDPoPProofTooOld is returned by MemoryDPoPReplay.Seen for a proof whose
// until is not after the cache's floor: the cache has forgotten proofs
// that old to make room, and cannot tell whether this one is a replay of
// one of them. The verifier refuses it as the proof's fault ("DPoP proof
// too old", invalid_dpop_proof), as it does a proof whose iat left the
// window.
var ErrDPoPProofTooOld = errors.New("dpop replay cache: proof older than the window it holds")

// DPoPReplayCache remembers the proofs a DPoPVerifier accepted, so that
// none is accepted twice. Implementations must be safe for concurrent use.
type DPoPReplayCache interface {
	// Seen records id until until, and reports whether id was already
	// recorded with an until not yet passed (the until itself included:
	// it is the last instant the proof's iat is accepted) — in one atomic
	// step, so
	// that of two concurrent calls with one id exactly one reports false.
	// id is opaque and 32 bytes long (a hash of the proof's key and jti).
	// An error means the answer is unknown; the verifier then refuses the
	// proof: as the proof's fault for ErrDPoPProofTooOld, as a server-side
	// failure for any other. A cache shared by several replicas (Redis SET NX with an
	// expiry) makes a replay at another replica a replay too.
	Seen(ctx context.Context, id string, until time.Time) (bool, error)
}

// dpopReplayShards spreads the cache over locks: Seen is on the path of
// every request with a proof.
const dpopReplayShards = 16

// MemoryDPoPReplay is a DPoPReplayCache in this process's memory, bounded
// to a fixed number of entries. An entry is dropped once its until has
// passed and every entry recorded before it has been dropped: entries
// leave in the order they came, which holds them at most one window longer
// than their until (untils differ by no more than the iat window), and
// keeps each Seen O(1). The zero MemoryDPoPReplay is not usable; make one
// with NewMemoryDPoPReplay.
//
// When a shard is full of unexpired entries, it does not refuse the proof
// (that let anyone with a bound session of his own fill the cache with
// valid proofs and have every bound request refused): it evicts its
// oldest entry and raises its floor to that entry's until, and from then
// on answers ErrDPoPProofTooOld for an until at or below the floor. The
// window it holds shrinks, from the iat window to what its capacity holds
// at the current rate, and the replay guarantee stays whole:
//
//   - A replay of a proof P that this cache accepted: if P's entry is still
//     in the map, Seen reports it seen. If it was evicted, the floor was
//     raised to at least P's until then, and floors only rise, so the
//     replay is refused as too old. (If P's until has passed, the
//     verifier refuses the proof's iat before asking.)
//   - A proof whose until is above the floor was never evicted (an
//     evicted until is at most the floor) and is not in the map: it was
//     never accepted here, and is recorded now.
//   - The floor is the greatest evicted until, so it never refuses a
//     proof newer (by until, that is by iat) than every evicted one.
//
// What a flood costs: to refuse a fresh proof F (iat about now), the floor
// must reach F's until, so an entry E with iat at least F's must be
// evicted. E's iat is at most its recording time plus the future skew
// (DPoPConfig.MaxFutureSkew, 5 s by default), and E is evicted only after
// a shard's capacity of entries were recorded after it. So the whole
// capacity must go through the cache within about the future skew (plus
// F's transit): capacity / 5 s proofs a second, each one a proof that
// passed every other check, its signature included. That is more than a
// replica's CPU verifies at the default capacity, and a plain CPU flood
// is the cheaper attack. Entries are spread over the shards by a keyed
// hash with a per-process random seed, so that nobody can aim proofs at
// one shard (whose capacity is a sixteenth) by choosing jtis.
//
// The price is for honest clients whose clock lags: with the cache full,
// a proof is accepted only when its iat is later than those of the proofs
// evicted, which were recorded about capacity / rate ago; a client whose
// clock is behind the others' by more than that is refused until the rate
// falls. Size the capacity for the peak rate times the iat window.
type MemoryDPoPReplay struct {
	now    func() time.Time
	seed   maphash.Seed
	shards [dpopReplayShards]replayShard
}

// replayShard is one lock's part of the cache: a map for lookups and a
// ring of the same entries in the order they were recorded, for expiry and
// eviction.
type replayShard struct {
	mu    sync.Mutex
	until map[replayKey]int64 // Unix nanoseconds
	ring  []replayEntry       // fixed length: the shard's capacity
	head  int                 // the oldest entry
	n     int                 // entries in ring
	floor int64               // the greatest until evicted (Unix nanoseconds)
}

// replayKey is the first half of an id: 128 bits are as hard to collide
// with on purpose as the whole hash, and halve the memory.
type replayKey [16]byte

type replayEntry struct {
	key   replayKey
	until int64
}

// NewMemoryDPoPReplay returns a cache of capacity entries (at least
// dpopReplayShards; zero or less means DefaultDPoPReplayEntries) whose
// entries expire by now (nil means time.Now). It allocates its ring up
// front, 24 bytes an entry, and its maps as they fill, about 50 bytes an
// entry more.
func NewMemoryDPoPReplay(capacity int, now func() time.Time) *MemoryDPoPReplay {
	if capacity <= 0 {
		capacity = DefaultDPoPReplayEntries
	}
	if now == nil {
		now = time.Now
	}
	per := max(capacity/dpopReplayShards, 1)
	c := &MemoryDPoPReplay{now: now, seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].until = make(map[replayKey]int64)
		c.shards[i].ring = make([]replayEntry, per)
	}
	return c
}

// Seen implements DPoPReplayCache. It never blocks on I/O; ctx is unused.
// It returns ErrDPoPProofTooOld for an until at or below the floor of a
// shard that had to evict (see MemoryDPoPReplay).
func (c *MemoryDPoPReplay) Seen(_ context.Context, id string, until time.Time) (bool, error) {
	var key replayKey
	copy(key[:], id)
	now, u := c.now().UnixNano(), until.UnixNano()
	s := &c.shards[c.shardOf(key)]
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	if v, ok := s.until[key]; ok && v >= now {
		return true, nil
	}
	if u <= s.floor {
		return false, ErrDPoPProofTooOld
	}
	if s.n == len(s.ring) {
		s.evict()
		if u <= s.floor {
			return false, ErrDPoPProofTooOld
		}
	}
	s.ring[(s.head+s.n)%len(s.ring)] = replayEntry{key: key, until: u}
	s.n++
	s.until[key] = u
	return false, nil
}

// shardOf is key's shard, by a keyed hash: key is a hash of a jti the
// client chooses, and could otherwise be aimed at one shard.
func (c *MemoryDPoPReplay) shardOf(key replayKey) int {
	return int(maphash.Bytes(c.seed, key[:]) % dpopReplayShards)
}

// expire drops the oldest entries while their until is before now.
func (s *replayShard) expire(now int64) {
	for s.n > 0 && s.ring[s.head].until < now {
		s.drop()
	}
}

// evict drops the oldest entry before its until, raising the floor to it.
func (s *replayShard) evict() {
	s.floor = max(s.floor, s.ring[s.head].until)
	s.drop()
}

// drop removes the oldest entry.
func (s *replayShard) drop() {
	e := s.ring[s.head]
	// The key may have been recorded again since (after it expired), with
	// a later until: that newer entry is still in the ring.
	if s.until[e.key] == e.until {
		delete(s.until, e.key)
	}
	s.head = (s.head + 1) % len(s.ring)
	s.n--
}

// Len drops the expired entries it can (see MemoryDPoPReplay) and returns
// the number left, for tests and metrics.
func (c *MemoryDPoPReplay) Len() int {
	now := c.now().UnixNano()
	total := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.expire(now)
		total += s.n
		s.mu.Unlock()
	}
	return total
}

// SharedDPoPReplay is the DPoPReplayCache of replicas behind one load
// balancer: a cache they all share (Redis), which decides, behind this
// replica's MemoryDPoPReplay, which refuses at no cost a replay of a
// proof this replica already saw, and whose other verdicts it ignores. The memory cache only ever answers
// "seen": an id it recorded was handed to the shared cache right after,
// and the proof was accepted only if the shared cache recorded it, so
// every id it holds is in the shared cache too, or belongs to a proof
// that was refused anyway (a client sends a refused proof again only by
// replaying it). When the memory cache has shrunk its window
// (ErrDPoPProofTooOld), the shared one, which holds the whole window,
// still decides alone. Errors of the shared cache are returned as they are:
// the verifier then refuses the proof (fail closed). The zero
// SharedDPoPReplay is not usable; make one with NewSharedDPoPReplay.
type SharedDPoPReplay struct {
	local  *MemoryDPoPReplay
	shared DPoPReplayCache
}

// NewSharedDPoPReplay returns shared behind local; a nil local means no
// memory cache in front.
func NewSharedDPoPReplay(shared DPoPReplayCache, local *MemoryDPoPReplay) *SharedDPoPReplay {
	return &SharedDPoPReplay{local: local, shared: shared}
}

// Seen implements DPoPReplayCache.
func (c *SharedDPoPReplay) Seen(ctx context.Context, id string, until time.Time) (bool, error) {
	if c.local != nil {
		// An error here is only ErrDPoPProofTooOld, the memory cache's
		// shrunk window: the shared cache, which holds everything, still
		// knows.
		if seen, err := c.local.Seen(ctx, id, until); err == nil && seen {
			return true, nil
		}
	}
	return c.shared.Seen(ctx, id, until)
}
