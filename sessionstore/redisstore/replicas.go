package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// defaultReplicaTimeout is Options.ReplicaTimeout's default.
const defaultReplicaTimeout = time.Second

// errNotReplicated is the error of a write the master applied but fewer
// than Options.MinReplicas replicas confirmed within the replica timeout.
var errNotReplicated = errors.New("write not confirmed by enough replicas in time")

// errRedirected wraps a Cluster redirection or a failover in progress
// (MOVED, ASK, TRYAGAIN, CLUSTERDOWN, READONLY) that a write sent to a
// slot's master met: the cluster layout is reloaded and writeCall.run
// sends the write again, which its write ID makes safe. It is no
// redis.Error, so that run retries it rather than returning it.
type errRedirected struct{ msg string }

func (e errRedirected) Error() string { return "redirected: " + e.msg }

// replication runs the write scripts, with WAIT after each when replicas
// must confirm it. The zero value (minimum 0) runs them as redis.Script
// does, through the client's own routing.
type replication struct {
	client  redis.UniversalClient
	min     int
	timeout time.Duration
}

func replicaTimeout(opts *Options) time.Duration {
	if opts.ReplicaTimeout <= 0 {
		return defaultReplicaTimeout
	}
	return opts.ReplicaTimeout
}

func newReplication(c redis.UniversalClient, opts *Options) replication {
	return replication{client: c, min: max(opts.MinReplicas, 0), timeout: replicaTimeout(opts)}
}

// run runs sc and, when replicas must confirm, then a write of the
// bucket's "ack" key and WAIT, pipelined on one connection to the master
// of keys[0]'s slot. WAIT confirms the connection's latest write: the ack
// write makes that the script's change, or, for a script that answered an
// earlier run's work without writing (a retry, a grace re-issue), a point
// after that work in the replication stream.
func (r replication) run(ctx context.Context, sc *redis.Script, keys []string, args []any) (any, error) {
	if r.min == 0 {
		return sc.Run(ctx, r.client, keys, args...).Result()
	}
	node, err := r.master(ctx, keys[0])
	if err != nil {
		return nil, err
	}
	reply, err := r.pipeline(ctx, node, sc, keys, args, false)
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		// A master promoted by a failover has not loaded the scripts.
		reply, err = r.pipeline(ctx, node, sc, keys, args, true)
	}
	if err == nil {
		return reply, nil
	}
	var rerr redis.Error
	if c, ok := r.client.(*redis.ClusterClient); ok && (isRedirect(err) || !errors.As(err, &rerr)) {
		// The node was not the slot's master, or did not answer (dead,
		// unreachable, stalled): go-redis's routing reloads the slots
		// on such errors, but only for the commands it routes itself; a
		// node-pinned pipeline must ask, or a dead master stays the
		// slot's until the next periodic reload, a minute later. The
		// reload runs in the background, so that the caller's retry
		// (writeCall.run's, or the client's after a 503) finds the new
		// master; this call still ends by its deadline.
		c.ReloadState(ctx)
	}
	if isRedirect(err) {
		return nil, errRedirected{err.Error()}
	}
	return nil, err
}

// pipeline sends EVALSHA (or EVAL, with the source), SET of the ack key
// and WAIT in one round trip on node.
func (r replication) pipeline(ctx context.Context, node *redis.Client, sc *redis.Script, keys []string, args []any, source bool) (any, error) {
	var (
		ev   *redis.Cmd
		wait *redis.Cmd
	)
	_, err := node.Pipelined(ctx, func(p redis.Pipeliner) error {
		if source {
			ev = sc.Eval(ctx, p, keys, args...)
		} else {
			ev = sc.EvalSha(ctx, p, keys, args...)
		}
		p.Set(ctx, ackKey(keys[0]), "1", time.Minute)
		wait = p.Do(ctx, "WAIT", r.min, r.timeout.Milliseconds())
		return nil
	})
	if err := ev.Err(); err != nil {
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	n, err := wait.Int64()
	if err != nil {
		return nil, err
	}
	if n < int64(r.min) {
		return nil, fmt.Errorf("%w: %d of %d replicas within %v", errNotReplicated, n, r.min, r.timeout)
	}
	return ev.Val(), nil
}

// master is the client of the master that serves key: on a Cluster, its
// slot's (WAIT counts the replicas of the connection's own server); else
// the client itself, which on Sentinel follows the current master.
func (r replication) master(ctx context.Context, key string) (*redis.Client, error) {
	switch c := r.client.(type) {
	case *redis.ClusterClient:
		node, err := c.MasterForKey(ctx, key)
		if err != nil {
			c.ReloadState(ctx)
			return nil, errRedirected{err.Error()}
		}
		return node, nil
	case *redis.Client:
		return c, nil
	}
	return nil, fmt.Errorf("unexpected client %T", r.client)
}

// ackKey is the "ack" key of the bucket of key, which every key of the
// store's buckets names by its hash tag: same slot, same master.
func ackKey(key string) string {
	if i := strings.IndexByte(key, '}'); i >= 0 {
		return key[:i+1] + ":ack"
	}
	return key + ":ack"
}

// isRedirect reports a Cluster redirection or a role change under way: the
// write reached a node that is not (or no longer) the slot's master, and
// did nothing.
func isRedirect(err error) bool {
	for _, p := range []string{"MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN", "READONLY"} {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}

// marks is scriptRotate's argument saying whether a rotation is marked
// unconfirmed until the replicas confirm it: "1" when they must.
func (r replication) marks() string {
	if r.min > 0 {
		return "1"
	}
	return "0"
}

// clearUnconfirmed runs scriptClearUnconfirmed after a rotation to newJTI
// that the replicas confirmed (see Store, "Replicated writes"), on its own
// short deadline whatever the caller's ctx. It is best-effort: a mark it
// fails to clear only keeps the previous token's grace for up to
// UnconfirmedGrace.
func (s *Store) clearUnconfirmed(ctx context.Context, key, newJTI string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.replicas.timeout)
	defer cancel()
	_ = scriptClearUnconfirmed.Run(ctx, s.client, []string{key}, newJTI).Err()
}
