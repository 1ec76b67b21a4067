package auth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// errUnsealed means a sealed value did not open: forged, truncated, sealed
// for another purpose, or with another key.
var errUnsealed = errors.New("sealed value does not open")

// sealer seals small values with AES-256-GCM, the purpose as additional
// data, so that a value sealed for one purpose never opens as another.
// Sealed values are unpadded base64url: safe in a cookie.
type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (*sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("sealing key is %d bytes, want 32", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead}, nil
}

func (s *sealer) seal(purpose string, plain []byte) (string, error) {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, plain, []byte(purpose))), nil
}

func (s *sealer) open(purpose, sealed string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(sealed)
	if err != nil || len(b) < s.aead.NonceSize() {
		return nil, errUnsealed
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, b[:n], b[n:], []byte(purpose))
	if err != nil {
		return nil, errUnsealed
	}
	return plain, nil
}

func (s *sealer) sealJSON(purpose string, v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return s.seal(purpose, b)
}

func (s *sealer) openJSON(purpose, sealed string, v any) error {
	b, err := s.open(purpose, sealed)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// randomText is 128 random bits or more, as text (crypto/rand.Text).
func randomText() string { return rand.Text() }
