package auth

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// limiterOp is what a limiterStep does.
type limiterOp int

const (
	// opFail is a wrong password: Reserve must allow it, and the
	// reservation is kept.
	opFail limiterOp = iota
	// opSucceed is a right password: Reserve must allow it, and the
	// reservation is released at once.
	opSucceed
	// opRefuse: Reserve must refuse, with wantRetry.
	opRefuse
	// opHold is an attempt in flight: Reserve must allow it, and the
	// reservation is kept under name until an opRelease.
	opHold
	// opRelease releases the reservation held under name.
	opRelease
)

// limiterStep is one call in a limiter scenario: advance the clock, then
// do op.
type limiterStep struct {
	advance   time.Duration
	op        limiterOp
	user      string
	addr      string
	name      string
	wantRetry time.Duration
}

func runLimiter(t *testing.T, l *FailureLimiter, clock *testClock, steps []limiterStep) {
	t.Helper()
	held := map[string]*Reservation{}
	for i, s := range steps {
		clock.Advance(s.advance)
		if s.op == opRelease {
			held[s.name].Release()
			continue
		}
		res, retry, ok := l.Reserve(s.user, s.addr)
		if s.op == opRefuse {
			if ok || retry != s.wantRetry || res != nil {
				t.Errorf("step %d: Reserve(%q, %q) = %v, %v, %v; want nil, %v, false", i, s.user, s.addr, res, retry, ok, s.wantRetry)
			}
			continue
		}
		if !ok || retry != 0 || res == nil {
			t.Errorf("step %d: Reserve(%q, %q) = %v, %v, %v; want a reservation, 0, true", i, s.user, s.addr, res, retry, ok)
			continue
		}
		switch s.op {
		case opSucceed:
			res.Release()
		case opHold:
			held[s.name] = res
		}
	}
}

func fail(user, addr string, advance time.Duration) limiterStep {
	return limiterStep{advance: advance, op: opFail, user: user, addr: addr}
}

func allowed(user, addr string, advance time.Duration) limiterStep {
	return limiterStep{advance: advance, op: opSucceed, user: user, addr: addr}
}

func refused(user, addr string, advance, retry time.Duration) limiterStep {
	return limiterStep{advance: advance, op: opRefuse, user: user, addr: addr, wantRetry: retry}
}

func hold(name, user, addr string, advance time.Duration) limiterStep {
	return limiterStep{advance: advance, op: opHold, user: user, addr: addr, name: name}
}

func release(name string, advance time.Duration) limiterStep {
	return limiterStep{advance: advance, op: opRelease, name: name}
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
			// The right password gave its attempt back.
			fail("alice", a, 0),
			refused("alice", a, 0, 59*time.Second),
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
		{"a refused attempt counts nowhere", []limiterStep{
			fail("alice", a, 0), fail("alice", a, 0), fail("alice", a, 0),
			// Refused for alice: address b is not charged.
			refused("alice", b, 0, 60*time.Second), refused("alice", b, 0, 60*time.Second),
			refused("alice", b, 0, 60*time.Second),
			fail("bob", b, 0), fail("carol", b, 0),
			allowed("dave", b, 0),
		}},
		{"attempts in flight count", []limiterStep{
			hold("h1", "alice", a, 0), hold("h2", "alice", a, 0), hold("h3", "alice", a, time.Second),
			// None has failed yet: the limit holds all the same, for the
			// username and for the address.
			refused("alice", b, 0, 59*time.Second),
			refused("bob", a, 0, 59*time.Second),
			// One ends with the right password: one attempt is free.
			release("h2", 0),
			fail("alice", b, 0),
			refused("alice", "203.0.113.1", 0, 59*time.Second),
		}},
		{"release frees the username and the address", []limiterStep{
			hold("h1", "alice", a, 0), hold("h2", "alice", a, 0), hold("h3", "alice", a, 0),
			release("h1", 0), release("h2", 0), release("h3", 0),
			fail("alice", b, 0), fail("alice", b, 0), fail("alice", b, 0),
			fail("bob", a, 0), fail("bob", a, 0), fail("bob", a, 0),
			refused("alice", "203.0.113.1", 0, 60*time.Second),
			refused("carol", a, 0, 60*time.Second),
		}},
		{"a second release does nothing", []limiterStep{
			// All at the same instant: a second release must not take
			// away one of the failures recorded at the same time.
			hold("h1", "alice", a, 0), fail("alice", a, 0), fail("alice", a, 0),
			release("h1", 0), release("h1", 0),
			fail("alice", a, 0),
			refused("alice", a, 0, 60*time.Second),
		}},
		{"a reservation leaves with the window", []limiterStep{
			hold("h1", "alice", a, 0), hold("h2", "alice", a, 0), hold("h3", "alice", a, 0),
			refused("alice", a, 59*time.Second, time.Second),
			allowed("alice", a, time.Second),
		}},
		{"a late release frees no newer attempt", []limiterStep{
			hold("h1", "alice", a, 0),
			fail("alice", a, time.Minute), fail("alice", a, 0), fail("alice", a, 0),
			release("h1", 0),
			refused("alice", a, 0, 60*time.Second),
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
			res, retry, ok := l.Reserve("alice", "192.0.2.1")
			if res != nil || retry != 0 || !ok {
				t.Errorf("NewFailureLimiter(%d, %v).Reserve = %v, %v, %v; want nil, 0, true", tt.max, tt.window, res, retry, ok)
			}
			res.Release() // a nil Reservation releases nothing
		}
	}
}

