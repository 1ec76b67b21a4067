package main

import (
	"context"
	"fmt"
	"net"
	"time"
)

// The life of a Main after newMain: Listen, Run until its context ends,
// Close. The background work Run starts (the sweeper, the tunnel watcher)
// ends with it.

// Listen opens both listeners, so that a port in use fails before anything
// is served and ":0" gets its real port (MainAddr, AdminAddr).
func (m *Main) Listen() error {
	var err error
	if m.mainLn, err = net.Listen("tcp", m.cfg.Server.Listen); err != nil {
		return fmt.Errorf("listen on server.listen: %w", err)
	}
	if m.adminLn, err = net.Listen("tcp", m.cfg.Admin.Listen); err != nil {
		return fmt.Errorf("listen on admin.listen: %w", err)
	}
	return nil
}

// MainAddr and AdminAddr are the listeners' addresses, after Listen.
func (m *Main) MainAddr() string  { return m.mainLn.Addr().String() }
func (m *Main) AdminAddr() string { return m.adminLn.Addr().String() }

// Run serves until ctx ends, then shuts down: readiness off first, then,
// after server.drain_delay, the listeners stop accepting and requests in
// flight finish, bounded by server.shutdown_timeout. A listener that fails
// ends Run with its error.
func (m *Main) Run(ctx context.Context) error {
	errc := make(chan error, 2)
	go func() {
		var err error
		if m.cfg.Server.TLS() {
			err = m.mainSrv.ServeTLS(m.mainLn, m.cfg.Server.TLSCertFile, m.cfg.Server.TLSKeyFile)
		} else {
			err = m.mainSrv.Serve(m.mainLn)
		}
		errc <- err
	}()
	go func() { errc <- m.adminSrv.Serve(m.adminLn) }()

	sweepCtx, stopSweep := context.WithCancel(ctx)
	defer stopSweep()
	go m.sweep(sweepCtx)
	go m.discoverOIDC(sweepCtx)
	go m.watchTunnels(sweepCtx)

	m.ready.Store(true)
	m.log.Info("listening", "addr", m.MainAddr(), "admin_addr", m.AdminAddr(), "tls", m.cfg.Server.TLS(),
		"version", readBuildVersion().version)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		runErr = fmt.Errorf("serve: %w", runErr)
	}
	m.ready.Store(false)
	if d := time.Duration(m.cfg.Server.DrainDelay); runErr == nil && d > 0 {
		// /readyz answers 503 from now on, while requests are still served:
		// time for load balancers and Kubernetes endpoints to notice before
		// the listeners close.
		m.log.Info("draining", "delay", d.String())
		time.Sleep(d)
	}
	m.log.Info("shutting down", "timeout", m.cfg.Server.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), time.Duration(m.cfg.Server.ShutdownTimeout))
	defer cancel()
	if err := m.mainSrv.Shutdown(sctx); err != nil {
		m.mainSrv.Close()
		m.log.Warn("requests still in flight at the shutdown timeout were cut", "err", err)
	}
	m.adminSrv.Shutdown(sctx)
	stopSweep()
	if err := m.Close(); err != nil && runErr == nil {
		runErr = err
	}
	if runErr == nil {
		m.log.Info("stopped")
	}
	return runErr
}

// sweep removes ended sessions every store.sweep_interval.
func (m *Main) sweep(ctx context.Context) {
	every := time.Duration(m.cfg.Store.SweepInterval)
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := m.store.Sweep(ctx, m.now())
			switch {
			case err != nil && ctx.Err() == nil:
				m.log.Error("sweep sessions", "err", err)
			case n > 0:
				m.log.Info("swept ended sessions", "count", n)
			}
		}
	}
}

// watchTunnels runs WatchTunnels on the live Gateway until ctx ends,
// moving to a reload's successor when it is stored: the tunnel registry
// they share holds the tunnels opened through either.
func (m *Main) watchTunnels(ctx context.Context) {
	for ctx.Err() == nil {
		n := m.live.Load()
		wctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			n.gw.WatchTunnels(wctx, time.Duration(n.cfg.Server.UpgradeCheckInterval))
		}()
		select {
		case <-ctx.Done():
		case <-m.swapped:
		}
		stop()
		<-done
	}
}

// Close releases the store and the dev echo server. It is safe to call more
// than once.
func (m *Main) Close() error {
	var err error
	m.closeOnce.Do(func() {
		if m.echo != nil {
			m.echo.Close()
		}
		if m.store != nil {
			err = m.store.Close()
		}
	})
	return err
}
