// Package redisstore is the sessionstore.Store shared by several gateways
// through Redis (standalone, Sentinel or Cluster), with the same semantics
// as the embedded bbolt store.
//
// # Layout
//
// Sessions are spread over 64 buckets by a hash of their ID, and every key
// of a bucket carries the bucket's hash tag, so that in a Cluster a bucket
// is one hash slot and every change is one Lua script on one slot:
//
//	gw:{NN}:s:ID   hash: the session (expires at its deadline + a margin);
//	               besides the session's fields (encode.go), "wid": the
//	               write ID of the latest call that changed it, by which a
//	               call sent again finds its own earlier run, and "ucf":
//	               the current jti when the rotation to it was not
//	               confirmed by Options.MinReplicas replicas, which makes
//	               the previous jti answer "grace" until the next rotation
//	gw:{NN}:dl     sorted set: ID by deadline (unix ms), for Sweep
//	gw:{NN}:own    hash: ID -> subject, to clean the subject index of a
//	               session Redis already deleted at its expiry
//	gw:{NN}:live   set: the IDs of unrevoked sessions, for Count
//	gw:{NN}:subj   sorted set, all scores 0: subject + 0x00 + ID, read in
//	               lexical order by List and RevokeSubject
//	gw:{NN}:ack    string "1", expiring after a minute: written after each
//	               change when Options.MinReplicas is set, so that the WAIT
//	               that follows on the same connection confirms a point at
//	               or after the change, even for a call that wrote nothing
//	               (a retry answered from its earlier run, a grace answer)
//	gw:schema      the layout version
//	gw:replay:HEX  string: an ID a ReplayCache recorded (the DPoP replay
//	               cache: a hash of a proof's key and jti), expiring by itself
//	gw:idp:HEX     string: the subject of an identity provider session
//	               (Store.PutIdPSession; HEX is sessionstore.IdPSessionHash),
//	               expiring by itself
//
// Why buckets: Get, Rotate and Revoke receive only a session ID, so the
// session's keys must be found from the ID alone; and the subject index must
// change in the same atomic step as the session (Create, Revoke, Sweep), so
// it must live in the session's slot. A per-subject key would be in another
// slot; a per-ID slot would scatter a subject's index over the cluster. A
// fixed number of buckets, each holding its own slice of every index, gives
// both: one round trip and one slot for every single-session operation, and
// a bounded fan-out (one pipelined command per bucket) for List,
// RevokeSubject, Count and Sweep. The price is that a Cluster spreads the
// sessions over at most 64 slots, hence 64 masters, which is far more than a
// session store needs; and the bucket count is part of the layout (schema
// version 1): changing it would need a migration.
//
// # Expiry and counting
//
// A session key expires in Redis at its Deadline plus Options.ExpiryMargin,
// so that ended sessions disappear even if no gateway sweeps, while clocks
// that disagree a little never end a session early. Sweep still deletes, by
// the deadline index, every session whose Deadline is at or before the time
// it is given, with its index entries, as the Store contract says; for a
// session Redis already deleted, it removes the index entries left behind.
//
// Count is the sum of the 64 "live" sets' sizes (SCARD is O(1)): the scripts
// add and remove IDs in the same step as they create, revoke and delete
// sessions, so the count is exact without a scan, and a lost reply can
// never make it drift the way an INCR/DECR counter could.
//
// # Durability and eviction
//
// A method that returned nil has been applied by the Redis master; how
// durable that is depends on the server's configuration (appendonly with
// appendfsync everysec loses at most a second of refreshes on a crash, which
// reopens the reuse window for those tokens; appendfsync always loses none).
// With replication, a failover can lose the last writes the replica had not
// received yet, unless Options.MinReplicas makes every change wait for
// replicas (see Store, "Replicated writes"). The server must not evict keys: run it with
// maxmemory-policy noeviction (the default), or an evicted session logs its
// user out and an evicted index breaks Count and List.
package redisstore

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spa-gateway/gateway/sessionstore"
)

