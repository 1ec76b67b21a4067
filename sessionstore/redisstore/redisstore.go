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
//	gw:{NN}:s:ID   hash: the session (expires at its deadline + a margin)
//	gw:{NN}:dl     sorted set: ID by deadline (unix ms), for Sweep
//	gw:{NN}:own    hash: ID -> subject, to clean the subject index of a
//	               session Redis already deleted at its expiry
//	gw:{NN}:live   set: the IDs of unrevoked sessions, for Count
//	gw:{NN}:subj   sorted set, all scores 0: subject + 0x00 + ID, read in
//	               lexical order by List and RevokeSubject
//	gw:schema      the layout version
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
// received yet. The server must not evict keys: run it with
// maxmemory-policy noeviction (the default), or an evicted session logs its
// user out and an evicted index breaks Count and List.
package redisstore

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"slices"
	"strconv"
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

// sweepBatch bounds how many sessions one Sweep script deletes, so that a
// large backlog never blocks Redis for long.
const sweepBatch = 500

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
type Store struct {
	client       redis.UniversalClient
	cluster      bool
	prefix       string
	margin       time.Duration
	writeTimeout time.Duration
	replyMargin  time.Duration
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

// Create stores a new session. It returns sessionstore.ErrExists if s.ID is
// taken, and refuses an empty ID or a subject holding a 0x00 byte (which
// would make the subject index ambiguous).
func (s *Store) Create(ctx context.Context, sess sessionstore.Session) error {
	if err := s.usable(ctx, "create"); err != nil {
		return err
	}
	if sess.ID == "" {
		return errors.New("redisstore: create: empty session ID")
	}
	if strings.IndexByte(sess.Subject, 0) >= 0 {
		return errors.New("redisstore: create: subject holds a NUL byte")
	}
	fields, err := encodeSession(&sess)
	if err != nil {
		return fmt.Errorf("redisstore: create: %w", err)
	}
	b := s.bucketOf(sess.ID)
	revoked := "0"
	if sess.Revoked() {
		revoked = "1"
	}
	args := append([]any{
		sess.ID, sess.Subject, millis(sess.Deadline()), millis(sess.Deadline().Add(s.margin)), revoked,
	}, fields...)
	reply, err := s.write(ctx, scriptCreate,
		[]string{s.sessionKey(b, sess.ID), b.deadlines, b.owners, b.live, b.subject}, args...)
	if err != nil {
		return wrapErr("create", err)
	}
	switch reply {
	case "ok":
		return nil
	case "exists":
		return sessionstore.ErrExists
	case "late":
		return wrapErr("create", errLate)
	}
	return wrapErr("create", fmt.Errorf("unexpected script answer %v", reply))
}

// CreateLimited stores a new session and revokes the subject's least
// recently refreshed live sessions beyond limit. See sessionstore.Store.
//
// On a single server (standalone or Sentinel) it is one script, atomic: it
// reads the subject's sessions from the 64 buckets' subject index, revokes
// and creates. A Cluster cannot run one script over the 64 buckets' slots:
// there it creates the session, then revokes the excess session by session
// (createConverge), so that concurrent logins of one user may leave more
// than limit live for the moment between, and a gateway that dies in it
// leaves them until the user's next login.
func (s *Store) CreateLimited(ctx context.Context, sess sessionstore.Session, limit int) ([]string, error) {
	if limit <= 0 {
		return nil, s.Create(ctx, sess)
	}
	if err := s.usable(ctx, "create"); err != nil {
		return nil, err
	}
	if sess.ID == "" {
		return nil, errors.New("redisstore: create: empty session ID")
	}
	if strings.IndexByte(sess.Subject, 0) >= 0 {
		return nil, errors.New("redisstore: create: subject holds a NUL byte")
	}
	if s.cluster {
		return s.createConverge(ctx, sess, limit)
	}
	fields, err := encodeSession(&sess)
	if err != nil {
		return nil, fmt.Errorf("redisstore: create: %w", err)
	}
	revoked := "0"
	if sess.Revoked() {
		revoked = "1"
	}
	b := s.bucketOf(sess.ID)
	keys := make([]string, 0, 5+2*numBuckets)
	keys = append(keys, s.sessionKey(b, sess.ID), b.deadlines, b.owners, b.live, b.subject)
	for i := range s.buckets {
		keys = append(keys, s.buckets[i].subject)
	}
	for i := range s.buckets {
		keys = append(keys, s.buckets[i].live)
	}
	args := make([]any, 0, 8+len(fields))
	args = append(args, sess.ID, sess.Subject, millis(sess.Deadline()), millis(sess.Deadline().Add(s.margin)), revoked,
		limit, millis(sess.CreatedAt), sessionstore.ReasonSessionLimit)
	args = append(args, fields...)
	reply, err := s.write(ctx, scriptCreateLimited, keys, args...)
	if err != nil {
		return nil, wrapErr("create", err)
	}
	list, ok := reply.([]any)
	if !ok || len(list) == 0 {
		return nil, wrapErr("create", fmt.Errorf("unexpected script answer %v", reply))
	}
	switch list[0] {
	case "exists":
		return nil, sessionstore.ErrExists
	case "late":
		return nil, wrapErr("create", errLate)
	case "ok":
		var out []string
		for _, v := range list[1:] {
			id, ok := v.(string)
			if !ok {
				return nil, wrapErr("create", fmt.Errorf("unexpected script answer %v", reply))
			}
			out = append(out, id)
		}
		return out, nil
	}
	return nil, wrapErr("create", fmt.Errorf("unexpected script answer %v", reply))
}

// createConverge is CreateLimited on a Cluster: Create, then List, then
// Revoke of the least recently refreshed live sessions beyond limit. The
// order is the same for every caller, so that concurrent logins of one
// user revoke the same sessions and, once all have returned, leave at most
// limit live.
func (s *Store) createConverge(ctx context.Context, sess sessionstore.Session, limit int) ([]string, error) {
	if err := s.Create(ctx, sess); err != nil {
		return nil, err
	}
	// The session is stored: from here on the call reports success, as
	// the store contract wants of a change that applied, even if the
	// caller's ctx ends. The revocations get a deadline of their own; one
	// that fails leaves the excess to the user's next login.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.writeTimeout)
	defer cancel()
	live, err := s.List(ctx, sess.Subject, sess.CreatedAt)
	if err != nil {
		return nil, nil
	}
	var revoked []string
	if excess := len(live) - limit; excess > 0 {
		slices.SortFunc(live, sessionstore.CompareRefreshed)
		for _, o := range live[:excess] {
			ok, err := s.Revoke(ctx, o.ID, sessionstore.ReasonSessionLimit, sess.CreatedAt)
			switch {
			case errors.Is(err, sessionstore.ErrNotFound):
			case err != nil:
				return revoked, nil
			case ok:
				revoked = append(revoked, o.ID)
			}
		}
	}
	return revoked, nil
}

// Get returns the session with the given ID, revoked or not, or
// sessionstore.ErrNotFound: one HGETALL, one round trip.
func (s *Store) Get(ctx context.Context, id string) (sessionstore.Session, error) {
	if err := s.usable(ctx, "get"); err != nil {
		return sessionstore.Session{}, err
	}
	if id == "" {
		return sessionstore.Session{}, sessionstore.ErrNotFound
	}
	h, err := s.client.HGetAll(ctx, s.sessionKey(s.bucketOf(id), id)).Result()
	if err != nil {
		return sessionstore.Session{}, wrapErr("get", err)
	}
	sess, err := decodeSession(id, h)
	return sess, wrapErr("get", err)
}

// Rotate applies the refresh rules, and rotates, in one script. See
// sessionstore.Store. It is safe to retry: a call sent again after a lost
// reply finds its own rotation and answers it again.
func (s *Store) Rotate(ctx context.Context, req sessionstore.RotateRequest) (sessionstore.RotateResult, error) {
	if err := s.usable(ctx, "rotate"); err != nil {
		return sessionstore.RotateResult{}, err
	}
	if req.SessionID == "" {
		return sessionstore.RotateResult{}, sessionstore.ErrNotFound
	}
	b := s.bucketOf(req.SessionID)
	grace := strconv.FormatFloat(float64(req.Grace)/float64(time.Millisecond), 'f', -1, 64)
	res, err := s.write(ctx, scriptRotate,
		[]string{s.sessionKey(b, req.SessionID), b.deadlines, b.live},
		req.SessionID, req.JTI, req.NewJTI, millis(req.Now), millis(req.Now.Add(req.IdleTimeout)),
		grace, strconv.FormatInt(s.margin.Milliseconds(), 10), sessionstore.ReasonReuseDetected,
	)
	if err != nil {
		return sessionstore.RotateResult{}, wrapErr("rotate", err)
	}
	reply, ok := res.([]any)
	if !ok {
		return sessionstore.RotateResult{}, wrapErr("rotate", fmt.Errorf("unexpected script answer %v", res))
	}
	code, sess, err := decodeReply(req.SessionID, reply)
	if err != nil {
		return sessionstore.RotateResult{}, wrapErr("rotate", err)
	}
	switch code {
	case "ok":
		return sessionstore.RotateResult{Session: sess}, nil
	case "grace":
		return sessionstore.RotateResult{Session: sess, Grace: true}, nil
	case "notfound":
		return sessionstore.RotateResult{}, sessionstore.ErrNotFound
	case "revoked":
		return sessionstore.RotateResult{}, sessionstore.ErrRevoked
	case "expired":
		return sessionstore.RotateResult{}, sessionstore.ErrExpired
	case "reuse":
		return sessionstore.RotateResult{}, sessionstore.ErrReuseDetected
	case "late":
		return sessionstore.RotateResult{}, wrapErr("rotate", errLate)
	}
	return sessionstore.RotateResult{}, wrapErr("rotate", fmt.Errorf("unexpected script answer %q", code))
}

// Revoke revokes one session in one script. See sessionstore.Store.
func (s *Store) Revoke(ctx context.Context, id, reason string, now time.Time) (bool, error) {
	if err := s.usable(ctx, "revoke"); err != nil {
		return false, err
	}
	if id == "" {
		return false, sessionstore.ErrNotFound
	}
	b := s.bucketOf(id)
	res, err := s.write(ctx, scriptRevoke, []string{s.sessionKey(b, id), b.live}, id, millis(now), reason)
	if err != nil {
		return false, wrapErr("revoke", err)
	}
	switch res {
	case "ok":
		return true, nil
	case "unchanged":
		return false, nil
	case "notfound":
		return false, sessionstore.ErrNotFound
	case "late":
		return false, wrapErr("revoke", errLate)
	}
	return false, wrapErr("revoke", fmt.Errorf("unexpected script answer %q", res))
}

// RevokeSubject revokes every unrevoked session of subject: one pipelined
// read of the 64 buckets' subject index, then one script per bucket that
// holds any of the subject's sessions. Each bucket's revocations are atomic;
// a session created while it runs may stay unrevoked, as if created just
// after.
func (s *Store) RevokeSubject(ctx context.Context, subject, reason string, now time.Time) (int, error) {
	if err := s.usable(ctx, "revoke subject"); err != nil {
		return 0, err
	}
	// One deadline and write ID for every bucket's script.
	w := s.newWrite(ctx)
	defer w.cancel()
	ids, err := s.subjectIDs(w.ctx, subject)
	if err != nil {
		return 0, wrapErr("revoke subject", err)
	}
	n := 0
	for i, list := range ids {
		if len(list) == 0 {
			continue
		}
		b := &s.buckets[i]
		keys := make([]string, 0, 1+len(list))
		args := make([]any, 0, 3+len(list))
		keys = append(keys, b.live)
		args = append(args, subject, millis(now), reason)
		for _, id := range list {
			keys = append(keys, s.sessionKey(b, id))
			args = append(args, id)
		}
		reply, err := w.run(scriptRevokeSubject, keys, args...)
		k, ok := reply.(int64)
		switch {
		case err == nil && !ok:
			err = fmt.Errorf("unexpected script answer %v", reply)
		case err == nil && k < 0:
			err = errLate
		}
		if err != nil {
			// The buckets done so far stay revoked; the caller retries.
			return n, wrapErr("revoke subject", err)
		}
		n += int(k)
	}
	return n, nil
}

// List returns the subject's live sessions at now, oldest (by CreatedAt)
// first: one pipelined read of the 64 buckets' subject index, then one of
// the sessions found. See sessionstore.Store.
func (s *Store) List(ctx context.Context, subject string, now time.Time) ([]sessionstore.Session, error) {
	if err := s.usable(ctx, "list"); err != nil {
		return nil, err
	}
	ids, err := s.subjectIDs(ctx, subject)
	if err != nil {
		return nil, wrapErr("list", err)
	}
	type read struct {
		id  string
		cmd *redis.MapStringStringCmd
	}
	var reads []read
	pipe := s.client.Pipeline()
	for i, list := range ids {
		for _, id := range list {
			reads = append(reads, read{id, pipe.HGetAll(ctx, s.sessionKey(&s.buckets[i], id))})
		}
	}
	live := make([]sessionstore.Session, 0, len(reads))
	if len(reads) == 0 {
		return live, nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, wrapErr("list", err)
	}
	for _, r := range reads {
		sess, err := decodeSession(r.id, r.cmd.Val())
		switch {
		case errors.Is(err, sessionstore.ErrNotFound):
			continue // Redis deleted it at its expiry; Sweep cleans the index.
		case err != nil:
			return nil, wrapErr("list", err)
		}
		if sess.Live(now) {
			live = append(live, sess)
		}
	}
	slices.SortFunc(live, func(a, b sessionstore.Session) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	return live, nil
}

// subjectIDs reads the subject's session IDs in every bucket, in one
// pipeline.
func (s *Store) subjectIDs(ctx context.Context, subject string) ([numBuckets][]string, error) {
	var ids [numBuckets][]string
	pipe := s.client.Pipeline()
	cmds := make([]*redis.StringSliceCmd, numBuckets)
	first := subject + "\x00"
	for i := range s.buckets {
		cmds[i] = pipe.ZRangeByLex(ctx, s.buckets[i].subject, &redis.ZRangeBy{Min: "[" + first, Max: "(" + subject + "\x01"})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return ids, err
	}
	for i, cmd := range cmds {
		for _, m := range cmd.Val() {
			ids[i] = append(ids[i], strings.TrimPrefix(m, first))
		}
	}
	return ids, nil
}

// Count returns the number of stored unrevoked sessions: the sum of the 64
// buckets' "live" set sizes, read in one pipeline of O(1) commands. See
// sessionstore.Store.
func (s *Store) Count(ctx context.Context) (int, error) {
	if err := s.usable(ctx, "count"); err != nil {
		return 0, err
	}
	pipe := s.client.Pipeline()
	cmds := make([]*redis.IntCmd, numBuckets)
	for i := range s.buckets {
		cmds[i] = pipe.SCard(ctx, s.buckets[i].live)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, wrapErr("count", err)
	}
	n := 0
	for _, cmd := range cmds {
		n += int(cmd.Val())
	}
	return n, nil
}

// Sweep deletes the sessions whose Deadline is at or before now, with their
// index entries: a pipelined read of each bucket's deadline index up to now,
// then one script per bucket with due sessions (at most 500 per script, so
// that a backlog never blocks Redis for long). It costs O(64 + deleted).
// Several gateways may sweep at once: each session is deleted, and counted,
// once.
func (s *Store) Sweep(ctx context.Context, now time.Time) (int, error) {
	if err := s.usable(ctx, "sweep"); err != nil {
		return 0, err
	}
	limit := millis(now)
	pending := make([]int, numBuckets)
	for i := range pending {
		pending[i] = i
	}
	n := 0
	for len(pending) > 0 {
		pipe := s.client.Pipeline()
		cmds := make([]*redis.StringSliceCmd, len(pending))
		for j, i := range pending {
			cmds[j] = pipe.ZRangeByScore(ctx, s.buckets[i].deadlines, &redis.ZRangeBy{Min: "-inf", Max: limit, Count: sweepBatch})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return n, wrapErr("sweep", err)
		}
		var more []int
		for j, i := range pending {
			due := cmds[j].Val()
			if len(due) == 0 {
				continue
			}
			b := &s.buckets[i]
			keys := make([]string, 0, 4+len(due))
			args := make([]any, 0, 1+len(due))
			keys = append(keys, b.deadlines, b.owners, b.live, b.subject)
			args = append(args, limit)
			for _, id := range due {
				keys = append(keys, s.sessionKey(b, id))
				args = append(args, id)
			}
			k, err := scriptSweep.Run(ctx, s.client, keys, args...).Int()
			if err != nil {
				return n, wrapErr("sweep", err)
			}
			n += k
			if len(due) == sweepBatch {
				more = append(more, i)
			}
		}
		pending = more
	}
	return n, nil
}

// errLate is the error of a write that Redis refused because its deadline
// had passed by Redis's clock: nothing changed. It wraps
// context.DeadlineExceeded, as the caller's ctx would say.
var errLate = fmt.Errorf("write refused by Redis past its deadline: %w", context.DeadlineExceeded)

// write runs one write script as one call: see newWrite and writeCall.run.
func (s *Store) write(ctx context.Context, sc *redis.Script, keys []string, args ...any) (any, error) {
	w := s.newWrite(ctx)
	defer w.cancel()
	return w.run(sc, keys, args...)
}

// writeCall is one Store call that changes sessions: its deadline (the
// nearer of ctx's and writeTimeout from now), its write ID, and the
// context its commands run under, which ends replyMargin after the
// deadline and not before, whatever happens to the caller's ctx.
type writeCall struct {
	s        *Store
	ctx      context.Context
	cancel   context.CancelFunc
	id       string
	deadline string // unix ms
}

func (s *Store) newWrite(ctx context.Context) *writeCall {
	deadline := time.Now().Add(s.writeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	wctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline.Add(s.replyMargin))
	return &writeCall{s: s, ctx: wctx, cancel: cancel, id: rand.Text(), deadline: millis(deadline)}
}

// run runs sc with the write ID and deadline appended to args, and returns
// Redis's answer. When no answer comes (a timeout, a lost connection), it
// sends the script again until one does or the reply margin is spent: each
// run finds the earlier runs' work by the write ID, so the answer that
// arrives is the truth about all of them. A Redis error answer (the script
// ran and failed, or the server refused it) is returned as is, and so is a
// refused connection: no server listens, so an earlier run still queued
// died with the one that did (a server that crashed after running a script
// and before answering is what this cannot tell, as any client).
func (w *writeCall) run(sc *redis.Script, keys []string, args ...any) (any, error) {
	args = append(args, w.id, w.deadline)
	wait := 10 * time.Millisecond
	for {
		reply, err := sc.Run(w.ctx, w.s.client, keys, args...).Result()
		var (
			rerr redis.Error
			oerr *net.OpError
		)
		if err == nil || errors.As(err, &rerr) || w.s.closed.Load() ||
			(errors.As(err, &oerr) && oerr.Op == "dial" && !oerr.Timeout()) {
			return reply, err
		}
		select {
		case <-w.ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
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
