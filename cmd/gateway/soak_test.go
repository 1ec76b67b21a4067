package main

import (
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// soakWorkers is the soak's concurrency: enough to mix every kind of
// request at once, moderate enough for a loaded 2-core machine under -race.
const soakWorkers = 16

// soakAdminToken is the admin token of the soak's gateway.
const soakAdminToken = "soak-admin-token-0123456789abcdef"

// soakDuration is how long the soak loads the gateway: GATEWAY_SOAK (a
// Go duration, "5m") or 30s.
func soakDuration(t *testing.T) time.Duration {
	t.Helper()
	v := os.Getenv("GATEWAY_SOAK")
	if v == "" {
		return 30 * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 10*time.Second {
		t.Fatalf("GATEWAY_SOAK=%q: want a duration of at least 10s", v)
	}
	return d
}

// soakSample is the gateway process's resources at one moment, taken with
// the load paused (every worker between two requests), so that samples at
// the same concurrency compare: the same keep-alive connections are open
// and no request is in flight.
type soakSample struct {
	at                time.Duration
	rssKiB, threads   int
	goroutines, fds   int
	fileBytes, active int64
}

func (s soakSample) String() string {
	return fmt.Sprintf("%6s  RSS %6.1f MiB  threads %3d  goroutines %4d  open files %3d  bbolt %7.1f KiB  live sessions %4d",
		s.at.Round(time.Second), float64(s.rssKiB)/1024, s.threads, s.goroutines, s.fds, float64(s.fileBytes)/1024, s.active)
}

// TestBinarySoak runs the real binary with bbolt, a short idle timeout and
// a fast sweeper under a mixed load from soakWorkers clients: proxied
// requests, logins, refreshes with the successor, logouts, sessions
// abandoned to the idle timeout, a user's own session list and the admin
// API's list. It samples the process after a warm-up, in the middle and
// at the end, and holds issue 16's soak: from the middle to the end
// goroutines, open files and memory stay flat, the bbolt file does not
// grow while the live sessions stay alike (the pages of swept and rotated
// sessions are reused), and no answer is a 5xx.
//
// GATEWAY_SOAK=5m runs it longer (docs/PERFORMANCE.md, "Soak").
func TestBinarySoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak: not under -short")
	}
	total := soakDuration(t)
	dir := t.TempDir()
	upstream := okUpstream(t)
	mainAddr, adminAddr := freeLoopback(t), freeLoopback(t)
	path := writeSoakSetup(t, dir, upstream, mainAddr, adminAddr)
	p := start(t, "serve", "--config", path)
	waitHealthy(t, p, adminAddr)

	l := &soakLoad{
		base:  "http://" + mainAddr,
		admin: "http://" + adminAddr,
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			MaxIdleConnsPerHost: 2 * soakWorkers,
		}},
		counts: map[string]map[int]int{},
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range soakWorkers {
		wg.Go(func() { l.work(t, w, stop) })
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad()

	pid := p.cmd.Process.Pid
	db := filepath.Join(dir, "sessions.db")
	begun := time.Now()
	warmup := min(total/10, 10*time.Second)
	var samples []soakSample
	for _, at := range []time.Duration{warmup, warmup + (total-warmup)/2, total} {
		// A 5xx ends the soak early, with its report.
		for time.Now().Before(begun.Add(at)) && !t.Failed() {
			time.Sleep(100 * time.Millisecond)
		}
		if t.Failed() {
			break
		}
		s := l.sample(t, pid, db)
		s.at = time.Since(begun)
		samples = append(samples, s)
		t.Logf("sample %s", s)
	}
	stopLoad()
	l.report(t)
	if len(samples) == 3 {
		checkSoak(t, samples[1], samples[2])
	}
}

