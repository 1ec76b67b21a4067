package proxy

import (
	"context"
	"sync"
	"time"
)

// tunnel is one upgrade request, registered from before it is forwarded
// until ReverseProxy returns (both directions closed).
type tunnel struct {
	session     string // "" for an anonymous upgrade
	subject     string
	routePrefix string
	// deadline closes the tunnel with deadlineReason; zero means none.
	deadline       time.Time
	deadlineReason string
	cancel         context.CancelCauseFunc
	timer          *time.Timer // nil without a deadline
}

// tunnelEnd is the cause a tunnel's context is cancelled with.
type tunnelEnd struct{ reason string }

func (e *tunnelEnd) Error() string { return "tunnel closed: " + e.reason }

// end cancels the tunnel's request with reason; a tunnel already ended keeps
// its first reason.
func (t *tunnel) end(reason string) { t.cancel(&tunnelEnd{reason: reason}) }

// Tunnels is a registry of open upgraded connections (WebSockets) that
// Gateways replacing one another share, as a configuration reload's do,
// through Deps.Tunnels: a session's end seen by the new Gateway then
// closes the tunnels opened through the old one, which stay open across
// the swap, and the new one's WatchTunnels watches them. Its zero value is
// empty and ready; it must not be copied after first use.
type Tunnels struct{ reg tunnels }

// tunnels is the registry of open tunnels by session ID ("" holds the
// anonymous ones). Its zero value is empty and ready.
type tunnels struct {
	mu        sync.Mutex
	bySession map[string]map[*tunnel]struct{}
}

func (ts *tunnels) add(t *tunnel) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.bySession == nil {
		ts.bySession = make(map[string]map[*tunnel]struct{})
	}
	set := ts.bySession[t.session]
	if set == nil {
		set = make(map[*tunnel]struct{})
		ts.bySession[t.session] = set
	}
	set[t] = struct{}{}
}

func (ts *tunnels) remove(t *tunnel) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	set := ts.bySession[t.session]
	delete(set, t)
	if len(set) == 0 {
		delete(ts.bySession, t.session)
	}
}

// endSession ends every tunnel of session id and returns how many.
func (ts *tunnels) endSession(id, reason string) int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	set := ts.bySession[id]
	for t := range set {
		t.end(reason)
	}
	return len(set)
}

// endSubject ends every tunnel of an authenticated session of subject.
func (ts *tunnels) endSubject(subject, reason string) int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	n := 0
	for id, set := range ts.bySession {
		if id == "" {
			continue
		}
		for t := range set {
			if t.subject == subject {
				t.end(reason)
				n++
			}
		}
	}
	return n
}

// due ends the tunnels whose deadline is not after now, and returns the IDs
// of the sessions that have tunnels.
func (ts *tunnels) due(now time.Time) []string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ids := make([]string, 0, len(ts.bySession))
	for id, set := range ts.bySession {
		for t := range set {
			if !t.deadline.IsZero() && !now.Before(t.deadline) {
				t.end(t.deadlineReason)
			}
		}
		if id != "" {
			ids = append(ids, id)
		}
	}
	return ids
}
