package proxy

import (
	"io"
	"net/http"
	"testing"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/auth/authtest"
	"github.com/spa-gateway/gateway/sessionstore"
)

// BenchmarkServeHTTPBound is BenchmarkServeHTTP with a DPoP-bound token
// and a new proof on every request, as the browser client sends them: the
// proofs are made beforehand, so the figures are the gateway's check of
// each (one signature, its decoding, the replay cache) on top of the
// unbound request.
func BenchmarkServeHTTPBound(b *testing.B) {
	for _, rv := range revocations {
		b.Run(rv.name, func(b *testing.B) {
			e, _ := benchEnv(b, rv.everyRequest)
			k := authtest.NewDPoPKey(b)
			tok := e.boundSession(k.JKT())
			client := e.srv.Client()
			target := e.url("/api/users/42")
			proofs := make([]string, b.N)
			for i := range proofs {
				proofs[i] = k.Proof(b, "GET", target, tok, e.clock.Now())
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				req, err := http.NewRequest("GET", target, nil)
				if err != nil {
					b.Fatal(err)
				}
				req.Header = http.Header{"Authorization": {"DPoP " + tok}, "Dpop": {proofs[i]}}
				res, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					b.Fatalf("status %d", res.StatusCode)
				}
			}
		})
	}
}

// boundSession stores a session of alice bound to jkt and returns its
// token, with cnf.jkt.
func (e *env) boundSession(jkt string) string {
	e.t.Helper()
	now := e.clock.Now()
	s := sessionstore.Session{
		ID: "sid-bound", Subject: "alice", Roles: []string{"user"}, JTI: "jti-bound", JKT: jkt,
		IssuedAt: now, CreatedAt: now, RefreshedAt: now,
		IdleExpiresAt: now.Add(e.sessions.IdleTimeout), ExpiresAt: now.Add(e.sessions.AbsoluteTimeout),
	}
	if err := e.store.Create(e.t.Context(), s); err != nil {
		e.t.Fatal(err)
	}
	return e.mint(auth.MintClaims{Subject: s.Subject, SessionID: s.ID, ID: s.JTI, Roles: s.Roles,
		IssuedAt: now, ExpiresAt: now.Add(e.sessions.AccessTTL), JKT: jkt})
}
