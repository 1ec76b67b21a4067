package boltstore

import (
	"fmt"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
	"github.com/spa-gateway/gateway/sessionstore/storetest"
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
			storetest.BenchmarkCreate(b, st, t0)
		})
	}
}

func BenchmarkGet(b *testing.B) {
	const n = 100_000
	st, _ := openTemp(b, nil)
	ids := make([]string, n)
	st.bulkCreate(b, n, func(i int) sessionstore.Session {
		s := storetest.NthSession(i, t0)
		ids[i] = s.ID
		return s
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
				return storetest.NewSession(fmt.Sprintf("o%06d", i), "other", t0)
			})
			storetest.BenchmarkRotate(b, st, t0)
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
		return storetest.NewSession(fmt.Sprintf("live%06d", i), fmt.Sprintf("user%d", i%1000), now)
	})
	b.ResetTimer()
	for round := 0; round < b.N; round++ {
		b.StopTimer()
		st.bulkCreate(b, due, func(i int) sessionstore.Session {
			return storetest.NewSession(fmt.Sprintf("due%d-%04d", round, i), fmt.Sprintf("user%d", i%1000), now.Add(-2*time.Hour))
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
			storetest.BenchmarkRotateParallel(b, st, t0)
		})
	}
}

// BenchmarkCreateParallel is the login load: 64 goroutines creating
// sessions, with fsync.
func BenchmarkCreateParallel(b *testing.B) {
	for _, mode := range batchModes {
		b.Run(mode.name, func(b *testing.B) {
			st, _ := openTemp(b, mode.opts)
			storetest.BenchmarkCreateParallel(b, st, t0)
		})
	}
}
