package auth

import (
	"context"
	"errors"
	"sync"
	"time"
)

// DefaultDPoPReplayEntries is the capacity of the replay cache a
// DPoPVerifier makes when DPoPConfig.Replay is nil: at the default one
// minute window, about 1,600 proofs a second, in about 8 MiB.
const DefaultDPoPReplayEntries = 100_000

// ErrDPoPReplayFull is returned by MemoryDPoPReplay.Seen when it holds
// its capacity of unexpired entries. The proof cannot then be checked for
// a replay, and is refused: forgetting an entry early would let its proof
// be replayed.
var ErrDPoPReplayFull = errors.New("dpop replay cache full")

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
	// proof. A cache shared by several replicas (Redis SET NX with an
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
// keeps each Seen O(1). When full of unexpired entries it fails closed
// with ErrDPoPReplayFull. The zero MemoryDPoPReplay is not usable; make
// one with NewMemoryDPoPReplay.
type MemoryDPoPReplay struct {
	now    func() time.Time
	shards [dpopReplayShards]replayShard
}

// replayShard is one lock's part of the cache: a map for lookups and a
// ring of the same entries in the order they were recorded, for expiry.
type replayShard struct {
	mu    sync.Mutex
	until map[replayKey]int64 // Unix nanoseconds
	ring  []replayEntry       // fixed length: the shard's capacity
	head  int                 // the oldest entry
	n     int                 // entries in ring
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
// entries expire by now (nil means time.Now). It allocates its whole
// capacity up front, about 80 bytes an entry.
func NewMemoryDPoPReplay(capacity int, now func() time.Time) *MemoryDPoPReplay {
	if capacity <= 0 {
		capacity = DefaultDPoPReplayEntries
	}
	if now == nil {
		now = time.Now
	}
	per := max(capacity/dpopReplayShards, 1)
	c := &MemoryDPoPReplay{now: now}
	for i := range c.shards {
		c.shards[i].until = make(map[replayKey]int64, per)
		c.shards[i].ring = make([]replayEntry, per)
	}
	return c
}

// Seen implements DPoPReplayCache. It never blocks on I/O; ctx is unused.
func (c *MemoryDPoPReplay) Seen(_ context.Context, id string, until time.Time) (bool, error) {
	var key replayKey
	copy(key[:], id)
	now := c.now().UnixNano()
	s := &c.shards[key[0]%dpopReplayShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	if u, ok := s.until[key]; ok && u >= now {
		return true, nil
	}
	if s.n == len(s.ring) {
		return false, ErrDPoPReplayFull
	}
	u := until.UnixNano()
	s.ring[(s.head+s.n)%len(s.ring)] = replayEntry{key: key, until: u}
	s.n++
	s.until[key] = u
	return false, nil
}

// expire drops the oldest entries while their until is before now.
func (s *replayShard) expire(now int64) {
	for s.n > 0 {
		e := s.ring[s.head]
		if e.until >= now {
			return
		}
		// The key may have been recorded again since (after it expired),
		// with a later until: that newer entry is still in the ring.
		if s.until[e.key] == e.until {
			delete(s.until, e.key)
		}
		s.head = (s.head + 1) % len(s.ring)
		s.n--
	}
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
// proof this replica already saw. The memory cache only ever answers
// "seen": an id it recorded was handed to the shared cache right after,
// and the proof was accepted only if the shared cache recorded it, so
// every id it holds is in the shared cache too, or belongs to a proof
// that was refused anyway (a client sends a refused proof again only by
// replaying it). When the memory cache is full, the shared one still
// decides alone. Errors of the shared cache are returned as they are:
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
		// An error here is only ErrDPoPReplayFull: the shared cache,
		// which holds everything, still knows.
		if seen, err := c.local.Seen(ctx, id, until); err == nil && seen {
			return true, nil
		}
	}
	return c.shared.Seen(ctx, id, until)
}
