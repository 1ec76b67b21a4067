package main

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/spa-gateway/gateway/auth"
)

// report gathers the samples of a run and prints them as Markdown tables.
type report struct {
	o       options
	modes   []mode
	pairs   map[mode][]pair
	latency []pair
	refresh []sample // on bbolt
	// refreshOn are the same rounds on the other stores (Redis); empty
	// without them, and refreshNote then may say why.
	refreshOn   []storeSamples
	refreshNote string
	big         *bigResult

	profileMode, profileCPU, profileAllocs, profileDir string
	profileRequests                                    int
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// med is the median over samples of f.
func med[T any](xs []T, f func(T) float64) float64 {
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = f(x)
	}
	return median(v)
}

func µs(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// write prints the report as Markdown: the run's settings, a section for
// each measurement the run made, the targets, and the profiles if taken.
func (r *report) write(w io.Writer) {
	o := r.o
	fmt.Fprintf(w, "\n## Results\n\n%s, %s/%s, GOMAXPROCS %d; %d rounds of %v (after %v of warm-up) per mode and proxy, interleaved.\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), o.rounds, o.duration, o.warmup)
	r.writeThroughput(w)
	r.writeBound(w)
	r.writeLatency(w)
	r.writeRefresh(w)
	r.writeRefreshStores(w)
	r.writeBig(w)
	r.writeTargets(w)
	r.writeProfiles(w)
}

// writeThroughput writes the throughput table of every mode measured.
func (r *report) writeThroughput(w io.Writer) {
	if len(r.pairs) == 0 {
		return
	}
	fmt.Fprintf(w, "\n### Throughput, %d connections\n\n", r.o.conns)
	fmt.Fprintln(w, "Medians over the rounds. Ratio: gateway req/s over bare req/s within a round; the median, then each round's. CPU and allocations are the proxy process's, per request.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| mode | gateway req/s | bare req/s | **ratio** | ratio per round | p50 µs gw / bare | p99 µs gw / bare | CPU µs/req gw / bare | allocs/req gw / bare | errors |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
	for _, m := range r.modes {
		ps := r.pairs[m]
		if len(ps) == 0 {
			continue
		}
		var per []string
		errs := 0
		for _, p := range ps {
			per = append(per, fmt.Sprintf("%.2f", p.ratio()))
			errs += p.gw.res.errs + p.bare.res.errs
		}
		fmt.Fprintf(w, "| %s | %.0f | %.0f | **%.2f** | %s | %.0f / %.0f | %.0f / %.0f | %.0f / %.0f | %.1f / %.1f | %d |\n",
			m,
			med(ps, func(p pair) float64 { return p.gw.res.rate() }),
			med(ps, func(p pair) float64 { return p.bare.res.rate() }),
			med(ps, pair.ratio), strings.Join(per, " "),
			med(ps, func(p pair) float64 { return µs(p.gw.res.percentile(50)) }),
			med(ps, func(p pair) float64 { return µs(p.bare.res.percentile(50)) }),
			med(ps, func(p pair) float64 { return µs(p.gw.res.percentile(99)) }),
			med(ps, func(p pair) float64 { return µs(p.bare.res.percentile(99)) }),
			med(ps, func(p pair) float64 { return µs(p.gw.cpu) }),
			med(ps, func(p pair) float64 { return µs(p.bare.cpu) }),
			med(ps, func(p pair) float64 { return p.gw.allocs }),
			med(ps, func(p pair) float64 { return p.bare.allocs }),
			errs)
	}
}

// boundRatios are a bound mode's gateway req/s over its unbound mode's,
// within each round that measured both.
func (r *report) boundRatios(m mode) []float64 {
	bound, unbound := r.pairs[m], r.pairs[m.unbound()]
	var out []float64
	for i := range min(len(bound), len(unbound)) {
		out = append(out, bound[i].gw.res.rate()/unbound[i].gw.res.rate())
	}
	return out
}

// writeBound writes the bound modes against their unbound ones, if the run
// measured any.
func (r *report) writeBound(w io.Writer) {
	header := false
	for _, m := range r.modes {
		ratios := r.boundRatios(m)
		if m.token != tokBound || len(ratios) == 0 {
			continue
		}
		if !header {
			fmt.Fprintf(w, "\n### Bound sessions (DPoP, %s proofs), %d connections\n\n", r.o.proofAlg, r.o.conns)
			fmt.Fprintln(w, "Ratio: the gateway's req/s with the bound token and a new proof per request over its req/s with the unbound token reused, within a round; the median, then each round's.")
			fmt.Fprintln(w)
			fmt.Fprintln(w, "| mode | bound req/s | unbound req/s | **bound / unbound** | per round | CPU µs/req bound / unbound | allocs/req bound / unbound |")
			fmt.Fprintln(w, "| --- | ---: | ---: | ---: | --- | ---: | ---: |")
			header = true
		}
		bound, unbound := r.pairs[m], r.pairs[m.unbound()]
		var per []string
		for _, v := range ratios {
			per = append(per, fmt.Sprintf("%.2f", v))
		}
		fmt.Fprintf(w, "| %s | %.0f | %.0f | **%.2f** | %s | %.0f / %.0f | %.1f / %.1f |\n", m,
			med(bound, func(p pair) float64 { return p.gw.res.rate() }),
			med(unbound, func(p pair) float64 { return p.gw.res.rate() }),
			median(ratios), strings.Join(per, " "),
			med(bound, func(p pair) float64 { return µs(p.gw.cpu) }),
			med(unbound, func(p pair) float64 { return µs(p.gw.cpu) }),
			med(bound, func(p pair) float64 { return p.gw.allocs }),
			med(unbound, func(p pair) float64 { return p.gw.allocs }))
	}
}

// writeLatency writes the latency table, if the run measured it.
func (r *report) writeLatency(w io.Writer) {
	if len(r.latency) == 0 {
		return
	}
	fmt.Fprintf(w, "\n### Latency, %d connection(s): EdDSA refresh reused\n\n", r.o.latencyConns)
	fmt.Fprintln(w, "| | req/s | p50 µs | p99 µs | CPU µs/req |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: |")
	for _, side := range []struct {
		name string
		get  func(pair) sample
	}{{"gateway", func(p pair) sample { return p.gw }}, {"bare", func(p pair) sample { return p.bare }}} {
		fmt.Fprintf(w, "| %s | %.0f | %.0f | %.0f | %.0f |\n", side.name,
			med(r.latency, func(p pair) float64 { return side.get(p).res.rate() }),
			med(r.latency, func(p pair) float64 { return µs(side.get(p).res.percentile(50)) }),
			med(r.latency, func(p pair) float64 { return µs(side.get(p).res.percentile(99)) }),
			med(r.latency, func(p pair) float64 { return µs(side.get(p).cpu) }))
	}
	var per []string
	for _, p := range r.latency {
		per = append(per, fmt.Sprintf("%.2f", p99Ratio(p)))
	}
	fmt.Fprintf(w, "\np99 gateway/bare within each round: %s; median **%.2f**.\n", strings.Join(per, " "), med(r.latency, p99Ratio))
}

// writeRefresh writes the refresh table, if the run measured it.
func (r *report) writeRefresh(w io.Writer) {
	if len(r.refresh) == 0 {
		return
	}
	fmt.Fprintf(w, "\n### Refresh, %d clients, durable commits (EdDSA)\n\n", r.o.refreshClients)
	fmt.Fprintln(w, "| round | refreshes/s | p50 µs | p99 µs | CPU µs/refresh | allocs/refresh | errors |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	for i, s := range r.refresh {
		fmt.Fprintf(w, "| %d | %.0f | %.0f | %.0f | %.0f | %.0f | %d |\n", i+1, s.res.rate(),
			µs(s.res.percentile(50)), µs(s.res.percentile(99)), µs(s.cpu), s.allocs, s.res.errs)
	}
	fmt.Fprintf(w, "\nMedian: **%.0f refreshes/s**.\n", med(r.refresh, func(s sample) float64 { return s.res.rate() }))
}

// storeSamples are the refresh rounds on one store.
type storeSamples struct {
	name    string
	samples []sample
}

// writeRefreshStores writes the refresh rounds on each store beside
// bbolt's, with the ratio to bbolt taken within each round.
func (r *report) writeRefreshStores(w io.Writer) {
	if r.refreshNote != "" {
		fmt.Fprintf(w, "\n%s.\n", r.refreshNote)
	}
	if len(r.refreshOn) == 0 {
		return
	}
	fmt.Fprintf(w, "\n### Refresh by store, %d clients (EdDSA), the same rounds\n\n", r.o.refreshClients)
	fmt.Fprintln(w, "bbolt fsyncs each commit (shared by a group commit); Redis is one master and one replica on this machine, each with an append-only file fsynced every second; with min replicas 1 each change also waits (WAIT) for the replica. Medians over the rounds; ratio: refreshes/s over bbolt's within a round.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| store | refreshes/s | **ratio to bbolt** | ratio per round | p50 µs | p99 µs | CPU µs/refresh | errors |")
	fmt.Fprintln(w, "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
	row := func(name string, ss []sample) {
		var ratios []float64
		var per []string
		errs := 0
		for i, s := range ss {
			if i < len(r.refresh) {
				ratios = append(ratios, s.res.rate()/r.refresh[i].res.rate())
				per = append(per, fmt.Sprintf("%.2f", ratios[i]))
			}
			errs += s.res.errs
		}
		fmt.Fprintf(w, "| %s | %.0f | **%.2f** | %s | %.0f | %.0f | %.0f | %d |\n", name,
			med(ss, func(s sample) float64 { return s.res.rate() }), median(ratios), strings.Join(per, " "),
			med(ss, func(s sample) float64 { return µs(s.res.percentile(50)) }),
			med(ss, func(s sample) float64 { return µs(s.res.percentile(99)) }),
			med(ss, func(s sample) float64 { return µs(s.cpu) }), errs)
	}
	row("bbolt", r.refresh)
	for _, st := range r.refreshOn {
		row(st.name, st.samples)
	}
}

// writeBig writes the large store's figures, if the run measured them.
func (r *report) writeBig(w io.Writer) {
	b := r.big
	if b == nil {
		return
	}
	fmt.Fprintf(w, "\n### Large store\n\n")
	fmt.Fprintf(w, "%d sessions (%d MiB, built in %v through Store.Create), %d of them ended.\n\n", b.sessions, b.fileMiB, b.build.Round(time.Millisecond), b.expired)
	fmt.Fprintln(w, "| | time |")
	fmt.Fprintln(w, "| --- | ---: |")
	fmt.Fprintf(w, "| gateway start to \"listening\" | %v |\n", b.listening.Round(time.Millisecond))
	fmt.Fprintf(w, "| gateway start to /readyz 200 | **%v** |\n", b.ready.Round(time.Millisecond))
	fmt.Fprintf(w, "| Sweep of the %d ended sessions (one durable transaction) | **%v** |\n", b.swept, b.sweep.Round(time.Millisecond))
}

// writeProfiles writes the profiles' summaries, if the run took them.
func (r *report) writeProfiles(w io.Writer) {
	if r.profileCPU == "" {
		return
	}
	fmt.Fprintf(w, "\n### Profiles: %s (files in %s)\n\nCPU:\n\n```\n%s```\n\nEvery allocation during a window of %d requests (another process, with GODEBUG=memprofilerate=1):\n\n```\n%s```\n",
		r.profileMode, r.profileDir, r.profileCPU, r.profileRequests, r.profileAllocs)
}

func p99Ratio(p pair) float64 {
	return float64(p.gw.res.percentile(99)) / float64(p.bare.res.percentile(99))
}

// writeTargets checks the figures of issue 6 that this run measured.
func (r *report) writeTargets(w io.Writer) {
	type target struct {
		what, got string
		met       bool
	}
	var ts []target
	ratio := func(m mode) (float64, bool) {
		ps := r.pairs[m]
		return med(ps, pair.ratio), len(ps) > 0
	}
	for _, t := range []struct {
		m    mode
		want float64
		what string
	}{
		{mode{auth.EdDSA, revRefresh, tokReused}, 1.0, "reused EdDSA token, refresh: ≥ 1.0× bare (stretch 1.2×)"},
		{mode{auth.EdDSA, revEveryRequest, tokReused}, 0.95, "reused EdDSA token, every_request: ≥ 0.95× bare"},
		{mode{auth.EdDSA, revRefresh, tokFresh}, 0.6, "new EdDSA token per request, refresh: ≥ 0.6× bare"},
		{mode{auth.EdDSA, revEveryRequest, tokFresh}, 0.6, "new EdDSA token per request, every_request: ≥ 0.6× bare"},
	} {
		if v, ok := ratio(t.m); ok {
			ts = append(ts, target{t.what, fmt.Sprintf("%.2f×", v), v >= t.want})
		}
	}
	for _, m := range r.modes {
		if ratios := r.boundRatios(m); m.token == tokBound && len(ratios) > 0 {
			v := median(ratios)
			ts = append(ts, target{fmt.Sprintf("%s session, new proof per request: ≥ 0.5× unbound (issue 13)", m), fmt.Sprintf("%.2f×", v), v >= 0.5})
		}
	}
	if len(r.latency) > 0 {
		v := med(r.latency, p99Ratio)
		ts = append(ts, target{fmt.Sprintf("p99 at %d connection(s): ≤ 1.2× bare", r.o.latencyConns), fmt.Sprintf("%.2f×", v), v <= 1.2})
	}
	if ps := r.pairs[mode{auth.EdDSA, revRefresh, tokReused}]; len(ps) > 0 {
		gw := med(ps, func(p pair) float64 { return p.gw.allocs })
		bare := med(ps, func(p pair) float64 { return p.bare.allocs })
		ts = append(ts, target{"allocations per proxied request (EdDSA refresh reused): ≤ bare + 15", fmt.Sprintf("%.1f vs %.1f (+%.1f)", gw, bare, gw-bare), gw <= bare+15})
	}
	if len(r.refresh) > 0 {
		v := med(r.refresh, func(s sample) float64 { return s.res.rate() })
		ts = append(ts, target{fmt.Sprintf("refresh with %d clients, durable: ≥ 3,000/s", r.o.refreshClients), fmt.Sprintf("%.0f/s", v), v >= 3000})
	}
	if b := r.big; b != nil {
		ts = append(ts,
			target{fmt.Sprintf("ready with %d sessions: < 1 s", b.sessions), b.ready.Round(time.Millisecond).String(), b.ready < time.Second},
			target{fmt.Sprintf("sweep of %d ended among them: < 1 s", b.swept), b.sweep.Round(time.Millisecond).String(), b.sweep < time.Second})
	}
	if len(ts) == 0 {
		return
	}
	fmt.Fprintf(w, "\n### Targets (issue 6; issue 13 for bound sessions)\n\n| target | this run | met |\n| --- | ---: | --- |\n")
	for _, t := range ts {
		fmt.Fprintf(w, "| %s | %s | %s |\n", t.what, t.got, map[bool]string{true: "yes", false: "**no**"}[t.met])
	}
}