// numBuckets is how many buckets (hash tags, Cluster slots) sessions are
// spread over. Part of schemaVersion.
const numBuckets = 64

// schemaVersion is the layout this code reads and writes, kept in the
// "schema" key. Open refuses a prefix holding another.
const schemaVersion = "1"

// Defaults of Options.
const (
	defaultPrefix         = "gw:"
	defaultConnectTimeout = 10 * time.Second
	defaultExpiryMargin   = time.Minute
	defaultWriteTimeout   = 5 * time.Second
	defaultReplyMargin    = 500 * time.Millisecond
)

// Options configures Open. A nil *Options means the zero Options, whose
// fields all mean the defaults.
type Options struct {
	// Password, when not empty, replaces the URL's password for the Redis
	// servers that hold the data (with Sentinel, the master and replicas;
	// the URL's user info then authenticates to the Sentinels). Empty means
	// the URL's, if any.
	Password string

	// RootCAs verifies the server's certificate for a rediss URL; nil means
	// the system's roots. Setting it with a redis (clear text) URL is an
	// error.
	RootCAs *x509.CertPool

	// ConnectTimeout bounds how long Open waits for Redis to answer, retrying,
	// before it fails. Zero or negative means 10s.
	ConnectTimeout time.Duration

	// KeyPrefix starts the name of every key, so that several gateway
	// deployments can share one Redis. Empty means "gw:". It must not hold
	// "{" or "}", which would break the hash tags.
	KeyPrefix string

	// ExpiryMargin is how long Redis keeps a session key after the
	// session's Deadline before deleting it by itself, so that a gateway
	// whose clock is behind Redis's still finds the session it considers
	// live, and an ended session still answers "expired" for a while, as
	// with bbolt until the next sweep. Zero or negative means one minute.
	ExpiryMargin time.Duration

	// WriteTimeout is the deadline of a write whose ctx has none (or a
	// later one): past it, by Redis's clock, the write is refused and never
	// applies. Zero or negative means 5s.
	WriteTimeout time.Duration

	// ReplyMargin is how much longer than a write's deadline the store
	// waits for Redis's answer, sending the write again if the connection
	// fails, so that a write Redis ran just before its deadline is
	// reported as done rather than thrown away. It must exceed the clock
	// skew between the gateway's host and Redis's plus the time an answer
	// takes to arrive (see Store). Zero or negative means 500ms.
	ReplyMargin time.Duration

	// MinReplicas is how many replicas must have every session change
	// before a method reports it done: after each write the store sends
	// WAIT on the same connection (on a Cluster, to the master of the
	// change's slot), and fewer confirmations within ReplicaTimeout make
	// the call fail with an error wrapping sessionstore.ErrUnavailable
	// (see Store, "Replicated writes"). Zero or negative means none: a
	// change is done when the master has it.
	MinReplicas int

	// ReplicaTimeout is how long WAIT waits for MinReplicas; it should be
	// well below WriteTimeout. Zero or negative means one second.
	ReplicaTimeout time.Duration
}

