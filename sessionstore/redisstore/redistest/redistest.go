// Package redistest starts real redis-server processes for tests, each on a
// free loopback port and in its own temporary directory, and stops them when
// the test ends. There is no fake: the tests of the Redis session store run
// against the same server the gateway talks to in production.
//
// When redis-server is not installed the calling test is skipped, except
// under CI (the environment variable CI is "true"), where it fails: CI must
// install it (.ci/run does, from Debian's packages).
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/proctest"
)

// Server is one redis-server process started by Start. Its methods may be
// called from the test's goroutine only.
type Server struct {
	// Addr is the server's 127.0.0.1:port. It stays the same across Stop
	// and Restart.
	Addr string

	bin  string
	dir  string
	args []string

	mu   sync.Mutex
	proc *proctest.Proc // nil when stopped
}

// Persistent are extra arguments for Start that make every acknowledged write
// survive Stop (a SIGKILL) and Restart: an append-only file fsynced before
// each reply.
var Persistent = []string{"--appendonly", "yes", "--appendfsync", "always"}

// Start starts redis-server on a free loopback port with no persistence
// (unless args, extra redis-server arguments such as Persistent, say
// otherwise), waits until it answers PING, and kills it when tb ends. It
// skips tb when redis-server is missing, or fails it when CI is "true".
func Start(tb testing.TB, args ...string) *Server {
	tb.Helper()
	s := &Server{bin: proctest.Need(tb, "redis-server", "apt-get install redis-server"), dir: tb.TempDir(), args: args}
	p, err := proctest.Start(s.bin, s.argsFor, answersPing)
	if err != nil {
		tb.Fatalf("start redis-server: %v", err)
	}
	s.Addr, s.proc = p.Addr, p
	tb.Cleanup(s.kill)
	return s
}

// StartCluster starts a Redis Cluster of one node that serves every hash
// slot, and waits until the cluster is up. It is as strict as a real
// cluster about keys: a command or script that touches keys of two slots
// fails with CROSSSLOT. Connect with ClusterURL.
func StartCluster(tb testing.TB, args ...string) *Server {
	tb.Helper()
	s := Start(tb, append([]string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"}, args...)...)
	if got := s.Do(tb, "CLUSTER", "ADDSLOTSRANGE", "0", "16383"); got != "+OK" {
		tb.Fatalf("CLUSTER ADDSLOTSRANGE = %q, want +OK", got)
	}
	deadline := time.Now().Add(proctest.StartTimeout)
	for !strings.Contains(s.Do(tb, "CLUSTER", "INFO"), "cluster_state:ok") {
		if time.Now().After(deadline) {
			tb.Fatalf("the one-node cluster on %s is not up after %v", s.Addr, proctest.StartTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s
}

// ClusterURL is redis+cluster://Addr, the store's URL for a cluster.
func (s *Server) ClusterURL() string {
	return "redis+cluster://" + s.Addr
}

// URL is redis://Addr/db.
func (s *Server) URL(db int) string {
	return fmt.Sprintf("redis://%s/%d", s.Addr, db)
}

// Stop kills the server with SIGKILL, as a crash would, and waits for it
// to exit. Restart starts it again.
func (s *Server) Stop(tb testing.TB) {
	tb.Helper()
	s.kill()
}

// Restart starts the server again on the same port and in the same
// directory (so a Persistent server has its data back) and waits until it
// answers PING. It stops a running server first.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.kill()
	// The port was ours a moment ago; give the kernel a few tries to
	// release it.
	var err error
	for range 20 {
		var p *proctest.Proc
		if p, err = proctest.StartAt(s.Addr, s.bin, s.argsFor(s.Addr), answersPing); err == nil {
			s.mu.Lock()
			s.proc = p
			s.mu.Unlock()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatalf("restart redis-server on %s: %v", s.Addr, err)
}

// Do sends one command (each argument a bulk string) to the server on a new
// connection and returns the answer: a status, error or integer line as is
// ("+OK", "-ERR ...", ":1"), a bulk string's content, or the first line of
// anything else ("*3"). It is for test set-up (CONFIG SET, CLUSTER ...) and
// checks.
func (s *Server) Do(tb testing.TB, args ...string) string {
	tb.Helper()
	line, err := do(s.Addr, args...)
	if err != nil {
		tb.Fatalf("redis %s: %v", args[0], err)
	}
	return line
}

// argsFor is redis-server's command line for serving on addr from s.dir.
func (s *Server) argsFor(addr string) []string {
	_, port, _ := net.SplitHostPort(addr)
	return append([]string{
		"--port", port,
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--logfile", "",
	}, s.args...)
}

// answersPing is redis-server's readiness: any answer to PING but "still
// loading" means it serves (with --requirepass, PING answers -NOAUTH).
func answersPing(addr string) error {
	line, err := do(addr, "PING")
	if err == nil && strings.HasPrefix(line, "-LOADING") {
		err = errors.New(line)
	}
	return err
}

// Pause stops the server with SIGSTOP, as a stalled host or a long fork
// would: connections stay open, commands sent are queued unanswered. Resume
// continues it; the test's end continues it too, before killing it.
func (s *Server) Pause(tb testing.TB) {
	tb.Helper()
	s.signal(tb, syscall.SIGSTOP)
}

// Resume continues a server stopped by Pause (SIGCONT).
func (s *Server) Resume(tb testing.TB) {
	tb.Helper()
	s.signal(tb, syscall.SIGCONT)
}

func (s *Server) signal(tb testing.TB, sig syscall.Signal) {
	tb.Helper()
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil {
		tb.Fatalf("redis-server on %s is not running", s.Addr)
	}
	if err := p.Signal(sig); err != nil {
		tb.Fatalf("signal redis-server on %s: %v", s.Addr, err)
	}
}

func (s *Server) kill() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p != nil {
		p.Kill()
	}
}

// do sends one command in RESP and reads the reply: a status, error or
// integer line as is ("+OK", "-ERR ...", ":1"), a bulk string's content,
// or the header line of anything else ("*3").
func do(addr string, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return "", err
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply")
	}
	if line[0] != '$' || line == "$-1" {
		return line, nil
	}
	n, err := strconv.Atoi(line[1:])
	if err != nil {
		return "", fmt.Errorf("bad bulk header %q", line)
	}
	body := make([]byte, n+2)
	if _, err := io.ReadFull(r, body); err != nil {
		return "", err
	}
	return string(body[:n]), nil
}
