package main

import (
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/auth"
)

// TestDPoPReplayEntriesWithBbolt: tokens.dpop_replay_entries sizes the
// memory replay cache with the bbolt store as with Redis; the cache made
// once for reloads took the default (250,000) whatever the setting.
func TestDPoPReplayEntriesWithBbolt(t *testing.T) {
	cfg := validConfig(t)
	cfg.Tokens.DPoPReplayEntries = 1_000
	m, err := newMain(cfg, false, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c, ok := m.replay.(*auth.MemoryDPoPReplay)
	if !ok {
		t.Fatalf("replay cache %T, want *auth.MemoryDPoPReplay", m.replay)
	}
	// Each newer than the last, as a full shard refuses one at or below
	// the until of the entry it evicted.
	until := time.Now().Add(time.Hour)
	for i := range 5_000 {
		if _, err := c.Seen(t.Context(), fmt.Sprintf("proof-%d", i), until.Add(time.Duration(i)*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.Len(); n > cfg.Tokens.DPoPReplayEntries {
		t.Errorf("the cache holds %d entries, over dpop_replay_entries %d", n, cfg.Tokens.DPoPReplayEntries)
	}
}
