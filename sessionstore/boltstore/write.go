package boltstore

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
)

// Create stores a new session. It returns sessionstore.ErrExists if s.ID is
// taken, and refuses an empty ID or a subject holding a 0x00 byte (which
// would make the subject index ambiguous).
func (s *Store) Create(ctx context.Context, sess sessionstore.Session) error {
	_, err := s.CreateLimited(ctx, sess, 0)
	return err
}

// CreateLimited stores a new session and revokes the subject's least
// recently refreshed live sessions beyond limit, in one write transaction
// (found through the subject index). See sessionstore.Store.
func (s *Store) CreateLimited(ctx context.Context, sess sessionstore.Session, limit int) ([]string, error) {
	if sess.ID == "" {
		return nil, errors.New("boltstore: create: empty session ID")
	}
	if strings.IndexByte(sess.Subject, 0) >= 0 {
		return nil, errors.New("boltstore: create: subject holds a NUL byte")
	}
	var (
		exists  bool
		revoked []string
	)
	err := s.groupUpdate(ctx, "create", func(b buckets) (bool, error) {
		exists, revoked = b.sessions.Get([]byte(sess.ID)) != nil, nil
		if exists {
			return false, nil
		}
		if limit > 0 && !sess.Revoked() {
			all, err := b.ofSubject(sess.Subject)
			if err != nil {
				return false, err
			}
			live := all[:0]
			for _, o := range all {
				if o.Live(sess.CreatedAt) {
					live = append(live, o)
				}
			}
			if excess := len(live) + 1 - limit; excess > 0 {
				slices.SortFunc(live, sessionstore.CompareRefreshed)
				for i := range live[:excess] {
					if err := b.revoke(&live[i], sessionstore.ReasonSessionLimit, sess.CreatedAt); err != nil {
						return false, err
					}
					revoked = append(revoked, live[i].ID)
				}
			}
		}
		return true, b.insert(&sess)
	})
	if err != nil {
		return nil, err
	}
	if exists {
		return nil, sessionstore.ErrExists
	}
	return revoked, nil
}

// Rotate applies the refresh rules, and rotates, in one write transaction.
// See sessionstore.Store.
func (s *Store) Rotate(ctx context.Context, req sessionstore.RotateRequest) (sessionstore.RotateResult, error) {
	var (
		res     sessionstore.RotateResult
		outcome error // a refusal, or ErrReuseDetected after the revocation
	)
	err := s.groupUpdate(ctx, "rotate", func(b buckets) (bool, error) {
		// Every attempt decides anew from what it reads: a batch that fails
		// is run again (see groupUpdate), and only the attempt whose
		// transaction committed is reported.
		res, outcome = sessionstore.RotateResult{}, nil
		sess, err := b.get(req.SessionID)
		if errors.Is(err, sessionstore.ErrNotFound) {
			outcome = err
			return false, nil
		}
		if err != nil {
			return false, err
		}
		switch {
		case sess.Revoked():
			outcome = sessionstore.ErrRevoked
			return false, nil
		case !req.Now.Before(sess.Deadline()):
			outcome = sessionstore.ErrExpired
			return false, nil
		// jti values are not secrets (a jti is worth nothing without the
		// signed token that carries it), so == is fine here.
		case req.JTI == sess.JTI:
			old := sess
			sess.PrevJTI = sess.JTI
			sess.JTI = req.NewJTI
			sess.IssuedAt = req.Now
			sess.RefreshedAt = req.Now
			sess.RotatedAt = req.Now
			sess.IdleExpiresAt = req.Now.Add(req.IdleTimeout)
			sess.RefreshUserAgent = req.UserAgent
			sess.RefreshClient = req.Client
			if req.IdPRefreshToken != "" {
				sess.IdPRefreshToken = req.IdPRefreshToken
			}
			if err := b.replace(&old, &sess); err != nil {
				return false, err
			}
			res = sessionstore.RotateResult{Session: sess}
			return true, nil
		case sess.PrevJTI != "" && req.JTI == sess.PrevJTI && req.Now.Before(sess.RotatedAt.Add(req.Grace)):
			res = sessionstore.RotateResult{Session: sess, Grace: true}
			return false, nil
		default:
			// Reuse: revoke and commit, then report.
			outcome = sessionstore.ErrReuseDetected
			return true, b.revoke(&sess, sessionstore.ReasonReuseDetected, req.Now)
		}
	})
	if err != nil {
		return sessionstore.RotateResult{}, err
	}
	if outcome != nil {
		return sessionstore.RotateResult{}, outcome
	}
	return res, nil
}

// Revoke revokes one session. See sessionstore.Store.
func (s *Store) Revoke(ctx context.Context, id, reason string, now time.Time) (bool, error) {
	revoked := false
	err := s.update(ctx, "revoke", func(b buckets) error {
		sess, err := b.get(id)
		if err != nil {
			return err
		}
		if sess.Revoked() {
			return errNoChange
		}
		revoked = true
		return b.revoke(&sess, reason, now)
	})
	if err != nil {
		return false, err
	}
	return revoked, nil
}

// RevokeSubject revokes every unrevoked session of subject in one write
// transaction. See sessionstore.Store.
func (s *Store) RevokeSubject(ctx context.Context, subject, reason string, now time.Time) (int, error) {
	n := 0
	err := s.update(ctx, "revoke subject", func(b buckets) error {
		n = 0 // In case bbolt ever retries the function.
		sessions, err := b.ofSubject(subject)
		if err != nil {
			return err
		}
		for i := range sessions {
			if sessions[i].Revoked() {
				continue
			}
			if err := b.revoke(&sessions[i], reason, now); err != nil {
				return err
			}
			n++
		}
		if n == 0 {
			return errNoChange
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}
