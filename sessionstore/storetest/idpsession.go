package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
)

// testIdPSessions: PutIdPSession's entries are found by issuer and sid
// (each pair its own, an unknown one ErrNotFound); a later put takes the
// subject and never shortens the entry; an entry past its until is gone
// after a Sweep (Redis: by itself, once the wall clock is past it; so the
// suite checks only such untils), and Sweep counts none of them;
// empty names are refused; a closed store or a done ctx is ErrUnavailable.
func testIdPSessions(t *testing.T, open func(t testing.TB) sessionstore.Store) {
	st := open(t)
	ctx := t.Context()
	const iss, other = "https://idp.example/", "https://other.example/"
	put := func(issuer, sid, subject string, until time.Time) {
		t.Helper()
		if err := st.PutIdPSession(ctx, issuer, sid, subject, until); err != nil {
			t.Fatalf("PutIdPSession(%q, %q, %q) = %v, want nil", issuer, sid, subject, err)
		}
	}
	want := func(issuer, sid, subject string) {
		t.Helper()
		got, err := st.IdPSessionSubject(ctx, issuer, sid)
		switch {
		case subject == "" && !errors.Is(err, sessionstore.ErrNotFound):
			t.Fatalf("IdPSessionSubject(%q, %q) = %q, %v; want ErrNotFound", issuer, sid, got, err)
		case subject != "" && (err != nil || got != subject):
			t.Fatalf("IdPSessionSubject(%q, %q) = %q, %v; want %q", issuer, sid, got, err, subject)
		}
	}

	want(iss, "sid-1", "")
	put(iss, "sid-1", "alice", t0.Add(abs))
	put(iss, "sid-2", "alice", t0.Add(abs))
	put(other, "sid-1", "bob", t0.Add(abs))
	want(iss, "sid-1", "alice")
	want(iss, "sid-2", "alice")
	want(other, "sid-1", "bob")
	want(iss, "sid-3", "")
	want(iss+"x", "sid-1", "")

	// A put with an until long past (here: before the wall clock, so that
	// Redis would drop the key at once) keeps the later one, and takes its
	// subject.
	put(iss, "sid-2", "alice2", time.Now().Add(-24*time.Hour))
	// A put with a short until, then Sweep at t0 (past it): gone, and
	// Sweep counts sessions only.
	put(iss, "sid-short", "carol", time.Now().Add(-24*time.Hour))
	if n, err := st.Sweep(ctx, t0); err != nil || n != 0 {
		t.Fatalf("Sweep with only entries due = %d, %v; want 0, nil", n, err)
	}
	want(iss, "sid-short", "")
	want(iss, "sid-2", "alice2")
	want(iss, "sid-1", "alice")
	// Extended past a Sweep that would have removed the first until.
	put(iss, "sid-1", "alice", t0.Add(2*abs))
	if _, err := st.Sweep(ctx, t0.Add(abs)); err != nil {
		t.Fatalf("Sweep = %v, want nil", err)
	}
	want(iss, "sid-1", "alice")

	for _, c := range [][3]string{{"", "sid", "alice"}, {iss, "", "alice"}, {iss, "sid", ""}} {
		if err := st.PutIdPSession(ctx, c[0], c[1], c[2], t0.Add(abs)); !errors.Is(err, sessionstore.ErrIdPSessionEmpty) {
			t.Errorf("PutIdPSession(%q, %q, %q) = %v, want ErrIdPSessionEmpty", c[0], c[1], c[2], err)
		}
	}
	// Of the three, only the entry of an empty subject could be read
	// back (a lookup with an empty issuer or sid is ErrNotFound whatever
	// is stored): it must not be there.
	want(iss, "sid", "")

	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := st.PutIdPSession(done, iss, "sid-9", "dave", t0.Add(abs)); !errors.Is(err, sessionstore.ErrUnavailable) {
		t.Errorf("PutIdPSession(done ctx) = %v, want ErrUnavailable", err)
	}
	want(iss, "sid-9", "")
	if _, err := st.IdPSessionSubject(done, iss, "sid-1"); !errors.Is(err, sessionstore.ErrUnavailable) {
		t.Errorf("IdPSessionSubject(done ctx) = %v, want ErrUnavailable", err)
	}
	st.Close()
	if err := st.PutIdPSession(ctx, iss, "sid-9", "dave", t0.Add(abs)); !errors.Is(err, sessionstore.ErrUnavailable) {
		t.Errorf("PutIdPSession after Close = %v, want ErrUnavailable", err)
	}
	if _, err := st.IdPSessionSubject(ctx, iss, "sid-1"); !errors.Is(err, sessionstore.ErrUnavailable) {
		t.Errorf("IdPSessionSubject after Close = %v, want ErrUnavailable", err)
	}
}
