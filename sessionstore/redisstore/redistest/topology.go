package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/proctest"
)

// FailoverTimeout is how long the topologies started here take, at most, to
// notice a dead master and promote a replica: their Sentinels' and nodes'
// timeouts are one second, far below the defaults, so that tests of a
// failover end quickly.
const FailoverTimeout = 15 * time.Second

// StartReplica starts a redis-server that replicates master and waits
// until it has synchronised. It is killed when tb ends.
func StartReplica(tb testing.TB, master *Server, args ...string) *Server {
	tb.Helper()
	host, port, _ := net.SplitHostPort(master.Addr)
	r := Start(tb, append([]string{"--replicaof", host, port}, args...)...)
	r.waitFor(tb, "master_link_status:up", "INFO", "replication")
	return r
}

// Sentinels are Sentinel processes that watch one master, started by
// StartSentinels.
type Sentinels struct {
	// Master is the name the Sentinels know the master by.
	Master string
	// Addrs are the Sentinels' 127.0.0.1:port.
	Addrs []string
}

// StartSentinels starts n redis-sentinel processes that watch master under
// the name "gw", with a quorum of a majority, a down-after of one second
// and a failover timeout of three, and waits until each knows the master's
// replicas. They are killed when tb ends. It skips tb when redis-sentinel
// is missing, or fails it when CI is "true".
func StartSentinels(tb testing.TB, master *Server, n int) *Sentinels {
	tb.Helper()
	bin := proctest.Need(tb, "redis-sentinel", "apt-get install redis-sentinel")
	host, port, _ := net.SplitHostPort(master.Addr)
	s := &Sentinels{Master: "gw"}
	for i := range n {
		dir := tb.TempDir()
		args := func(addr string) []string {
			_, p, _ := net.SplitHostPort(addr)
			conf := filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", i))
			body := strings.Join([]string{
				"port " + p, "bind 127.0.0.1", "dir " + dir, "logfile \"\"", "daemonize no",
				fmt.Sprintf("sentinel monitor gw %s %s %d", host, port, n/2+1),
				"sentinel down-after-milliseconds gw 1000",
				"sentinel failover-timeout gw 3000",
				"sentinel parallel-syncs gw 2",
			}, "\n") + "\n"
			if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
				tb.Errorf("write %s: %v", conf, err)
			}
			return []string{conf}
		}
		p, err := proctest.Start(bin, args, answersPing)
		if err != nil {
			tb.Fatalf("start redis-sentinel: %v", err)
		}
		tb.Cleanup(p.Kill)
		s.Addrs = append(s.Addrs, p.Addr)
	}
	// A Sentinel learns of the replicas from the master within a second
	// or so, and of the other Sentinels by hello messages.
	for _, a := range s.Addrs {
		sv := &Server{Addr: a}
		sv.waitFor(tb, fmt.Sprintf("status=ok,address=%s,", master.Addr), "INFO", "sentinel")
		sv.waitFor(tb, fmt.Sprintf("sentinels=%d", n), "INFO", "sentinel")
	}
	return s
}

// URL is the store's URL for the Sentinels' master: database db.
func (s *Sentinels) URL(db int) string {
	u := fmt.Sprintf("redis+sentinel://%s/%d?master_name=%s", s.Addrs[0], db, s.Master)
	for _, a := range s.Addrs[1:] {
		u += "&addr=" + a
	}
	return u
}

// Cluster is a Redis Cluster started by StartClusterOf.
type Cluster struct {
	// Nodes are every node, masters first as created.
	Nodes []*Server
}

