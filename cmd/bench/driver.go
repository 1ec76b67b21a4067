package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/sessionstore"
	"github.com/spa-gateway/gateway/sessionstore/boltstore"
)

// Token and revocation variants of the gateway modes.
const (
	revRefresh      = "refresh"
	revEveryRequest = "every_request"
	tokReused       = "reused"
	tokFresh        = "fresh"
	tokBound        = "bound" // a DPoP-bound token, reused, with a new proof per request (dpop.go)
)

var (
	benchAlgs        = []string{auth.EdDSA, auth.ES256, auth.HS256}
	benchRevocations = []string{revRefresh, revEveryRequest}
	benchTokens      = []string{tokReused, tokFresh, tokBound}
)

// mode is one gateway configuration under one kind of load.
type mode struct {
	alg, revocation, token string
}

func (m mode) String() string { return m.alg + " " + m.revocation + " " + m.token }

// inDefault reports whether an empty -modes runs m: every mode but the
// bound ones, which only run under EdDSA and refresh by default, to keep
// the default run near 6 minutes.
func (m mode) inDefault() bool {
	return m.token != tokBound || m.alg == auth.EdDSA && m.revocation == revRefresh
}

// unbound is the mode a bound one is compared with within each round: the
// same gateway, with an unbound token reused.
func (m mode) unbound() mode { return mode{m.alg, m.revocation, tokReused} }

// algSetup is what every gateway of one algorithm shares: the key file, a
// token reused on every request and a pool of fresh tokens, all naming
// sessions that are seeded in every gateway's store.
type algSetup struct {
	keyFile string
	reused  string
	bound   string // bound to the proof key; "" without a bound mode
	pool    []string
}

// driver owns the processes and the results of a run.
type driver struct {
	ctx     context.Context
	o       options
	log     io.Writer
	dir     string
	tmp     bool
	bin     string
	started time.Time
	now     time.Time // the seeded sessions' and tokens' time

	modes    []mode
	upstream *proc
	bare     *proc
	algs     map[string]*algSetup
	gateways map[string]*proc // by alg + " " + revocation
	cursors  map[string]*poolCursor
	bareFor  map[string]*poolCursor // by alg: the bare proxy's wrapping cursor
	proof    *proofKey              // nil without a bound mode
	procs    []*proc
}

func newDriver(ctx context.Context, o options, log io.Writer) (_ *driver, err error) {
	d := &driver{
		ctx: ctx, o: o, log: log, started: time.Now(), now: time.Now(),
		algs:     map[string]*algSetup{},
		gateways: map[string]*proc{},
		cursors:  map[string]*poolCursor{},
		bareFor:  map[string]*poolCursor{},
	}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	re, err := regexp.Compile(o.modes)
	if err != nil {
		return nil, fmt.Errorf("-modes: %w", err)
	}
	d.modes = selectModes(re, o.modes == "")
	for _, m := range d.modes {
		if m.token == tokBound && d.proof == nil {
			if d.proof, err = newProofKey(o.proofAlg); err != nil {
				return nil, fmt.Errorf("-proof-alg: %w", err)
			}
		}
	}
	d.dir = o.dir
	if d.dir == "" {
		if d.dir, err = os.MkdirTemp("", "gateway-bench-"); err != nil {
			return nil, err
		}
		d.tmp = true
	} else if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return nil, err
	}
	if err := d.build(); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	if d.upstream, err = d.start("upstream", "", nil, self, "-role", roleUpstream); err != nil {
		return nil, err
	}
	if d.bare, err = d.start("bare", "", nil, self, "-role", roleBare, "-upstream", "http://"+d.upstream.addr); err != nil {
		return nil, err
	}
	need := map[string]bool{}
	for _, m := range d.modes {
		need[m.alg+" "+m.revocation] = true
	}
	if o.latencyConns > 0 {
		need[auth.EdDSA+" "+revRefresh] = true
	}
	for _, alg := range benchAlgs {
		for _, rev := range benchRevocations {
			if need[alg+" "+rev] {
				p, err := d.startGateway(alg, rev, "", "")
				if err != nil {
					return nil, err
				}
				name := alg + " " + rev
				d.gateways[name] = p
				d.cursors[name] = &poolCursor{pool: d.algs[alg].pool}
				if d.bareFor[alg] == nil && len(d.algs[alg].pool) > 0 {
					d.bareFor[alg] = &poolCursor{pool: d.algs[alg].pool, wrap: true}
				}
			}
		}
	}
	return d, nil
}

func (d *driver) close() {
	for i := len(d.procs) - 1; i >= 0; i-- {
		d.procs[i].stop()
	}
	if d.tmp && !d.o.keep {
		os.RemoveAll(d.dir)
	} else {
		fmt.Fprintf(d.log, "bench: working directory kept: %s\n", d.dir)
	}
}

