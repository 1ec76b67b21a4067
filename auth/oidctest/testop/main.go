// Command testop is the OpenID Provider of the gateway's OIDC tests: the
// example provider of github.com/zitadel/oidc (a certified library), its
// login page, clients and in-memory storage unchanged, with two test hooks
// the example lacks:
//
//   - SIGNING_KEY_FILE names a PEM RSA private key (PKCS #1 or #8) that
//     signs every token and is published at /keys under KEY_ID, so that a
//     test can sign back-channel logout tokens with the provider's own key
//     (the example provider generates its key in memory and never sends
//     logout tokens);
//   - every ID token carries a "sid" claim, stable across the refreshes of
//     one login and different for each login (the example sets none).
//
// Like the example it reads PORT, REDIRECT_URI (comma separated) and
// USERS_FILE from the environment; its issuer is http://localhost:PORT/.
// It is its own Go module, so that the gateway's go.mod does not carry the
// provider's dependencies: build it with `go install` in this directory.
package main

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"

	"github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/example/server/config"
	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "testop:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg := config.FromEnvVars(&config.Config{Port: "9998"})
	key, err := readKey(os.Getenv("SIGNING_KEY_FILE"))
	if err != nil {
		return err
	}
	kid := os.Getenv("KEY_ID")
	if kid == "" {
		kid = "testop-key"
	}
	issuer := fmt.Sprintf("http://localhost:%s/", cfg.Port)
	storage.RegisterClients(
		storage.NativeClient("native", cfg.RedirectURI...),
		storage.WebClient("web", "secret", cfg.RedirectURI...),
	)
	users := storage.NewUserStore(issuer)
	if cfg.UsersFile != "" {
		if users, err = storage.StoreFromFile(cfg.UsersFile); err != nil {
			return err
		}
	}
	stor := &keyed{Storage: storage.NewStorage(users), key: signingKey{id: kid, key: key}}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	router := exampleop.SetupServer(issuer, stor, logger, false)
	srv := &http.Server{Addr: "127.0.0.1:" + cfg.Port, Handler: router}
	fmt.Fprintln(os.Stderr, "testop: listening", issuer)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// readKey reads the PEM RSA private key at path.
func readKey(path string) (*rsa.PrivateKey, error) {
	if path == "" {
		return nil, errors.New("SIGNING_KEY_FILE is not set")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an RSA key", path)
	}
	return rk, nil
}

// keyed is the example storage with the signing key replaced and a sid in
// every ID token.
type keyed struct {
	*storage.Storage
	key signingKey
}

func (s *keyed) SigningKey(context.Context) (op.SigningKey, error) { return s.key, nil }

func (s *keyed) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *keyed) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{publicKey{s.key}}, nil
}

// SetUserinfoFromRequest adds the sid: a hash of the subject and the login's
// auth time, which an ID token minted at a refresh shares with the login's.
func (s *keyed) SetUserinfoFromRequest(ctx context.Context, info *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, info, req, scopes); err != nil {
		return err
	}
	h := sha256.Sum256([]byte(req.GetSubject() + "\x00" + strconv.FormatInt(req.GetAuthTime().UnixNano(), 10)))
	info.AppendClaims("sid", hex.EncodeToString(h[:12]))
	return nil
}

type signingKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k signingKey) Key() any                                    { return k.key }
func (k signingKey) ID() string                                  { return k.id }

type publicKey struct{ signingKey }

func (k publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return &k.key.PublicKey }
