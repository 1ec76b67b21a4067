package auth

// The DPoP proof's JWS, read without golang-jwt's parser: a proof is parsed
// on every bound request, and decoding header and claims into maps cost
// more than a hundred allocations a proof. What is read here, and in what
// order errors are reported, is what golang-jwt's ParseWithClaims with
// strict base64url did: the three segments, the header's JSON, the
// claims' JSON, the alg, the signature's base64url, the header's checks
// (checkHeader), and the signature itself, which is checked on every
// proof.
//
// Two things make it cheap:
//   - the checked header is cached by its exact segment (keyCache): a
//     client sends one header, the same jwk, on every proof, so a hit skips
//     its decoding, the jwk's parsing and the thumbprint, which are a pure
//     function of those bytes and the verifier's algorithms;
//   - the claims are scanned in place (scanClaims) for the six members the
//     verifier reads, keeping their JSON text, instead of being decoded
//     into a map of interfaces.

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"hash/maphash"
	"slices"
	"strings"
	"sync/atomic"
)

// strictB64 is golang-jwt's WithStrictDecoding: unpadded base64url with
// zero padding bits, so that each segment has one spelling.
var strictB64 = base64.RawURLEncoding.Strict()

// keyCacheSlots is the number of headers a verifier remembers. A browser
// session sends one header, so this is about how many sessions a replica
// serves at once with every proof a hit; more only cost a header's
// parsing (about 15 µs) when two of them share a slot. An entry is its
// header (a few hundred bytes) and the parsed key.
const keyCacheSlots = 4096

// keyCache maps a proof's header segment to its checked key: a
// direct-mapped table of immutable entries, read and written without
// locks. A collision replaces the slot's entry, so the cache is bounded
// and a flood of headers only makes other clients' proofs miss.
type keyCache struct {
	seed  maphash.Seed
	slots [keyCacheSlots]atomic.Pointer[proofKey]
}

func (c *keyCache) slot(header string) *atomic.Pointer[proofKey] {
	return &c.slots[maphash.String(c.seed, header)%keyCacheSlots]
}

// get returns the key of header, or nil.
func (c *keyCache) get(header string) *proofKey {
	if k := c.slot(header).Load(); k != nil && k.header == header {
		return k
	}
	return nil
}

func (c *keyCache) put(k *proofKey) { c.slot(k.header).Store(k) }

// parse reads raw, a compact JWS of base64url characters and dots, and
// returns its checked key and claims once its signature verifies.
func (v *DPoPVerifier) parse(raw string) (*proofKey, proofClaims, error) {
	var c proofClaims
	hdrSeg, rest, ok1 := strings.Cut(raw, ".")
	claimsSeg, sigSeg, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(sigSeg, ".") {
		return nil, c, dpopInvalid("malformed DPoP proof")
	}
	key := v.keys.get(hdrSeg)
	var header map[string]any
	if key == nil {
		hb, err := strictB64.DecodeString(hdrSeg)
		if err != nil || json.Unmarshal(hb, &header) != nil {
			return nil, c, dpopInvalid("malformed DPoP proof")
		}
	}
	payload, err := strictB64.DecodeString(claimsSeg)
	if err != nil || !scanClaims(payload, &c) {
		return nil, c, dpopInvalid("malformed DPoP proof")
	}
	if key == nil {
		// An alg that is not a string, or names no method we accept (none
		// among them), is the same refusal.
		if alg, _ := header["alg"].(string); !slices.Contains(v.algs, alg) {
			return nil, c, dpopInvalid("unsupported DPoP proof algorithm")
		}
	}
	sig, err := strictB64.DecodeString(sigSeg)
	if err != nil {
		return nil, c, dpopInvalid("malformed DPoP proof")
	}
	if key == nil {
		if key, err = checkHeader(header); err != nil {
			return nil, c, err
		}
		key.header = strings.Clone(hdrSeg) // not the whole proof's memory
		v.keys.put(key)
	}
	if !key.verify(raw[:len(hdrSeg)+1+len(claimsSeg)], sig) {
		return nil, c, dpopInvalid("DPoP proof signature invalid")
	}
	return key, c, nil
}

// verify checks sig over input, as golang-jwt's ES256 and EdDSA methods
// do: for ES256, R || S of 32 bytes each over SHA-256 of input, which
// ecdsa.Verify would turn into big.Ints and then into the ASN.1 that
// VerifyASN1 reads; es256ASN1 writes that ASN.1 directly.
func (k *proofKey) verify(input string, sig []byte) bool {
	switch pub := k.pub.(type) {
	case *ecdsa.PublicKey:
		var buf [72]byte
		der, ok := es256ASN1(buf[:0], sig)
		if !ok {
			return false
		}
		sum := sha256.Sum256([]byte(input))
		return ecdsa.VerifyASN1(pub, sum[:], der)
	case ed25519.PublicKey:
		return len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, []byte(input), sig)
	default:
		return false
	}
}

