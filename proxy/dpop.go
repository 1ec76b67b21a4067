package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/spa-gateway/gateway/auth"
)

// DPoP (RFC 9449) at the gateway. auth.DPoPVerifier checks a proof against
// what this file tells it of the request: the method, the URL as the client
// saw it (requestOrigin: trusted proxies' headers only), the token the
// proof travels with (its ath), the key the token is bound to (cnf.jkt),
// and whether a server nonce is required. A login's proof binds the new
// session to its key; every later request presenting a bound token must
// carry a fresh proof of that key, whatever the verifier's cache says of
// the token (a cache hit skips the token's signature, never the proof).

// headerDPoP is the request header of a proof, in its canonical form:
// r.Header["Dpop"] reads it without allocating.
const headerDPoP = "Dpop"

// headerDPoPNonce is the response header of a server nonce (RFC 9449
// section 8).
const headerDPoPNonce = "DPoP-Nonce"

// Errors of DPoP proofs, besides auth's, that reach problemFor.
var (
	// errLoginProof wraps a login's refused proof (auth.ErrDPoPProofInvalid
	// or ErrDPoPNonceRequired): 400 at the token endpoint (RFC 9449 section
	// 5), not the 401 of a protected resource.
	errLoginProof = errors.New("login DPoP proof")
	// errProofUnchecked wraps a failure to check a proof that is not the
	// proof's fault (the replay cache full or unreachable): the request
	// is refused as the gateway's failure, 503, never let through.
	errProofUnchecked = errors.New("DPoP proof not checked")
	// errUnboundDPoP: a token without cnf.jkt sent with the DPoP scheme,
	// refused as RFC 9449 section 7.1 asks.
	errUnboundDPoP = errors.New("DPoP scheme with an unbound token")
	// errBoundBearer: a bound token sent with the Bearer scheme, which
	// would tell an upstream copying the header that it is a bearer token.
	errBoundBearer = errors.New("bound token with the Bearer scheme")
)

// checkBinding holds tok to its binding on r, on every request that
// presents it (proxied, refresh, logout, the own sessions), after its
// signature and claims are verified: a bound token needs a proof of its
// key (cnf.jkt) for this method and URL, which a thief holding only the
// token or the cookie cannot make; a token sent with the DPoP scheme must
// be bound. The proof's ath is checked against a token from the
// Authorization header; one from the cookie is HttpOnly, which the
// client's script cannot read nor hash, and is held to the key alone.
// scheme is how the token was presented (extractToken). An unbound token
// outside the DPoP scheme costs nothing.
func (g *Gateway) checkBinding(w http.ResponseWriter, r *http.Request, tok *auth.Token, fromCookie bool, scheme authScheme) error {
	dpop := scheme == schemeDPoP
	switch {
	case tok.JKT == "" && dpop:
		return errUnboundDPoP
	case tok.JKT == "":
		return nil
	case !fromCookie && !dpop:
		return errBoundBearer
	}
	ath := tok.Raw
	if fromCookie {
		ath = ""
	}
	if _, err := g.verifyProof(r, ath, tok.JKT); err != nil {
		return err
	}
	g.offerNonce(w)
	return nil
}

// prepareDPoP sets the gateway's proof verifier and the algs of its
// challenges.
func (g *Gateway) prepareDPoP() error {
	if g.cfg.DPoPNonce && g.deps.DPoPNonces == nil {
		return errors.New("proxy: DPoPNonce needs Deps.DPoPNonces")
	}
	g.dpop = g.deps.DPoP
	if g.dpop == nil {
		v, err := auth.NewDPoPVerifier(auth.DPoPConfig{Now: g.deps.Now, Nonces: g.deps.DPoPNonces})
		if err != nil {
			return fmt.Errorf("proxy: %w", err)
		}
		g.dpop = v
	}
	g.dpopAlgs = strings.Join(g.dpop.Algorithms(), " ")
	return nil
}

// verifyProof checks r's DPoP proof: htm and htu against r, ath against
// token ("" at login, where no token is presented), and the key against jkt
// ("" accepts any key: the login's, which is about to be bound). Its errors
// match auth's DPoP errors, or wrap errProofUnchecked.
func (g *Gateway) verifyProof(r *http.Request, token, jkt string) (auth.DPoPProof, error) {
	scheme, host := g.requestOrigin(r)
	p, err := g.dpop.Verify(r.Context(), r.Header[headerDPoP], auth.DPoPRequest{
		Method:       r.Method,
		URL:          scheme + "://" + host + r.URL.EscapedPath(),
		AccessToken:  token,
		JKT:          jkt,
		RequireNonce: g.cfg.DPoPNonce,
	})
	if err != nil && auth.DPoPErrorCode(err) == "" {
		return p, fmt.Errorf("%w: %w", errProofUnchecked, err)
	}
	return p, err
}

// loginBinding returns the thumbprint a login's session is bound to: its
// proof's key, or "" for an unbound session (no DPoP header where DPoP is
// allowed, or DPoP off, where the header is not even read). A refused
// proof wraps errLoginProof: a client that sent one asked for a bound
// session, and must not silently get a bearer one.
func (g *Gateway) loginBinding(r *http.Request) (string, error) {
	switch {
	case g.cfg.DPoP == DPoPOff:
		return "", nil
	case len(r.Header[headerDPoP]) == 0 && g.cfg.DPoP != DPoPRequired:
		return "", nil
	}
	p, err := g.verifyProof(r, "", "")
	if err != nil {
		if errors.Is(err, errProofUnchecked) {
			return "", err
		}
		return "", fmt.Errorf("%w: %w", errLoginProof, err)
	}
	return p.JKT, nil
}

// offerNonce sets a fresh DPoP-Nonce on the answer where nonces are
// required, so that the client's next proof can carry it (RFC 9449
// section 8: on refusals that ask for one, and on successful answers).
// DPoPNonces is set wherever DPoPNonce is (prepareDPoP).
func (g *Gateway) offerNonce(w http.ResponseWriter) {
	if g.cfg.DPoPNonce {
		w.Header().Set(headerDPoPNonce, g.deps.DPoPNonces.Nonce())
	}
}
