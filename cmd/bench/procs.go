package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a child process under test: the upstream, the bare proxy or a
// gateway.
type proc struct {
	name       string
	cmd        *exec.Cmd
	addr       string // main listener
	adminAddr  string // /metrics, "" for the upstream
	scrapeCost float64
	done       chan struct{}

	mu   sync.Mutex
	tail []byte // the end of stderr, for error reports
}

// tailBytes is how much of a process's stderr is kept.
const tailBytes = 8 << 10

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat: 100
// on every Linux architecture Go supports.
const clockTicks = 100

// startProc runs name with args (in dir, unless empty, and with env added
// to the environment), waits for its "listening" log line and returns it
// running. Its stderr is drained for the rest of its life in large reads,
// cheaply (a gateway writes an access log line per request), keeping the
// end of it.
//
// A process that was told its addresses (known: main and admin) and may
// not log them (a gateway above log level info) is waited for on the
// admin listener's /healthz instead.
func startProc(label, dir string, env, known []string, name string, args ...string) (*proc, error) {
	p := &proc{name: label, cmd: exec.Command(name, args...), done: make(chan struct{})}
	p.cmd.Dir = dir
	if len(env) > 0 {
		p.cmd.Env = append(os.Environ(), env...)
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", label, err)
	}
	addrs := make(chan [2]string, 1)
	if len(known) == 2 {
		go func() {
			for {
				res, err := http.Get("http://" + known[1] + "/healthz")
				if err == nil {
					res.Body.Close()
					if res.StatusCode == 200 {
						addrs <- [2]string{known[0], known[1]}
						return
					}
				}
				select {
				case <-p.done:
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
		}()
	}
	go func() {
		defer close(p.done)
		br := bufio.NewReaderSize(stderr, 64<<10)
		for len(known) != 2 {
			line, err := br.ReadBytes('\n')
			p.keep(line)
			if err != nil {
				break
			}
			var l struct {
				Msg, Addr string
				AdminAddr string `json:"admin_addr"`
			}
			if bytes.Contains(line, []byte(`"listening"`)) && json.Unmarshal(line, &l) == nil && l.Msg == "listening" {
				addrs <- [2]string{l.Addr, l.AdminAddr}
				break
			}
		}
		buf := make([]byte, 64<<10)
		for {
			n, err := br.Read(buf)
			p.keep(buf[:n])
			if err != nil {
				break
			}
		}
		p.cmd.Wait()
	}()
	select {
	case a := <-addrs:
		p.addr, p.adminAddr = a[0], a[1]
	case <-p.done:
		return nil, fmt.Errorf("%s exited before listening:\n%s", label, p.lastLines())
	case <-time.After(30 * time.Second):
		p.stop()
		return nil, fmt.Errorf("%s did not start within 30s:\n%s", label, p.lastLines())
	}
	if p.adminAddr != "" {
		if err := p.calibrateScrape(); err != nil {
			p.stop()
			return nil, err
		}
	}
	return p, nil
}

func (p *proc) keep(b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tail = append(p.tail, b...)
	if len(p.tail) > 2*tailBytes {
		p.tail = append(p.tail[:0], p.tail[len(p.tail)-tailBytes:]...)
	}
}

// freeAddr returns a 127.0.0.1 address with a port nobody listened on a
// moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// lastLines is the end of the process's stderr.
func (p *proc) lastLines() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.tail[max(len(p.tail)-tailBytes, 0):]
	if i := bytes.IndexByte(t, '\n'); i >= 0 && len(t) == tailBytes {
		t = t[i+1:]
	}
	return string(t)
}

// stop ends the process with SIGTERM, then SIGKILL after 10s.
func (p *proc) stop() {
	if p == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// cpu is the process's CPU time so far (user + system, every thread), from
// /proc/PID/stat.
func (p *proc) cpu() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after it are
	// split from the last ')'. utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("malformed /proc stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// mallocs reads go_memstats_mallocs_total (the Go runtime's count of heap
// allocations) from the process's /metrics.
func (p *proc) mallocs() (float64, error) {
	res, err := http.Get("http://" + p.adminAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_mallocs_total "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("%s: no go_memstats_mallocs_total in /metrics", p.name)
}

// calibrateScrape measures how many allocations one /metrics scrape costs
// the process, so that it can be taken out of the per-request figure: a
// measurement window holds one scrape's worth (the end of the first and the
// start of the last).
func (p *proc) calibrateScrape() error {
	var prev float64
	best := -1.0
	for i := range 6 {
		v, err := p.mallocs()
		if err != nil {
			return err
		}
		if i > 0 && (best < 0 || v-prev < best) {
			best = v - prev
		}
		prev = v
	}
	p.scrapeCost = best
	return nil
}

// snapshot is a process's counters at one moment.
type snapshot struct {
	cpu     time.Duration
	mallocs float64
}

// snapStart and snapEnd read the counters around a measurement window: the
// scrape, which costs the process CPU, is outside the CPU window on both
// sides.
func (p *proc) snapStart() (snapshot, error) {
	var s snapshot
	var err error
	if s.mallocs, err = p.mallocs(); err != nil {
		return s, err
	}
	s.cpu, err = p.cpu()
	return s, err
}

func (p *proc) snapEnd() (snapshot, error) {
	var s snapshot
	var err error
	if s.cpu, err = p.cpu(); err != nil {
		return s, err
	}
	s.mallocs, err = p.mallocs()
	return s, err
}
