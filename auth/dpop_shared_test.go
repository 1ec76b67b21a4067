package auth

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// countingReplay is a shared replay cache in memory, as Redis is to the
// replicas, counting the calls that reach it; fail makes it answer as
// Redis down.
type countingReplay struct {
	mu    sync.Mutex
	ids   map[string]bool
	calls int
	fail  bool
}

func (c *countingReplay) Seen(_ context.Context, id string, _ time.Time) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.fail {
		return false, errors.New("connection refused")
	}
	if c.ids == nil {
		c.ids = map[string]bool{}
	}
	seen := c.ids[id]
	c.ids[id] = true
	return seen, nil
}

// TestSharedDPoPReplay: two replicas, each a verifier with its own memory
// cache in front of one shared cache. A proof accepted at A is refused at
// B (the shared cache says so) and at A again without asking the shared
// cache; a shared cache that cannot answer refuses every proof as a
// server-side failure, also once the memory cache is full.
func TestSharedDPoPReplay(t *testing.T) {
	f := newDPoPFixture(t, 0)
	shared := &countingReplay{}
	replica := func(local *MemoryDPoPReplay) *DPoPVerifier {
		v, err := NewDPoPVerifier(DPoPConfig{Now: f.clock.Now, Replay: NewSharedDPoPReplay(shared, local)})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	a := replica(NewMemoryDPoPReplay(0, f.clock.Now))
	b := replica(NewMemoryDPoPReplay(0, f.clock.Now))
	ctx := t.Context()

	p := oneProof(f.proof(t, f.ec))
	if _, err := a.Verify(ctx, p, getRequest()); err != nil {
		t.Fatalf("A: Verify = %v", err)
	}
	_, err := b.Verify(ctx, p, getRequest())
	if !errors.Is(err, ErrDPoPProofInvalid) || DescribeDPoP(err) != "DPoP proof replayed" {
		t.Errorf("B: Verify(the proof A accepted) = %v, want replayed", err)
	}
	calls := shared.calls
	if _, err := a.Verify(ctx, p, getRequest()); DescribeDPoP(err) != "DPoP proof replayed" {
		t.Errorf("A again: Verify = %v, want replayed", err)
	}
	if shared.calls != calls {
		t.Error("a replay at the replica that saw the proof asked the shared cache")
	}

	shared.fail = true
	for name, v := range map[string]*DPoPVerifier{
		"memory in front": a,
		"memory full":     replica(NewMemoryDPoPReplay(dpopReplayShards, f.clock.Now)),
		"no memory":       replica(nil),
	} {
		for range 3 * dpopReplayShards { // more than "memory full" holds
			_, err := v.Verify(ctx, oneProof(f.proof(t, f.ec)), getRequest())
			if err == nil || DPoPErrorCode(err) != "" {
				t.Fatalf("%s, shared cache down: Verify = %v, want a server-side error", name, err)
			}
		}
	}

	shared.fail = false
	full := replica(NewMemoryDPoPReplay(dpopReplayShards, f.clock.Now))
	for i := range 3 * dpopReplayShards {
		if _, err := full.Verify(ctx, oneProof(f.proof(t, f.ec)), getRequest()); err != nil {
			t.Fatalf("proof %d with the memory cache full: Verify = %v, want the shared cache to decide", i, err)
		}
	}
}
