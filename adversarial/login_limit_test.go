package adversarial

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/metrics"
	"github.com/spa-gateway/gateway/proxy"
)

// loginLimit is login.max_failures in the login limit cases.
const loginLimit = 5

// limitCost is the bcrypt cost of the users file in the login limit cases: high enough that a burst
// arrives while the first passwords are being checked, which is the
// timing the limit must hold under, as with a production cost.
const limitCost = 6

// loginJSONFor is a JSON login body.
func loginJSONFor(username, pass string) string {
	return fmt.Sprintf(`{"username":%q,"password":%q}`, username, pass)
}

// loginAnswer is a login's status and Retry-After header.
type loginAnswer struct {
	status     int
	retryAfter string
}

// loginBurst sends reqs at once, each on its own TCP connection, and returns
// their answers in order. With presend, all of every request but its last
// byte is written first, and the last bytes are released together, once
// every connection holds the rest: the gateway then reads every body
// complete at the same moment, the tightest timing an attacker can get.
func loginBurst(tb testing.TB, addr string, presend bool, reqs []rawReq) []loginAnswer {
	tb.Helper()
	answers := make([]loginAnswer, len(reqs))
	errs := make([]error, len(reqs))
	var ready, done sync.WaitGroup
	release := make(chan struct{})
	ready.Add(len(reqs))
	for i, r := range reqs {
		done.Go(func() {
			raw := r.bytes(addr)
			var conn net.Conn
			var err error
			if presend {
				if conn, err = dialFrom(addr, r.from); err == nil {
					_, err = conn.Write(raw[:len(raw)-1])
					raw = raw[len(raw)-1:]
				}
			}
			ready.Done()
			<-release
			if !presend {
				conn, err = dialFrom(addr, r.from)
			}
			if err == nil {
				answers[i], err = loginExchange(conn, raw)
			}
			if conn != nil {
				conn.Close()
			}
			errs[i] = err
		})
	}
	ready.Wait()
	close(release)
	done.Wait()
	if err := errors.Join(errs...); err != nil {
		tb.Fatalf("burst: %v", err)
	}
	return answers
}

// loginExchange writes raw on conn and reads one response.
func loginExchange(conn net.Conn, raw []byte) (loginAnswer, error) {
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.Write(raw); err != nil {
		return loginAnswer{}, err
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return loginAnswer{}, err
	}
	res.Body.Close()
	return loginAnswer{res.StatusCode, res.Header.Get("Retry-After")}, nil
}

// wantLoginRefused checks that a refused login is a 429 with a Retry-After of
// 1 to 60 seconds (the window).
func wantLoginRefused(tb testing.TB, what string, status int, retryAfter string) {
	tb.Helper()
	if status != http.StatusTooManyRequests {
		tb.Errorf("%s: status = %d, want 429", what, status)
		return
	}
	if s, err := strconv.Atoi(retryAfter); err != nil || s < 1 || s > 60 {
		tb.Errorf("%s: Retry-After = %q, want 1..60 seconds", what, retryAfter)
	}
}

// TestLoginLimit: within one failure_window, no more than
// login.max_failures wrong passwords are answered 401 for a username or an
// address, however the attempts are timed, and the right password past the
// limit gets 429 with Retry-After. The limit was checked before bcrypt and
// counted after it, so that 200 concurrent wrong passwords for one user
// all got 401 and none 429: every attempt arriving during bcrypt passed
// the check.
func TestLoginLimit(t *testing.T) {
	t.Parallel()
	const n = 200
	tests := []struct {
		name string
		// wrong is the i-th wrong attempt.
		wrong func(i int) rawReq
		// from is where the right password is tried afterwards.
		from string
	}{
		{"one username from one address", func(i int) rawReq {
			return post("/auth/login", loginJSONFor(user, "wrong"), "Content-Type: application/json")
		}, ""},
		{"one address for many usernames", func(i int) rawReq {
			return post("/auth/login", loginJSONFor(fmt.Sprintf("mallory-%d", i), "wrong"), "Content-Type: application/json")
		}, ""},
		{"one username from many addresses", func(i int) rawReq {
			r := post("/auth/login", loginJSONFor(user, "wrong"), "Content-Type: application/json")
			r.from = fmt.Sprintf("127.0.3.%d", i+1)
			return r
		}, "127.0.4.1"},
	}
	for _, tt := range tests {
		for _, presend := range []bool{false, true} {
			name := tt.name + ", concurrent"
			if presend {
				name = tt.name + ", pre-sent and released on the last byte"
			}
			t.Run(name, func(t *testing.T) {
				clock := newClock()
				e := newEnv(t, envOptions{deps: func(d *proxy.Deps) {
					d.Login = usersFile(t, limitCost)
					d.Limiter = auth.NewFailureLimiter(loginLimit, time.Minute, clock.Now)
				}})
				reqs := make([]rawReq, n)
				for i := range reqs {
					reqs[i] = tt.wrong(i)
				}
				counts := map[int]int{}
				for i, a := range loginBurst(t, e.addr, presend, reqs) {
					counts[a.status]++
					if a.status != http.StatusUnauthorized {
						wantLoginRefused(t, fmt.Sprintf("wrong password %d", i), a.status, a.retryAfter)
					}
				}
				if counts[http.StatusUnauthorized] != loginLimit {
					t.Errorf("%d wrong passwords at once: %d answered 401, want %d (max_failures); statuses %v",
						n, counts[http.StatusUnauthorized], loginLimit, counts)
				}
				if got := testutil.ToFloat64(e.met.Logins.WithLabelValues(metrics.LoginFailure)); got != loginLimit {
					t.Errorf("logins{failure} = %v, want %d: more passwords were checked than the limit allows", got, loginLimit)
				}

				// The right password past the limit: 429, no session.
				right := post("/auth/login", loginJSON, "Content-Type: application/json")
				right.from = tt.from
				a := e.send(right)
				wantLoginRefused(t, "right password past the limit", a.status, a.header.Get("Retry-After"))
				if err := noSession(e); err != nil {
					t.Error(err)
				}

				// Once the window has passed, it logs in.
				clock.Set(epoch.Add(time.Minute))
				if a := e.send(right); a.status != http.StatusOK {
					t.Errorf("right password after the window: status = %d, want 200", a.status)
				}
			})
		}
	}
}

