package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestStreamsFlushAtOnce: server-sent events and answers of unknown length
// reach the client as the upstream writes them, while the upstream is still
// writing: the gateway does not wait for a buffer to fill or for the end.
func TestStreamsFlushAtOnce(t *testing.T) {
	tests := []struct {
		name, contentType string
	}{
		{"server-sent events", "text/event-stream"},
		{"chunked, unknown length", "application/json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			release := make(chan struct{})
			e.upstream.respond = func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tt.contentType)
				fmt.Fprint(w, "data: one\n\n")
				w.(http.Flusher).Flush()
				<-release // the rest only once the client has the first part
				fmt.Fprint(w, "data: two\n\n")
			}
			tok, _ := e.session("alice")

			conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			// Only a guard against hanging: a gateway that buffered would
			// never deliver the first event while the upstream waits.
			conn.SetDeadline(time.Now().Add(30 * time.Second))
			fmt.Fprintf(conn, "GET /api/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", tok)
			br := bufio.NewReader(conn)
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no response headers while the upstream streams: %v", err)
			}
			defer res.Body.Close()
			var once sync.Once
			free := func() { once.Do(func() { close(release) }) }
			defer free() // before the body is closed, which reads it to its end
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200", res.StatusCode)
			}
			body := bufio.NewReader(res.Body)
			line, err := body.ReadString('\n')
			if err != nil || strings.TrimSpace(line) != "data: one" {
				t.Fatalf("first line = %q, %v; want the first event while the upstream still writes", line, err)
			}
			free()
			rest, err := io.ReadAll(body)
			if err != nil || strings.TrimSpace(string(rest)) != "data: two" {
				t.Errorf("rest = %q, %v; want the second event", rest, err)
			}
		})
	}
}
