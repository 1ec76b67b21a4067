// Package fronttest starts real reverse proxies (nginx) in front of a
// gateway for tests, each on a free loopback port and in its own temporary
// directory, and stops them when the test ends. There is no fake: the tests
// see the headers a real proxy sends, configured as its users configure it.
//
// When the proxy is not installed the calling test is skipped, except under
// CI (the environment variable CI is "true"), where it fails: CI must
// install it (.ci/run does, from Debian's packages).
package fronttest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/logtest"
)

// startTimeout bounds how long StartNginx waits for nginx to accept
// connections.
const startTimeout = 15 * time.Second

// NginxOptions say how nginx proxies to the gateway. The zero value is
// nginx's defaults plus the forwarding headers every guide adds.
type NginxOptions struct {
	// Host is the value of "proxy_set_header Host", such as "$host" (the
	// usual setting: the client's host without its port) or "$http_host".
	// Empty keeps nginx's default, the proxy_pass address (the gateway's
	// own host:port).
	Host string
	// Bind is the local address nginx connects to the gateway from
	// (proxy_bind), such as "127.0.0.2", so that a test can tell nginx's
	// requests from its own by their peer address. Empty lets the kernel
	// choose (127.0.0.1).
	Bind string
	// Directives are more lines for the location block, each a complete
	// directive with its ";".
	Directives []string
}

// Nginx is one nginx process started by StartNginx.
type Nginx struct {
	// Addr is nginx's 127.0.0.1:port.
	Addr string
	// Config is the nginx.conf it runs, for error messages.
	Config string

	dir  string
	cmd  *exec.Cmd
	done chan struct{}
	log  *logtest.Buffer
	once sync.Once
}

// Origin is nginx's own origin as a browser sends it: "http://" + Addr.
func (n *Nginx) Origin() string { return "http://" + n.Addr }

// ErrorLog is what nginx wrote to its error log so far, for a failing
// test's message.
func (n *Nginx) ErrorLog() string {
	b, _ := os.ReadFile(filepath.Join(n.dir, "error.log"))
	return string(b)
}

// StartNginx starts nginx in the foreground on a free loopback port,
// proxying everything to upstream (host:port over HTTP), with
//
//	proxy_set_header X-Forwarded-For   $proxy_add_x_forwarded_for;
//	proxy_set_header X-Forwarded-Host  $http_host;
//	proxy_set_header X-Forwarded-Proto $scheme;
//
// and what opts add. It waits until nginx accepts connections and stops it
// when tb ends. It skips tb when nginx is missing, or fails it when CI is
// "true".
func StartNginx(tb testing.TB, upstream string, opts NginxOptions) *Nginx {
	tb.Helper()
	bin, err := lookNginx()
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("nginx is not installed, and CI must run the tests behind it: %v", err)
		}
		tb.Skipf("nginx is not installed (apt-get install nginx-light); skipping: %v", err)
	}
	dir := tb.TempDir()
	// The port is free when we look, but another process may take it before
	// nginx binds it: try a few.
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			tb.Fatal(err)
		}
		n := &Nginx{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir}
		n.Config = nginxConfig(dir, n.Addr, upstream, opts)
		if lastErr = n.start(bin, dir); lastErr == nil {
			tb.Cleanup(n.stop)
			return n
		}
	}
	tb.Fatalf("start nginx: %v", lastErr)
	return nil
}

// lookNginx finds the nginx binary: on PATH, or where Debian puts it
// (/usr/sbin is not on every user's PATH).
func lookNginx() (string, error) {
	bin, err := exec.LookPath("nginx")
	if err == nil {
		return bin, nil
	}
	if _, serr := os.Stat("/usr/sbin/nginx"); serr == nil {
		return "/usr/sbin/nginx", nil
	}
	return "", err
}

// nginxConfig is a complete nginx.conf: one process in the foreground
// (no master, so no worker switching to another user, and a kill stops
// it), every file it writes inside dir.
func nginxConfig(dir, listen, upstream string, opts NginxOptions) string {
	var loc strings.Builder
	if opts.Host != "" {
		fmt.Fprintf(&loc, "\t\t\tproxy_set_header Host %s;\n", opts.Host)
	}
	loc.WriteString("\t\t\tproxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n")
	loc.WriteString("\t\t\tproxy_set_header X-Forwarded-Host $http_host;\n")
	loc.WriteString("\t\t\tproxy_set_header X-Forwarded-Proto $scheme;\n")
	if opts.Bind != "" {
		fmt.Fprintf(&loc, "\t\t\tproxy_bind %s;\n", opts.Bind)
	}
	for _, d := range opts.Directives {
		fmt.Fprintf(&loc, "\t\t\t%s\n", d)
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	return fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %s;
error_log %s info;

events {
	worker_connections 256;
}

http {
	access_log off;
	client_body_temp_path %s;
	proxy_temp_path %s;
	fastcgi_temp_path %s;
	uwsgi_temp_path %s;
	scgi_temp_path %s;

	server {
		listen %s;
		location / {
			proxy_pass http://%s;
%s		}
	}
}
`, p("nginx.pid"), p("error.log"), p("body"), p("proxy"), p("fastcgi"), p("uwsgi"), p("scgi"),
		listen, upstream, loc.String())
}

func (n *Nginx) start(bin, dir string) error {
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(n.Config), 0o600); err != nil {
		return err
	}
	// -e: the error log before the configuration is read, which otherwise
	// goes to the compiled-in path.
	cmd := exec.Command(bin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"))
	n.log = &logtest.Buffer{Limit: 64 << 10}
	cmd.Stdout, cmd.Stderr = n.log, n.log
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	n.cmd, n.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(n.done) }()

	deadline := time.Now().Add(startTimeout)
	for {
		c, err := net.DialTimeout("tcp", n.Addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-n.done:
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			return fmt.Errorf("nginx exited: %s %s", strings.TrimSpace(n.log.String()), strings.TrimSpace(string(b)))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			n.stop()
			return errors.New("nginx does not accept connections on " + n.Addr + " within " + startTimeout.String())
		}
	}
}

// stop kills nginx and waits for it to exit.
func (n *Nginx) stop() {
	n.once.Do(func() {
		_ = n.cmd.Process.Kill()
		<-n.done
	})
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
