package auth

// DPoP proof validation (RFC 9449). This file is the verifier and its
// errors; dpop_jws.go parses the proof, dpop_key.go reads its jwk, dpop_htu.go compares htu,
// dpop_replay.go is the jti replay cache and dpop_nonce.go the server
// nonces.
//
// What DPoPVerifier.Verify checks, in this order (RFC 9449 section 4.3):
//
//  1. exactly one proof was presented, at most MaxDPoPProofBytes long,
//     holding only base64url characters and dots;
//  2. it is a well-formed JWS compact serialisation (strict base64url,
//     JSON header and claims: dpop_jws.go) without a crit header;
//  3. typ is "dpop+jwt" (RFC 7515 section 4.1.9: media types compare
//     case-insensitively, and "application/" may be omitted, so
//     "application/dpop+jwt" is the same type);
//  4. alg is one of the configured asymmetric algorithms (ES256, EdDSA,
//     Ed25519);
//     none and HMAC cannot be configured at all;
//  5. jwk is a public key of the type alg needs (EC P-256 for ES256, OKP
//     Ed25519 for EdDSA and Ed25519) without any private member;
//  6. the signature verifies with that jwk;
//  7. htm equals the request's method and htu its URI (dpop_htu.go);
//  8. iat is within [now-MaxAge, now+MaxFutureSkew];
//  9. jti is present;
//  10. ath is base64url(SHA-256(access token)) when an access token is
//     presented;
//  11. the key's thumbprint is DPoPRequest.JKT when that is set;
//  12. nonce is a current server nonce when DPoPRequest.RequireNonce
//     (use_dpop_nonce otherwise);
//  13. last, only for a proof that passed everything else: (key, jti) was
//     not seen within the window, so a captured proof sent first to
//     another URL or method cannot burn the victim's jti.
//
// What it leaves to the caller:
//   - building DPoPRequest.URL as the client saw it (scheme and host from
//     trusted proxies' headers only, never from an untrusted client);
//   - comparing the returned DPoPProof.JKT with the session's binding (the
//     token's cnf.jkt) — or passing it as DPoPRequest.JKT, which is
//     better: it is checked before the replay cache is written, so proofs
//     of strangers' keys never fill the cache;
//   - handing out DPoPNonces.Nonce in a DPoP-Nonce header, and mapping the
//     errors to HTTP (RFC 9449 section 7.1: 401 with
//     WWW-Authenticate: DPoP error="invalid_dpop_proof" or
//     "use_dpop_nonce" and algs from DPoPVerifier.Algorithms; 400 at a
//     token endpoint such as the login).

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MaxDPoPProofBytes is the longest DPoP proof Verify will parse; longer
// ones are refused before any decoding. A proof with a P-256 jwk, a
// 43-character jti and ath, a nonce and a long htu is under 1 KiB.
const MaxDPoPProofBytes = 4 << 10

// maxJTIBytes bounds the jti claim; RFC 9449 asks for 96 bits of
// randomness, which any sane encoding fits in far less.
const maxJTIBytes = 256

// Defaults of DPoPConfig.
const (
	// DefaultDPoPMaxAge is how old a proof's iat may be.
	DefaultDPoPMaxAge = time.Minute
	// DefaultDPoPMaxFutureSkew is how far in the future a proof's iat may
	// be, for clients whose clock runs ahead.
	DefaultDPoPMaxFutureSkew = 5 * time.Second
)

// DPoP errors. Each is the parent of the errors Verify returns for it, with
// the RFC 9449 section 7.1 error code in its comment; match them with
// errors.Is, and give the client DescribeDPoP's description.
var (
	// ErrDPoPProofInvalid is error code "invalid_dpop_proof": the proof is
	// missing, malformed, replayed or does not match the request, the
	// token or the key.
	ErrDPoPProofInvalid = errors.New("invalid DPoP proof")
	// ErrDPoPNonceRequired is error code "use_dpop_nonce": a nonce is
	// required and the proof has none, or one that is not current. The
	// answer must carry a fresh DPoP-Nonce.
	ErrDPoPNonceRequired = errors.New("DPoP nonce required")
)

// RFC 9449 error codes, for the error parameter of WWW-Authenticate and
// the JSON body.
const (
	DPoPErrorInvalidProof = "invalid_dpop_proof"
	DPoPErrorUseNonce     = "use_dpop_nonce"
)