// es256ASN1 appends to dst the DER of a JWS ES256 signature R || S
// (RFC 7518 section 3.4): SEQUENCE { INTEGER r, INTEGER s }, each integer
// minimal and positive, as ecdsa.Verify encodes them. R or S zero is no
// signature (ecdsa.Verify refuses it before encoding).
func es256ASN1(dst, sig []byte) ([]byte, bool) {
	if len(sig) != 64 {
		return nil, false
	}
	r, s := bytes.TrimLeft(sig[:32], "\x00"), bytes.TrimLeft(sig[32:], "\x00")
	if len(r) == 0 || len(s) == 0 {
		return nil, false
	}
	// An integer is tag, length and big-endian bytes, with a zero byte
	// first where the high bit is set (else it would be negative).
	size := func(n []byte) int { return 2 + len(n) + int(n[0]>>7) }
	integer := func(dst, n []byte) []byte {
		dst = append(dst, 0x02, byte(size(n)-2))
		if n[0] >= 0x80 {
			dst = append(dst, 0)
		}
		return append(dst, n...)
	}
	// At most 70 bytes of content: a short-form length.
	dst = append(dst, 0x30, byte(size(r)+size(s)))
	return integer(integer(dst, r), s), true
}

// proofClaims are the claims the verifier reads, each the JSON text of
// its value as it is in the payload (raw == nil: absent). A member named
// twice takes its last value, as decoding into a map did; names match
// exactly (encoding/json would fold their case into a struct's fields).
type proofClaims struct {
	htm, htu, iat, jti, ath, nonce claimValue
}

// claimValue is a claim's JSON value, unparsed.
type claimValue struct{ raw []byte }

// present reports whether the claim was in the payload (null included).
func (v claimValue) present() bool { return v.raw != nil }

// str returns the value as a string, and whether it is one.
func (v claimValue) str() (string, bool) {
	if len(v.raw) == 0 || v.raw[0] != '"' {
		return "", false
	}
	if inner, ok := plainString(v.raw); ok {
		return string(inner), true
	}
	// Escapes or non-ASCII: encoding/json's own unquoting, as the map had.
	var s string
	if json.Unmarshal(slices.Clone(v.raw), &s) != nil {
		return "", false
	}
	return s, true
}

// isString reports whether the value is the string want, without
// allocating in the common case.
func (v claimValue) isString(want string) bool {
	if inner, ok := plainString(v.raw); ok {
		return string(inner) == want
	}
	s, ok := v.str()
	return ok && s == want
}

// is is isString for want in bytes.
func (v claimValue) is(want []byte) bool {
	if inner, ok := plainString(v.raw); ok {
		return string(inner) == string(want)
	}
	s, ok := v.str()
	return ok && s == string(want)
}

// plainString returns the inside of a JSON string literal that needs no
// unquoting: no escape and only ASCII (valid JSON has no control
// characters in a string).
func plainString(raw []byte) ([]byte, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return nil, false
	}
	inner := raw[1 : len(raw)-1]
	for _, c := range inner {
		if c == '\\' || c >= 0x80 {
			return nil, false
		}
	}
	return inner, true
}

// scanClaims reports whether data is a JSON object, and sets c's members
// from it. It checks the whole of data with json.Valid first, so the scan
// that follows can rely on well-formed JSON.
func scanClaims(data []byte, c *proofClaims) bool {
	if !json.Valid(data) {
		return false
	}
	i := skipSpace(data, 0)
	if data[i] != '{' {
		return false
	}
	if i = skipSpace(data, i+1); data[i] == '}' {
		return true
	}
	for {
		keyEnd := endOfString(data, i)
		name := data[i:keyEnd]
		i = skipSpace(data, skipSpace(data, keyEnd)+1) // past the colon
		end := endOfValue(data, i)
		if m := c.member(name); m != nil {
			m.raw = data[i:end:end]
		}
		if i = skipSpace(data, end); data[i] == '}' {
			return true
		}
		i = skipSpace(data, i+1) // past the comma
	}
}

// member returns the field of the claim named by the JSON string literal
// name, or nil for a claim the verifier does not read.
func (c *proofClaims) member(name []byte) *claimValue {
	inner, ok := plainString(name)
	if !ok {
		// An escaped name ("h\u0074m") is that name, as a map had it.
		var s string
		if json.Unmarshal(slices.Clone(name), &s) != nil {
			return nil
		}
		inner = []byte(s)
	}
	switch string(inner) {
	case "htm":
		return &c.htm
	case "htu":
		return &c.htu
	case "iat":
		return &c.iat
	case "jti":
		return &c.jti
	case "ath":
		return &c.ath
	case "nonce":
		return &c.nonce
	}
	return nil
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// endOfString returns the index after the string literal at data[i].
func endOfString(data []byte, i int) int {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(data)
}

// endOfValue returns the index after the value at data[i].
func endOfValue(data []byte, i int) int {
	switch data[i] {
	case '"':
		return endOfString(data, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '"':
				j = endOfString(data, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
		return len(data)
	default: // a number, true, false or null
		j := i
		for j < len(data) && !strings.ContainsRune(",}] \t\r\n", rune(data[j])) {
			j++
		}
		return j
	}
}