// checkSoak compares the middle sample with the end one. The bounds are
// loose enough for a loaded machine and tight enough for a leak: the
// samples are taken with the load paused, so goroutines and open files
// of a healthy gateway differ only by the idle keep-alive connections of
// its two sides (at most one a worker toward the clients, one goroutine
// each, and one toward the upstream, two goroutines each), while a leak
// of one per request or login would be thousands; the Go heap
// breathes with the GC's pacing (GOGC=100 lets it reach twice the live
// heap between two collections), so memory may grow by a quarter or 8 MiB,
// while a leak under this load grows without bound; bbolt's file grows in
// powers of two while it is small, so a file twice as large is one step,
// and it settles at a few MiB under this load, whatever the live sessions
// (the pages a commit frees are reused only once no read transaction
// older than it is open, and reads run all the time), while pages that
// were never reused would grow it by the pages of every commit: hundreds
// of commits a second, at least 4 KiB each, over 8 MiB in the second half
// of the shortest soak.
func checkSoak(t *testing.T, mid, end soakSample) {
	t.Helper()
	if end.goroutines > mid.goroutines+3*soakWorkers {
		t.Errorf("goroutines: %d in the middle, %d at the end; want at most %d more", mid.goroutines, end.goroutines, 3*soakWorkers)
	}
	if end.fds > mid.fds+2*soakWorkers {
		t.Errorf("open files: %d in the middle, %d at the end; want at most %d more", mid.fds, end.fds, 2*soakWorkers)
	}
	if grow := end.rssKiB - mid.rssKiB; grow > max(mid.rssKiB/4, 8<<10) {
		t.Errorf("RSS: %d KiB in the middle, %d KiB at the end; want growth under max(25%%, 8 MiB)", mid.rssKiB, end.rssKiB)
	}
	// The comparison holds while the live sessions are alike: at most half
	// as many again at the end.
	if end.active <= mid.active*3/2+soakWorkers && end.fileBytes > max(2*mid.fileBytes, 8<<20) {
		t.Errorf("bbolt file: %d bytes in the middle (%d live sessions), %d at the end (%d); want at most twice as large, or 8 MiB",
			mid.fileBytes, mid.active, end.fileBytes, end.active)
	}
	if end.active > 50*soakWorkers {
		t.Errorf("live sessions at the end: %d; want the sweeper to keep them near the workers' (%d)", end.active, soakWorkers)
	}
}