// attempt reports whether Reserve allows a login, and releases it: a login
// with the right password.
func attempt(l *FailureLimiter, user, addr string) bool {
	res, _, ok := l.Reserve(user, addr)
	res.Release()
	return ok
}

// mustFail records a wrong password that Reserve must allow.
func mustFail(t *testing.T, l *FailureLimiter, user, addr string) {
	t.Helper()
	if _, _, ok := l.Reserve(user, addr); !ok {
		t.Fatalf("Reserve(%q, %q) refused, want allowed", user, addr)
	}
}

func TestFailureLimiterFlood(t *testing.T) {
	const capacity = 50
	clock := newTestClock()
	l := NewFailureLimiter(3, time.Minute, clock.Now)
	l.users.capacity, l.addrs.capacity = capacity, capacity

	// The victim has two failures: one short of the limit.
	mustFail(t, l, "victim", "192.0.2.1")
	mustFail(t, l, "victim", "192.0.2.2")
	// A flood of random usernames from random addresses.
	for i := range 10 * capacity {
		clock.Advance(10 * time.Millisecond)
		l.Reserve(fmt.Sprintf("random-%d", i), fmt.Sprintf("10.0.%d.%d", i/256, i%256))
	}
	if got := len(l.users.entries); got > capacity {
		t.Errorf("users table holds %d entries, want at most %d", got, capacity)
	}
	if got := len(l.addrs.entries); got > capacity {
		t.Errorf("addresses table holds %d entries, want at most %d", got, capacity)
	}
	// The flood did not reset the victim's counter: a third failure from
	// an address with a counter of its own reaches the limit.
	mustFail(t, l, "victim", "192.0.2.1")
	if attempt(l, "victim", "192.0.2.4") {
		t.Errorf("Reserve(victim) after the flood and a third failure = ok, want refused")
	}
	// Nor does it escape limiting: keys without a counter of their own
	// share the overflow counters, which the flood has filled (fail
	// closed).
	if attempt(l, "fresh-user", "192.0.2.5") {
		t.Errorf("Reserve(fresh-user, fresh address) while the tables are full of live entries = ok, want refused")
	}

	// Once the flood's failures leave the window, the tables empty and
	// fresh users are allowed again, with a counter of their own.
	clock.Advance(time.Minute)
	if !attempt(l, "fresh-user", "192.0.2.5") {
		t.Errorf("Reserve(fresh-user) after the window = refused, want ok")
	}
	mustFail(t, l, "fresh-user", "192.0.2.5")
	if got := len(l.users.entries); got != 1 {
		t.Errorf("users table holds %d entries after the window, want 1", got)
	}
}

// TestFailureLimiterReleasedLeaveTables: a released attempt leaves no
// entry behind, so that a stream of successful logins of many users (or
// of attempts that ended in a login source's failure) neither grows the
// tables nor, once they are full, pushes fresh keys into the overflow.
func TestFailureLimiterReleasedLeaveTables(t *testing.T) {
	const capacity = 50
	clock := newTestClock()
	l := NewFailureLimiter(3, time.Minute, clock.Now)
	l.users.capacity, l.addrs.capacity = capacity, capacity
	mustFail(t, l, "victim", "192.0.2.1")
	for i := range 10 * capacity {
		clock.Advance(10 * time.Millisecond)
		if !attempt(l, fmt.Sprintf("user-%d", i), fmt.Sprintf("10.0.%d.%d", i/256, i%256)) {
			t.Fatalf("login %d refused, want allowed: released attempts filled the tables", i)
		}
	}
	if got := len(l.users.entries); got != 1 {
		t.Errorf("users table holds %d entries, want 1 (the victim's)", got)
	}
	if got := len(l.addrs.entries); got != 1 {
		t.Errorf("addresses table holds %d entries, want 1 (the victim's)", got)
	}
	if got := l.users.order.Len(); got != 1 {
		t.Errorf("users order list holds %d entries, want 1", got)
	}
	mustFail(t, l, "victim", "192.0.2.1")
	mustFail(t, l, "victim", "192.0.2.1")
	if attempt(l, "victim", "192.0.2.1") {
		t.Errorf("Reserve(victim) after three failures = ok, want refused")
	}
}

