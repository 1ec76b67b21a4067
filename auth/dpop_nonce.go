package auth

import (
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// DefaultDPoPNoncePeriod is how often DPoPNonces moves to a new nonce when
// DPoPNonceConfig.Period is zero.
const DefaultDPoPNoncePeriod = 5 * time.Minute

// dpopNonceMACBytes is how much of the HMAC a nonce carries: 128 bits
// cannot be guessed.
const dpopNonceMACBytes = 16

// DPoPNonceConfig configures DPoPNonces.
type DPoPNonceConfig struct {
	// Key is the HMAC key nonces are made with, at least MinSecretBytes
	// long. Replicas sharing it accept each other's nonces, with no
	// state shared: a nonce is its period's number and that number's
	// MAC. Never log it.
	Key []byte
	// Period is how long one nonce is handed out; a nonce is accepted
	// during its period and the next, so for between one and two
	// periods. Zero means DefaultDPoPNoncePeriod. Replicas' clocks must
	// agree to well within it.
	Period time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// DPoPNonces makes and checks server nonces (RFC 9449 sections 8 and 9).
// A nonce is unpredictable without the key and current for a bounded
// time, which bounds how long a proof made in advance stays usable
// whatever its iat says. It is safe for concurrent use.
type DPoPNonces struct {
	key    []byte
	period time.Duration
	now    func() time.Time
}

// NewDPoPNonces returns the nonces of cfg.
func NewDPoPNonces(cfg DPoPNonceConfig) (*DPoPNonces, error) {
	var errs []error
	if len(cfg.Key) < MinSecretBytes {
		errs = append(errs, fmt.Errorf("key of %d bytes, need at least %d", len(cfg.Key), MinSecretBytes))
	}
	if cfg.Period < 0 {
		errs = append(errs, fmt.Errorf("negative period %v", cfg.Period))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("dpop nonces: %w", errors.Join(errs...))
	}
	n := &DPoPNonces{key: append([]byte(nil), cfg.Key...), period: cmp.Or(cfg.Period, DefaultDPoPNoncePeriod), now: cfg.Now}
	if n.now == nil {
		n.now = time.Now
	}
	return n, nil
}

// Nonce returns the current nonce, for a DPoP-Nonce header: 32 base64url
// characters, within RFC 9449 section 8.1's NQCHAR.
func (n *DPoPNonces) Nonce() string {
	return n.make(n.epoch(n.now()))
}

func (n *DPoPNonces) epoch(t time.Time) uint64 {
	return uint64(t.UnixNano() / int64(n.period))
}

func (n *DPoPNonces) make(epoch uint64) string {
	var buf [8 + dpopNonceMACBytes]byte
	binary.BigEndian.PutUint64(buf[:8], epoch)
	copy(buf[8:], n.mac(epoch))
	return base64.RawURLEncoding.EncodeToString(buf[:])
}

func (n *DPoPNonces) mac(epoch uint64) []byte {
	m := hmac.New(sha256.New, n.key)
	m.Write([]byte("dpop-nonce\x00"))
	var e [8]byte
	binary.BigEndian.PutUint64(e[:], epoch)
	m.Write(e[:])
	return m.Sum(nil)[:dpopNonceMACBytes]
}

// valid reports whether nonce is the nonce of now's period or of the one
// before.
func (n *DPoPNonces) valid(nonce string, now time.Time) bool {
	var buf [8 + dpopNonceMACBytes]byte
	if len(nonce) != base64.RawURLEncoding.EncodedLen(len(buf)) {
		return false
	}
	if k, err := base64.RawURLEncoding.Strict().Decode(buf[:], []byte(nonce)); err != nil || k != len(buf) {
		return false
	}
	epoch, cur := binary.BigEndian.Uint64(buf[:8]), n.epoch(now)
	if epoch != cur && epoch+1 != cur {
		return false
	}
	return hmac.Equal(buf[8:], n.mac(epoch))
}