func (d *driver) logf(format string, args ...any) {
	fmt.Fprintf(d.log, "[%5.0fs] "+format+"\n", append([]any{time.Since(d.started).Seconds()}, args...)...)
}

// build compiles the gateway binary from the module this bench belongs to,
// unless -gateway names one.
func (d *driver) build() error {
	if d.o.gateway != "" {
		d.bin = d.o.gateway
		return nil
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == os.DevNull {
		return errors.New("run the bench from inside the gateway module, or pass -gateway")
	}
	d.bin = filepath.Join(d.dir, "gateway")
	d.logf("building %s", d.bin)
	cmd := exec.Command("go", "build", "-o", d.bin, "./cmd/gateway")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(out)))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	return nil
}

func (d *driver) start(label, dir string, env []string, name string, args ...string) (*proc, error) {
	p, err := startProc(label, dir, env, nil, name, args...)
	if err != nil {
		return nil, err
	}
	d.procs = append(d.procs, p)
	return p, nil
}

// serve starts the gateway binary on dir/gateway.toml. Above log level
// info the gateway does not log its addresses: it is then given free
// ports.
func (d *driver) serve(label, dir string, env []string) (*proc, error) {
	args := []string{"serve", "--config", "gateway.toml"}
	var known []string
	if d.o.logLevel != "info" && d.o.logLevel != "debug" {
		for range 2 {
			a, err := freeAddr()
			if err != nil {
				return nil, err
			}
			known = append(known, a)
		}
		args = append(args, "--listen", known[0], "--admin-listen", known[1])
	}
	p, err := startProc(label, dir, env, known, d.bin, args...)
	if err != nil {
		return nil, err
	}
	d.procs = append(d.procs, p)
	return p, nil
}

// setupAlg writes the key of alg and mints its tokens, once.
func (d *driver) setupAlg(alg string) (*algSetup, error) {
	if a := d.algs[alg]; a != nil {
		return a, nil
	}
	a := &algSetup{keyFile: filepath.Join(d.dir, "key-"+alg+".pem")}
	if out, err := exec.Command(d.bin, "keygen", "--alg", alg, "--out", a.keyFile).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("keygen %s: %v\n%s", alg, err, out)
	}
	key, err := auth.LoadKey(alg, a.keyFile)
	if err != nil {
		return nil, err
	}
	ks, err := auth.NewKeySet(key)
	if err != nil {
		return nil, err
	}
	minter := auth.NewMinter(ks, "gateway", "api")
	n := 1
	for _, m := range d.modes {
		if m.alg == alg && m.token == tokFresh {
			n += d.o.pool
			break
		}
	}
	d.logf("minting %d %s tokens", n, alg)
	tokens, err := d.mint(minter, n)
	if err != nil {
		return nil, err
	}
	a.reused, a.pool = tokens[0], tokens[1:]
	if d.proof != nil {
		s := d.o.boundSession(d.now, d.proof.jkt)
		if a.bound, err = minter.Mint(auth.MintClaims{
			Subject: s.Subject, SessionID: s.ID, ID: "bound-" + rand.Text()[:8], Roles: s.Roles,
			JKT: d.proof.jkt, IssuedAt: d.now, ExpiresAt: d.now.Add(3 * time.Hour),
		}); err != nil {
			return nil, err
		}
	}
	d.algs[alg] = a
	return a, nil
}

// mint signs n distinct tokens, each naming one of the seeded sessions, in
// parallel.
func (d *driver) mint(m *auth.Minter, n int) ([]string, error) {
	run := rand.Text()[:8]
	return makeAll(n, func(i int) (string, error) {
		s := i % d.o.sessions
		return m.Mint(auth.MintClaims{
			Subject:   fmt.Sprintf("user%d", s),
			SessionID: sessionID(s),
			ID:        fmt.Sprintf("%s-%d", run, i),
			Roles:     []string{"user"},
			IssuedAt:  d.now,
			ExpiresAt: d.now.Add(3 * time.Hour),
		})
	})
}

