package adversarial

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/proxy"
	"github.com/spa-gateway/gateway/sessionstore"
)

// loadClient speaks to the gateway over a shared keep-alive transport.
type loadClient struct {
	base string
	c    *http.Client
}

type loadAnswer struct {
	status int
	token  string // access_token of a 200 login or refresh
	desc   string // error_description of an error
}

func (lc *loadClient) do(t *testing.T, method, path, token, body string) loadAnswer {
	req, err := http.NewRequest(method, lc.base+path, strings.NewReader(body))
	if err != nil {
		t.Error(err)
		return loadAnswer{}
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := lc.c.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", method, path, err)
		return loadAnswer{}
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var v struct {
		AccessToken string `json:"access_token"`
		Desc        string `json:"error_description"`
	}
	json.Unmarshal(b, &v)
	return loadAnswer{status: res.StatusCode, token: v.AccessToken, desc: v.Desc}
}

// refreshRules are the named refusals of the refresh rules.
var refreshRules = map[string]bool{
	"token not expired": true, "session revoked": true, "session expired": true, "token reuse detected": true,
}

// TestLoadWithFaults runs thousands of mixed requests from 100 goroutines
// against one gateway: logins (good and bad), refresh chains, concurrent
// refreshes of one token, replays of rotated tokens, API calls, bad tokens,
// logouts, and calls to a route whose upstream is down (the injected fault).
// It checks that no 5xx comes but from that route; that every refresh
// either succeeded or was refused by a named rule; that all the successes
// for one presented token name one successor; and that the store ends
// consistent (boltstore's Check: indexes, counter and pages agree).
func TestLoadWithFaults(t *testing.T) {
	t.Parallel()
	down, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The down upstream closes every connection before answering. It stays
	// open, so that no listener of a test running beside this one can take
	// its port and answer for it.
	t.Cleanup(func() { down.Close() })
	go func() {
		for {
			c, err := down.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	downURL := &url.URL{Scheme: "http", Host: down.Addr().String()}
	e := newEnv(t, envOptions{
		config: func(c *proxy.Config) {
			c.Routes = append(c.Routes, proxy.Route{Prefix: "/down/", Upstream: downURL, Auth: proxy.AuthRequired})
		},
		sessions: func(c *auth.SessionsConfig, _ *sessionstore.Store) {
			// With the suite's standing clock, every token is refreshable
			// at once and every rotated one is within its grace.
			c.RefreshBeforeExpiry = c.AccessTTL
		},
		deps: func(d *proxy.Deps) { d.Limiter = auth.NewFailureLimiter(1_000_000, time.Minute, nil) },
	})
	lc := &loadClient{base: "http://" + e.addr, c: &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 200, MaxConnsPerHost: 200},
	}}
	defer lc.c.CloseIdleConnections()

	var (
		mu         sync.Mutex
		successors = map[string]string{} // presented token -> successor
		requests   atomic.Int64
	)
	successor := func(presented, next string) {
		mu.Lock()
		defer mu.Unlock()
		if prev, ok := successors[presented]; ok && prev != next {
			t.Errorf("one token got two different successors")
		}
		successors[presented] = next
	}
	refresh := func(tok string) loadAnswer {
		requests.Add(1)
		a := lc.do(t, "POST", "/auth/refresh", tok, "")
		switch {
		case a.status == http.StatusOK && a.token != "":
			successor(tok, a.token)
		case a.status == http.StatusUnauthorized && refreshRules[a.desc]:
		default:
			t.Errorf("refresh: %d %q, want 200 or 401 with a named rule", a.status, a.desc)
		}
		return a
	}
	login := func() string {
		requests.Add(1)
		a := lc.do(t, "POST", "/auth/login", "", loginJSON)
		if a.status != http.StatusOK {
			t.Errorf("login: %d %q", a.status, a.desc)
		}
		return a.token
	}

	const workers, rounds = 100, 12
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			chain := []string{login()}
			for range rounds {
				cur := chain[len(chain)-1]
				switch op := rng.IntN(10); op {
				case 0, 1: // refresh along the chain
					if a := refresh(cur); a.status == http.StatusOK {
						chain = append(chain, a.token)
					} else {
						chain = []string{login()}
					}
				case 2: // five concurrent refreshes of one token
					var cwg sync.WaitGroup
					got := make([]loadAnswer, 5)
					for i := range got {
						cwg.Go(func() { got[i] = refresh(cur) })
					}
					cwg.Wait()
					if got[0].status == http.StatusOK {
						chain = append(chain, got[0].token)
					}
				case 3: // replay a rotated token: grace (same successor) or reuse
					if len(chain) >= 3 {
						if a := refresh(chain[len(chain)-3]); a.desc == "token reuse detected" {
							chain = []string{login()} // the session is revoked
						}
					}
				case 4: // a bad password, an unknown user
					requests.Add(2)
					for _, body := range []string{`{"username":"alice","password":"nope"}`, fmt.Sprintf(`{"username":"u%d","password":"x"}`, w)} {
						if a := lc.do(t, "POST", "/auth/login", "", body); a.status != http.StatusUnauthorized {
							t.Errorf("bad login: %d, want 401", a.status)
						}
					}
				case 5: // a forged token
					requests.Add(1)
					// One character in the middle of the signature changed:
					// always six different signature bits. (Overwriting the
					// last characters with "AAA" forged nothing when the
					// signature already ended that way: Ed25519's top bits
					// are often zero, about one token in 2,000.)
					i := len(cur) - 10
					c := byte('A')
					if cur[i] == 'A' {
						c = 'B'
					}
					if a := lc.do(t, "GET", "/api/x", cur[:i]+string(c)+cur[i+1:], ""); a.status != http.StatusUnauthorized {
						t.Errorf("forged token: %d, want 401", a.status)
					}
				case 6: // the injected fault: an upstream that is down
					requests.Add(1)
					if a := lc.do(t, "GET", "/down/x", cur, ""); a.status != http.StatusBadGateway {
						t.Errorf("down upstream: %d, want 502", a.status)
					}
				case 7: // logout, then the chain is over
					requests.Add(1)
					if a := lc.do(t, "POST", "/auth/logout", cur, ""); a.status != http.StatusNoContent {
						t.Errorf("logout: %d, want 204", a.status)
					}
					if a := refresh(cur); a.status != http.StatusUnauthorized {
						t.Errorf("refresh after logout: %d, want 401", a.status)
					}
					chain = []string{login()}
				default: // API calls
					for range 3 {
						requests.Add(1)
						if a := lc.do(t, "GET", "/api/x", cur, ""); a.status != http.StatusOK {
							t.Errorf("API call: %d %q, want 200", a.status, a.desc)
						}
					}
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d requests", requests.Load())
	if err := e.store.Check(t.Context()); err != nil {
		t.Errorf("store inconsistent after the load: %v", err)
	}
}
