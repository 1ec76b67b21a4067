package auth

import (
	"container/list"
	"crypto/sha256"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// maxLimiterEntries bounds each of FailureLimiter's two tables.
const maxLimiterEntries = 100_000

// FailureLimiter counts failed logins per username and per client address
// within a sliding window (login.max_failures, login.failure_window). A
// FailureLimiter is safe for concurrent use.
//
// Usernames are compared without case and surrounding spaces (a login
// source that ignores case must not give an attacker one budget per
// spelling). Addresses may carry a port, which is ignored; IPv6 addresses
// count per /64, the block one subscriber usually holds, and IPv4-mapped
// IPv6 addresses as IPv4.
//
// Memory is bounded: each table holds at most 100,000 keys, each with at
// most max failure times (8 bytes each), and a key leaves as soon as its
// last failure has left the window. When a table is full of live keys, a
// key not in it is not given a counter of its own but shares a single
// overflow counter with every other such key. This is the safe choice: a
// flood of random usernames can neither evict a victim's counter (which
// would reset it) nor escape limiting (they all share max failures per
// window). Its cost is that during such a flood, usernames or addresses
// without a counter of their own may be refused (429) even with the right
// password: the limiter fails closed.
type FailureLimiter struct {
	max    int
	window time.Duration
	now    func() time.Time

	mu    sync.Mutex
	users *failureTable
	addrs *failureTable
}

// NewFailureLimiter returns a limiter refusing a username or an address
// once it has max failures within window. max < 1 or window <= 0 disable
// it (Check always allows); now nil means time.Now.
func NewFailureLimiter(max int, window time.Duration, now func() time.Time) *FailureLimiter {
	if now == nil {
		now = time.Now
	}
	return &FailureLimiter{
		max:    max,
		window: window,
		now:    now,
		users:  newFailureTable(maxLimiterEntries),
		addrs:  newFailureTable(maxLimiterEntries),
	}
}

func (l *FailureLimiter) disabled() bool { return l.max < 1 || l.window <= 0 }

// Check reports whether a login for username from addr may be attempted:
// ok is false when the username or the address already has max failures
// within the window, and retryAfter is then how long until the oldest
// counted failure (of whichever waits longer) leaves the window, rounded up
// to whole seconds and at least one second, for the Retry-After header.
func (l *FailureLimiter) Check(username, addr string) (retryAfter time.Duration, ok bool) {
	if l.disabled() {
		return 0, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now().UnixNano()
	wait := max(
		l.users.wait(userKey(username), now, l.max, l.window),
		l.addrs.wait(addrKey(addr), now, l.max, l.window),
	)
	if wait <= 0 {
		return 0, true
	}
	retryAfter = (wait + time.Second - 1).Truncate(time.Second)
	return max(retryAfter, time.Second), false
}

// Fail records a failed login for username from addr.
func (l *FailureLimiter) Fail(username, addr string) {
	if l.disabled() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now().UnixNano()
	l.users.add(userKey(username), now, l.max, l.window)
	l.addrs.add(addrKey(addr), now, l.max, l.window)
}

// userKey is the table key of a username: a digest, so that long
// usernames cost no more memory than short ones.
func userKey(username string) [sha256.Size]byte {
	return sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(username))))
}

// addrKey is the table key of a client address: its IP without port, IPv6
// reduced to its /64.
func addrKey(addr string) [sha256.Size]byte {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.WithZone("").Unmap()
		if ip.Is6() {
			if p, err := ip.Prefix(64); err == nil {
				host = p.String()
			}
		} else {
			host = ip.String()
		}
	}
	return sha256.Sum256([]byte(host))
}

// failureTable is the failures of one kind of key, in unix nanoseconds.
type failureTable struct {
	capacity int
	entries  map[[sha256.Size]byte]*list.Element
	// order holds *failureEntry by last failure, the oldest first, so
	// that expired entries are found at the front.
	order    *list.List
	overflow failureEntry
}

type failureEntry struct {
	key   [sha256.Size]byte
	times []int64 // ascending, at most max
}

func newFailureTable(capacity int) *failureTable {
	return &failureTable{
		capacity: capacity,
		entries:  map[[sha256.Size]byte]*list.Element{},
		order:    list.New(),
	}
}

// evict removes the entries whose every failure has left the window.
func (t *failureTable) evict(now int64, window time.Duration) {
	for front := t.order.Front(); front != nil; front = t.order.Front() {
		e := front.Value.(*failureEntry)
		if len(e.times) > 0 && e.times[len(e.times)-1]+int64(window) > now {
			return
		}
		t.order.Remove(front)
		delete(t.entries, e.key)
	}
}

// lookup returns the key's entry, the overflow entry if the table is full
// and the key not in it, or nil.
func (t *failureTable) lookup(key [sha256.Size]byte, now int64, window time.Duration) (e *failureEntry, elem *list.Element) {
	t.evict(now, window)
	if elem := t.entries[key]; elem != nil {
		return elem.Value.(*failureEntry), elem
	}
	if len(t.entries) >= t.capacity {
		return &t.overflow, nil
	}
	return nil, nil
}

// wait returns how long until key has fewer than max failures within the
// window; zero or less if it already has.
func (t *failureTable) wait(key [sha256.Size]byte, now int64, max int, window time.Duration) time.Duration {
	e, _ := t.lookup(key, now, window)
	if e == nil {
		return 0
	}
	e.prune(now, window)
	if len(e.times) < max {
		return 0
	}
	oldestCounted := e.times[len(e.times)-max]
	return time.Duration(oldestCounted + int64(window) - now)
}

// add records a failure of key at now.
func (t *failureTable) add(key [sha256.Size]byte, now int64, max int, window time.Duration) {
	e, elem := t.lookup(key, now, window)
	switch {
	case e == nil:
		e = &failureEntry{key: key}
		t.entries[key] = t.order.PushBack(e)
	case elem != nil:
		t.order.MoveToBack(elem)
	}
	e.prune(now, window)
	e.times = append(e.times, now)
	if len(e.times) > max {
		// Only the latest max failures decide when the key is allowed
		// again.
		e.times = append(e.times[:0], e.times[len(e.times)-max:]...)
	}
}

// prune drops the failures that have left the window.
func (e *failureEntry) prune(now int64, window time.Duration) {
	i := 0
	for i < len(e.times) && e.times[i]+int64(window) <= now {
		i++
	}
	if i > 0 {
		e.times = append(e.times[:0], e.times[i:]...)
	}
}
