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
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/logtest"
)

// startTimeout bounds how long Start and Restart wait for the server to
// answer PING.
const startTimeout = 15 * time.Second

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
	cmd  *exec.Cmd
	done chan struct{}
	log  *logtest.Buffer
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
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("redis-server is not installed, and CI must run the Redis tests: %v", err)
		}
		tb.Skipf("redis-server is not installed (apt-get install redis-server); skipping: %v", err)
	}
	s := &Server{bin: bin, dir: tb.TempDir(), args: args}
	tb.Cleanup(s.kill)
	// The port is free when we look, but another process may take it before
	// redis-server binds it: try a few.
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			tb.Fatal(err)
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if lastErr = s.start(); lastErr == nil {
			return s
		}
	}
	tb.Fatalf("start redis-server: %v", lastErr)
	return nil
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
	deadline := time.Now().Add(startTimeout)
	for !strings.Contains(s.Do(tb, "CLUSTER", "INFO"), "cluster_state:ok") {
		if time.Now().After(deadline) {
			tb.Fatalf("the one-node cluster on %s is not up after %v", s.Addr, startTimeout)
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
		if err = s.start(); err == nil {
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

func (s *Server) start() error {
	_, port, _ := net.SplitHostPort(s.Addr)
	args := append([]string{
		"--port", port,
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--logfile", "",
	}, s.args...)
	cmd := exec.Command(s.bin, args...)
	log := &logtest.Buffer{Limit: 64 << 10}
	cmd.Stdout, cmd.Stderr = log, log
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done, s.log = cmd, done, log
	s.mu.Unlock()

	deadline := time.Now().Add(startTimeout)
	for {
		// Any answer but "still loading" means it serves: with
		// --requirepass, PING answers -NOAUTH.
		line, err := do(s.Addr, "PING")
		if err == nil && !strings.HasPrefix(line, "-LOADING") {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("redis-server exited: %s", strings.TrimSpace(log.String()))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("no PONG from %s within %v (last: %q, %v): %s", s.Addr, startTimeout, line, err, log.String())
		}
	}
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
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil {
		tb.Fatalf("redis-server on %s is not running", s.Addr)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		tb.Fatalf("signal redis-server on %s: %v", s.Addr, err)
	}
}

func (s *Server) kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
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
