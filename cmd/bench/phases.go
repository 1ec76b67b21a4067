package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/sessionstore"
	"github.com/spa-gateway/gateway/sessionstore/boltstore"
)

// runRefresh measures /auth/refresh: one session per client, each client
// refreshing its own session in a loop, on a gateway whose tokens are
// refreshable at once, with the store's default durability (an fsync per
// commit), and on the same gateway with the Redis stores of
// refreshStores. Each round runs every store once, in an order that
// rotates with the round, so that the ratios to bbolt are taken within a
// round.
func (d *driver) runRefresh(rep *report) error {
	stores, note, err := d.refreshStores()
	if err != nil {
		return err
	}
	rep.refreshNote = note
	gws := make([]*proc, len(stores))
	loads := make([]*refreshLoad, len(stores))
	for i, st := range stores {
		name := "refresh"
		if i > 0 {
			name = fmt.Sprintf("refresh-redis-%d", i-1)
		}
		if gws[i], loads[i], err = d.startRefresh(name, st.store, ""); err != nil {
			return err
		}
		if i > 0 {
			rep.refreshOn = append(rep.refreshOn, storeSamples{name: st.name})
		}
	}
	for r := range d.o.rounds {
		for k := range stores {
			i := (r + k) % len(stores)
			s, err := d.measure(gws[i], len(loads[i].tokens), loads[i])
			if err != nil {
				return err
			}
			if i == 0 {
				rep.refresh = append(rep.refresh, s)
			} else {
				rep.refreshOn[i-1].samples = append(rep.refreshOn[i-1].samples, s)
			}
			d.logf("refresh round %d  %-22s %7.0f refreshes/s  p99 %v%s", r+1, stores[i].name, s.res.rate(), s.res.percentile(99), s.res.note())
		}
	}
	for _, p := range gws[1:] {
		p.stop()
	}
	return nil
}

// startRefresh starts a gateway whose tokens are refreshable at once, on
// the store of the [store] lines store (bbolt if empty), and logs one
// session in per refresh client.
func (d *driver) startRefresh(name, store, profile string) (*proc, *refreshLoad, error) {
	a, err := d.setupAlg(auth.EdDSA)
	if err != nil {
		return nil, nil, err
	}
	dir := filepath.Join(d.dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("bench-password"), bcrypt.MinCost)
	if err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "users"), []byte("bench:"+string(hash)+"\n"), 0o600); err != nil {
		return nil, nil, err
	}
	// Tokens refreshable as soon as minted; a short grace.
	extra := "access_ttl = \"30m\"\nrefresh_before_expiry = \"29m59.999999999s\"\nrefresh_grace = \"1s\"\n"
	// No cap on the user's sessions: past login.max_sessions_per_user (50
	// by default) each login would revoke an earlier client's session.
	users := "users_file = \"users\"\nmax_failures = 1000\nmax_sessions_per_user = 0\n"
	if err := d.writeConfig(dir, auth.EdDSA, a.keyFile, extra, store, users, profile != ""); err != nil {
		return nil, nil, err
	}
	env := profileEnv(profile)
	p, err := d.serve("gateway "+name, dir, env)
	if err != nil {
		return nil, nil, err
	}
	n := d.o.refreshClients
	wl := &refreshLoad{tokens: make([]string, n)}
	c, err := dial(p.addr)
	if err != nil {
		return nil, nil, err
	}
	body := `{"username":"bench","password":"bench-password"}`
	login := fmt.Appendf(nil, "POST /auth/login HTTP/1.1\r\nHost: bench.example\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	for i := range wl.tokens {
		status, b, err := c.roundTrip(login, true)
		tok, ok := accessTokenOf(b)
		if err != nil || status != 200 || !ok {
			c.close()
			return nil, nil, fmt.Errorf("login %d: status %d, %v\n%s", i, status, err, p.lastLines())
		}
		wl.tokens[i] = tok
	}
	c.close()
	d.logf("%s: %d sessions logged in", p.name, n)
	return p, wl, nil
}

// runProfile profiles new gateways of the mode named by -profile (or the
// refresh gateway), under the same load as in the rounds: one for CPU, one
// that records every allocation (which slows it down too much to profile
// its CPU).
func (d *driver) runProfile(rep *report) error {
	rep.profileMode = d.o.profile
	for _, kind := range []string{"cpu", "allocs"} {
		var (
			p    *proc
			wl   workload
			conn = d.o.conns
			err  error
		)
		if d.o.profile == "refresh" {
			var rl *refreshLoad
			p, rl, err = d.startRefresh("refresh-profile-"+kind, "", kind)
			wl, conn = rl, len(rl.tokens)
		} else {
			m, ok := d.mode(d.o.profile)
			if !ok {
				return fmt.Errorf("-profile %q is neither refresh nor one of the modes run", d.o.profile)
			}
			p, err = d.startGateway(m.alg, m.revocation, "profile-"+kind, kind)
			var src tokenSource = fixedToken(d.algs[m.alg].reused)
			switch m.token {
			case tokFresh:
				src = &poolCursor{pool: d.algs[m.alg].pool}
			case tokBound:
				if err == nil {
					wl, _, err = d.loads(m)
				}
			}
			if wl == nil {
				wl = newProxyLoad(src)
			}
		}
		if err != nil {
			return err
		}
		if err := d.profileUnder(rep, kind, p, conn, wl); err != nil {
			return err
		}
		p.stop()
	}
	return nil
}

func (d *driver) mode(name string) (mode, bool) {
	for _, m := range d.modes {
		if m.String() == name {
			return m, true
		}
	}
	return mode{}, false
}

