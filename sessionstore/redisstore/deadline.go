package redisstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
)

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
		reply, err := w.s.replicas.run(w.ctx, sc, keys, args)
		var (
			rerr redis.Error
			oerr *net.OpError
		)
		if err == nil || errors.As(err, &rerr) || w.s.closed.Load() || errors.Is(err, errNotReplicated) ||
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
