package auth

import (
	"errors"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/auth/authtest"
)

const testJKT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"

// TestMintBound: a bound token carries cnf.jkt, and Verify reads it back;
// an unbound one has no cnf at all.
func TestMintBound(t *testing.T) {
	f := newFixture(t, EdDSA, 0)
	now := f.clock.Now()
	for _, jkt := range []string{testJKT, ""} {
		raw, err := f.minter.Mint(MintClaims{Subject: "alice", ID: "j", IssuedAt: now, ExpiresAt: now.Add(time.Minute), JKT: jkt})
		if err != nil {
			t.Fatal(err)
		}
		_, hasCnf := authtest.Claims(t, raw)["cnf"]
		if hasCnf != (jkt != "") {
			t.Errorf("JKT %q: cnf present = %v", jkt, hasCnf)
		}
		tok, err := f.verifier.Verify(raw)
		if err != nil {
			t.Fatal(err)
		}
		if tok.JKT != jkt {
			t.Errorf("Token.JKT = %q, want %q", tok.JKT, jkt)
		}
	}
}

// TestVerifyCnf: a cnf the gateway cannot check is refused, not taken as
// unbound.
func TestVerifyCnf(t *testing.T) {
	f := newFixture(t, EdDSA, 0)
	for name, cnf := range map[string]any{
		"string":    "x",
		"no jkt":    map[string]any{"x5t#S256": "abc"},
		"empty jkt": map[string]any{"jkt": ""},
		"jkt int":   map[string]any{"jkt": 1},
	} {
		_, err := f.verifier.Verify(f.good(t, authtest.With(f.claims(), "cnf", cnf)))
		if !errors.Is(err, ErrTokenInvalid) {
			t.Errorf("%s: Verify = %v, want ErrTokenInvalid", name, err)
		}
	}
}

// TestSessionsBound: a login with a JKT makes a bound session, whose tokens
// carry it through refreshes; a token whose binding is not the session's
// does not refresh.
func TestSessionsBound(t *testing.T) {
	f := newSessionsFixture(t, nil)
	g, err := f.sessions.Login(t.Context(), Identity{Subject: "alice"}, Client{JKT: testJKT})
	if err != nil {
		t.Fatal(err)
	}
	tok := f.token(t, g)
	if !g.Bound || tok.JKT != testJKT {
		t.Fatalf("login: Bound %v, token JKT %q", g.Bound, tok.JKT)
	}
	sess, err := f.store.Get(t.Context(), g.SessionID)
	if err != nil || sess.JKT != testJKT {
		t.Fatalf("stored JKT %q, %v", sess.JKT, err)
	}
	f.clock.Advance(16 * time.Minute)
	// Refresh ignores the client's JKT: nothing re-binds.
	g2, err := f.sessions.Refresh(t.Context(), tok, Client{JKT: "other"})
	if err != nil {
		t.Fatal(err)
	}
	if tok2 := f.token(t, g2); !g2.Bound || tok2.JKT != testJKT {
		t.Fatalf("refresh: Bound %v, token JKT %q", g2.Bound, tok2.JKT)
	}

	// The same session's token, unbound (as a forger with the signing key
	// could mint it): refused.
	f.clock.Advance(16 * time.Minute)
	forged := *f.token(t, g2)
	forged.JKT = ""
	if _, err := f.sessions.Refresh(t.Context(), &forged, Client{}); !errors.Is(err, ErrBindingMismatch) {
		t.Fatalf("Refresh(unbound token of a bound session) = %v, want ErrBindingMismatch", err)
	}
}

// TestAuthtestDPoPKey: the tests' proofs are ones Verify accepts, with the
// thumbprint the key reports.
func TestAuthtestDPoPKey(t *testing.T) {
	clock := newTestClock()
	v, err := NewDPoPVerifier(DPoPConfig{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	k := authtest.NewDPoPKey(t)
	p, err := v.Verify(t.Context(), []string{k.Proof(t, "GET", "https://a.example/x", "tok", clock.Now())},
		DPoPRequest{Method: "GET", URL: "https://a.example/x", AccessToken: "tok", JKT: k.JKT()})
	if err != nil || p.JKT != k.JKT() {
		t.Fatalf("Verify = %+v, %v; want JKT %s", p, err, k.JKT())
	}
}
