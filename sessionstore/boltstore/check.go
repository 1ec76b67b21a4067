package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
)

// maxCheckProblems bounds how many problems Check reports.
const maxCheckProblems = 20

// Check verifies the whole file in one read transaction, for tests and
// offline diagnosis: bbolt's own page consistency check, then that the
// indexes agree with the sessions: every session decodes, is under its ID,
// and has exactly its subject and deadline index entries; every index entry
// names a stored session with that subject or deadline; and the live
// session counter equals the number of unrevoked sessions. It returns nil,
// or the problems found (at most 20) joined. It reads every page: O(file
// size), unlike every other method.
func (s *Store) Check(ctx context.Context) error {
	var problems []error
	add := func(format string, args ...any) {
		if len(problems) < maxCheckProblems {
			problems = append(problems, fmt.Errorf(format, args...))
		}
	}
	err := s.view(ctx, "check", func(b buckets) error {
		for err := range b.sessions.Tx().Check() {
			add("bbolt: %w", err)
		}
		subjects, deadlines := map[string]bool{}, map[string]bool{}
		var unrevoked uint64
		err := b.sessions.ForEach(func(k, v []byte) error {
			sess, err := decodeSession(v)
			if err != nil {
				add("session %q: %w", k, err)
				return nil
			}
			if sess.ID != string(k) {
				add("session %q holds ID %q", k, sess.ID)
			}
			if !sess.Revoked() {
				unrevoked++
			}
			sk, dk := subjectKey(sess.Subject, sess.ID), deadlineKey(sess.Deadline(), sess.ID)
			if b.subjects.Get(sk) == nil {
				add("session %q: no subject index entry", k)
			}
			if b.deadlines.Get(dk) == nil {
				add("session %q: no deadline index entry for %v", k, sess.Deadline())
			}
			subjects[string(sk)], deadlines[string(dk)] = true, true
			return nil
		})
		if err != nil {
			return err
		}
		b.subjects.ForEach(func(k, _ []byte) error {
			if !subjects[string(k)] {
				subject, id, _ := bytes.Cut(k, []byte{0})
				add("subject index entry %q -> %q names no such session", subject, id)
			}
			return nil
		})
		b.deadlines.ForEach(func(k, _ []byte) error {
			if !deadlines[string(k)] {
				if len(k) < 8 {
					add("deadline index entry %x is too short", k)
				} else {
					add("deadline index entry %d -> %q names no such session", binary.BigEndian.Uint64(k[:8]), k[8:])
				}
			}
			return nil
		})
		live, err := b.live()
		switch {
		case err != nil:
			add("%w", err)
		case live != unrevoked:
			add("live session counter is %d, %d sessions are unrevoked", live, unrevoked)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return errors.Join(problems...)
}