// TestFailureLimiterOverflowRelease: attempts counted in the overflow
// counter are released from it.
func TestFailureLimiterOverflowRelease(t *testing.T) {
	const capacity = 5
	clock := newTestClock()
	l := NewFailureLimiter(3, time.Minute, clock.Now)
	l.users.capacity = capacity
	for i := range capacity {
		mustFail(t, l, fmt.Sprintf("user-%d", i), fmt.Sprintf("192.0.2.%d", i))
	}
	var held []*Reservation
	for i := range 3 {
		res, _, ok := l.Reserve(fmt.Sprintf("overflow-%d", i), fmt.Sprintf("198.51.100.%d", i))
		if !ok {
			t.Fatalf("overflow attempt %d refused, want allowed", i)
		}
		held = append(held, res)
	}
	if got := len(l.users.entries); got != capacity {
		t.Errorf("users table holds %d entries, want %d", got, capacity)
	}
	if attempt(l, "fresh", "203.0.113.1") {
		t.Errorf("Reserve(fresh) with the overflow counter full = ok, want refused")
	}
	held[1].Release()
	if !attempt(l, "fresh", "203.0.113.1") {
		t.Errorf("Reserve(fresh) after an overflow attempt was released = refused, want ok")
	}
	if got := len(l.users.overflow.times); got != 2 {
		t.Errorf("overflow counter holds %d attempts, want 2", got)
	}
}

func TestFailureLimiterEvictsExpiredFirst(t *testing.T) {
	clock := newTestClock()
	l := NewFailureLimiter(2, time.Minute, clock.Now)
	l.users.capacity = 3
	for _, u := range []string{"a", "b", "c"} {
		mustFail(t, l, u, "192.0.2."+u)
	}
	clock.Advance(30 * time.Second)
	mustFail(t, l, "a", "192.0.2.9") // a is live again; b and c expire first
	clock.Advance(30 * time.Second)
	mustFail(t, l, "d", "192.0.2.10")
	mustFail(t, l, "d", "192.0.2.11")
	if _, ok := l.users.entries[userKey("d")]; !ok {
		t.Errorf("d has no entry of its own after b and c expired")
	}
	if _, ok := l.users.entries[userKey("b")]; ok {
		t.Errorf("b's expired entry was not evicted")
	}
	if attempt(l, "d", "192.0.2.12") {
		t.Errorf("Reserve(d) after 2 failures = ok, want refused")
	}
	if !attempt(l, "a", "192.0.2.12") {
		t.Errorf("Reserve(a) with one failure in the window = refused, want ok")
	}
	if !attempt(l, "e", "192.0.2.12") {
		t.Errorf("Reserve(e) = refused, want ok: the table has room")
	}
}

// TestFailureLimiterConcurrent: attempts arriving at once for one username
// (from many addresses) or from one address (for many usernames) are
// allowed exactly max times, whatever their interleaving.
func TestFailureLimiterConcurrent(t *testing.T) {
	const max, n = 5, 200
	tests := []struct {
		name string
		key  func(i int) (user, addr string)
	}{
		{"one username", func(i int) (string, string) { return "alice", fmt.Sprintf("10.0.%d.%d", i/256, i%256) }},
		{"one address", func(i int) (string, string) { return fmt.Sprintf("user-%d", i), "192.0.2.1" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newTestClock()
			l := NewFailureLimiter(max, time.Minute, clock.Now)
			start := make(chan struct{})
			var wg sync.WaitGroup
			var mu sync.Mutex
			allowed := 0
			for i := range n {
				wg.Go(func() {
					<-start
					user, addr := tt.key(i)
					if _, _, ok := l.Reserve(user, addr); ok {
						mu.Lock()
						allowed++
						mu.Unlock()
					}
				})
			}
			close(start)
			wg.Wait()
			if allowed != max {
				t.Errorf("%d concurrent attempts: %d allowed, want %d", n, allowed, max)
			}
		})
	}

	// Concurrent logins that all succeed leave nothing behind.
	clock := newTestClock()
	l := NewFailureLimiter(max, time.Minute, clock.Now)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				attempt(l, fmt.Sprintf("user-%d", i%20), fmt.Sprintf("192.0.2.%d", g))
				if i%50 == 0 {
					clock.Advance(time.Second)
				}
			}
		})
	}
	wg.Wait()
	if n := len(l.users.entries) + len(l.addrs.entries); n != 0 {
		t.Errorf("tables hold %d entries after only successful logins, want 0", n)
	}
}
