package redisstore

import (
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
	"github.com/spa-gateway/gateway/sessionstore/redisstore/redistest"
	"github.com/spa-gateway/gateway/sessionstore/storetest"
)

// failoverClients is how many clients refresh during a failover test, each
// its own session.
const failoverClients = 64

// failoverGrace is the refresh grace of the failover tests' clients, the
// gateway's default: it must outlast the error window, or a retry of a
// rotation that reached the new master but whose answer was lost in the
// crash comes too late.
const failoverGrace = 10 * time.Second

// failoverCounts is what refreshUnderFailover measured.
type failoverCounts struct {
	ok, unavailable atomic.Int64
	lost, reuse     atomic.Int64 // a token answered 200 that later failed; of them, as reuse
	errFirst        atomic.Int64 // unix ns of the first 503 after the kill
	errLast         atomic.Int64 // unix ns of the last 503
}

// refreshUnderFailover runs failoverClients clients refreshing in a loop
// with their successor tokens (on 503, again with the same token) against
// st. Once every client has logged in (a login counts only when its Create
// was acknowledged: a 503 login is tried again with a new session) and
// refreshed, it kills the master with kill, and runs until every client
// has refreshed at least twice, by calls sent after the kill and after its
// last 503, or fails the test after the failover timeout. A session lost
// (a token the store answered 200 for, or its acknowledged login, that
// later fails) is counted and its client logs in again. heal, unless nil,
// runs four seconds after kill.
func refreshUnderFailover(t *testing.T, st *Store, kill, heal func()) *failoverCounts {
	t.Helper()
	ctx := t.Context()
	var (
		c        failoverCounts
		stop     atomic.Bool
		killedAt atomic.Int64 // unix ns, 0 before the kill
		lastErr  atomic.Value
		wg       sync.WaitGroup
		ready    sync.WaitGroup // every client logged in and refreshed once
		okAfter  [failoverClients]atomic.Int64
	)
	unavailable := func(i int, err error) {
		c.unavailable.Add(1)
		lastErr.Store(err.Error())
		if killedAt.Load() != 0 {
			now := time.Now().UnixNano()
			c.errFirst.CompareAndSwap(0, now)
			c.errLast.Store(now)
			okAfter[i].Store(0)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ready.Add(failoverClients)
	for i := range failoverClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gen := 0
			login := func() sessionstore.Session {
				for {
					gen++
					s := storetest.NewSession(fmt.Sprintf("c%d-%d", i, gen), fmt.Sprintf("user%d", i), time.Now())
					err := st.Create(ctx, s)
					if err == nil || stop.Load() {
						return s
					}
					unavailable(i, err)
				}
			}
			sess := login()
			cur := sess.JTI
			first := true
			for !stop.Load() {
				sent := time.Now().UnixNano()
				req := sessionstore.RotateRequest{SessionID: sess.ID, JTI: cur, NewJTI: rand.Text(), Now: time.Now(), IdleTimeout: time.Hour, Grace: failoverGrace}
				res, err := st.Rotate(ctx, req)
				switch {
				case err == nil:
					c.ok.Add(1)
					cur = res.Session.JTI
					if k := killedAt.Load(); k != 0 && sent > k {
						okAfter[i].Add(1)
					}
					if first {
						first = false
						ready.Done()
					}
				case errors.Is(err, sessionstore.ErrUnavailable):
					unavailable(i, err)
				default:
					// The token this client holds came from a 200 (or its
					// acknowledged login): its loss is what min replicas
					// prevents.
					c.lost.Add(1)
					if errors.Is(err, sessionstore.ErrReuseDetected) {
						c.reuse.Add(1)
					}
					t.Logf("client %d: %v (%v after the kill)", i, err, time.Since(time.Unix(0, killedAt.Load())).Round(time.Millisecond))
					sess = login()
					cur = sess.JTI
				}
			}
			if first {
				ready.Done()
			}
		}()
	}
	ready.Wait()
	time.Sleep(500 * time.Millisecond)
	killedAt.Store(time.Now().UnixNano())
	kill()
	healAt := time.Now().Add(4 * time.Second)
	deadline := time.Now().Add(redistest.FailoverTimeout + 10*time.Second)
	for {
		time.Sleep(250 * time.Millisecond)
		if heal != nil && time.Now().After(healAt) {
			heal()
			heal = nil
		}
		all := heal == nil && c.errFirst.Load() != 0
		for i := range okAfter {
			all = all && okAfter[i].Load() >= 2
		}
		if all {
			break
		}
		if time.Now().After(deadline) {
			stop.Store(true)
			wg.Wait()
			for i := range okAfter {
				if okAfter[i].Load() < 2 {
					t.Errorf("client %d has not refreshed again after the failover", i)
				}
			}
			t.Fatalf("the clients did not all recover within %v; last 503: %v", redistest.FailoverTimeout+10*time.Second, lastErr.Load())
		}
	}
	stop.Store(true)
	wg.Wait()
	window := time.Duration(c.errLast.Load() - c.errFirst.Load())
	t.Logf("refreshes 200: %d, 503: %d, lost: %d (as reuse: %d), error window: %v",
		c.ok.Load(), c.unavailable.Load(), c.lost.Load(), c.reuse.Load(), window.Round(time.Millisecond))
	return &c
}

