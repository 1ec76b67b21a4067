package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The load generator speaks HTTP/1.1 over raw keep-alive connections: a
// request is a prebuilt byte string and a response is parsed just enough to
// find its end. net/http's client would spend several times more CPU per
// request on the same 2 cores as the proxies under test, and blur the
// comparison.

// workload is what a load run sends and how it judges the answers.
type workload interface {
	// request appends connection w's next request to buf; false means
	// there is nothing left to send (a pool of fresh tokens ran out).
	request(w int, buf []byte) ([]byte, bool)
	// response reports whether an answer counts as a success. body is only
	// read when wantBody is true.
	response(w int, status int, body []byte) bool
	wantBody() bool
}

// result is one measurement window of a load run.
type result struct {
	n, errs   int
	elapsed   time.Duration
	lat       []time.Duration // sorted
	firstErr  string
	exhausted bool
}

func (r result) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.n) / r.elapsed.Seconds()
}

func (r result) percentile(p int) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[min(len(r.lat)*p/100, len(r.lat)-1)]
}

// Phases of a run.
const (
	phaseWarmup int32 = iota
	phaseRecord
	phaseDone
)

// runLoad opens conns connections to addr and sends wl's requests on each,
// back to back, for warmup (not recorded), then calls before, records for d
// (or until wl runs out), calls after, and closes the connections.
func runLoad(addr string, conns int, wl workload, warmup, d time.Duration, before, after func() error) (result, error) {
	var (
		phase   atomic.Int32
		stop    atomic.Bool
		wg      sync.WaitGroup
		mu      sync.Mutex
		res     result
		allDone = make(chan struct{})
	)
	cs, err := dialAll(addr, conns)
	if err != nil {
		return res, err
	}
	for i, c := range cs {
		wg.Go(func() {
			defer c.close()
			r := drive(c, i, wl, &phase, &stop)
			mu.Lock()
			res.add(r)
			mu.Unlock()
		})
	}
	go func() { wg.Wait(); close(allDone) }()
	finish := func() { stop.Store(true); <-allDone }

	select {
	case <-time.After(warmup):
	case <-allDone:
		return res, errors.New("load ended during the warm-up: token pool too small or proxy down")
	}
	if err := before(); err != nil {
		finish()
		return res, err
	}
	t0 := time.Now()
	phase.Store(phaseRecord)
	select {
	case <-time.After(d):
	case <-allDone:
	}
	phase.Store(phaseDone)
	elapsed := time.Since(t0)
	err = after()
	finish()
	res.elapsed = elapsed
	slices.Sort(res.lat)
	return res, err
}

// dialAll opens conns connections to addr, or none.
func dialAll(addr string, conns int) ([]*conn, error) {
	cs := make([]*conn, conns)
	for i := range cs {
		c, err := dial(addr)
		if err != nil {
			for _, c := range cs[:i] {
				c.close()
			}
			return nil, err
		}
		cs[i] = c
	}
	return cs, nil
}

// drive sends wl's requests of connection i on c, back to back, until stop
// is set, wl runs out or c cannot be dialled again after an error, and
// counts the answers that come while phase is phaseRecord. Its result has
// no elapsed time, and its latencies are unsorted.
func drive(c *conn, i int, wl workload, phase *atomic.Int32, stop *atomic.Bool) result {
	var r result
	var buf []byte
	for !stop.Load() {
		var ok bool
		buf, ok = wl.request(i, buf[:0])
		if !ok {
			r.exhausted = true
			break
		}
		start := time.Now()
		status, body, err := c.roundTrip(buf, wl.wantBody())
		took := time.Since(start)
		good := err == nil && wl.response(i, status, body)
		if phase.Load() == phaseRecord {
			if good {
				r.n++
				r.lat = append(r.lat, took)
			} else {
				r.errs++
				if r.firstErr == "" {
					r.firstErr = fmt.Sprintf("status %d, %v", status, err)
				}
			}
		}
		if err != nil {
			if c.redial() != nil {
				break
			}
		}
	}
	return r
}

// add adds the counts of one connection's result o to r's.
func (r *result) add(o result) {
	r.n += o.n
	r.errs += o.errs
	r.lat = append(r.lat, o.lat...)
	r.exhausted = r.exhausted || o.exhausted
	if r.firstErr == "" {
		r.firstErr = o.firstErr
	}
}

// conn is one keep-alive HTTP/1.1 connection.
type conn struct {
	addr string
	c    net.Conn
	br   *bufio.Reader
	body []byte
}

func dial(addr string) (*conn, error) {
	c := &conn{addr: addr}
	return c, c.redial()
}

func (c *conn) redial() error {
	if c.c != nil {
		c.c.Close()
	}
	nc, err := net.DialTimeout("tcp", c.addr, 5*time.Second)
	if err != nil {
		return err
	}
	c.c = nc
	c.br = bufio.NewReaderSize(nc, 16<<10)
	return nil
}

func (c *conn) close() {
	if c.c != nil {
		c.c.Close()
	}
}

var errProtocol = errors.New("malformed response")

// roundTrip writes req and reads one response. The body is returned only if
// keep is set, and is valid until the next call.
func (c *conn) roundTrip(req []byte, keep bool) (status int, body []byte, err error) {
	c.c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.c.Write(req); err != nil {
		return 0, nil, err
	}
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return 0, nil, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, nil, errProtocol
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, errProtocol
	}
	length, chunked, closing := -1, false, false
	for {
		line, err = c.br.ReadSlice('\n')
		if err != nil {
			return status, nil, err
		}
		if len(line) <= 2 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return status, nil, errProtocol
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil {
				return status, nil, errProtocol
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			closing = bytes.EqualFold(value, []byte("close"))
		}
	}
	c.body = c.body[:0]
	switch {
	case status == 204 || status == 304:
		// no body, whatever the headers say
	case chunked:
		err = c.readChunked(keep)
	case length >= 0:
		err = c.readN(length, keep)
	default:
		return status, nil, errors.New("response without length")
	}
	if err == nil && closing {
		err = c.redial()
	}
	return status, c.body, err
}

func (c *conn) readN(n int, keep bool) error {
	if !keep {
		_, err := c.br.Discard(n)
		return err
	}
	c.body = slices.Grow(c.body, n)
	start := len(c.body)
	c.body = c.body[:start+n]
	_, err := io.ReadFull(c.br, c.body[start:])
	return err
}

func (c *conn) readChunked(keep bool) error {
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		size, _, _ := bytes.Cut(bytes.TrimSpace(line), []byte(";"))
		n, err := strconv.ParseInt(string(size), 16, 32)
		if err != nil {
			return errProtocol
		}
		if n == 0 {
			for { // trailers, then the final empty line
				line, err := c.br.ReadSlice('\n')
				if err != nil {
					return err
				}
				if len(line) <= 2 {
					return nil
				}
			}
		}
		if err := c.readN(int(n), keep); err != nil {
			return err
		}
		if _, err := c.br.Discard(2); err != nil {
			return err
		}
	}
}