// Store is a sessionstore.Store on Redis. It is safe for concurrent use,
// also from several processes sharing one Redis. The zero value is not
// usable; call Open.
//
// # Writes that time out
//
// A write never applies after its deadline, the nearer of its ctx's and
// Options.WriteTimeout from the call: the deadline travels with the script,
// which refuses to run once Redis's clock (TIME) has reached it. The store
// waits for the answer until the deadline plus Options.ReplyMargin (even if
// ctx is canceled: the answer says what happened), sending the script
// again, with the same write ID, when the connection fails; a script that
// finds its own earlier run answers as that run did. So an answer is
// always the truth, and "late" (an error wrapping
// sessionstore.ErrUnavailable and context.DeadlineExceeded) means nothing
// changed nor will.
//
// What remains: the store gives up without any answer only at deadline +
// ReplyMargin on its own clock. A script Redis ran before the deadline on
// Redis's clock, whose answer had not arrived by then, has applied although
// the call reports ErrUnavailable. That takes a Redis clock behind the
// gateway's by about ReplyMargin or more, or an answer delayed by about
// ReplyMargin or more (a saturated network, a stall of the gateway
// process). Keep the hosts' clocks synchronised (NTP) well within
// ReplyMargin. A Redis clock ahead of the gateway's refuses writes early
// instead: ahead by more than the write timeout, every write is late. A
// clock stepped backwards on the Redis host re-opens the deadline of
// writes still queued. A refused connection ends the wait at once (no
// server listens, so nothing queued survives); a server that crashes after
// running a script and before answering, and restarts with it persisted,
// has applied a write reported as ErrUnavailable, as with any client.
//
// # Replicated writes
//
// With Options.MinReplicas, a change the replicas did not confirm in time
// is reported as ErrUnavailable although the master has applied it: Redis
// cannot take it back, and an undo would be as unconfirmed as the change.
// What the store guarantees instead is that the caller's retry is safe.
// A retried Create or Revoke finds its session or revocation; a Rotate
// marks itself unconfirmed in its own script (so that a failover keeps
// both or neither), and the mark is cleared once the replicas confirm it.
// While marked, the token it rotated away from is answered as within the
// grace, for up to UnconfirmedGrace after the rotation, until the successor
// is itself presented: the client that got the 503 and retries receives
// the same successor, never "reuse". (A mark written by a second script
// after the failure was lost when that script reached a master the
// failover had just replaced, and the client's retry was taken for
// reuse.) A rotation
// lost with a master that died before any replica had it was never
// answered with success, so the client still holds the token the new
// master knows as current.
type Store struct {
	client       redis.UniversalClient
	cluster      bool
	prefix       string
	margin       time.Duration
	writeTimeout time.Duration
	replyMargin  time.Duration
	replicas     replication
	buckets      [numBuckets]bucket
	closed       atomic.Bool
}

// bucket holds the names of one bucket's fixed keys.
type bucket struct {
	tag                              string // prefix + "{NN}:"
	deadlines, owners, live, subject string
}

var _ sessionstore.Store = (*Store)(nil)

// errClosed is what the methods of a closed Store wrap.
var errClosed = errors.New("store is closed")

// Open connects to the Redis at rawURL and returns the store, retrying until
// Redis answers or opts.ConnectTimeout (10s by default) has passed, or ctx
// ends. It checks the key layout's version and loads the scripts. Errors
// wrap sessionstore.ErrUnavailable when Redis could not be reached, and
// show the URL with its password redacted.
//
// The URL forms (go-redis's, with the mode in the scheme):
//
//	redis://[user:password@]host:6379[/db][?option=value...]
//	rediss://...                                          TLS
//	redis+sentinel://[user:password@]sentinel:26379[/db]?master_name=NAME&addr=sentinel2:26379
//	redis+cluster://[user:password@]node:6379?addr=node2:6379&addr=node3:6379
//
// and rediss+sentinel, rediss+cluster. With Sentinel, the user info is for
// the Sentinels, and the data nodes' password comes from opts.Password.
// Options are go-redis's URL query options (dial_timeout, read_timeout,
// max_retries, pool_size, ...); without them connections time out after 2s.
func Open(ctx context.Context, rawURL string, opts *Options) (*Store, error) {
	if opts == nil {
		opts = &Options{}
	}
	shown := redact(rawURL)
	prefix := cmp.Or(opts.KeyPrefix, defaultPrefix)
	if strings.ContainsAny(prefix, "{}") {
		return nil, fmt.Errorf("redisstore: key prefix %q holds { or }", prefix)
	}
	conf, err := parseURL(rawURL, opts)
	if err != nil {
		return nil, fmt.Errorf("redisstore: %s: %w", shown, err)
	}
	s := &Store{
		client:       conf.newClient(),
		cluster:      conf.cluster != nil,
		prefix:       prefix,
		margin:       opts.ExpiryMargin,
		writeTimeout: opts.WriteTimeout,
		replyMargin:  opts.ReplyMargin,
	}
	if s.margin <= 0 {
		s.margin = defaultExpiryMargin
	}
	if s.writeTimeout <= 0 {
		s.writeTimeout = defaultWriteTimeout
	}
	if s.replyMargin <= 0 {
		s.replyMargin = defaultReplyMargin
	}
	s.replicas = newReplication(s.client, opts)
	for i := range s.buckets {
		tag := fmt.Sprintf("%s{%02d}:", prefix, i)
		s.buckets[i] = bucket{tag: tag, deadlines: tag + "dl", owners: tag + "own", live: tag + "live", subject: tag + "subj"}
	}

	timeout := opts.ConnectTimeout
	if timeout <= 0 {
		timeout = defaultConnectTimeout
	}
	if err := s.waitForRedis(ctx, timeout); err != nil {
		_ = s.client.Close()
		return nil, fmt.Errorf("redisstore: connect to %s: %w", shown, err)
	}
	if err := s.checkSchema(ctx); err != nil {
		_ = s.client.Close()
		return nil, fmt.Errorf("redisstore: %s: %w", shown, err)
	}
	for _, sc := range scripts {
		if err := sc.Load(ctx, s.client).Err(); err != nil {
			_ = s.client.Close()
			return nil, fmt.Errorf("redisstore: %s: load scripts: %w", shown, wrapErr("open", err))
		}
	}
	return s, nil
}

