package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"strconv"
	"testing"
	"time"
)

// replayIDOf is a replay cache id for n.
func replayIDOf(n int) string {
	sum := sha256.Sum256([]byte(strconv.Itoa(n)))
	return string(sum[:])
}

// TestMemoryDPoPReplayEvictedReplay: a proof recorded, then pushed out by a
// flood of later ones, is never reported new again: seen while in the map,
// too old once evicted.
func TestMemoryDPoPReplayEvictedReplay(t *testing.T) {
	clock := newTestClock()
	// Room in every shard for the first 20, wherever the seeded hash puts
	// them: with 4 a shard, five of them in one shard (a few runs in a
	// hundred) evicted one before the flood began.
	c := NewMemoryDPoPReplay(20*dpopReplayShards, clock.Now)
	ctx := context.Background()
	until := clock.Now().Add(DefaultDPoPMaxAge)
	for i := range 20 {
		if seen, err := c.Seen(ctx, replayIDOf(i), until); seen || err != nil {
			t.Fatalf("Seen(new %d) = %v, %v", i, seen, err)
		}
	}
	evicted := 0
	for n := range 400 * dpopReplayShards {
		// Later untils, as a flood of fresh proofs, interleaved with the
		// replays of the first 20.
		if _, err := c.Seen(ctx, replayIDOf(1000+n), until.Add(time.Duration(n+1)*time.Millisecond)); err != nil && !errors.Is(err, ErrDPoPProofTooOld) {
			t.Fatal(err)
		}
		i := n % 20
		seen, err := c.Seen(ctx, replayIDOf(i), until)
		switch {
		case errors.Is(err, ErrDPoPProofTooOld):
			evicted++
		case err != nil || !seen:
			t.Fatalf("replay of %d after %d later proofs: Seen = %v, %v; want seen or too old", i, n, seen, err)
		}
	}
	if evicted == 0 {
		t.Fatal("the flood evicted nothing")
	}
}

// TestMemoryDPoPReplayFloodKeepsFresh: a flood of proofs dated as far in
// the future as the verifier allows, at a rate the cache cannot hold for
// the window but slower than its capacity per future skew, evicts entries
// all along, and every fresh proof of an honest client in between is
// accepted.
func TestMemoryDPoPReplayFloodKeepsFresh(t *testing.T) {
	clock := newTestClock()
	const capacity = 100 * dpopReplayShards
	c := NewMemoryDPoPReplay(capacity, clock.Now)
	ctx := context.Background()
	// 100 flood proofs a second: the capacity lasts 16 s, more than the
	// 5 s of future skew, far less than the minute of the window.
	n := 0
	for step := range 60_000 / 10 { // a minute in 10 ms steps
		clock.Advance(10 * time.Millisecond)
		now := clock.Now()
		n++
		if _, err := c.Seen(ctx, replayIDOf(n), now.Add(DefaultDPoPMaxFutureSkew+DefaultDPoPMaxAge)); err != nil {
			t.Fatalf("flood proof %d: %v", n, err)
		}
		if step%10 == 0 {
			n++
			if seen, err := c.Seen(ctx, replayIDOf(n), now.Add(DefaultDPoPMaxAge)); seen || err != nil {
				t.Fatalf("fresh proof at %v into the flood: Seen = %v, %v; want new", now.Sub(newTestClock().Now()), seen, err)
			}
		}
	}
	if got := c.Len(); got != capacity {
		t.Errorf("Len = %d, want the cache full (%d)", got, capacity)
	}
}