// dpopError is a proof refusal: its kind (ErrDPoPProofInvalid or
// ErrDPoPNonceRequired) and a fixed description, never built from the
// proof's contents, safe to send to the client.
type dpopError struct {
	kind error
	desc string
}

func dpopInvalid(desc string) *dpopError { return &dpopError{kind: ErrDPoPProofInvalid, desc: desc} }

func (e *dpopError) Error() string { return e.kind.Error() + ": " + e.desc }

func (e *dpopError) Unwrap() error { return e.kind }

// DPoPErrorCode returns the RFC 9449 error code of an error of Verify:
// DPoPErrorUseNonce, DPoPErrorInvalidProof, or "" for nil and for errors
// that are not the proof's fault (the replay cache's).
func DPoPErrorCode(err error) string {
	switch {
	case errors.Is(err, ErrDPoPNonceRequired):
		return DPoPErrorUseNonce
	case errors.Is(err, ErrDPoPProofInvalid):
		return DPoPErrorInvalidProof
	default:
		return ""
	}
}

// DescribeDPoP returns the error_description for an error of Verify ("htu
// mismatch", "DPoP proof replayed", ...). It never contains the proof's
// contents, and only characters RFC 6750 section 3 allows. For nil it
// returns "", for any other error "invalid DPoP proof".
func DescribeDPoP(err error) string {
	var de *dpopError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &de):
		return sanitizeDescription(de.desc)
	default:
		return "invalid DPoP proof"
	}
}

// DPoPAlgorithms returns the proof algorithms a DPoPVerifier can accept,
// ES256, EdDSA and Ed25519, in a new slice each call (so that no caller can widen
// what others accept). RS256 and HS256 are never among them: RSA keys
// make proofs and thumbprints large for no gain to a browser client, and
// an HMAC "proof" would prove nothing.
func DPoPAlgorithms() []string { return []string{ES256, EdDSA, Ed25519} }

// Ed25519 is the fully specified name (RFC 9864) of EdDSA over Ed25519,
// which newer DPoP clients put in a proof's alg (panva's dpop 2.x does).
// It is accepted for proofs only, with an OKP Ed25519 jwk, exactly as
// EdDSA; the gateway's own tokens keep EdDSA.
const Ed25519 = "Ed25519"

// DPoPConfig configures a DPoPVerifier. The zero DPoPConfig is usable: it
// accepts ES256, EdDSA and Ed25519 proofs up to a minute old, remembers their jti in
// memory, and issues no nonces.
type DPoPConfig struct {
	// Algorithms are the proof algorithms accepted, each one of
	// DPoPAlgorithms. Nil means all of DPoPAlgorithms.
	Algorithms []string
	// MaxAge is how old a proof's iat may be; zero means
	// DefaultDPoPMaxAge. It is also how long a jti is remembered.
	MaxAge time.Duration
	// MaxFutureSkew is how far ahead of Now a proof's iat may be; zero
	// means DefaultDPoPMaxFutureSkew, negative means none.
	MaxFutureSkew time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Replay remembers the (key, jti) pairs of accepted proofs. Nil means
	// a MemoryDPoPReplay of DefaultDPoPReplayEntries on Now: enough for
	// one replica, not for several behind one load balancer, where a
	// shared cache is needed for a replay at another replica to be
	// refused.
	Replay DPoPReplayCache
	// Nonces checks the nonce of requests with DPoPRequest.RequireNonce;
	// nil means such requests are always refused with
	// ErrDPoPNonceRequired, as no nonce can be current.
	Nonces *DPoPNonces
}

// DPoPRequest is what a proof must match: the request it came with.
type DPoPRequest struct {
	// Method is the request's method, which htm must equal exactly.
	Method string
	// URL is the request's target URI as the client saw it:
	// scheme://host[:port]/path. The caller builds it, taking scheme and
	// host from forwarding headers only when they come from a trusted
	// proxy. A query or fragment is ignored.
	URL string
	// AccessToken is the access token presented with the proof, if any;
	// when not empty, the proof's ath must be its hash.
	AccessToken string
	// JKT, when not empty, is the thumbprint the proof's key must have:
	// the session's binding (cnf.jkt).
	JKT string
	// RequireNonce requires the proof to carry a current nonce of
	// DPoPConfig.Nonces.
	RequireNonce bool
}