// heldLogin is a legacy login endpoint (login.upstream) that holds every
// wrong password until released, and lets "wonderland" in at once: the
// attempts of a burst stay in flight, inside the gateway, for as long as
// the case needs.
type heldLogin struct {
	*httptest.Server
	arrived atomic.Int64 // wrong passwords received
	release chan struct{}
}

func newHeldLogin(tb testing.TB) *heldLogin {
	tb.Helper()
	h := &heldLogin{release: make(chan struct{})}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		v, _ := url.ParseQuery(string(body))
		if v.Get("password") == password {
			w.Header().Set("X-Legacy-User", v.Get("username"))
			return
		}
		h.arrived.Add(1)
		select {
		case <-h.release:
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, "legacy says no")
	}))
	tb.Cleanup(h.Close)
	tb.Cleanup(h.open) // before Close: let held handlers return
	return h
}

func (h *heldLogin) open() {
	select {
	case <-h.release:
	default:
		close(h.release)
	}
}

// TestLoginLimitBurst: in a burst of wrong passwords followed by the right
// one, the right one is refused once the limit is reached, although none
// of the wrong ones has been answered yet. The limit was counted only once
// a password had been checked: in a burst of 60 (59 wrong, the last right)
// the right password got 200.
func TestLoginLimitBurst(t *testing.T) {
	t.Parallel()
	const wrong = 59
	legacy := newHeldLogin(t)
	e := newEnv(t, envOptions{deps: func(d *proxy.Deps) {
		d.Login = &auth.UpstreamLogin{URL: legacy.URL, SubjectHeader: "X-Legacy-User"}
		d.Limiter = auth.NewFailureLimiter(loginLimit, time.Minute, func() time.Time { return epoch })
	}})
	form := func(pass string) rawReq {
		return post("/auth/login", "username="+user+"&password="+pass, "Content-Type: application/x-www-form-urlencoded")
	}

	var answered atomic.Int64
	answers := make([]loginAnswer, wrong)
	errs := make([]error, wrong)
	var wg sync.WaitGroup
	for i := range wrong {
		wg.Go(func() {
			defer answered.Add(1)
			conn, err := dialFrom(e.addr, "")
			if err != nil {
				errs[i] = err
				return
			}
			defer conn.Close()
			answers[i], errs[i] = loginExchange(conn, form("wrong").bytes(e.addr))
		})
	}
	// Every wrong attempt is inside the gateway: held by the login
	// endpoint, or already answered without reaching it.
	if !settle(10*time.Second, func() bool { return legacy.arrived.Load()+answered.Load() == wrong }) {
		t.Fatalf("after 10s: %d wrong attempts reached the login endpoint and %d were answered, want %d in all",
			legacy.arrived.Load(), answered.Load(), wrong)
	}
	if got := legacy.arrived.Load(); got > loginLimit {
		t.Errorf("%d wrong passwords reached the login endpoint at once, want at most %d", got, loginLimit)
	}
	a := e.send(form(password))
	legacy.open()
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("burst: %v", err)
	}
	if a.status == http.StatusOK {
		t.Errorf("right password after %d wrong ones in flight: status = 200, want 429", wrong)
	} else {
		wantLoginRefused(t, "right password after the burst", a.status, a.header.Get("Retry-After"))
	}
	unauthorized := 0
	for i, a := range answers {
		if a.status == http.StatusUnauthorized {
			unauthorized++
		} else {
			wantLoginRefused(t, fmt.Sprintf("wrong password %d", i), a.status, a.retryAfter)
		}
	}
	if unauthorized > loginLimit {
		t.Errorf("%d wrong passwords answered 401, want at most %d", unauthorized, loginLimit)
	}
	if a := e.send(form(password)); a.status != http.StatusTooManyRequests {
		t.Errorf("right password once the burst was answered: status = %d, want 429", a.status)
	}
	if err := noSession(e); err != nil {
		t.Error(err)
	}
}