// StartClusterOf starts a Redis Cluster of masters masters with replicas
// replicas each (redis-cli --cluster create), with a node timeout of one
// second, and waits until every node reports the cluster up. Nodes are
// killed when tb ends. It needs redis-cli besides redis-server.
func StartClusterOf(tb testing.TB, masters, replicas int) *Cluster {
	tb.Helper()
	cli := proctest.Need(tb, "redis-cli", "apt-get install redis-tools")
	c := &Cluster{}
	args := []string{"--cluster", "create"}
	for range masters * (1 + replicas) {
		n := Start(tb, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "1000", "--cluster-replica-validity-factor", "0")
		c.Nodes = append(c.Nodes, n)
		args = append(args, n.Addr)
	}
	args = append(args, "--cluster-replicas", fmt.Sprint(replicas), "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, n := range c.Nodes {
		n.waitFor(tb, "cluster_state:ok", "CLUSTER", "INFO")
	}
	// The cluster is up before its replicas have synchronised: until
	// then WAIT confirms nothing, and a master killed then has no
	// replica with its data.
	for _, n := range c.Nodes {
		if info, _ := do(n.Addr, "INFO", "replication"); strings.Contains(info, "role:slave") {
			n.waitFor(tb, "master_link_status:up", "INFO", "replication")
		}
	}
	return c
}

// URL is the store's URL for the cluster: every node as a seed.
func (c *Cluster) URL() string {
	u := "redis+cluster://" + c.Nodes[0].Addr
	for i, n := range c.Nodes[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		u += sep + "addr=" + n.Addr
	}
	return u
}

// MasterOf is the node that, by the view of a running node, serves the
// slot of key as master.
func (c *Cluster) MasterOf(tb testing.TB, key string) *Server {
	tb.Helper()
	m, _ := c.masterOf(tb, key)
	return m
}

// Rejoin restarts n, killed, as a new empty node that replicates the
// current master of key's slot, and waits until it has synchronised. A
// node restarted with its old cluster configuration would claim its former
// slots, empty, until it hears of the failover; a clean one never does.
func (c *Cluster) Rejoin(tb testing.TB, n *Server, key string) {
	tb.Helper()
	master, id := c.masterOf(tb, key)
	n.kill()
	if err := os.Remove(filepath.Join(n.dir, "nodes.conf")); err != nil && !os.IsNotExist(err) {
		tb.Fatal(err)
	}
	n.Restart(tb)
	host, port, _ := net.SplitHostPort(master.Addr)
	n.Do(tb, "CLUSTER", "MEET", host, port)
	deadline := time.Now().Add(FailoverTimeout)
	for n.Do(tb, "CLUSTER", "REPLICATE", id) != "+OK" {
		if time.Now().After(deadline) {
			tb.Fatalf("node %s does not replicate %s after %v", n.Addr, master.Addr, FailoverTimeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	n.waitFor(tb, "master_link_status:up", "INFO", "replication")
}

func (c *Cluster) masterOf(tb testing.TB, key string) (*Server, string) {
	tb.Helper()
	for _, n := range c.Nodes {
		slotLine, err := do(n.Addr, "CLUSTER", "KEYSLOT", key)
		if err != nil {
			continue
		}
		var slot int
		fmt.Sscanf(slotLine, ":%d", &slot)
		nodes, err := do(n.Addr, "CLUSTER", "NODES")
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(strings.NewReader(nodes))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 9 || !strings.Contains(f[2], "master") || strings.Contains(f[2], "fail") {
				continue
			}
			for _, r := range f[8:] {
				var lo, hi int
				if k, _ := fmt.Sscanf(r, "%d-%d", &lo, &hi); k == 1 {
					hi = lo
				}
				if lo <= slot && slot <= hi {
					addr, _, _ := strings.Cut(f[1], "@")
					for _, m := range c.Nodes {
						if m.Addr == addr {
							return m, f[0]
						}
					}
				}
			}
		}
	}
	tb.Fatalf("no node serves the slot of %q", key)
	return nil, ""
}

// waitFor sends args until the answer holds want, for at most
// FailoverTimeout.
func (s *Server) waitFor(tb testing.TB, want string, args ...string) {
	tb.Helper()
	deadline := time.Now().Add(FailoverTimeout)
	for {
		got, err := do(s.Addr, args...)
		if err == nil && strings.Contains(got, want) {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s on %s: no %q after %v (last: %q, %v)", strings.Join(args, " "), s.Addr, want, FailoverTimeout, got, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
