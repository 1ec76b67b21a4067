package auth

import (
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
)

// DeriveSecret returns a 32-byte secret for purpose, derived from the
// key's private part with HKDF-SHA256 (RFC 5869): the same on every replica
// that holds the same signing key, and revealing nothing of the key itself.
// It is for secrets that replicas must share without another file, such as
// the key of the DPoP server nonces. purpose must name the use, so that two
// uses never share a secret. It is an error for a verification-only key.
func (k *Key) DeriveSecret(purpose string) ([]byte, error) {
	var ikm []byte
	switch {
	case k.secret != nil:
		ikm = k.secret
	case k.private != nil:
		der, err := x509.MarshalPKCS8PrivateKey(k.private)
		if err != nil {
			return nil, fmt.Errorf("derive from %s key: %w", k.alg, err)
		}
		ikm = der
	default:
		return nil, fmt.Errorf("key %s has no private part", k.kid)
	}
	return hkdf.Key(sha256.New, ikm, nil, "spa-gateway "+purpose, 32)
}
