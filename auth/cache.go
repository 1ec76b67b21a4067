package auth

import (
	"sync"
	"time"
)

// tokenCache remembers tokens Verify accepted, so that a token presented on
// every request of a client has its signature checked once rather than once
// per request (an EdDSA or ES256 verification costs about as much CPU as
// proxying the request itself).
//
// It is keyed by the token's exact text: another string, even one that
// decodes to the same claims, is a miss. Only successes are cached. A hit is
// still checked against the clock (exp, and nbf/iat in case the clock went
// back), so an entry ends at the token's exp. What a hit skips (signature,
// alg, kid, iss, aud and the shape of the claims) depends on nothing but the
// token's text and the Verifier's keys and settings, which never change.
//
// The hit path is one sync.Map load, lock-free. Entries are evicted first
// in, first out: the ring of insertions, under a mutex taken only on a miss
// (which just paid for a signature check), holds at most size entries, and
// every map entry has its slot in it, so the map never holds more than size
// tokens. FIFO suits tokens, which all live the same time: the oldest entry
// is the nearest to its exp, and a token still in use when evicted costs one
// more verification.
type tokenCache struct {
	m sync.Map // token text -> *cacheEntry

	mu   sync.Mutex
	ring []cacheSlot // insertion order; len(ring) == size once full
	next int         // the oldest slot, next to reuse, once full
	size int
}

type cacheEntry struct {
	tok *Token
	// notBefore is the later of the token's nbf and iat (zero if it has
	// neither): Verify refuses the token before notBefore-leeway.
	notBefore time.Time
}

type cacheSlot struct {
	key   string
	entry *cacheEntry
}

func newTokenCache(size int) *tokenCache {
	return &tokenCache{size: size, ring: make([]cacheSlot, 0, min(size, 1024))}
}

// get returns the cached token raw if it is still within its time bounds at
// now, and nil otherwise (an entry out of its bounds is dropped: Verify will
// then say why).
func (c *tokenCache) get(raw string, now time.Time, leeway time.Duration) *Token {
	v, ok := c.m.Load(raw)
	if !ok {
		return nil
	}
	e := v.(*cacheEntry)
	if now.Before(e.tok.ExpiresAt.Add(leeway)) && !e.notBefore.After(now.Add(leeway)) {
		return e.tok
	}
	c.m.CompareAndDelete(raw, v)
	return nil
}

// put caches tok, which Verify has just accepted, evicting the oldest entry
// if the cache is full.
func (c *tokenCache) put(tok *Token) {
	e := &cacheEntry{tok: tok, notBefore: tok.IssuedAt}
	if nbf, present, err := numericDate(tok.Claims, "nbf"); err == nil && present && nbf.After(e.notBefore) {
		e.notBefore = nbf
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, loaded := c.m.LoadOrStore(tok.Raw, e); loaded {
		return // another request verified the same token at the same time
	}
	slot := cacheSlot{key: tok.Raw, entry: e}
	if len(c.ring) < c.size {
		c.ring = append(c.ring, slot)
		return
	}
	old := c.ring[c.next]
	// Only the entry this slot inserted: the key may have been dropped and
	// cached again since, with a slot of its own.
	c.m.CompareAndDelete(old.key, old.entry)
	c.ring[c.next] = slot
	c.next = (c.next + 1) % c.size
}