// DPoPProof is an accepted proof.
type DPoPProof struct {
	// JKT is the RFC 7638 thumbprint (base64url SHA-256) of the proof's
	// public key, the value of cnf.jkt (RFC 9449 section 6.1).
	JKT string
	// Algorithm is the proof's alg.
	Algorithm string
	// ID is the proof's jti.
	ID string
	// IssuedAt is the proof's iat.
	IssuedAt time.Time
}

// DPoPVerifier checks DPoP proofs. It is safe for concurrent use.
type DPoPVerifier struct {
	algs       []string
	maxAge     time.Duration
	futureSkew time.Duration
	now        func() time.Time
	replay     DPoPReplayCache
	nonces     *DPoPNonces
	keys       *keyCache // by header segment, for this verifier's algs
}

// NewDPoPVerifier returns a verifier for cfg, or an error listing every
// problem of cfg.
func NewDPoPVerifier(cfg DPoPConfig) (*DPoPVerifier, error) {
	var errs []error
	supported := DPoPAlgorithms()
	algs := cfg.Algorithms
	if algs == nil {
		algs = supported
	}
	if len(algs) == 0 {
		errs = append(errs, errors.New("no algorithms"))
	}
	for _, alg := range algs {
		if !slices.Contains(supported, alg) {
			errs = append(errs, fmt.Errorf("unsupported proof algorithm %q (want %s)", alg, strings.Join(supported, " or ")))
		}
	}
	if cfg.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("negative max age %v", cfg.MaxAge))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("dpop verifier: %w", errors.Join(errs...))
	}
	v := &DPoPVerifier{
		algs:       slices.Clone(algs),
		maxAge:     cmp.Or(cfg.MaxAge, DefaultDPoPMaxAge),
		futureSkew: max(cmp.Or(cfg.MaxFutureSkew, DefaultDPoPMaxFutureSkew), 0),
		now:        cfg.Now,
		replay:     cfg.Replay,
		nonces:     cfg.Nonces,
		keys:       &keyCache{seed: maphash.MakeSeed()},
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.replay == nil {
		v.replay = NewMemoryDPoPReplay(DefaultDPoPReplayEntries, v.now)
	}
	return v, nil
}

// Algorithms returns the accepted proof algorithms, for the algs parameter
// of WWW-Authenticate (RFC 9449 section 7.1). The slice is a copy.
func (v *DPoPVerifier) Algorithms() []string { return slices.Clone(v.algs) }

// Verify checks the DPoP proofs presented with req — proofs holds the
// values of every DPoP header field of the request, and exactly one is
// required — and returns the proof. Errors match ErrDPoPNonceRequired or
// ErrDPoPProofInvalid when the proof is at fault; an error of the replay
// cache (unreachable) is returned wrapped and matches neither, and means
// the proof could not be checked: the caller refuses the request as a
// server-side failure (fail closed). A proof older than what a full memory
// cache still holds (ErrDPoPProofTooOld) is refused as "DPoP proof too
// old", the proof's fault.
func (v *DPoPVerifier) Verify(ctx context.Context, proofs []string, req DPoPRequest) (DPoPProof, error) {
	switch {
	case len(proofs) == 0:
		return DPoPProof{}, dpopInvalid("missing DPoP proof")
	case len(proofs) > 1:
		return DPoPProof{}, dpopInvalid("more than one DPoP proof")
	}
	raw := proofs[0]
	if len(raw) > MaxDPoPProofBytes {
		return DPoPProof{}, dpopInvalid("DPoP proof too large")
	}
	// base64url and dots only: this also refuses several proofs folded
	// into one field with commas, and Go's base64 decoder skipping CR LF.
	if raw == "" || !isCompactJWS(raw) {
		return DPoPProof{}, dpopInvalid("malformed DPoP proof")
	}
	now := v.now()
	key, claims, err := v.parse(raw)
	if err != nil {
		return DPoPProof{}, err
	}
	proof := DPoPProof{JKT: key.jkt, Algorithm: key.alg}
	if proof.ID, proof.IssuedAt, err = v.checkClaims(&claims, req, now); err != nil {
		return DPoPProof{}, err
	}
	if req.JKT != "" && req.JKT != proof.JKT {
		return DPoPProof{}, dpopInvalid("DPoP key mismatch")
	}
	if req.RequireNonce {
		if err := v.checkNonce(&claims, now); err != nil {
			return DPoPProof{}, err
		}
	}
	until := proof.IssuedAt.Add(v.maxAge)
	seen, err := v.replay.Seen(ctx, replayID(proof.JKT, proof.ID), until)
	switch {
	case errors.Is(err, ErrDPoPProofTooOld):
		return DPoPProof{}, dpopInvalid("DPoP proof too old")
	case err != nil:
		return DPoPProof{}, fmt.Errorf("dpop replay cache: %w", err)
	case seen:
		return DPoPProof{}, dpopInvalid("DPoP proof replayed")
	case v.now().After(until):
		// The cache lets an entry go once its until has passed on its own
		// clock, read after ours: a proof checked on the last instant of
		// its window may meet its own entry already gone. Past until now,
		// it is too old, whatever the cache said.
		return DPoPProof{}, dpopInvalid("DPoP proof too old")
	}
	return proof, nil
}

