package auth

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// limiterStep is one call in a limiter scenario: advance the clock, then
// either Fail (fail true) or Check, expecting ok and retryAfter.
type limiterStep struct {
	advance   time.Duration
	user      string
	addr      string
	fail      bool
	wantOK    bool
	wantRetry time.Duration
}

func runLimiter(t *testing.T, l *FailureLimiter, clock *testClock, steps []limiterStep) {
	t.Helper()
	for i, s := range steps {
		clock.Advance(s.advance)
		if s.fail {
			l.Fail(s.user, s.addr)
			continue
		}
		retry, ok := l.Check(s.user, s.addr)
		if ok != s.wantOK || retry != s.wantRetry {
			t.Errorf("step %d: Check(%q, %q) = %v, %v; want %v, %v", i, s.user, s.addr, retry, ok, s.wantRetry, s.wantOK)
		}
	}
}

func fail(user, addr string, advance time.Duration) limiterStep {
	return limiterStep{advance: advance, user: user, addr: addr, fail: true}
}

func allowed(user, addr string, advance time.Duration) limiterStep {
	return limiterStep{advance: advance, user: user, addr: addr, wantOK: true}
}

func refused(user, addr string, advance, retry time.Duration) limiterStep {
	return limiterStep{advance: advance, user: user, addr: addr, wantRetry: retry}
}

func TestFailureLimiter(t *testing.T) {
	const a, b = "192.0.2.1", "198.51.100.7"
	tests := []struct {
		name  string
		steps []limiterStep
	}{
		{"below max", []limiterStep{
			fail("alice", a, 0), fail("alice", a, time.Second),
			allowed("alice", a, 0),
		}},
		{"username limit, from any address", []limiterStep{
			fail("alice", a, 0), fail("alice", b, 10*time.Second), fail("alice", "203.0.113.9", 10*time.Second),
			refused("alice", "203.0.113.10", 0, 40*time.Second),
			allowed("bob", "203.0.113.10", 0),
		}},
		{"address limit, for any username", []limiterStep{
			fail("u1", a, 0), fail("u2", a, 0), fail("u3", a, 0),
			refused("u4", a, 5*time.Second, 55*time.Second),
			allowed("u4", b, 0),
		}},
		{"window slides", []limiterStep{
			fail("alice", a, 0), fail("alice", a, 10*time.Second), fail("alice", a, 10*time.Second),
			refused("alice", b, 39*time.Second, time.Second),
			// 59.5s after the first failure: 0.5s left, rounded up.
			refused("alice", b, 500*time.Millisecond, time.Second),
			// The first failure leaves the window exactly at 60s.
			allowed("alice", b, 500*time.Millisecond),
			// One more failure: the counted ones are at 10s, 20s, 60s.
			fail("alice", b, 0),
			refused("alice", "203.0.113.1", 0, 10*time.Second),
			allowed("alice", b, 10*time.Second),
		}},
		{"retry rounds up", []limiterStep{
			fail("alice", a, 0), fail("alice", a, 0), fail("alice", a, 0),
			refused("alice", a, 19*time.Second+time.Millisecond, 41*time.Second),
		}},
		{"the longer wait wins", []limiterStep{
			fail("alice", a, 0), fail("alice", a, 0), fail("alice", a, 0),
			fail("bob", b, 30*time.Second), fail("bob", b, 0), fail("bob", b, 0),
			refused("alice", b, 0, 60*time.Second),
			refused("bob", a, 0, 60*time.Second),
		}},
		{"failures beyond max keep the latest", []limiterStep{
			fail("alice", a, 0), fail("alice", a, 0), fail("alice", a, 0), fail("alice", a, 0),
			fail("alice", a, 30*time.Second), fail("alice", a, 0),
			// Counted: the latest 3 (t0, t0+30s, t0+30s); the window
			// reopens when t0 leaves it.
			refused("alice", a, 0, 30*time.Second),
			allowed("alice", b, 60*time.Second),
		}},
		{"username without case or spaces", []limiterStep{
			fail("Alice", a, 0), fail("ALICE ", b, 0), fail(" alice", "203.0.113.3", 0),
			refused("aLiCe", "203.0.113.4", 0, 60*time.Second),
		}},
		{"port ignored", []limiterStep{
			fail("u1", "192.0.2.1:1000", 0), fail("u2", "192.0.2.1:2000", 0), fail("u3", a, 0),
			refused("u4", "192.0.2.1:3000", 0, 60*time.Second),
		}},
		{"IPv6 per /64", []limiterStep{
			fail("u1", "[2001:db8:1:2::1]:443", 0), fail("u2", "2001:db8:1:2:ffff::9", 0), fail("u3", "2001:db8:1:2::3%eth0", 0),
			refused("u4", "[2001:db8:1:2:aaaa:bbbb:cccc:dddd]:1", 0, 60*time.Second),
			allowed("u4", "2001:db8:1:3::1", 0),
		}},
		{"IPv4-mapped IPv6 is IPv4", []limiterStep{
			fail("u1", "::ffff:192.0.2.1", 0), fail("u2", "[::ffff:192.0.2.1]:80", 0), fail("u3", a, 0),
			refused("u4", a, 0, 60*time.Second),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newTestClock()
			l := NewFailureLimiter(3, time.Minute, clock.Now)
			runLimiter(t, l, clock, tt.steps)
		})
	}
}

