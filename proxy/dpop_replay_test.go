package proxy

import (
	"testing"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/auth/authtest"
)

// TestDPoPReplayWindowShrunk: a proof older than what a full replay cache
// still holds (auth.ErrDPoPProofTooOld) is the proof's fault: 401
// invalid_dpop_proof with a DPoP challenge, not the 503 of a cache that
// cannot answer.
func TestDPoPReplayWindowShrunk(t *testing.T) {
	replay := failingReplay{err: auth.ErrDPoPProofTooOld}
	e := newSessionEnv(t, func(c *Config, d *Deps) {
		v, err := auth.NewDPoPVerifier(auth.DPoPConfig{Now: d.Now, Replay: replay})
		if err != nil {
			t.Fatal(err)
		}
		d.DPoP = v
	})
	k := authtest.NewDPoPKey(t)
	tok := e.boundSession(k.JKT())
	res := e.do("GET", "/api/x", e.proofHeader(dpopAuth(tok), k, "GET", "/api/x", tok), "")
	wantDPoPRefusal(t, "too old for the cache", res, auth.DPoPErrorInvalidProof)
}