// makeAll returns one(0), ..., one(n-1), made by GOMAXPROCS goroutines in
// parallel; a goroutine stops at its first error, and the errors are
// joined.
func makeAll(n int, one func(i int) (string, error)) ([]string, error) {
	out := make([]string, n)
	errs := make([]error, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for w := range errs {
		wg.Go(func() {
			for i := w; i < n; i += len(errs) {
				if out[i], errs[w] = one(i); errs[w] != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// selectModes returns the modes re matches, or with defaults the default
// ones, in a fixed order; a bound mode brings its unbound one, which it is
// compared with.
func selectModes(re *regexp.Regexp, defaults bool) []mode {
	var ms []mode
	for _, alg := range benchAlgs {
		for _, rev := range benchRevocations {
			for _, tok := range benchTokens {
				m := mode{alg, rev, tok}
				selected := func(m mode) bool {
					return defaults && m.inDefault() || !defaults && re.MatchString(m.String())
				}
				bound := mode{alg, rev, tokBound}
				if selected(m) || m == bound.unbound() && selected(bound) {
					ms = append(ms, m)
				}
			}
		}
	}
	return ms
}

// profileEnv is the environment of a gateway to profile: one for
// allocations records every one (GODEBUG=memprofilerate=1), which slows it
// down too much for its CPU profile to mean much.
func profileEnv(kind string) []string {
	if kind == "allocs" {
		return []string{"GODEBUG=memprofilerate=1"}
	}
	return nil
}

func sessionID(i int) string { return fmt.Sprintf("benchsession%014d", i) }

// seed creates the sessions every token names in a new store file, through
// the store's own API.
func (d *driver) seed(path string) error {
	st, err := boltstore.Open(path, &boltstore.Options{NoSync: true})
	if err != nil {
		return err
	}
	errs := make([]error, 16)
	var wg sync.WaitGroup
	for w := range errs {
		wg.Go(func() {
			for i := w; i < d.o.sessions; i += len(errs) {
				if errs[w] = st.Create(d.ctx, benchSession(i, d.now)); errs[w] != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	if d.proof != nil {
		errs = append(errs, st.Create(d.ctx, d.o.boundSession(d.now, d.proof.jkt)))
	}
	return errors.Join(errors.Join(errs...), st.Close())
}

func benchSession(i int, now time.Time) sessionstore.Session {
	return sessionstore.Session{
		ID:            sessionID(i),
		Subject:       fmt.Sprintf("user%d", i),
		Roles:         []string{"user"},
		JTI:           fmt.Sprintf("seed-%d", i),
		IssuedAt:      now,
		CreatedAt:     now,
		RefreshedAt:   now,
		IdleExpiresAt: now.Add(4 * time.Hour),
		ExpiresAt:     now.Add(24 * time.Hour),
	}
}

// startGateway starts a gateway of alg under revocation rev, with its own
// directory (named after both and suffix) and seeded store. A gateway to
// profile ("cpu" or "allocs") serves /debug/pprof/: it is never one of the
// gateways measured in the rounds.
func (d *driver) startGateway(alg, rev, suffix, profile string) (*proc, error) {
	a, err := d.setupAlg(alg)
	if err != nil {
		return nil, err
	}
	name := strings.TrimSpace(alg + " " + rev + " " + suffix)
	dir := filepath.Join(d.dir, strings.ReplaceAll(name, " ", "-"))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := d.seed(filepath.Join(dir, "sessions.db")); err != nil {
		return nil, fmt.Errorf("seed %s: %w", name, err)
	}
	extra := fmt.Sprintf("revocation = %q\n", rev)
	if age := d.o.proofMaxAge(); d.proof != nil && age != auth.DefaultDPoPMaxAge {
		extra += fmt.Sprintf("dpop_proof_max_age = %q\n", age)
	}
	if err := d.writeConfig(dir, alg, a.keyFile, extra, "", "", profile != ""); err != nil {
		return nil, err
	}
	env := profileEnv(profile)
	p, err := d.serve("gateway "+name, dir, env)
	if err != nil {
		return nil, err
	}
	d.logf("started %s: %s", p.name, p.addr)
	return p, nil
}

// writeConfig writes dir/gateway.toml: alg with keyFile, tokens settings
// extra, the store's settings (bbolt in dir/sessions.db if empty), the
// users file login, and one route to the upstream.
func (d *driver) writeConfig(dir, alg, keyFile, extra, store, login string, pprof bool) error {
	if store == "" {
		store = "path = \"sessions.db\"\n"
	}
	if d.o.verifyCache >= 0 {
		extra += fmt.Sprintf("verify_cache_size = %d\n", d.o.verifyCache)
	}
	cfg := fmt.Sprintf(`[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
%s
[tokens]
algorithm = %q
key_file = %q
%s
[store]
%s
[login]
%s
[log]
level = %q
[[route]]
prefix = "/api/"
upstream = "http://%s"
`, map[bool]string{true: "pprof = true"}[pprof], alg, keyFile, extra, store, login, d.o.logLevel, d.upstream.addr)
	return os.WriteFile(filepath.Join(dir, "gateway.toml"), []byte(cfg), 0o600)
}

// sample is one measured run.
type sample struct {
	res    result
	cpu    time.Duration // CPU time of the proxy process per request
	allocs float64       // heap allocations of the proxy process per request
}

// measure puts wl on p over conns connections for one window.
func (d *driver) measure(p *proc, conns int, wl workload) (sample, error) {
	if err := d.ctx.Err(); err != nil {
		return sample{}, err
	}
	var s0, s1 snapshot
	res, err := runLoad(p.addr, conns, wl, d.o.warmup, d.o.duration,
		func() (err error) { s0, err = p.snapStart(); return err },
		func() (err error) { s1, err = p.snapEnd(); return err })
	if err != nil {
		return sample{}, fmt.Errorf("%s: %w", p.name, err)
	}
	if res.n == 0 {
		return sample{}, fmt.Errorf("%s: no successful request (%d errors, first: %s)\n%s", p.name, res.errs, res.firstErr, p.lastLines())
	}
	return sample{
		res:    res,
		cpu:    (s1.cpu - s0.cpu) / time.Duration(res.n),
		allocs: (s1.mallocs - s0.mallocs - p.scrapeCost) / float64(res.n),
	}, nil
}

// loads returns the workloads of mode m for the gateway and for the bare
// proxy. A bound mode's proofs are made here, before the pair's runs.
func (d *driver) loads(m mode) (gw, bare workload, err error) {
	a := d.algs[m.alg]
	switch m.token {
	case tokReused:
		return newProxyLoad(fixedToken(a.reused)), newProxyLoad(fixedToken(a.reused)), nil
	case tokBound:
		proofs, err := d.proof.proofs(a.bound, d.o.proofsPerRun(), time.Now())
		if err != nil {
			return nil, nil, err
		}
		return newBoundLoad(a.bound, &poolCursor{pool: proofs}), newBoundLoad(a.bound, &poolCursor{pool: proofs, wrap: true}), nil
	}
	return newProxyLoad(d.cursors[m.alg+" "+m.revocation]), newProxyLoad(d.bareFor[m.alg]), nil
}

// pair is one round of one mode: the gateway and the bare proxy under the
// same load, one right after the other.
type pair struct{ gw, bare sample }

func (p pair) ratio() float64 { return p.gw.res.rate() / p.bare.res.rate() }

// runPair measures the bare proxy and the gateway of m, in an order that
// alternates with the round so that neither always runs first.
func (d *driver) runPair(round int, m mode, conns int) (pair, error) {
	var p pair
	gwLoad, bareLoad, err := d.loads(m)
	if err != nil {
		return p, err
	}
	gw := d.gateways[m.alg+" "+m.revocation]
	runGW := func() error { p.gw, err = d.measure(gw, conns, gwLoad); return err }
	runBare := func() error { p.bare, err = d.measure(d.bare, conns, bareLoad); return err }
	first, second := runBare, runGW
	if round%2 == 1 {
		first, second = runGW, runBare
	}
	if err := first(); err != nil {
		return p, err
	}
	return p, second()
}

func (d *driver) run(stdout io.Writer) error {
	rep := &report{o: d.o, modes: d.modes, pairs: map[mode][]pair{}}
	// Throughput: every round runs every mode against the bare proxy.
	for r := range d.o.rounds {
		for _, m := range d.modes {
			p, err := d.runPair(r, m, d.o.conns)
			if err != nil {
				return err
			}
			rep.pairs[m] = append(rep.pairs[m], p)
			d.logf("round %d  %-26s gateway %7.0f req/s  bare %7.0f req/s  ratio %.2f%s",
				r+1, m, p.gw.res.rate(), p.bare.res.rate(), p.ratio(), p.gw.res.note())
		}
	}
	// Latency at low concurrency: the reused EdDSA token, refresh mode.
	if d.o.latencyConns > 0 {
		m := mode{auth.EdDSA, revRefresh, tokReused}
		if d.algs[m.alg] == nil {
			if _, err := d.setupAlg(m.alg); err != nil {
				return err
			}
		}
		for r := range d.o.rounds {
			p, err := d.runPair(r, m, d.o.latencyConns)
			if err != nil {
				return err
			}
			rep.latency = append(rep.latency, p)
			d.logf("latency round %d  p99 gateway %v  bare %v", r+1, p.gw.res.percentile(99), p.bare.res.percentile(99))
		}
	}
	if d.o.refreshClients > 0 {
		if err := d.runRefresh(rep); err != nil {
			return err
		}
	}
	if d.o.profile != "" {
		if err := d.runProfile(rep); err != nil {
			return err
		}
	}
	if d.o.bigStore > 0 {
		if err := d.runBigStore(rep); err != nil {
			return err
		}
	}
	rep.write(stdout)
	return nil
}

// note flags a run whose numbers need a second look.
func (r result) note() string {
	var s string
	if r.errs > 0 {
		s += fmt.Sprintf("  (%d errors, first: %s)", r.errs, r.firstErr)
	}
	if r.exhausted {
		s += "  (pool of fresh tokens or proofs used up: raise -pool or -proof-rate)"
	}
	return s
}
