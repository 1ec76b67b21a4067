// Command bench is the gateway's load benchmark. On 127.0.0.1 it starts an
// upstream, a bare httputil.ReverseProxy and the gateway binary in several
// modes (EdDSA, ES256, HS256; revocation "refresh" and "every_request"; one
// token reused, a new token on every request, or one DPoP-bound token with
// a new proof on every request), each in a process of its
// own, and puts the same load on the bare proxy and on each gateway mode in
// turn, round after round (A B A B ...). It prints requests per second,
// p50/p99 latency, CPU time and heap allocations per request of the proxy
// process, and the ratio gateway/bare taken within each round, with the
// median of those ratios. It also measures p99 latency at one connection,
// and /auth/refresh throughput with 64 clients and durable commits, on bbolt
// and, in the same rounds, on Redis with redis_min_replicas 0 and 1.
//
// Run it from the repository root:
//
//	go run ./cmd/bench                   # everything but the large store, about 7 minutes (the refresh rounds on Redis too, if redis-server is installed)
//	go run ./cmd/bench -modes 'EdDSA' -rounds 3 -duration 1s
//	go run ./cmd/bench -h                # every flag
//
// docs/PERFORMANCE.md describes the method and holds the results of one run.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	role     string
	upstream string

	rounds         int
	duration       time.Duration
	warmup         time.Duration
	conns          int
	modes          string
	proofAlg       string
	proofRate      int
	pool           int
	sessions       int
	latencyConns   int
	refreshClients int
	refreshRedis   bool
	bigStore       int
	profile        string
	logLevel       string
	verifyCache    int
	gateway        string
	dir            string
	keep           bool
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.role, "role", "", "internal: run as the `upstream` or the `bare` proxy (the driver re-executes itself)")
	fs.StringVar(&o.upstream, "upstream", "", "internal: the upstream URL of -role=bare")
	fs.IntVar(&o.rounds, "rounds", 5, "rounds; each runs every mode once against the bare proxy")
	fs.DurationVar(&o.duration, "duration", 2*time.Second, "measurement window of one run")
	fs.DurationVar(&o.warmup, "warmup", 500*time.Millisecond, "unrecorded load before each window")
	fs.IntVar(&o.conns, "conns", 64, "keep-alive connections of the throughput runs")
	fs.StringVar(&o.modes, "modes", "", "`regexp` selecting modes by name (\"EdDSA refresh reused\", \"HS256 every_request fresh\", \"ES256 refresh bound\", ...; \"\": every reused and fresh mode and EdDSA refresh bound; \".\": all)")
	fs.StringVar(&o.proofAlg, "proof-alg", "EdDSA", "`algorithm` of the bound modes' DPoP proofs: EdDSA (the browser client's, where WebCrypto has Ed25519) or ES256 (its fallback)")
	fs.IntVar(&o.pool, "pool", 0, "fresh tokens minted per algorithm (0: enough for -rounds at 10,000 req/s)")
	fs.IntVar(&o.proofRate, "proof-rate", 10000, "requests a second the proofs of one bound run are made for, before it")
	fs.IntVar(&o.sessions, "sessions", 1000, "sessions seeded in each gateway's store; tokens name them")
	fs.IntVar(&o.latencyConns, "latency-conns", 1, "connections of the latency runs (0: skip them)")
	fs.IntVar(&o.refreshClients, "refresh-clients", 64, "clients of the refresh runs, one session each (0: skip them)")
	fs.BoolVar(&o.refreshRedis, "refresh-redis", true, "also run the refresh rounds on Redis (a master and a replica the bench starts), with redis_min_replicas 0 and 1, if redis-server is installed")
	fs.IntVar(&o.bigStore, "big-store", 0, "sessions in a store file to time the gateway's start and a sweep on (0: skip; the target is 1000000)")
	fs.StringVar(&o.profile, "profile", "", "`mode` (or \"refresh\") to take CPU and allocation profiles of, after its rounds (\"\": none)")
	fs.StringVar(&o.logLevel, "log-level", "info", "the gateways' log.level (info: an access log line per request)")
	fs.IntVar(&o.verifyCache, "verify-cache", -1, "the gateways' tokens.verify_cache_size (-1: leave it out, for the default or for a gateway without the key)")
	fs.StringVar(&o.gateway, "gateway", "", "gateway binary to test (\"\": go build ./cmd/gateway)")
	fs.StringVar(&o.dir, "dir", "", "working directory for keys, stores and profiles (\"\": a temporary one)")
	fs.BoolVar(&o.keep, "keep", false, "keep the working directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch o.role {
	case roleUpstream:
		return runUpstream(ctx, stderr)
	case roleBare:
		return runBare(ctx, o.upstream, stderr)
	case "":
	default:
		return fmt.Errorf("unknown -role %q", o.role)
	}
	if o.rounds < 1 || o.duration <= 0 || o.conns < 1 || o.proofRate < 1 {
		return fmt.Errorf("-rounds, -duration, -conns and -proof-rate must be positive")
	}
	if o.pool == 0 {
		o.pool = int(float64(o.rounds+1) * (o.warmup + o.duration).Seconds() * 10000)
	}
	fmt.Fprintf(stderr, "bench: %s, GOMAXPROCS %d, %d CPUs\n", runtime.Version(), runtime.GOMAXPROCS(0), runtime.NumCPU())
	d, err := newDriver(ctx, o, stderr)
	if err != nil {
		return err
	}
	defer d.close()
	return d.run(stdout)
}
