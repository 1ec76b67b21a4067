package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
)

// Create stores a new session. It returns sessionstore.ErrExists if s.ID is
// taken, and refuses an empty ID or a subject holding a 0x00 byte (which
// would make the subject index ambiguous).
func (s *Store) Create(ctx context.Context, sess sessionstore.Session) error {
	_, err := s.create(ctx, sess, 0)
	return err
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
//
// On a Cluster, the new session itself is ranked with the others: a login
// can revoke its own new session and still return success, with its own ID
// among those revoked: the caller hands out tokens of a revoked session,
// whose first refresh is refused. That happens when the subject's other sessions look more recently
// refreshed than it, by their stored times: a concurrent login, or a
// session refreshed by a gateway whose clock runs ahead of this one's
// (s.CreatedAt). The single-server script never ranks the new session.
func (s *Store) CreateLimited(ctx context.Context, sess sessionstore.Session, limit int) ([]string, error) {
	switch {
	case limit <= 0:
		return nil, s.Create(ctx, sess)
	case s.cluster:
		return s.createConverge(ctx, sess, limit)
	}
	return s.create(ctx, sess, limit)
}

// create is Create (limit 0, scriptCreate) and, on a single server,
// CreateLimited (scriptCreateLimited): it returns the IDs the script
// revoked.
func (s *Store) create(ctx context.Context, sess sessionstore.Session, limit int) ([]string, error) {
	if err := s.usable(ctx, "create"); err != nil {
		return nil, err
	}
	if sess.ID == "" {
		return nil, errors.New("redisstore: create: empty session ID")
	}
	if strings.IndexByte(sess.Subject, 0) >= 0 {
		return nil, errors.New("redisstore: create: subject holds a NUL byte")
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
	script := scriptCreate
	keys := []string{s.sessionKey(b, sess.ID), b.deadlines, b.owners, b.live, b.subject}
	args := make([]any, 0, 8+len(fields))
	args = append(args, sess.ID, sess.Subject, millis(sess.Deadline()), millis(sess.Deadline().Add(s.margin)), revoked)
	if limit > 0 {
		script = scriptCreateLimited
		keys = slices.Grow(keys, 2*numBuckets)
		for i := range s.buckets {
			keys = append(keys, s.buckets[i].subject)
		}
		for i := range s.buckets {
			keys = append(keys, s.buckets[i].live)
		}
		args = append(args, limit, millis(sess.CreatedAt), sessionstore.ReasonSessionLimit)
	}
	args = append(args, fields...)
	reply, err := s.write(ctx, script, keys, args...)
	if err != nil {
		return nil, wrapErr("create", err)
	}
	// scriptCreate answers a code, scriptCreateLimited {code, revoked ID, ...}.
	code, ids := reply, []any(nil)
	if list, ok := reply.([]any); ok && len(list) > 0 {
		code, ids = list[0], list[1:]
	}
	switch code {
	case "exists":
		return nil, sessionstore.ErrExists
	case "late":
		return nil, wrapErr("create", errLate)
	case "ok":
		var out []string
		for _, v := range ids {
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
	if _, err := s.create(ctx, sess, 0); err != nil {
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
		req.UserAgent, req.Client, req.IdPRefreshToken, s.replicas.marks(),
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
		if s.replicas.min > 0 && sess.JTI == req.NewJTI {
			// The replicas have this rotation: it is confirmed.
			s.clearUnconfirmed(ctx, s.sessionKey(b, req.SessionID), req.NewJTI)
		}
		return sessionstore.RotateResult{Session: sess}, nil
	case "grace":
		if s.replicas.min > 0 {
			// Answered with replicas' confirmation: the successor handed
			// out again is theirs, whatever mark it had.
			s.clearUnconfirmed(ctx, s.sessionKey(b, req.SessionID), sess.JTI)
		}
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