// waitForRedis pings until Redis answers, for at most timeout. A refused
// password fails at once: waiting would not help.
func (s *Store) waitForRedis(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	wait := 100 * time.Millisecond
	var last error // the most telling failure: a refused connection rather than the final timeout
	for {
		err := s.client.Ping(ctx).Err()
		switch {
		case err == nil:
			return nil
		case redis.IsAuthError(err), redis.IsPermissionError(err):
			return fmt.Errorf("%w: authentication refused: %w", sessionstore.ErrUnavailable, err)
		case last == nil || ctx.Err() == nil:
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: no answer within %v: %w", sessionstore.ErrUnavailable, timeout, last)
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// checkSchema writes the layout version under a new prefix and refuses a
// prefix that holds another.
func (s *Store) checkSchema(ctx context.Context) error {
	key := s.prefix + "schema"
	if err := s.client.SetNX(ctx, key, schemaVersion, 0).Err(); err != nil {
		return wrapErr("open", err)
	}
	got, err := s.client.Get(ctx, key).Result()
	if err != nil {
		return wrapErr("open", err)
	}
	if got != schemaVersion {
		return fmt.Errorf("key %s holds layout version %q, this gateway knows only %q: upgrade the gateway, or use another Redis database", key, got, schemaVersion)
	}
	return nil
}

// Close closes the connections. Calls after Close return errors wrapping
// sessionstore.ErrUnavailable; closing again returns nil.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if err := s.client.Close(); err != nil {
		return fmt.Errorf("redisstore: close: %w", err)
	}
	return nil
}

// Ping reports whether Redis answers, for a readiness probe. Its error wraps
// sessionstore.ErrUnavailable.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.usable(ctx, "ping"); err != nil {
		return err
	}
	return wrapErr("ping", s.client.Ping(ctx).Err())
}

// bucketOf is the bucket of a session ID: FNV-1a, part of the layout.
func (s *Store) bucketOf(id string) *bucket {
	h := fnv.New32a()
	h.Write([]byte(id))
	return &s.buckets[h.Sum32()%numBuckets]
}

func (s *Store) sessionKey(b *bucket, id string) string { return b.tag + "s:" + id }

// usable returns the error of a call on a closed store or with a done
// context, before anything is sent.
func (s *Store) usable(ctx context.Context, op string) error {
	if s.closed.Load() {
		return wrapErr(op, errClosed)
	}
	if err := ctx.Err(); err != nil {
		return wrapErr(op, err)
	}
	return nil
}

// wrapErr is sessionstore.WrapUnavailable for this backend (its failures: a
// connection refused or lost, a timeout, a server error, a closed store, a
// damaged value, a done context). go-redis's errors name addresses, never
// passwords.
func wrapErr(op string, err error) error { return sessionstore.WrapUnavailable("redisstore", op, err) }
