package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// jwksCache holds a JSON Web Key Set, decoded by parse into K, and
// decides when to fetch it again: an external issuer's (jwksLookup, K a
// kidKeys) and the OpenID Provider's (providerKeys, K its key list). Its
// rules are about surviving both key rotation and attack:
//
//   - A lookup of a known kid reads the set through an atomic pointer: no
//     lock, no fetch.
//   - An unknown kid may be a new key (rotation) or a forgery. It triggers a
//     fetch, but at most one at a time (the others wait for it) and at most
//     one per minInterval, whatever its result: a flood of random kids
//     costs the issuer one request per interval, and the rest are refused
//     at once.
//   - The set is fetched again once it is refresh old (sooner if the
//     answer's Cache-Control max-age says so, but never sooner than
//     minInterval), by the one request that finds it due; the others keep
//     using the current set meanwhile.
//   - A failed fetch (the issuer down, an error status, a body too large or
//     not a key set, no usable key) keeps the last good set, which is used
//     until maxStale after its fetch: the issuer being down does not fail
//     tokens signed by keys it published. Past that, or before any fetch
//     succeeded, lookups fail with ErrKeysUnavailable.
type jwksCache[K any] struct {
	issuer      string
	url         string // the configured JWKS URL; "" means discovery
	client      *http.Client
	now         func() time.Time
	minInterval time.Duration
	refresh     time.Duration
	maxStale    time.Duration
	timeout     time.Duration
	maxBytes    int64
	onFetch     func(error)
	// parse decodes a fetched body; its error keeps the set there was.
	parse func(body []byte) (K, error)

	set atomic.Pointer[jwksSnapshot[K]] // nil until a fetch succeeded

	mu          sync.Mutex
	flight      chan struct{} // closed when the fetch in progress ends; nil if none
	lastAttempt time.Time
	discovered  string // the jwks_uri discovery found
}

// jwksSnapshot is one fetched key set; it is never modified once stored.
type jwksSnapshot[K any] struct {
	keys      K
	fetched   time.Time
	refreshAt time.Time
}

// kidKeys is an external issuer's set: its keys by kid (parseKeySet).
type kidKeys = map[string]jwksKey

// jwksKey is a verification key of a set: its public key and its JWK's
// "alg" ("" if it has none).
type jwksKey struct {
	key any // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
	alg string
}

// jwksLookup returns the key kid of c's set, fetching the set as the rules
// of jwksCache say. Its errors are ErrKeysUnavailable and an invalid
// "unknown key id".
func jwksLookup(ctx context.Context, c *jwksCache[kidKeys], kid string) (jwksKey, error) {
	s := c.usable()
	if s != nil {
		k, ok := s.keys[kid]
		if ok && c.now().Before(s.refreshAt) {
			return k, nil
		}
		if ok {
			// Due: this request fetches (unless another is, or one just
			// did), and reads the set again, so that a key the issuer
			// removed stops verifying with the fetch that saw it go.
			c.fetch(ctx, false)
			if s = c.usable(); s == nil {
				return jwksKey{}, ErrKeysUnavailable
			}
			if k, ok = s.keys[kid]; ok {
				return k, nil
			}
			return jwksKey{}, invalid("unknown key id")
		}
	}
	c.fetch(ctx, true)
	s = c.usable()
	if s == nil {
		return jwksKey{}, ErrKeysUnavailable
	}
	k, ok := s.keys[kid]
	if !ok {
		return jwksKey{}, invalid("unknown key id")
	}
	return k, nil
}

// usable returns the current set, or nil if there is none or it is more
// than maxStale old.
func (c *jwksCache[K]) usable() *jwksSnapshot[K] {
	s := c.set.Load()
	if s == nil || c.now().Sub(s.fetched) > c.maxStale {
		return nil
	}
	return s
}

// fetch fetches the set unless a fetch is in progress (then it waits for
// that one if wait says so) or the last one started less than minInterval
// ago. The fetch runs on ctx's values but not its cancellation: other
// requests may be waiting for it.
func (c *jwksCache[K]) fetch(ctx context.Context, wait bool) {
	c.mu.Lock()
	if ch := c.flight; ch != nil {
		c.mu.Unlock()
		if wait {
			select {
			case <-ch:
			case <-ctx.Done():
			}
		}
		return
	}
	now := c.now()
	if !c.lastAttempt.IsZero() && now.Sub(c.lastAttempt) < c.minInterval {
		c.mu.Unlock()
		return
	}
	c.lastAttempt = now
	ch := make(chan struct{})
	c.flight = ch
	c.mu.Unlock()

	err := c.fetchSet(context.WithoutCancel(ctx))
	if c.onFetch != nil {
		c.onFetch(err)
	}
	c.mu.Lock()
	c.flight = nil
	c.mu.Unlock()
	close(ch)
}

