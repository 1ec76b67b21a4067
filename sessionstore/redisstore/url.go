package redisstore

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Schemes are the URL schemes Open accepts: standalone, Sentinel and
// Cluster, each in clear or over TLS ("rediss").
var Schemes = []string{"redis", "rediss", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster"}

// Client timeouts, where the URL sets none: short, so that an unreachable
// Redis turns into a 503 within seconds rather than hanging requests.
const (
	defaultDialTimeout = 2 * time.Second
	defaultIOTimeout   = 2 * time.Second
)

// CheckURL reports whether Open accepts rawURL (see Open for the forms),
// without connecting. Its error never holds the URL's password.
func CheckURL(rawURL string) error {
	_, err := parseURL(rawURL, &Options{})
	return err
}

// redisConfig is a parsed URL: exactly one of the three is set.
type redisConfig struct {
	simple   *redis.Options
	failover *redis.FailoverOptions
	cluster  *redis.ClusterOptions
}

func (c redisConfig) newClient() redis.UniversalClient {
	switch {
	case c.failover != nil:
		return redis.NewFailoverClient(c.failover)
	case c.cluster != nil:
		return redis.NewClusterClient(c.cluster)
	}
	return redis.NewClient(c.simple)
}

// parseURL parses rawURL with go-redis's parser for its mode and applies
// opts. Errors never repeat the URL (url.Parse's would, password included).
func parseURL(rawURL string, opts *Options) (redisConfig, error) {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return redisConfig{}, errors.New("is not a URL such as redis://host:6379/0")
	}
	base, mode, _ := strings.Cut(scheme, "+")
	if (base != "redis" && base != "rediss") || (mode != "" && mode != "sentinel" && mode != "cluster") {
		return redisConfig{}, fmt.Errorf("scheme %q is not one of %s", scheme, strings.Join(Schemes, ", "))
	}
	plain := base + "://" + rest
	u, err := url.Parse(plain)
	if err != nil {
		return redisConfig{}, errors.New("is not a URL such as redis://host:6379/0")
	}
	if u.Host == "" {
		return redisConfig{}, errors.New("has no host: write redis://host:6379/0")
	}
	c, f, err := parseMode(mode, plain, u)
	if err != nil {
		return c, err
	}
	return c, f.apply(opts, scheme)
}

// clientFields point at the fields of one of go-redis's three option types
// that parseURL sets whatever the mode: each type has its own copy.
type clientFields struct {
	password          *string
	tls               **tls.Config
	dial, read, write *time.Duration
	contextTimeout    *bool
	dialerRetries     *int
}

// parseMode parses plain (the URL with the mode taken out of its scheme; u
// is it parsed) with go-redis's parser for mode: "" (standalone),
// "sentinel" or "cluster".
func parseMode(mode, plain string, u *url.URL) (redisConfig, clientFields, error) {
	var c redisConfig
	switch mode {
	case "sentinel":
		o, err := redis.ParseFailoverURL(plain)
		if err != nil {
			return c, clientFields{}, err
		}
		if o.MasterName == "" {
			return c, clientFields{}, errors.New("names no master: add ?master_name=NAME (and &addr=host:port for each further Sentinel)")
		}
		c.failover = o
		return c, clientFields{&o.Password, &o.TLSConfig, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.ContextTimeoutEnabled, &o.DialerRetries}, nil
	case "cluster":
		if p := strings.Trim(u.Path, "/"); p != "" && p != "0" {
			return c, clientFields{}, errors.New("selects a database, but Redis Cluster has only database 0")
		}
		u.Path = ""
		o, err := redis.ParseClusterURL(u.String())
		if err != nil {
			return c, clientFields{}, err
		}
		c.cluster = o
		return c, clientFields{&o.Password, &o.TLSConfig, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.ContextTimeoutEnabled, &o.DialerRetries}, nil
	}
	o, err := redis.ParseURL(plain)
	if err != nil {
		return c, clientFields{}, err
	}
	c.simple = o
	return c, clientFields{&o.Password, &o.TLSConfig, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.ContextTimeoutEnabled, &o.DialerRetries}, nil
}

// apply sets opts' password and CA, and the gateway's defaults where the
// URL set nothing. scheme is the URL's, for the error of a CA given to a
// client without TLS.
func (f clientFields) apply(opts *Options, scheme string) error {
	if opts.Password != "" {
		*f.password = opts.Password
	}
	if opts.RootCAs != nil {
		if *f.tls == nil {
			return fmt.Errorf("a CA for TLS needs a rediss scheme, not %q", scheme)
		}
		(*f.tls).RootCAs = opts.RootCAs
	}
	if *f.tls != nil && (*f.tls).MinVersion < tls.VersionTLS12 {
		(*f.tls).MinVersion = tls.VersionTLS12
	}
	if *f.dial == 0 {
		*f.dial = defaultDialTimeout
	}
	if *f.read == 0 {
		*f.read = defaultIOTimeout
	}
	if *f.write == 0 {
		*f.write = defaultIOTimeout
	}
	// WAIT blocks for up to the replica timeout before it answers: the
	// connection must not time out first, or every unconfirmed write
	// would look like a lost connection and be sent again.
	if t := replicaTimeout(opts) + time.Second; opts.MinReplicas > 0 && *f.read < t {
		*f.read = t
	}
	// One dial per attempt: go-redis retries the command itself (max_retries,
	// 3 by default), and five dials per attempt would hold every request
	// for seconds before its 503 while Redis is down.
	if *f.dialerRetries == 0 {
		*f.dialerRetries = 1
	}
	// A request's context (a client that went away, the readiness probe's
	// timeout) bounds its Redis call too.
	*f.contextTimeout = true
	return nil
}

// redact returns rawURL with its password, in the user info or in a query
// parameter, replaced by "xxxxx", for error messages. A user info without a
// password is replaced whole, in case it is a password written in the wrong
// place.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "the configured URL"
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		} else {
			u.User = url.User("xxxxx")
		}
	}
	q := u.Query()
	for k := range q {
		if strings.Contains(strings.ToLower(k), "password") {
			q.Set(k, "xxxxx")
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// CertPool parses the PEM certificates of a CA file's content, for
// Options.RootCAs. It fails when there is none.
func CertPool(pem []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no PEM certificate found")
	}
	return pool, nil
}
