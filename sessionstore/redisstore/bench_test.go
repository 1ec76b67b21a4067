package redisstore

import (
	"fmt"
	"testing"
	"time"

	"github.com/spa-gateway/gateway/sessionstore/redisstore/redistest"
	"github.com/spa-gateway/gateway/sessionstore/storetest"
)

// persistenceModes run a benchmark against a Redis without persistence, with
// the usual append-only file fsynced every second, and with one fsynced
// before every reply (the durability of bbolt's default).
var persistenceModes = []struct {
	name string
	args []string
}{
	{"none", nil},
	{"aof-everysec", []string{"--appendonly", "yes", "--appendfsync", "everysec"}},
	{"aof-always", redistest.Persistent},
}

// benchTime is the sessions' creation time: ahead of the wall clock, so
// that Redis never expires them during a run.
var benchTime = time.Now().AddDate(1, 0, 0).Truncate(time.Second).UTC()

func BenchmarkCreate(b *testing.B) {
	for _, mode := range persistenceModes {
		b.Run(mode.name, func(b *testing.B) {
			st := openOn(b, redistest.Start(b, mode.args...).URL(0), nil)
			storetest.BenchmarkCreate(b, st, benchTime)
		})
	}
}

// BenchmarkGet is the every_request check: one HGETALL among 100,000
// sessions.
func BenchmarkGet(b *testing.B) {
	const n = 100_000
	st := openOn(b, redistest.Start(b).URL(0), nil)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = storetest.NthSession(i, benchTime).ID
	}
	bulkCreate(b, st, ids)
	b.Run("serial", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if _, err := st.Get(b.Context(), ids[i%n]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	// Many requests at once, as a busy gateway makes them: go-redis keeps
	// a pool of connections.
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := st.Get(b.Context(), ids[i%n]); err != nil {
					b.Error(err) // not Fatal: this is not the benchmark's goroutine
					return
				}
				i += 7
			}
		})
	})
}

func BenchmarkRotate(b *testing.B) {
	for _, mode := range persistenceModes {
		b.Run(mode.name, func(b *testing.B) {
			st := openOn(b, redistest.Start(b, mode.args...).URL(0), nil)
			others := make([]string, 10_000)
			for i := range others {
				others[i] = fmt.Sprintf("o%06d", i)
			}
			bulkCreate(b, st, others)
			storetest.BenchmarkRotate(b, st, benchTime)
		})
	}
}

// bulkCreate creates a session for each ID through Create, many at once.
func bulkCreate(tb testing.TB, st *Store, ids []string) {
	tb.Helper()
	const workers = 32
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := w; i < len(ids); i += workers {
				if err := st.Create(tb.Context(), storetest.NewSession(ids[i], fmt.Sprintf("user%d", i%1000), benchTime)); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			tb.Fatal(err)
		}
	}
}
