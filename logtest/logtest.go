// Package logtest holds what tests need to read the logs a gateway writes:
// the gateway logs from many goroutines (handlers, the sweeper, tunnel
// watchers, a child process's output copied in) while the test reads, so
// the sink must be safe for both at once.
package logtest

import (
	"bytes"
	"sync"
)

// Buffer is a log sink: an io.Writer that any number of goroutines may
// write to while others call String. It keeps everything written, for a
// test to search (for an event, or for a secret that must not be there).
// The zero value is an empty Buffer ready to use; a Buffer must not be
// copied after first use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p; it never fails.
func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