// writeSoakSetup writes the soak's configuration: users user0 ... user15
// (one per worker, each under the default cap of live sessions), tokens of
// 2s refreshable at once, an idle timeout of 4s and a sweep every second
// (so that abandoned sessions end and are removed while the soak runs), a
// small verification cache (it fills during the warm-up: a full cache
// then stays the same size) and warn-level logs (no access log lines to
// hold in memory; the addresses are given).
func writeSoakSetup(t *testing.T, dir, upstream, mainAddr, adminAddr string) string {
	t.Helper()
	path := writeSetup(t, dir, "")
	hash, err := bcrypt.GenerateFromPassword([]byte("wonderland"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	var users strings.Builder
	for w := range soakWorkers {
		fmt.Fprintf(&users, "user%d:%s\n", w, hash)
	}
	if err := os.WriteFile(filepath.Join(dir, "users"), []byte(users.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "admin-token"), []byte(soakAdminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(cfg)
	for _, r := range [][2]string{
		{"listen = \"127.0.0.1:0\"\nshutdown_timeout", fmt.Sprintf("listen = %q\nshutdown_timeout", mainAddr)},
		{"[admin]\nlisten = \"127.0.0.1:0\"\n", fmt.Sprintf("[admin]\nlisten = %q\ntoken_file = \"admin-token\"\n", adminAddr)},
		{"key_file = \"signing.pem\"\n", "key_file = \"signing.pem\"\naccess_ttl = \"2s\"\nrefresh_before_expiry = \"1999ms\"\n" +
			"refresh_grace = \"500ms\"\nidle_timeout = \"4s\"\nverify_cache_size = 256\n"},
		{"path = \"sessions.db\"\n", "path = \"sessions.db\"\nsweep_interval = \"1s\"\n"},
		{"upstream = \"http://127.0.0.1:9\"", fmt.Sprintf("upstream = %q", upstream)},
	} {
		if !strings.Contains(s, r[0]) {
			t.Fatalf("writeSetup's configuration has no %q", r[0])
		}
		s = strings.Replace(s, r[0], r[1], 1)
	}
	s += "[log]\nlevel = \"warn\"\n"
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// freeLoopback returns a 127.0.0.1 address nobody listened on a moment ago.
func freeLoopback(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitHealthy waits for the admin listener's /healthz: a gateway at log
// level warn does not log its addresses.
func waitHealthy(t *testing.T, p *process, adminAddr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if res, err := http.Get("http://" + adminAddr + "/healthz"); err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return
			}
		}
		select {
		case <-p.done:
			t.Fatalf("gateway exited early (%v):\n%s", p.err, p.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("gateway not healthy within 30s:\n%s", p.stderr.String())
}

// soakLoad is the soak's clients and what they were answered.
type soakLoad struct {
	base, admin string
	client      *http.Client

	// pause is held for reading by each request and for writing by a
	// sample: a sample waits for the requests in flight, and the next
	// ones wait for it.
	pause sync.RWMutex

	mu     sync.Mutex
	counts map[string]map[int]int // by kind, by status
	errs   []string               // the first 5xx answers and transport errors
	bad    int
}

// Request kinds, in the order of the report.
var soakKinds = []string{"proxied", "login", "refresh", "logout", "own sessions", "admin list"}

// work is one client: it logs in as its user, then, step after step,
// makes a proxied request (most steps), refreshes and keeps the successor,
// lists its own sessions or, as the administrator, its user's sessions,
// logs out, or abandons its session to the idle timeout; a 401 (a token
// expired while the machine was slow, a session ended) logs in again.
func (l *soakLoad) work(t *testing.T, w int, stop <-chan struct{}) {
	user := fmt.Sprintf("user%d", w)
	var token string
	for step := w; ; step++ {
		select {
		case <-stop:
			return
		default:
		}
		if token == "" {
			body := fmt.Sprintf(`{"username":%q,"password":"wonderland"}`, user)
			status, b := l.do(t, "login", "POST", l.base+"/auth/login", "", body)
			if status == 200 {
				token = tokenOf(string(b))
			}
			continue
		}
		var status int
		var b []byte
		switch step % 20 {
		case 0, 1, 2:
			if status, b = l.do(t, "refresh", "POST", l.base+"/auth/refresh", token, ""); status == 200 {
				token = tokenOf(string(b))
				continue
			}
		case 3:
			status, _ = l.do(t, "logout", "POST", l.base+"/auth/logout", token, "")
			token = ""
		case 13:
			token = "" // abandoned: the sweeper removes it after the idle timeout
		case 5:
			status, _ = l.do(t, "own sessions", "GET", l.base+"/auth/sessions", token, "")
		case 6:
			status, _ = l.do(t, "admin list", "GET", l.admin+"/admin/sessions?subject="+user, soakAdminToken, "")
		default:
			status, _ = l.do(t, "proxied", "GET", l.base+"/api/soak", token, "")
		}
		if status == http.StatusUnauthorized {
			token = ""
		}
	}
}

// do makes one request and counts its answer by kind and status; a 5xx or
// a transport error (status 0) is kept for the report and fails the test.
func (l *soakLoad) do(t *testing.T, kind, method, url, token, body string) (int, []byte) {
	l.pause.RLock()
	defer l.pause.RUnlock()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Error(err)
		return 0, nil
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	status, b := 0, []byte(nil)
	res, err := l.client.Do(req)
	if err == nil {
		b, err = io.ReadAll(res.Body)
		res.Body.Close()
		status = res.StatusCode
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.counts[kind] == nil {
		l.counts[kind] = map[int]int{}
	}
	l.counts[kind][status]++
	if err != nil || status >= 500 {
		l.bad++
		if len(l.errs) < 10 {
			l.errs = append(l.errs, fmt.Sprintf("%s %s: status %d, error %v, body %q", method, url, status, err, b))
		}
		t.Fail()
	}
	return status, b
}

// sample pauses the load, lets the connections settle and reads the
// process's resources.
func (l *soakLoad) sample(t *testing.T, pid int, db string) soakSample {
	t.Helper()
	l.pause.Lock()
	defer l.pause.Unlock()
	time.Sleep(200 * time.Millisecond)
	var s soakSample
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(status)) {
		k, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		switch {
		case k == "VmRSS" && len(f) > 0:
			s.rssKiB, _ = strconv.Atoi(f[0])
		case k == "Threads" && len(f) > 0:
			s.threads, _ = strconv.Atoi(f[0])
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	s.fds = len(fds)
	fi, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}
	s.fileBytes = fi.Size()
	res, err := l.client.Get(l.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	g, ok1 := sample(string(b), "go_goroutines")
	a, ok2 := sample(string(b), "gateway_sessions_active")
	if !ok1 || !ok2 {
		t.Fatalf("/metrics has no go_goroutines or gateway_sessions_active")
	}
	s.goroutines, s.active = int(g), int64(a)
	return s
}

// report logs the answers by kind and status, and the 5xx and transport
// errors.
func (l *soakLoad) report(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	total := 0
	for _, kind := range soakKinds {
		var parts []string
		n := 0
		for _, status := range slices.Sorted(maps.Keys(l.counts[kind])) {
			c := l.counts[kind][status]
			parts = append(parts, fmt.Sprintf("%d: %d", status, c))
			n += c
		}
		total += n
		t.Logf("%-12s %7d  (%s)", kind, n, strings.Join(parts, ", "))
	}
	t.Logf("total %d requests; 5xx and transport errors: %d", total, l.bad)
	for _, e := range l.errs {
		t.Errorf("unexplained: %s", e)
	}
	for _, kind := range soakKinds {
		if l.counts[kind][200]+l.counts[kind][204] == 0 {
			t.Errorf("no %s request answered 200 or 204", kind)
		}
	}
}
