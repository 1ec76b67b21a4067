package proxy

import (
	"context"
	"errors"
	"testing"
)

// TestSharedTunnels builds a second Gateway on the first one's Deps.Tunnels,
// as a configuration reload does: a tunnel opened through the first is
// closed when the second ends its session, and one Gateway without
// Deps.Tunnels keeps a registry of its own.
func TestSharedTunnels(t *testing.T) {
	shared := &Tunnels{}
	old := newEnv(t, func(_ *Config, d *Deps) { d.Tunnels = shared })
	successor, err := New(old.cfg, Deps{
		Verifier: old.gw.deps.Verifier, Keys: old.keys, Sessions: old.gw.deps.Sessions,
		Metrics: old.metrics, Now: old.clock.Now, Tunnels: shared,
	})
	if err != nil {
		t.Fatal(err)
	}
	alone := newEnv(t, nil)

	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	tn := &tunnel{session: "s1", subject: "alice", cancel: cancel}
	old.gw.tunnels.add(tn)
	defer old.gw.tunnels.remove(tn)

	if n := alone.gw.EndSession("s1", TunnelRevoked); n != 0 {
		t.Errorf("EndSession on a Gateway of its own registry = %d, want 0", n)
	}
	if n := successor.EndSession("s1", TunnelRevoked); n != 1 {
		t.Fatalf("EndSession on the successor = %d, want 1", n)
	}
	var end *tunnelEnd
	if !errors.As(context.Cause(ctx), &end) || end.reason != TunnelRevoked {
		t.Errorf("tunnel's cause = %v, want its end with %q", context.Cause(ctx), TunnelRevoked)
	}
}
