package main

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/sessionstore"
)

// The "bound" modes (RFC 9449 DPoP): one token bound to the bench's proof
// key (cnf.jkt), reused, sent as "Authorization: DPoP TOKEN" with a new
// proof on every request. Signing a proof costs about as much CPU as the
// gateway's check of it, so the proofs of a run are made before it, from
// the driver, and handed out once each like the fresh tokens; a run that
// uses them up stops early (poolCursor).

// benchHTU is the htu of every proof: the gateway has no trusted proxies
// in the bench's configuration, so it takes the request's URL to be
// http://Host/path, with the Host of proxyLoad and without the query.
const benchHTU = "http://bench.example/api/bench"

// proofKey is the bench client's DPoP key: it signs the proofs of the
// bound modes, and its thumbprint is the bound session's JKT.
type proofKey struct {
	alg    string
	jkt    string
	header string // base64url of the proof's JOSE header, the same for every proof
	sign   func(msg []byte) ([]byte, error)
	jti    atomic.Int64 // proofs made, for unique jti across rounds
	run    string
}

// newProofKey generates a proof key of alg, auth.ES256 (what the browser
// client makes) or auth.EdDSA.
func newProofKey(alg string) (*proofKey, error) {
	k := &proofKey{alg: alg, run: rand.Text()[:8]}
	var thumb, jwk string
	switch alg {
	case auth.ES256:
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		pub, err := priv.PublicKey.Bytes() // 0x04 || X || Y
		if err != nil {
			return nil, err
		}
		x, y := b64(pub[1:33]), b64(pub[33:])
		// RFC 7638: the required members in lexicographic order, no spaces.
		thumb = `{"crv":"P-256","kty":"EC","x":"` + x + `","y":"` + y + `"}`
		jwk = thumb
		k.sign = func(msg []byte) ([]byte, error) {
			sum := sha256.Sum256(msg)
			r, s, err := ecdsa.Sign(rand.Reader, priv, sum[:])
			if err != nil {
				return nil, err
			}
			// JWS ES256 is R || S, 32 bytes each (RFC 7518 section 3.4).
			sig := make([]byte, 64)
			r.FillBytes(sig[:32])
			s.FillBytes(sig[32:])
			return sig, nil
		}
	case auth.EdDSA:
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		thumb = `{"crv":"Ed25519","kty":"OKP","x":"` + b64(pub) + `"}`
		jwk = thumb
		k.sign = func(msg []byte) ([]byte, error) { return ed25519.Sign(priv, msg), nil }
	default:
		return nil, fmt.Errorf("proof algorithm %q: want %s or %s", alg, auth.ES256, auth.EdDSA)
	}
	sum := sha256.Sum256([]byte(thumb))
	k.jkt = b64(sum[:])
	k.header = b64([]byte(`{"alg":"` + alg + `","typ":"dpop+jwt","jwk":` + jwk + `}`))
	return k, nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// proof makes one proof of GET benchHTU issued at iat, with ath the hash of
// token and a jti no other proof of k has.
func (k *proofKey) proof(ath string, iat int64) (string, error) {
	claims := `{"htm":"GET","htu":"` + benchHTU + `","iat":` + strconv.FormatInt(iat, 10) +
		`,"jti":"` + k.run + "-" + strconv.FormatInt(k.jti.Add(1), 10) + `","ath":"` + ath + `"}`
	input := k.header + "." + b64([]byte(claims))
	sig, err := k.sign([]byte(input))
	if err != nil {
		return "", err
	}
	return input + "." + b64(sig), nil
}

// proofs makes n proofs for token issued now, in parallel.
func (k *proofKey) proofs(token string, n int, now time.Time) ([]string, error) {
	ath := auth.AccessTokenHash(token)
	return makeAll(n, func(int) (string, error) { return k.proof(ath, now.Unix()) })
}

// proofsPerRun is how many proofs one gateway run of a bound mode needs at
// o.proofRate requests a second, warm-up included: a run that goes faster
// uses them up and stops early, which its note says.
func (o options) proofsPerRun() int {
	return int(float64(o.proofRate) * (o.warmup + o.duration).Seconds())
}

// proofMaxAge is the gateways' tokens.dpop_proof_max_age when a bound mode
// runs: the default minute, or longer where runs are so long that the
// proofs of a pair, made before it with iat rounded down to the second,
// would not be fresh at the end of its second run. (It used to be kept as
// short as that allowed, 10 s, because a full replay cache refused every
// proof with 503; a full cache now shrinks its window instead, and the
// proofs of the pair running are always the newest it holds.)
func (o options) proofMaxAge() time.Duration {
	age := (2*(o.warmup+o.duration) + 5*time.Second).Round(time.Second)
	return min(max(age, auth.DefaultDPoPMaxAge), 10*time.Minute)
}

// boundSession is the session of the bound tokens, seeded besides the
// o.sessions unbound ones, bound to key jkt.
func (o options) boundSession(now time.Time, jkt string) sessionstore.Session {
	s := benchSession(o.sessions, now)
	s.JKT = jkt
	return s
}

// newBoundLoad is GET /api/bench with a bound token and a new proof on
// every request: the same bytes go to the bare proxy, which ignores them.
// It is proxyLoad with the proofs where the bearer tokens go.
func newBoundLoad(token string, proofs tokenSource) *proxyLoad {
	return &proxyLoad{
		prefix: []byte("GET /api/bench?page=1 HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: gateway-bench\r\n" +
			"Accept: application/json\r\nAuthorization: DPoP " + token + "\r\nDPoP: "),
		suffix: []byte("\r\n\r\n"),
		tokens: proofs,
	}
}