// checkClaims checks htm, htu, iat, jti and ath, and returns jti and iat.
func (v *DPoPVerifier) checkClaims(c *proofClaims, req DPoPRequest, now time.Time) (string, time.Time, error) {
	if !c.htm.isString(req.Method) {
		return "", time.Time{}, dpopInvalid("htm mismatch")
	}
	htu, ok := c.htu.str()
	if !ok || !htuMatches(htu, req.URL) {
		return "", time.Time{}, dpopInvalid("htu mismatch")
	}
	iat, err := proofIssuedAt(c.iat)
	switch {
	case err != nil:
		return "", time.Time{}, err
	case iat.Before(now.Add(-v.maxAge)):
		return "", time.Time{}, dpopInvalid("DPoP proof too old")
	case iat.After(now.Add(v.futureSkew)):
		return "", time.Time{}, dpopInvalid("DPoP proof issued in the future")
	}
	jti, ok := c.jti.str()
	if !ok || jti == "" || len(jti) > maxJTIBytes {
		return "", time.Time{}, dpopInvalid("missing or invalid jti claim")
	}
	if req.AccessToken != "" {
		if ath := accessTokenHash(req.AccessToken); !c.ath.is(ath[:]) {
			return "", time.Time{}, dpopInvalid("ath mismatch")
		}
	}
	return jti, iat, nil
}

// proofIssuedAt reads iat, a NumericDate (RFC 7519 section 2: seconds,
// possibly fractional), as numericDate does the map's.
func proofIssuedAt(v claimValue) (time.Time, error) {
	if !v.present() {
		return time.Time{}, dpopInvalid("missing iat claim")
	}
	if c := v.raw[0]; c != '-' && (c < '0' || c > '9') {
		return time.Time{}, dpopInvalid("invalid iat claim")
	}
	f, err := strconv.ParseFloat(string(v.raw), 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, dpopInvalid("invalid iat claim")
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
}

// checkNonce checks the proof's nonce claim against v.nonces.
func (v *DPoPVerifier) checkNonce(c *proofClaims, now time.Time) error {
	nonce, ok := c.nonce.str()
	if !ok || nonce == "" {
		return &dpopError{kind: ErrDPoPNonceRequired, desc: "DPoP nonce required"}
	}
	if v.nonces == nil || !v.nonces.valid(nonce, now) {
		return &dpopError{kind: ErrDPoPNonceRequired, desc: "DPoP nonce stale"}
	}
	return nil
}

// AccessTokenHash is the ath of a proof presented with token (RFC 9449
// section 4.2): base64url of the SHA-256 of its ASCII text.
func AccessTokenHash(token string) string {
	ath := accessTokenHash(token)
	return string(ath[:])
}

// accessTokenHash is AccessTokenHash in an array, which comparing with a
// claim does not allocate.
func accessTokenHash(token string) [43]byte {
	sum := sha256.Sum256([]byte(token))
	var ath [43]byte // base64url of 32 bytes, unpadded
	base64.RawURLEncoding.Encode(ath[:], sum[:])
	return ath
}

// replayID is the replay cache's key of a proof: a hash of its key's
// thumbprint and its jti, so that two clients choosing the same jti do not
// collide, nobody without the key can make a proof of theirs look
// replayed, and every entry has the same small size whatever the jti.
func replayID(jkt, jti string) string {
	h := sha256.New()
	h.Write([]byte(jkt))
	h.Write([]byte{0})
	h.Write([]byte(jti))
	return string(h.Sum(nil))
}

// isDPoPType reports whether typ names the media type
// application/dpop+jwt (RFC 7515 section 4.1.9).
func isDPoPType(typ string) bool {
	typ = strings.ToLower(typ)
	return typ == "dpop+jwt" || typ == "application/dpop+jwt"
}
