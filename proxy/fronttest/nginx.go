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
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/proctest"
)

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
	// HTTP, when set, replaces the generated server block and everything
	// above: it returns the directives of the http {} block (upstream,
	// server, map...) of a configuration as its users write it, such as
	// deploy/nginx/gateway.conf, given the address nginx must listen on.
	// StartNginx's upstream is then unused. Nil generates the block.
	HTTP func(listen string) string
}

// Nginx is one nginx process started by StartNginx.
type Nginx struct {
	// Addr is nginx's 127.0.0.1:port.
	Addr string
	// Config is the nginx.conf it runs, for error messages.
	Config string

	dir string
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
	bin := proctest.Need(tb, "nginx", "apt-get install nginx-light")
	n := &Nginx{dir: tb.TempDir()}
	conf := filepath.Join(n.dir, "nginx.conf")
	args := func(addr string) []string {
		n.Config = nginxConfig(n.dir, addr, upstream, opts)
		if err := os.WriteFile(conf, []byte(n.Config), 0o600); err != nil {
			tb.Fatal(err)
		}
		// -e: the error log before the configuration is read, which
		// otherwise goes to the compiled-in path.
		return []string{"-p", n.dir, "-c", conf, "-e", filepath.Join(n.dir, "error.log")}
	}
	p, err := proctest.Start(bin, args, accepts)
	if err != nil {
		tb.Fatalf("start nginx: %v\n%s", err, strings.TrimSpace(n.ErrorLog()))
	}
	tb.Cleanup(p.Kill)
	n.Addr = p.Addr
	return n
}

// accepts is nginx's readiness: it accepts connections on addr.
func accepts(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// nginxConfig is a complete nginx.conf: one process in the foreground
// (no master, so no worker switching to another user, and a kill stops
// it), every file it writes inside dir.
func nginxConfig(dir, listen, upstream string, opts NginxOptions) string {
	server := generatedServer(listen, upstream, opts)
	if opts.HTTP != nil {
		server = opts.HTTP(listen)
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

%s
}
`, p("nginx.pid"), p("error.log"), p("body"), p("proxy"), p("fastcgi"), p("uwsgi"), p("scgi"), server)
}

// generatedServer is the server block of StartNginx's defaults and opts.
func generatedServer(listen, upstream string, opts NginxOptions) string {
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
	return fmt.Sprintf(`	server {
		listen %s;
		location / {
			proxy_pass http://%s;
%s		}
	}`, listen, upstream, loc.String())
}