// profileUnder takes a profile of gw (kind "cpu", or "allocs": the
// allocations made during the window) over one window under wl, through
// the admin listener's /debug/pprof/ (admin.pprof = true), and keeps the
// top of it for the report.
func (d *driver) profileUnder(rep *report, kind string, gw *proc, conns int, wl workload) error {
	dir := filepath.Join(d.dir, "profiles")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	base := "http://" + gw.adminAddr + "/debug/pprof/"
	allocsBefore, allocsAfter := filepath.Join(dir, "allocs-before.pb.gz"), filepath.Join(dir, "allocs-after.pb.gz")
	cpuFile := filepath.Join(dir, "cpu.pb.gz")
	secs := max(int(d.o.duration.Round(time.Second)/time.Second), 1)
	var cpuErr error
	done := make(chan struct{})
	res, err := runLoad(gw.addr, conns, wl, d.o.warmup, time.Duration(secs)*time.Second+300*time.Millisecond,
		func() error {
			if kind == "allocs" {
				return fetch(base+"allocs", allocsBefore)
			}
			go func() {
				defer close(done)
				cpuErr = fetch(fmt.Sprintf("%sprofile?seconds=%d", base, secs), cpuFile)
			}()
			return nil
		},
		func() error {
			if kind == "allocs" {
				return fetch(base+"allocs", allocsAfter)
			}
			<-done
			return cpuErr
		})
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	top := func(args ...string) string {
		out, err := exec.Command("go", append([]string{"tool", "pprof", "-top", "-nodecount=35"}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Sprintf("go tool pprof: %v\n%s", err, out)
		}
		return string(out)
	}
	if kind == "allocs" {
		rep.profileRequests = res.n + res.errs
		rep.profileAllocs = top("-sample_index=alloc_objects", "-base", allocsBefore, d.bin, allocsAfter)
	} else {
		rep.profileCPU = top(d.bin, cpuFile)
	}
	rep.profileDir = dir
	d.logf("%s profile of %s in %s", kind, rep.profileMode, dir)
	return nil
}

func fetch(url, path string) error {
	res, err := http.Get(url)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s", url, res.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, res.Body)
	return errors.Join(err, f.Close())
}

// bigResult is the large-store phase.
type bigResult struct {
	sessions, expired int
	build             time.Duration
	fileMiB           int64
	listening, ready  time.Duration
	swept             int
	sweep             time.Duration
}

// runBigStore builds a store of o.bigStore sessions (random IDs, 100,000
// subjects, deadlines spread over a day, 1% of them already ended), times
// how long the gateway takes to be ready on it, then times the sweep of the
// ended ones with the store's own Sweep, durably.
func (d *driver) runBigStore(rep *report) error {
	a, err := d.setupAlg(auth.EdDSA)
	if err != nil {
		return err
	}
	dir := filepath.Join(d.dir, "bigstore")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	path := filepath.Join(dir, "sessions.db")
	os.Remove(path)
	res := &bigResult{sessions: d.o.bigStore}
	d.logf("big store: creating %d sessions", res.sessions)
	start := time.Now()
	var expired atomic.Int64
	if err := bulkLoad(path, res.sessions, func(i int) sessionstore.Session {
		s := benchSession(i, d.now)
		s.ID = rand.Text()
		s.Subject = fmt.Sprintf("user%d", i%100_000)
		s.JTI = rand.Text()
		// Deadlines spread over the next day; every 100th already past.
		s.IdleExpiresAt = d.now.Add(time.Duration(i%86_400) * time.Second).Add(time.Hour)
		if i%100 == 0 {
			expired.Add(1)
			s.IdleExpiresAt = d.now.Add(-time.Duration(i%3600) * time.Second)
		}
		return s
	}); err != nil {
		return fmt.Errorf("big store: %w", err)
	}
	res.build = time.Since(start)
	res.expired = int(expired.Load())
	if fi, err := os.Stat(path); err == nil {
		res.fileMiB = fi.Size() >> 20
	}
	d.logf("big store: built in %v, %d MiB", res.build.Round(time.Millisecond), res.fileMiB)

	if err := d.writeConfig(dir, auth.EdDSA, a.keyFile, "", "", "", false); err != nil {
		return err
	}
	start = time.Now()
	p, err := d.serve("gateway big store", dir, nil)
	if err != nil {
		return err
	}
	res.listening = time.Since(start)
	for {
		r, err := http.Get("http://" + p.adminAddr + "/readyz")
		if err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				break
			}
		}
		if time.Since(start) > 30*time.Second {
			return errors.New("big store: gateway not ready after 30s")
		}
		time.Sleep(time.Millisecond)
	}
	res.ready = time.Since(start)
	p.stop()

	st, err := boltstore.Open(path, nil)
	if err != nil {
		return err
	}
	start = time.Now()
	res.swept, err = st.Sweep(d.ctx, d.now)
	res.sweep = time.Since(start)
	if err := errors.Join(err, st.Close()); err != nil {
		return err
	}
	rep.big = res
	d.logf("big store: ready in %v, swept %d in %v", res.ready, res.swept, res.sweep)
	return nil
}

// bulkLoad creates n sessions through Store.Create from many goroutines at
// once, so that the store's group commit puts thousands in each
// transaction; without fsync, which the measurements that follow do not
// depend on.
func bulkLoad(path string, n int, gen func(i int) sessionstore.Session) error {
	st, err := boltstore.Open(path, &boltstore.Options{NoSync: true, MaxBatchSize: 5000, MaxBatchDelay: 50 * time.Millisecond})
	if err != nil {
		return err
	}
	const workers = 10_000
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				if err := st.Create(context.Background(), gen(i)); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(firstErr, st.Close())
}
