package redisstore

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
	"github.com/spa-gateway/gateway/sessionstore/redisstore/redistest"
	"github.com/spa-gateway/gateway/sessionstore/storetest"
)

// TestContractReplicated runs the contract suite with every change waiting
// for a replica: WAIT and the ack write change no answer.
func TestContractReplicated(t *testing.T) {
	master := redistest.Start(t)
	redistest.StartReplica(t, master)
	storetest.Run(t, func(t testing.TB) sessionstore.Store {
		// A replica timeout that a loaded machine (-race, shared cores)
		// never reaches by accident.
		return openOn(t, master.URL(0), &Options{MinReplicas: 1, ReplicaTimeout: 3 * time.Second})
	})
}

// TestReplicaDown stops the only replica under a store that wants one:
// every change is reported unavailable (after the replica timeout), though
// the master applied it. A client that retries its token, even long past
// the grace period, once the replica is back, gets the same successor as a
// grace answer, never "reuse"; the successor then rotates as usual.
func TestReplicaDown(t *testing.T) {
	master := redistest.Start(t)
	replica := redistest.StartReplica(t, master)
	const timeout = time.Second // a loaded machine (-race, shared cores) stays well within it
	st := openOn(t, master.URL(0), &Options{MinReplicas: 1, ReplicaTimeout: timeout})
	ctx := t.Context()
	now := time.Now()
	for _, id := range []string{"s", "u"} {
		if err := st.Create(ctx, storetest.NewSession(id, "alice", now)); err != nil {
			t.Fatal(err)
		}
	}
	replica.Stop(t)
	req := sessionstore.RotateRequest{SessionID: "s", JTI: "s-jti-0", NewJTI: "s-jti-1", Now: now.Add(time.Second), IdleTimeout: time.Hour, Grace: time.Second}
	start := time.Now()
	_, err := st.Rotate(ctx, req)
	took := time.Since(start)
	if !errors.Is(err, sessionstore.ErrUnavailable) {
		t.Fatalf("Rotate() with the replica down = %v, want %v", err, sessionstore.ErrUnavailable)
	}
	if took < timeout {
		t.Errorf("Rotate() failed after %v, before the replica timeout %v", took, timeout)
	}
	reqU := req
	reqU.SessionID, reqU.JTI, reqU.NewJTI = "u", "u-jti-0", "u-jti-1"
	if _, err := st.Rotate(ctx, reqU); !errors.Is(err, sessionstore.ErrUnavailable) {
		t.Fatalf("Rotate(u) with the replica down = %v, want %v", err, sessionstore.ErrUnavailable)
	}
	t.Logf("replica down: Rotate answered unavailable after %v", took)
	if err := st.Create(ctx, storetest.NewSession("t", "alice", now)); !errors.Is(err, sessionstore.ErrUnavailable) {
		t.Fatalf("Create() with the replica down = %v, want %v", err, sessionstore.ErrUnavailable)
	}

	replica.Restart(t)
	// The restarted replica (with no data) synchronises from the master
	// by itself; until then WAIT confirms nothing.
	retry := req
	retry.NewJTI, retry.Now = "s-jti-other", now.Add(UnconfirmedGrace)
	var res sessionstore.RotateResult
	for deadline := time.Now().Add(10 * time.Second); ; {
		res, err = st.Rotate(ctx, retry)
		if !errors.Is(err, sessionstore.ErrUnavailable) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || !res.Grace || res.Session.JTI != "s-jti-1" {
		t.Fatalf("Rotate(retry past the grace) = %+v, %v; want grace with s-jti-1", res, err)
	}
	next := sessionstore.RotateRequest{SessionID: "s", JTI: "s-jti-1", NewJTI: "s-jti-2", Now: now.Add(time.Hour), IdleTimeout: time.Hour, Grace: time.Second}
	if res, err := st.Rotate(ctx, next); err != nil || res.Grace || res.Session.JTI != "s-jti-2" {
		t.Fatalf("Rotate(successor) = %+v, %v; want a rotation to s-jti-2", res, err)
	}
	// Past UnconfirmedGrace, the previous token of an unconfirmed rotation
	// is reuse, as after the grace: a thief holding it does not get the
	// successor silently for as long as the user does not refresh.
	late := reqU
	late.NewJTI, late.Now = "u-jti-other", reqU.Now.Add(UnconfirmedGrace+time.Millisecond)
	if _, err := st.Rotate(ctx, late); !errors.Is(err, sessionstore.ErrReuseDetected) {
		t.Fatalf("Rotate(previous token past UnconfirmedGrace) = %v, want %v", err, sessionstore.ErrReuseDetected)
	}
	// That rotation was confirmed: the old token is reuse again, past the
	// grace.
	old := next
	old.JTI, old.NewJTI, old.Now = "s-jti-1", "s-jti-x", now.Add(time.Hour+time.Minute)
	if _, err := st.Rotate(ctx, old); !errors.Is(err, sessionstore.ErrReuseDetected) {
		t.Fatalf("Rotate(previous token past the grace, confirmed) = %v, want %v", err, sessionstore.ErrReuseDetected)
	}
}

// BenchmarkRotateReplicas is the refresh's store call against a master
// with one replica, waiting for 0 and for 1 of them.
func BenchmarkRotateReplicas(b *testing.B) {
	master := redistest.Start(b)
	redistest.StartReplica(b, master)
	for _, n := range []int{0, 1} {
		b.Run(map[int]string{0: "min0", 1: "min1"}[n], func(b *testing.B) {
			st := openOn(b, master.URL(0), &Options{MinReplicas: n})
			storetest.BenchmarkRotate(b, st, benchTime)
		})
	}
}

// TestClusterMasterDown stalls, then kills, the master of a session's
// slot in a Cluster of three masters with one replica each, under a store
// that wants one replica: every call ends by its write deadline (plus the
// reply margin) whatever the node does, and once the cluster has promoted
// the replica the store writes to it (which, having no replica of its
// own, cannot confirm: "not replicated") instead of trying the dead
// node's address until go-redis's periodic reload of the slots.
func TestClusterMasterDown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a six-node Cluster and waits for a failover")
	}
	cl := redistest.StartClusterOf(t, 3, 1)
	opts := &Options{MinReplicas: 1, ReplicaTimeout: 300 * time.Millisecond, WriteTimeout: time.Second, ReplyMargin: 200 * time.Millisecond}
	st := openOn(t, cl.URL(), opts)
	ctx := t.Context()
	if err := st.Create(ctx, storetest.NewSession("s", "alice", time.Now())); err != nil {
		t.Fatal(err)
	}
	tag := st.bucketOf("s").tag
	victim := cl.MasterOf(t, tag[strings.IndexByte(tag, '{'):])
	// The bound of a call: its deadline and reply margin, and what a
	// loaded machine (-race, shared cores) adds.
	bound := opts.WriteTimeout + opts.ReplyMargin + time.Second
	revoke := func() error {
		start := time.Now()
		_, err := st.Revoke(ctx, "s", "test", time.Now())
		if took := time.Since(start); took > bound {
			t.Errorf("Revoke() took %v (%v), more than %v", took, err, bound)
		}
		return err
	}
	victim.Pause(t)
	if err := revoke(); !errors.Is(err, sessionstore.ErrUnavailable) {
		t.Fatalf("Revoke() on a stalled master = %v, want %v", err, sessionstore.ErrUnavailable)
	}
	victim.Stop(t)
	deadline := time.Now().Add(redistest.FailoverTimeout)
	for {
		err := revoke()
		if errors.Is(err, errNotReplicated) {
			break
		}
		if !errors.Is(err, sessionstore.ErrUnavailable) {
			t.Fatalf("Revoke() during the failover = %v, want %v", err, sessionstore.ErrUnavailable)
		}
		if time.Now().After(deadline) {
			t.Fatalf("Revoke() still fails with %v %v after the kill, want the promoted master's %q", err, redistest.FailoverTimeout, errNotReplicated)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestUnconfirmedGraceMillis: the scripts' copy of UnconfirmedGrace is it.
func TestUnconfirmedGraceMillis(t *testing.T) {
	if want := strconv.FormatInt(UnconfirmedGrace.Milliseconds(), 10); unconfirmedGraceMillis != want {
		t.Errorf("unconfirmedGraceMillis = %s, want %s", unconfirmedGraceMillis, want)
	}
}
