// Package logtest holds what tests need to read the logs a gateway writes:
// the gateway logs from many goroutines (handlers, the sweeper, tunnel
// watchers, a child process's output copied in) while the test reads, so
// the sink must be safe for both at once. For a JSON logger, Lines and
// WaitLines read the lines as objects.
package logtest

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"
)

// Buffer is a log sink: an io.Writer that any number of goroutines may
// write to while others call String. It keeps everything written (up to
// Limit), for a test to search (for an event, or for a secret that must not
// be there). The zero value is an empty Buffer ready to use; a Buffer must
// not be copied after first use.
type Buffer struct {
	// Limit, if not zero, stops the keeping once Limit bytes are held:
	// later writes still succeed and are dropped, so that a child
	// process's output, kept for an error message, cannot grow without
	// bound. Zero keeps everything.
	Limit int

	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p (or, past Limit, drops it); it never fails.
func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.Limit != 0 && l.b.Len() >= l.Limit {
		return len(p), nil
	}
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Lines decodes every line written so far, each a JSON object (as
// slog.JSONHandler writes them); a line that is not JSON fails the test.
func (l *Buffer) Lines(tb testing.TB) []map[string]any {
	tb.Helper()
	var out []map[string]any
	for line := range strings.Lines(l.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			tb.Fatalf("log line %q is not JSON: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// WaitLines returns the lines (see Lines) holding every attribute of
// match, once there are want of them. A line is often written just after
// the client has its answer (the access line of a streamed answer, say), so
// it polls, for at most 5 seconds; then any other count fails the test.
func (l *Buffer) WaitLines(tb testing.TB, want int, match map[string]any) []map[string]any {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var got []map[string]any
		for _, m := range l.Lines(tb) {
			ok := true
			for k, v := range match {
				if m[k] != v {
					ok = false
					break
				}
			}
			if ok {
				got = append(got, m)
			}
		}
		if len(got) >= want || time.Now().After(deadline) {
			if len(got) != want {
				tb.Fatalf("%d log lines with %v, want %d; log:\n%s", len(got), match, want, l.String())
			}
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
}
