package auth

import (
	"container/list"
	"crypto/sha256"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// maxLimiterEntries bounds each of FailureLimiter's two tables.
const maxLimiterEntries = 100_000

// FailureLimiter limits login attempts per username and per client address
// within a sliding window (login.max_failures, login.failure_window). A
// FailureLimiter is safe for concurrent use.
//
// An attempt is counted before its password is checked: Reserve records it
// against the username and the address at once, under one lock, or refuses
// it when either already has max attempts within the window; the caller
// releases the reservation when the password proved right (or could not be
// checked), and keeps it when the password was wrong. So no more than max
// wrong passwords are ever checked per username or address within a
// window, however the attempts are timed: attempts in flight count as
// failures until they end. The cost is that more than max logins of one
// username or address in flight at once (a burst of users behind one NAT)
// get 429 even with the right password, until the earlier ones end.
//
// Usernames are compared without case and surrounding spaces (a login
// source that ignores case must not give an attacker one budget per
// spelling). Addresses may carry a port, which is ignored; IPv6 addresses
// count per /64, the block one subscriber usually holds, and IPv4-mapped
// IPv6 addresses as IPv4.
//
// Memory is bounded: each table holds at most 100,000 keys, each with at
// most max attempt times (8 bytes each), and a key leaves as soon as its
// last attempt has left the window or been released. When a table is full
// of live keys, a key not in it is not given a counter of its own but
// shares a single overflow counter with every other such key. This is the
// safe choice: a flood of random usernames can neither evict a victim's
// counter (which would reset it) nor escape limiting (they all share max
// attempts per window). Its cost is that during such a flood, usernames or
// addresses without a counter of their own may be refused (429) even with
// the right password: the limiter fails closed.
type FailureLimiter struct {
	max    int
	window time.Duration
	now    func() time.Time

	mu    sync.Mutex
	users *failureTable
	addrs *failureTable
}

// NewFailureLimiter returns a limiter refusing a username or an address
// once it has max attempts (failed or in flight) within window. max < 1 or
// window <= 0 disable it (Reserve always allows); now nil means time.Now.
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

// Reserve counts a login attempt for username from addr, before its
// password is checked, as a failure at the current time.
//
// If the username or the address already has max attempts within the
// window, nothing is counted, ok is false, and retryAfter is how long until
// the oldest attempt that decides it (of whichever waits longer) leaves the
// window, rounded up to whole seconds and at least one second, for the
// Retry-After header. Otherwise ok is true and res is the counted attempt:
// the caller must Release it when the password proved right or could not
// be checked through no fault of the client, and otherwise leave it to
// expire with the window. res is nil when the limiter is disabled.
func (l *FailureLimiter) Reserve(username, addr string) (res *Reservation, retryAfter time.Duration, ok bool) {
	if l.disabled() {
		return nil, 0, true
	}
	ukey, akey := userKey(username), addrKey(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now().UnixNano()
	ue, uelem := l.users.lookup(ukey, now, l.window)
	ae, aelem := l.addrs.lookup(akey, now, l.window)
	wait := max(ue.wait(now, l.max, l.window), ae.wait(now, l.max, l.window))
	if wait > 0 {
		retryAfter = (wait + time.Second - 1).Truncate(time.Second)
		return nil, max(retryAfter, time.Second), false
	}
	return &Reservation{
		l:    l,
		at:   now,
		user: l.users.add(ukey, ue, uelem, now),
		addr: l.addrs.add(akey, ae, aelem, now),
	}, 0, true
}

// Reservation is one login attempt counted by FailureLimiter.Reserve. It
// is safe for concurrent use.
type Reservation struct {
	l          *FailureLimiter
	at         int64 // unix nanoseconds
	user, addr slot

	released bool // guarded by l.mu
}

// slot is where a reservation is counted in one table.
type slot struct {
	key   [sha256.Size]byte
	entry *failureEntry
}

// Release uncounts the attempt: it no longer counts against the username
// or the address. Calls after the first, calls once the attempt has left
// the window, and calls on a nil Reservation do nothing.
func (r *Reservation) Release() {
	if r == nil {
		return
	}
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	if r.released {
		return
	}
	r.released = true
	r.l.users.remove(r.user, r.at)
	r.l.addrs.remove(r.addr, r.at)
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

// failureTable is the attempts of one kind of key, in unix nanoseconds.
type failureTable struct {
	capacity int
	entries  map[[sha256.Size]byte]*list.Element
	// order holds *failureEntry by last attempt, the oldest first, so
	// that expired entries are found at the front.
	order    *list.List
	overflow failureEntry
}

type failureEntry struct {
	key   [sha256.Size]byte
	times []int64 // ascending, at most max, counted and unreleased
}

func newFailureTable(capacity int) *failureTable {
	return &failureTable{
		capacity: capacity,
		entries:  map[[sha256.Size]byte]*list.Element{},
		order:    list.New(),
	}
}

// evict removes the entries whose every attempt has left the window.
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
// and the key not in it, or nil; elem is the key's list element, nil for
// the overflow entry.
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

// add records an attempt of key at now in e and elem, as lookup returned
// them, and returns where it was recorded.
func (t *failureTable) add(key [sha256.Size]byte, e *failureEntry, elem *list.Element, now int64) slot {
	switch {
	case e == nil:
		e = &failureEntry{key: key}
		t.entries[key] = t.order.PushBack(e)
	case elem != nil:
		t.order.MoveToBack(elem)
	}
	e.times = append(e.times, now)
	return slot{key: key, entry: e}
}

// remove drops one attempt at time at from s, if s's entry is still the
// table's (not evicted since) and still holds it, and drops the entry
// once it holds none.
//
// An entry left with earlier attempts than its place in order says is
// evicted late, at most one window late: the bound on memory holds.
func (t *failureTable) remove(s slot, at int64) {
	var elem *list.Element
	if s.entry != &t.overflow {
		if elem = t.entries[s.key]; elem == nil || elem.Value.(*failureEntry) != s.entry {
			return
		}
	}
	e := s.entry
	// From the end: the attempt released is usually among the latest.
	i := len(e.times) - 1
	for i >= 0 && e.times[i] != at {
		i--
	}
	if i < 0 {
		return
	}
	e.times = slices.Delete(e.times, i, i+1)
	if len(e.times) == 0 && elem != nil {
		t.order.Remove(elem)
		delete(t.entries, s.key)
	}
}

// wait returns how long until e has fewer than max attempts within the
// window; zero or less if it already has, or if e is nil.
func (e *failureEntry) wait(now int64, max int, window time.Duration) time.Duration {
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

// prune drops the attempts that have left the window.
func (e *failureEntry) prune(now int64, window time.Duration) {
	i := 0
	for i < len(e.times) && e.times[i]+int64(window) <= now {
		i++
	}
	if i > 0 {
		e.times = append(e.times[:0], e.times[i:]...)
	}
}
