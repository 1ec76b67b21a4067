package auth

import (
	"crypto/hkdf"
	"crypto/sha256"
)

// DeriveSecret returns a 32-byte secret for purpose, derived from the
// key's private part with HKDF-SHA256 (RFC 5869): the same on every replica
// that holds the same signing key, and revealing nothing of the key itself.
// It is for secrets that replicas must share without another file, such as
// the key of the DPoP server nonces. purpose must name the use, so that two
// uses never share a secret. It is an error for a verification-only key.
func (k *Key) DeriveSecret(purpose string) ([]byte, error) {
	ikm := k.secret
	if ikm == nil {
		der, err := k.privateDER()
		if err != nil {
			return nil, err
		}
		ikm = der
	}
	return hkdf.Key(sha256.New, ikm, nil, "spa-gateway "+purpose, 32)
}