// TestMemoryDPoPReplayFloor: with untils in any order, each shard's floor
// is the greatest until it evicted, so any until above that is accepted.
func TestMemoryDPoPReplayFloor(t *testing.T) {
	clock := newTestClock()
	c := NewMemoryDPoPReplay(8*dpopReplayShards, clock.Now)
	ctx := context.Background()
	base := clock.Now().Add(DefaultDPoPMaxAge)
	untils := map[replayKey]int64{}
	for n := range 50 * dpopReplayShards {
		until := base.Add(time.Duration((n*7919)%1000) * time.Millisecond)
		id := replayIDOf(n)
		if _, err := c.Seen(ctx, id, until); err == nil {
			var k replayKey
			copy(k[:], id)
			untils[k] = until.UnixNano()
		}
	}
	for i := range c.shards {
		s := &c.shards[i]
		var maxEvicted int64
		for k, u := range untils {
			if _, in := s.until[k]; !in && &c.shards[c.shardOf(k)] == s {
				maxEvicted = max(maxEvicted, u)
			}
		}
		if s.floor != maxEvicted {
			t.Errorf("shard %d: floor %d, want the greatest evicted until %d", i, s.floor, maxEvicted)
		}
	}
	for n := range 4 * dpopReplayShards {
		// Newer than every evicted entry of every shard, these ones
		// included: a shard that takes more of them than it holds evicts
		// one, and its floor rises to that one's until.
		if seen, err := c.Seen(ctx, replayIDOf(1e6+n), base.Add(time.Second+time.Duration(n+1))); seen || err != nil {
			t.Fatalf("Seen(newer than every evicted) = %v, %v; want new", seen, err)
		}
	}
}

// TestSharedDPoPReplayDecidesUnderFullLocal: a local cache whose window
// has shrunk below a proof's until answers too old; the shared cache
// still decides, both ways.
func TestSharedDPoPReplayDecidesUnderFullLocal(t *testing.T) {
	f := newDPoPFixture(t, 0)
	local := NewMemoryDPoPReplay(dpopReplayShards, f.clock.Now)
	ctx := t.Context()
	// Fill every shard with proofs dated later than the ones to come, and
	// push them out, so every shard's floor is above their untils.
	later := f.clock.Now().Add(DefaultDPoPMaxAge + DefaultDPoPMaxFutureSkew)
	for n := range 100 * dpopReplayShards {
		local.Seen(ctx, replayIDOf(n), later)
	}
	if _, err := local.Seen(ctx, replayIDOf(-1), f.clock.Now().Add(DefaultDPoPMaxAge)); !errors.Is(err, ErrDPoPProofTooOld) {
		t.Fatalf("local Seen = %v, want too old", err)
	}
	shared := &countingReplay{}
	v, err := NewDPoPVerifier(DPoPConfig{Now: f.clock.Now, Replay: NewSharedDPoPReplay(shared, local)})
	if err != nil {
		t.Fatal(err)
	}
	p := oneProof(f.proof(t, f.ec))
	if _, err := v.Verify(ctx, p, getRequest()); err != nil {
		t.Fatalf("Verify(fresh) with the local window shrunk = %v, want the shared cache to accept it", err)
	}
	if _, err := v.Verify(ctx, p, getRequest()); DescribeDPoP(err) != "DPoP proof replayed" {
		t.Fatalf("Verify(replay) = %v, want the shared cache's replayed", err)
	}
}

// steppingClock is a clock that moves on by step at each reading, as time
// passes between the verifier's reading and the replay cache's.
type steppingClock struct {
	testClock
	step time.Duration
}

func (c *steppingClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.t
	c.t = c.t.Add(c.step)
	return t
}

// TestDPoPReplayAtTheWindowsEnd: a proof replayed when its iat is at the
// very end of the window, so that the verifier reads the clock just before
// the proof's until and the replay cache just after, is refused: the cache
// has let the proof's entry expire, so the verifier must not accept on the
// earlier reading.
func TestDPoPReplayAtTheWindowsEnd(t *testing.T) {
	f := newDPoPFixture(t, 0)
	clock := &steppingClock{testClock: *newTestClock()}
	v, err := NewDPoPVerifier(DPoPConfig{Now: clock.Now, Replay: NewMemoryDPoPReplay(0, clock.Now)})
	if err != nil {
		t.Fatal(err)
	}
	p := f.proof(t, f.ec) // iat is the fixture's clock, the same start
	if _, err := v.Verify(t.Context(), oneProof(p), getRequest()); err != nil {
		t.Fatalf("Verify(first) = %v", err)
	}
	// The verifier's next reading is the last instant of the window; the
	// cache's, a millisecond later, is past the proof's until.
	clock.Advance(DefaultDPoPMaxAge)
	clock.step = time.Millisecond
	if _, err := v.Verify(t.Context(), oneProof(p), getRequest()); !errors.Is(err, ErrDPoPProofInvalid) {
		t.Fatalf("Verify(replay at the window's end) = %v, want ErrDPoPProofInvalid", err)
	}
}
