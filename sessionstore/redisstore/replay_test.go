package redisstore

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
	"github.com/spa-gateway/gateway/sessionstore/redisstore/redistest"
)

// replayID is an ID as the DPoP verifier makes them: 32 bytes of a hash.
func replayID(s string) string {
	sum := sha256.Sum256([]byte(s))
	return string(sum[:])
}

// TestReplayCache is the DPoPReplayCache contract on a real Redis, across
// two stores sharing it as two replicas would: an ID is seen once, by
// whichever store asks first; a store of another prefix is another cache;
// the key holds the ID's hex under the prefix and expires at until plus
// the margin.
func TestReplayCache(t *testing.T) {
	srv := redistest.Start(t)
	at := time.Now()
	now := func() time.Time { return at }
	opts := &Options{KeyPrefix: "rc1:", ExpiryMargin: 30 * time.Second}
	a := openOn(t, srv.URL(0), opts).ReplayCache(now)
	b := openOn(t, srv.URL(0), opts).ReplayCache(now)
	other := openOn(t, srv.URL(0), &Options{KeyPrefix: "rc2:"}).ReplayCache(now)
	ctx := t.Context()
	until := at.Add(time.Minute)

	seen := func(c *ReplayCache, id string) bool {
		t.Helper()
		got, err := c.Seen(ctx, id, until)
		if err != nil {
			t.Fatalf("Seen: %v", err)
		}
		return got
	}
	id := replayID("jkt\x00jti-1")
	if seen(a, id) {
		t.Fatal("a new ID reported seen")
	}
	if !seen(a, id) {
		t.Error("the same ID again on the same store: not seen")
	}
	if !seen(b, id) {
		t.Error("the ID on another store of the same prefix (another replica): not seen")
	}
	if seen(other, id) {
		t.Error("the ID on a store of another prefix: seen")
	}
	if seen(b, replayID("jkt\x00jti-2")) {
		t.Error("another ID reported seen")
	}

	key := "rc1:replay:" + hex.EncodeToString([]byte(id))
	ttl, err := strconv.Atoi(strings.TrimPrefix(srv.Do(t, "PTTL", key), ":"))
	if err != nil {
		t.Fatalf("PTTL %s: %v", key, err)
	}
	if want := 90 * time.Second; ttl > int(want.Milliseconds()) || ttl < int((want-5*time.Second).Milliseconds()) {
		t.Errorf("PTTL = %dms, want about %v (until - now + margin)", ttl, want)
	}
	if v := srv.Do(t, "GET", key); strings.Contains(v, "jti") {
		t.Errorf("the key's value %q holds the ID's source", v)
	}
}

// TestReplayCacheConcurrent: of many concurrent calls with one ID, on two
// stores, exactly one reports it new.
func TestReplayCacheConcurrent(t *testing.T) {
	srv := redistest.Start(t)
	opts := &Options{KeyPrefix: "rcc:"}
	caches := []*ReplayCache{openOn(t, srv.URL(0), opts).ReplayCache(nil), openOn(t, srv.URL(0), opts).ReplayCache(nil)}
	for round := range 20 {
		id := replayID("race " + strconv.Itoa(round))
		var fresh atomic.Int32
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				seen, err := caches[i%2].Seen(t.Context(), id, time.Now().Add(time.Minute))
				if err != nil {
					t.Error(err)
				}
				if !seen {
					fresh.Add(1)
				}
			})
		}
		wg.Wait()
		if n := fresh.Load(); n != 1 {
			t.Fatalf("round %d: %d calls reported the ID new, want exactly 1", round, n)
		}
	}
}

// TestReplayCacheExpiry: once the key has expired, the ID is new again.
func TestReplayCacheExpiry(t *testing.T) {
	srv := redistest.Start(t)
	at := time.Now()
	c := openOn(t, srv.URL(0), &Options{ExpiryMargin: time.Millisecond}).ReplayCache(func() time.Time { return at })
	id := replayID("short")
	if seen, err := c.Seen(t.Context(), id, at.Add(50*time.Millisecond)); seen || err != nil {
		t.Fatalf("first Seen = %v, %v", seen, err)
	}
	time.Sleep(200 * time.Millisecond)
	if seen, err := c.Seen(t.Context(), id, at.Add(time.Minute)); seen || err != nil {
		t.Fatalf("Seen after the expiry = %v, %v, want false, nil", seen, err)
	}
}

// TestReplayCacheUnavailable: with Redis stalled, Seen gives up at the
// write timeout; with it down, at once; on a closed store before sending.
// Every error wraps sessionstore.ErrUnavailable, and none reports the ID
// new.
func TestReplayCacheUnavailable(t *testing.T) {
	srv := redistest.Start(t)
	st := openOn(t, srv.URL(0), &Options{WriteTimeout: 300 * time.Millisecond})
	c := st.ReplayCache(nil)
	try := func(what string, within time.Duration) {
		t.Helper()
		start := time.Now()
		seen, err := c.Seen(t.Context(), replayID(what), time.Now().Add(time.Minute))
		if took := time.Since(start); took > within {
			t.Errorf("%s: Seen took %v, want at most %v", what, took, within)
		}
		if !errors.Is(err, sessionstore.ErrUnavailable) {
			t.Errorf("%s: Seen = %v, %v, want an error wrapping ErrUnavailable", what, seen, err)
		}
	}

	srv.Pause(t)
	try("stalled", 2*time.Second)
	srv.Resume(t)
	srv.Stop(t)
	try("down", 2*time.Second)
	srv.Restart(t)
	if _, err := c.Seen(t.Context(), replayID("back"), time.Now().Add(time.Minute)); err != nil {
		t.Errorf("Seen once Redis is back: %v", err)
	}
	_ = st.Close()
	try("closed", 10*time.Millisecond)
}

// BenchmarkReplayCacheSeen is the round trip a DPoP-bound request adds with
// the Redis store: one SET NX GET of a new ID.
func BenchmarkReplayCacheSeen(b *testing.B) {
	c := openOn(b, redistest.Start(b).URL(0), nil).ReplayCache(nil)
	until := time.Now().Add(time.Minute)
	i := 0
	for b.Loop() {
		i++
		if seen, err := c.Seen(b.Context(), replayID(strconv.Itoa(i)), until); seen || err != nil {
			b.Fatalf("Seen = %v, %v", seen, err)
		}
	}
}

// TestReplayCacheCluster: on a Cluster, IDs land on many slots, each one
// command on its own slot, seen once across two stores.
func TestReplayCacheCluster(t *testing.T) {
	srv := redistest.StartCluster(t)
	opts := &Options{KeyPrefix: "rcl:"}
	a, b := openOn(t, srv.ClusterURL(), opts).ReplayCache(nil), openOn(t, srv.ClusterURL(), opts).ReplayCache(nil)
	until := time.Now().Add(time.Minute)
	for i := range 50 {
		id := replayID(strconv.Itoa(i))
		if seen, err := a.Seen(t.Context(), id, until); seen || err != nil {
			t.Fatalf("ID %d on A: Seen = %v, %v, want false, nil", i, seen, err)
		}
		if seen, err := b.Seen(t.Context(), id, until); !seen || err != nil {
			t.Fatalf("ID %d on B: Seen = %v, %v, want true, nil", i, seen, err)
		}
	}
}
