// Package proctest runs the real servers that tests stand up beside the
// gateway (redis-server, nginx): it finds the binary, skipping the test
// when it is missing, starts the process on a loopback address, waits until
// it is ready, and kills it. redistest and fronttest hold only what their
// server needs: its arguments or configuration, and how to tell it is
// ready.
package proctest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/logtest"
)

// StartTimeout bounds how long Start and StartAt wait for the process to
// be ready.
const StartTimeout = 15 * time.Second

// Need returns the path of the binary bin: on PATH, or in /usr/sbin, where
// Debian puts daemons (it is not on every user's PATH). When bin is missing
// it skips tb, saying hint (how to install it, "apt-get install
// nginx-light"), except under CI (the environment variable CI is "true"),
// where it fails tb: CI must install it (.ci/run does).
func Need(tb testing.TB, bin, hint string) string {
	tb.Helper()
	path, err := exec.LookPath(bin)
	if err == nil {
		return path
	}
	if sbin := filepath.Join("/usr/sbin", bin); fileExists(sbin) {
		return sbin
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("%s is not installed, and CI must run the tests that need it: %v", bin, err)
	}
	tb.Skipf("%s is not installed (%s); skipping: %v", bin, hint, err)
	return ""
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// FreeAddr returns a loopback TCP address, 127.0.0.1:port, that was free a
// moment ago.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Proc is one process started by Start or StartAt. Its methods are safe
// for concurrent use.
type Proc struct {
	// Addr is the loopback address the process serves on.
	Addr string

	cmd  *exec.Cmd
	done chan struct{}
	log  *logtest.Buffer
	once sync.Once
}

// Start runs bin with args(addr) on a free loopback address addr and waits
// until ready(addr) returns nil. An address is free when FreeAddr looks,
// but another process may take it before bin binds it: Start tries five.
// args may write files the process reads (a configuration naming addr).
// The caller must Kill the process.
func Start(bin string, args func(addr string) []string, ready func(addr string) error) (*Proc, error) {
	var err error
	for range 5 {
		var addr string
		if addr, err = FreeAddr(); err != nil {
			return nil, err
		}
		var p *Proc
		if p, err = StartAt(addr, bin, args(addr), ready); err == nil {
			return p, nil
		}
	}
	return nil, err
}

// StartAt runs bin with args, which make it serve on addr, and waits until
// ready(addr) returns nil: an error means not yet, until the process exits
// or StartTimeout passes, when StartAt kills it and returns an error with
// what it wrote. On Linux the process is killed too if the test process
// dies without its cleanups (a panic, a timeout, SIGKILL). The caller must
// Kill the process.
func StartAt(addr, bin string, args []string, ready func(addr string) error) (*Proc, error) {
	cmd := exec.Command(bin, args...)
	p := &Proc{Addr: addr, cmd: cmd, done: make(chan struct{}), log: &logtest.Buffer{Limit: 64 << 10}}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = cmd.Wait(); close(p.done) }()

	name := filepath.Base(bin)
	deadline := time.Now().Add(StartTimeout)
	for {
		err := ready(addr)
		if err == nil {
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("%s exited: %s", name, strings.TrimSpace(p.Log()))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Kill()
			return nil, errors.Join(fmt.Errorf("%s is not ready on %s within %v: %w", name, addr, StartTimeout, err),
				errors.New(strings.TrimSpace(p.Log())))
		}
	}
}

// Log returns what the process wrote to its stdout and stderr so far (up
// to 64 KiB), for a failing test's message.
func (p *Proc) Log() string { return p.log.String() }

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Kill kills the process with SIGKILL, as a crash would, and waits for it
// to exit. Calling it again does nothing.
func (p *Proc) Kill() {
	p.once.Do(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
}