// failoverOptions are the store's options in the failover tests: minimum
// min replicas, and the gateway's default write timeout.
func failoverOptions(min int) *Options {
	return &Options{MinReplicas: min, ReplicaTimeout: 500 * time.Millisecond, WriteTimeout: 3 * time.Second}
}

// TestFailoverSentinel kills the master of one master, two replicas and
// three Sentinels under refresh load: the store follows the Sentinels to
// the promoted replica, every client refreshes again, and with one replica
// required no refresh answered 200 is lost nor any retry taken for reuse.
func TestFailoverSentinel(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Sentinel topology and waits for a failover")
	}
	for _, min := range []int{0, 1} {
		t.Run(fmt.Sprintf("min_replicas=%d", min), func(t *testing.T) {
			master := redistest.Start(t)
			redistest.StartReplica(t, master)
			redistest.StartReplica(t, master)
			sentinels := redistest.StartSentinels(t, master, 3)
			st := openOn(t, sentinels.URL(0), failoverOptions(min))
			c := refreshUnderFailover(t, st, func() { master.Stop(t) }, nil)
			if min > 0 && (c.lost.Load() != 0 || c.reuse.Load() != 0) {
				t.Errorf("with min_replicas %d: %d lost, %d revoked as reuse; want none", min, c.lost.Load(), c.reuse.Load())
			}
		})
	}
}

// TestFailoverCluster kills, under refresh load, the master of bucket 0's
// slot in a Cluster of three masters with one replica each: the store
// follows the cluster to the promoted replica. With one replica required,
// the promoted master has none until the killed node rejoins as its
// replica (restarted here, empty, once the failover is done): until then that
// shard's changes answer 503, which is the availability price.
func TestFailoverCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a six-node Cluster and waits for a failover")
	}
	// min_replicas = 1 on a Cluster is not covered yet: under this load
	// the clients of the killed shard stopped reporting anything after the
	// kill (neither 200 nor 503) and the test timed out; see issue 16.
	for _, min := range []int{0, 1} {
		t.Run(fmt.Sprintf("min_replicas=%d", min), func(t *testing.T) {
			cl := redistest.StartClusterOf(t, 3, 1)
			st := openOn(t, cl.URL(), failoverOptions(min))
			victim := cl.MasterOf(t, "{00}")
			// The killed node comes back as a replica of the promoted
			// one, once the cluster has failed over without it.
			c := refreshUnderFailover(t, st, func() { victim.Stop(t) }, func() { cl.Rejoin(t, victim, "{00}") })
			if min > 0 && (c.lost.Load() != 0 || c.reuse.Load() != 0) {
				t.Errorf("with min_replicas %d: %d lost, %d revoked as reuse; want none", min, c.lost.Load(), c.reuse.Load())
			}
		})
	}
}
