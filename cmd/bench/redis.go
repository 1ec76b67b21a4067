package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// redisArgs are the redis-server arguments of the refresh phase's Redis:
// an append-only file fsynced every second, the usual production setting
// (docs/PERFORMANCE.md, "Redis beside bbolt", has the per-call cost of
// "always").
var redisArgs = []string{"--save", "", "--appendonly", "yes", "--appendfsync", "everysec"}

// startRedis starts redis-server on a free loopback port, working in dir,
// with args added (such as --replicaof), and waits until it answers PING.
// It is stopped with the bench's other processes.
func (d *driver) startRedis(label, dir string, args ...string) (*proc, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	all := append([]string{"--port", port, "--bind", "127.0.0.1", "--dir", dir, "--daemonize", "no", "--logfile", ""}, redisArgs...)
	p := &proc{name: label, addr: addr, cmd: exec.Command(bin, append(all, args...)...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = tailWriter{p}, tailWriter{p}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", label, err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	d.procs = append(d.procs, p)
	if err := waitRedis(p, "PING", "+PONG"); err != nil {
		return nil, err
	}
	return p, nil
}

// startReplica starts a redis-server replicating master and waits until
// it has synchronised.
func (d *driver) startReplica(label, dir string, master *proc) (*proc, error) {
	host, port, _ := net.SplitHostPort(master.addr)
	r, err := d.startRedis(label, dir, "--replicaof", host, port)
	if err != nil {
		return nil, err
	}
	return r, waitRedis(r, "INFO replication", "master_link_status:up")
}

// waitRedis sends cmd to p until its answer holds want, for up to 15s.
func waitRedis(p *proc, cmd, want string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		got, err := redisDo(p.addr, strings.Fields(cmd)...)
		if err == nil && strings.Contains(got, want) {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited:\n%s", p.name, p.lastLines())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %q did not answer %q within 15s (last: %q, %v)", p.name, cmd, want, got, err)
		}
	}
}

// redisDo sends one command on a new connection and returns the reply: a
// status or error line, or a bulk string's content.
func redisDo(addr string, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	req := fmt.Sprintf("*%d\r\n", len(args))
	for _, a := range args {
		req += fmt.Sprintf("$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(c, req); err != nil {
		return "", err
	}
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	n, ok := strings.CutPrefix(line, "$")
	if !ok {
		return line, nil
	}
	size, err := strconv.Atoi(n)
	if err != nil || size < 0 {
		return "", errors.New("malformed bulk reply")
	}
	buf := make([]byte, size+2)
	_, err = io.ReadFull(br, buf)
	return string(buf[:size]), err
}

// tailWriter keeps what a process writes as the end of its output.
type tailWriter struct{ p *proc }

func (w tailWriter) Write(b []byte) (int, error) {
	w.p.keep(b)
	return len(b), nil
}

// refreshStore is a store the refresh phase runs on: bbolt, or Redis with
// a minimum of replicas to confirm each change.
type refreshStore struct {
	name  string
	store string // the [store] lines of the gateway's configuration
}

// refreshStores are the stores of the refresh phase: bbolt, and with
// -refresh-redis and redis-server installed a master with one replica, once
// with redis_min_replicas = 0 and once with 1. Both Redis gateways use the
// same two servers (different databases), so that the replica's WAIT is
// the one difference. The note says why Redis is left out, "" if it is not.
func (d *driver) refreshStores() (stores []refreshStore, note string, err error) {
	stores = []refreshStore{{name: "bbolt", store: "path = \"sessions.db\"\n"}}
	if !d.o.refreshRedis {
		return stores, "", nil
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		note = "redis-server is not installed: the Redis rows are skipped (apt-get install redis-server)"
		d.logf("%s", note)
		return stores, note, nil
	}
	dir := filepath.Join(d.dir, "redis")
	master, err := d.startRedis("redis master", filepath.Join(dir, "master"))
	if err != nil {
		return nil, "", err
	}
	if _, err := d.startReplica("redis replica", filepath.Join(dir, "replica"), master); err != nil {
		return nil, "", err
	}
	d.logf("redis master %s with one replica", master.addr)
	for db, min := range []int{0, 1} {
		stores = append(stores, refreshStore{
			name:  fmt.Sprintf("redis, min replicas %d", min),
			store: fmt.Sprintf("backend = \"redis\"\nurl = \"redis://%s/%d\"\nredis_min_replicas = %d\n", master.addr, db, min),
		})
	}
	return stores, "", nil
}
