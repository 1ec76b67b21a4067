package boltstore

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
)

// syncModes runs a write benchmark with fsync (what production does) and
// without (to see the cost of everything else).
var syncModes = []struct {
	name string
	opts *Options
}{
	{"fsync", nil},
	{"nosync", &Options{NoSync: true}},
}

func BenchmarkCreate(b *testing.B) {
	for _, mode := range syncModes {
		b.Run(mode.name, func(b *testing.B) {
			st, _ := openTemp(b, mode.opts)
			i := 0
			for b.Loop() {
				s := session(fmt.Sprintf("%016x", uint64(i)*0x9E3779B97F4A7C15), fmt.Sprintf("user%d", i%1000), t0)
				if err := st.Create(b.Context(), s); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func BenchmarkGet(b *testing.B) {
	const n = 100_000
	st, _ := openTemp(b, nil)
	ids := make([]string, n)
	st.bulkCreate(b, n, func(i int) sessionstore.Session {
		ids[i] = fmt.Sprintf("%016x", uint64(i)*0x9E3779B97F4A7C15)
		return session(ids[i], fmt.Sprintf("user%d", i%1000), t0)
	})
	i := 0
	for b.Loop() {
		if _, err := st.Get(b.Context(), ids[i%n]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkRotate(b *testing.B) {
	for _, mode := range syncModes {
		b.Run(mode.name, func(b *testing.B) {
			st, _ := openTemp(b, mode.opts)
			// Among other sessions, as in a real file.
			st.bulkCreate(b, 10_000, func(i int) sessionstore.Session {
				return session(fmt.Sprintf("o%06d", i), "other", t0)
			})
			if err := st.Create(b.Context(), session("s", "alice", t0)); err != nil {
				b.Fatal(err)
			}
			jti := "s-jti-0"
			now := t0
			i := 0
			for b.Loop() {
				i++
				now = now.Add(time.Millisecond)
				next := fmt.Sprintf("s-jti-%d", i)
				res, err := st.Rotate(b.Context(), sessionstore.RotateRequest{
					SessionID: "s", JTI: jti, NewJTI: next, Now: now, IdleTimeout: time.Hour, Grace: time.Second,
				})
				if err != nil || res.Grace {
					b.Fatalf("Rotate() = %+v, %v", res, err)
				}
				jti = next
			}
		})
	}
}

// BenchmarkSweep measures one Sweep that deletes 1,000 due sessions from a
// file that also holds 100,000 live ones.
func BenchmarkSweep(b *testing.B) {
	const (
		live = 100_000
		due  = 1_000
	)
	st, _ := openTemp(b, nil)
	now := t0.Add(48 * time.Hour)
	st.bulkCreate(b, live, func(i int) sessionstore.Session {
		return session(fmt.Sprintf("live%06d", i), fmt.Sprintf("user%d", i%1000), now)
	})
	b.ResetTimer()
	for round := 0; round < b.N; round++ {
		b.StopTimer()
		st.bulkCreate(b, due, func(i int) sessionstore.Session {
			return session(fmt.Sprintf("due%d-%04d", round, i), fmt.Sprintf("user%d", i%1000), now.Add(-2*time.Hour))
		})
		b.StartTimer()
		n, err := st.Sweep(b.Context(), now)
		if err != nil || n != due {
			b.Fatalf("Sweep() = %d, %v; want %d", n, err, due)
		}
	}
}

// batchModes compare the group commit as tuned with bbolt's own batch
// defaults and with one commit per call.
var batchModes = []struct {
	name string
	opts *Options
}{
	{"group-commit", nil},
	{"bbolt-defaults", &Options{MaxBatchSize: 1000, MaxBatchDelay: 10 * time.Millisecond}},
	{"single-commits", &Options{MaxBatchSize: -1}},
}

// BenchmarkRotateParallel is the refresh load: 64 goroutines, each
// rotating its own session in a loop, with fsync.
func BenchmarkRotateParallel(b *testing.B) {
	for _, mode := range batchModes {
		b.Run(mode.name, func(b *testing.B) {
			st, _ := openTemp(b, mode.opts)
			var seq atomic.Int64
			b.SetParallelism(max(64/runtime.GOMAXPROCS(0), 1))
			b.RunParallel(func(pb *testing.PB) {
				id := fmt.Sprintf("p%03d", seq.Add(1))
				if err := st.Create(b.Context(), session(id, "alice", t0)); err != nil {
					b.Error(err)
					return
				}
				jti, now := id+"-jti-0", t0
				for i := 1; pb.Next(); i++ {
					now = now.Add(time.Millisecond)
					next := fmt.Sprintf("%s-jti-%d", id, i)
					res, err := st.Rotate(b.Context(), sessionstore.RotateRequest{
						SessionID: id, JTI: jti, NewJTI: next, Now: now, IdleTimeout: time.Hour, Grace: time.Second,
					})
					if err != nil || res.Grace {
						b.Errorf("Rotate() = %+v, %v", res, err)
						return
					}
					jti = next
				}
			})
		})
	}
}

// BenchmarkCreateParallel is the login load: 64 goroutines creating
// sessions, with fsync.
func BenchmarkCreateParallel(b *testing.B) {
	for _, mode := range batchModes {
		b.Run(mode.name, func(b *testing.B) {
			st, _ := openTemp(b, mode.opts)
			var seq atomic.Int64
			b.SetParallelism(max(64/runtime.GOMAXPROCS(0), 1))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := seq.Add(1)
					s := session(fmt.Sprintf("%016x", uint64(i)*0x9E3779B97F4A7C15), fmt.Sprintf("user%d", i%1000), t0)
					if err := st.Create(b.Context(), s); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