func TestFailureLimiterDisabled(t *testing.T) {
	for _, tt := range []struct {
		max    int
		window time.Duration
	}{{0, time.Minute}, {-1, time.Minute}, {3, 0}} {
		l := NewFailureLimiter(tt.max, tt.window, nil)
		for range 10 {
			l.Fail("alice", "192.0.2.1")
		}
		if retry, ok := l.Check("alice", "192.0.2.1"); !ok || retry != 0 {
			t.Errorf("NewFailureLimiter(%d, %v).Check = %v, %v; want 0, true", tt.max, tt.window, retry, ok)
		}
	}
}

func TestFailureLimiterFlood(t *testing.T) {
	const capacity = 50
	clock := newTestClock()
	l := NewFailureLimiter(3, time.Minute, clock.Now)
	l.users.capacity, l.addrs.capacity = capacity, capacity

	// The victim has two failures: one short of the limit.
	l.Fail("victim", "192.0.2.1")
	l.Fail("victim", "192.0.2.2")
	// A flood of random usernames from random addresses.
	for i := range 10 * capacity {
		clock.Advance(10 * time.Millisecond)
		l.Fail(fmt.Sprintf("random-%d", i), fmt.Sprintf("10.0.%d.%d", i/256, i%256))
	}
	if got := len(l.users.entries); got > capacity {
		t.Errorf("users table holds %d entries, want at most %d", got, capacity)
	}
	if got := len(l.addrs.entries); got > capacity {
		t.Errorf("addresses table holds %d entries, want at most %d", got, capacity)
	}
	// The flood did not reset the victim's counter.
	l.Fail("victim", "192.0.2.3")
	if _, ok := l.Check("victim", "192.0.2.4"); ok {
		t.Errorf("Check(victim) after the flood and a third failure = ok, want refused")
	}
	// Nor does it escape limiting: new usernames share the overflow
	// counter, which the flood has filled (fail closed).
	if _, ok := l.Check("fresh-user", "192.0.2.5"); ok {
		t.Errorf("Check(fresh-user) while the table is full of live entries = ok, want refused")
	}

	// Once the flood's failures leave the window, the tables empty and
	// fresh users are allowed again, with a counter of their own.
	clock.Advance(time.Minute)
	if _, ok := l.Check("fresh-user", "192.0.2.5"); !ok {
		t.Errorf("Check(fresh-user) after the window = refused, want ok")
	}
	l.Fail("fresh-user", "192.0.2.5")
	if got := len(l.users.entries); got != 1 {
		t.Errorf("users table holds %d entries after the window, want 1", got)
	}
}

func TestFailureLimiterEvictsExpiredFirst(t *testing.T) {
	clock := newTestClock()
	l := NewFailureLimiter(2, time.Minute, clock.Now)
	l.users.capacity = 3
	for _, u := range []string{"a", "b", "c"} {
		l.Fail(u, "192.0.2."+u)
	}
	clock.Advance(30 * time.Second)
	l.Fail("a", "192.0.2.9") // a is live again; b and c expire first
	clock.Advance(30 * time.Second)
	l.Fail("d", "192.0.2.10")
	l.Fail("d", "192.0.2.11")
	if _, ok := l.users.entries[userKey("d")]; !ok {
		t.Errorf("d has no entry of its own after b and c expired")
	}
	if _, ok := l.users.entries[userKey("b")]; ok {
		t.Errorf("b's expired entry was not evicted")
	}
	if _, ok := l.Check("d", "192.0.2.12"); ok {
		t.Errorf("Check(d) after 2 failures = ok, want refused")
	}
	if _, ok := l.Check("a", "192.0.2.12"); !ok {
		t.Errorf("Check(a) with one failure in the window = refused, want ok")
	}
	if _, ok := l.Check("e", "192.0.2.12"); !ok {
		t.Errorf("Check(e) = refused, want ok: the table has room")
	}
}

func TestFailureLimiterConcurrent(t *testing.T) {
	clock := newTestClock()
	l := NewFailureLimiter(5, time.Minute, clock.Now)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				user := fmt.Sprintf("user-%d", i%20)
				addr := fmt.Sprintf("192.0.2.%d", g)
				l.Fail(user, addr)
				l.Check(user, addr)
				if i%50 == 0 {
					clock.Advance(time.Second)
				}
			}
		})
	}
	wg.Wait()
	if _, ok := l.Check("user-1", "203.0.113.1"); ok {
		t.Errorf("Check(user-1) after 80 failures = ok, want refused")
	}
}