// fetchSet fetches the set (discovering its URL first if need be) and
// stores it, or returns why not, keeping the set there was.
func (c *jwksCache[K]) fetchSet(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	u, err := c.jwksURL(ctx)
	if err != nil {
		return err
	}
	body, header, err := c.get(ctx, u)
	if err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	keys, err := c.parse(body)
	if err != nil {
		return fmt.Errorf("jwks %s: %w", u, err)
	}
	now := c.now()
	refresh := c.refresh
	if age, ok := maxAge(header.Get("Cache-Control")); ok && age < refresh {
		refresh = max(age, c.minInterval)
	}
	c.set.Store(&jwksSnapshot[K]{keys: keys, fetched: now, refreshAt: now.Add(refresh)})
	return nil
}

// jwksURL returns the configured URL, or the jwks_uri of the issuer's
// discovery document (OpenID Connect Discovery 1.0 section 4), whose
// issuer must be the configured one exactly.
func (c *jwksCache[K]) jwksURL(ctx context.Context) (string, error) {
	if c.url != "" {
		return c.url, nil
	}
	c.mu.Lock()
	u := c.discovered
	c.mu.Unlock()
	if u != "" {
		return u, nil
	}
	where := strings.TrimSuffix(c.issuer, "/") + "/.well-known/openid-configuration"
	body, _, err := c.get(ctx, where)
	if err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", fmt.Errorf("discovery %s: %w", where, err)
	}
	if doc.Issuer != c.issuer {
		return "", fmt.Errorf("discovery %s: issuer %q is not %q", where, doc.Issuer, c.issuer)
	}
	if err := CheckFetchURL(doc.JWKSURI); err != nil {
		return "", fmt.Errorf("discovery %s: jwks_uri: %w", where, err)
	}
	c.mu.Lock()
	c.discovered = doc.JWKSURI
	c.mu.Unlock()
	return doc.JWKSURI, nil
}

// get fetches u, expecting 200 and a body of at most maxBytes.
func (c *jwksCache[K]) get(ctx context.Context, u string) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("%s: status %d", u, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", u, err)
	}
	if int64(len(body)) > c.maxBytes {
		return nil, nil, fmt.Errorf("%s: body larger than %d bytes", u, c.maxBytes)
	}
	return body, resp.Header, nil
}

// errNoUsableKey is a set that holds no key a token could be verified with.
var errNoUsableKey = errors.New("no usable signing key")

// parseKeySet decodes a JWK Set (RFC 7517 section 5) with go-jose and keeps
// its asymmetric signing keys that have a kid: a token must name its key,
// and a symmetric key ("oct") is never a verification key here, so that a
// public value can never serve as an HMAC secret. Private members, if an
// issuer publishes them by mistake, are dropped. The first key of a kid
// wins.
func parseKeySet(body []byte) (kidKeys, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, err
	}
	keys := make(kidKeys, len(set.Keys))
	for _, k := range set.Keys {
		if k.KeyID == "" || (k.Use != "" && k.Use != "sig") {
			continue
		}
		if _, dup := keys[k.KeyID]; dup {
			continue
		}
		if !k.IsPublic() {
			k = k.Public()
		}
		switch k.Key.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
			keys[k.KeyID] = jwksKey{key: k.Key, alg: k.Algorithm}
		}
	}
	if len(keys) == 0 {
		return nil, errNoUsableKey
	}
	return keys, nil
}

// maxAge reads the max-age directive of a Cache-Control header.
func maxAge(cc string) (time.Duration, bool) {
	for d := range strings.SplitSeq(cc, ",") {
		name, value, ok := strings.Cut(strings.TrimSpace(d), "=")
		if !ok || !strings.EqualFold(name, "max-age") {
			continue
		}
		n, err := strconv.ParseInt(strings.Trim(value, `"`), 10, 64)
		if err != nil || n < 0 {
			return 0, false
		}
		return time.Duration(min(n, int64(365*24*3600))) * time.Second, true
	}
	return 0, false
}

// CheckFetchURL reports whether s is a URL the gateway may fetch keys or a
// discovery document from: absolute https, or http to a loopback address
// (a sidecar, a test). Plain http elsewhere would let anyone on the path
// substitute the keys.
func CheckFetchURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Host == "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("%q is not an absolute URL without user info or fragment", s)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
			return nil
		}
		return fmt.Errorf("%q: http is allowed only to a loopback address; use https", s)
	default:
		return fmt.Errorf("%q: scheme must be https", s)
	}
}
