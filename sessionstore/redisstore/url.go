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
	var c redisConfig
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return c, errors.New("is not a URL such as redis://host:6379/0")
	}
	base, mode, _ := strings.Cut(scheme, "+")
	if (base != "redis" && base != "rediss") || (mode != "" && mode != "sentinel" && mode != "cluster") {
		return c, fmt.Errorf("scheme %q is not one of %s", scheme, strings.Join(Schemes, ", "))
	}
	plain := base + "://" + rest
	u, err := url.Parse(plain)
	if err != nil {
		return c, errors.New("is not a URL such as redis://host:6379/0")
	}
	if u.Host == "" {
		return c, errors.New("has no host: write redis://host:6379/0")
	}

	var (
		password *string
		tlsConf  **tls.Config
		dial     *time.Duration
		read     *time.Duration
		write    *time.Duration
		ctxTO    *bool
		dials    *int
	)
	switch mode {
	case "":
		o, err := redis.ParseURL(plain)
		if err != nil {
			return c, err
		}
		c.simple = o
		password, tlsConf, dial, read, write, ctxTO, dials = &o.Password, &o.TLSConfig, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.ContextTimeoutEnabled, &o.DialerRetries
	case "sentinel":
		o, err := redis.ParseFailoverURL(plain)
		if err != nil {
			return c, err
		}
		if o.MasterName == "" {
			return c, errors.New("names no master: add ?master_name=NAME (and &addr=host:port for each further Sentinel)")
		}
		c.failover = o
		password, tlsConf, dial, read, write, ctxTO, dials = &o.Password, &o.TLSConfig, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.ContextTimeoutEnabled, &o.DialerRetries
	case "cluster":
		if p := strings.Trim(u.Path, "/"); p != "" && p != "0" {
			return c, errors.New("selects a database, but Redis Cluster has only database 0")
		}
		u.Path = ""
		o, err := redis.ParseClusterURL(u.String())
		if err != nil {
			return c, err
		}
		c.cluster = o
		password, tlsConf, dial, read, write, ctxTO, dials = &o.Password, &o.TLSConfig, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.ContextTimeoutEnabled, &o.DialerRetries
	}

	if opts.Password != "" {
		*password = opts.Password
	}
	if opts.RootCAs != nil {
		if *tlsConf == nil {
			return c, fmt.Errorf("a CA for TLS needs a rediss scheme, not %q", scheme)
		}
		(*tlsConf).RootCAs = opts.RootCAs
	}
	if *tlsConf != nil && (*tlsConf).MinVersion < tls.VersionTLS12 {
		(*tlsConf).MinVersion = tls.VersionTLS12
	}
	if *dial == 0 {
		*dial = defaultDialTimeout
	}
	if *read == 0 {
		*read = defaultIOTimeout
	}
	if *write == 0 {
		*write = defaultIOTimeout
	}
	// One dial per attempt: go-redis retries the command itself (max_retries,
	// 3 by default), and five dials per attempt would hold every request
	// for seconds before its 503 while Redis is down.
	if *dials == 0 {
		*dials = 1
	}
	// A request's context (a client that went away, the readiness probe's
	// timeout) bounds its Redis call too.
	*ctxTO = true
	return c, nil
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
