package main

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/metrics"
	"github.com/spa-gateway/gateway/proxy"
	"github.com/spa-gateway/gateway/sessionstore"
)

// adminRoutes is the admin listener's whole surface (README, "Admin
// listener"). "gateway sessions list|revoke" (sessions.go) is the admin
// API's client.
func (m *Main) adminRoutes() (http.Handler, error) {
	mux := http.NewServeMux()
	// The probes and the metrics: open to whoever reaches the listener.
	mux.Handle("GET /healthz", handleHealthz())
	mux.Handle("GET /readyz", handleReadyz(&m.ready, m.store))
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	if m.cfg.Admin.Pprof {
		// Only here, never on the main listener. (Importing net/http/pprof
		// also registers it on http.DefaultServeMux, which nothing serves.)
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}

	// The admin API, behind the bearer token of admin.token_file, as the
	// last reload built it (adminAPI); without a token file, /admin/
	// answers 404.
	mux.Handle("/admin/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if api := m.live.Load().api; api != nil {
			api.ServeHTTP(w, r)
			return
		}
		http.NotFound(w, r)
	}))
	return mux, nil
}

// adminAPI is the admin API of m's configuration, behind the bearer token
// of admin.token_file; nil without one.
func (m *Main) adminAPI() (http.Handler, error) {
	if m.cfg.Admin.TokenFile == "" {
		return nil, nil
	}
	token, err := LoadAdminToken(m.cfg.Admin.TokenFile)
	if err != nil {
		return nil, &ConfigError{Key: "admin.token_file", Err: err}
	}
	// GET    /admin/sessions?subject=S   200, the subject's live sessions
	// DELETE /admin/sessions/ID          204; 404 if unknown
	// DELETE /admin/sessions?subject=S   200 {"revoked":N}
	api := http.NewServeMux()
	api.Handle("GET /admin/sessions", handleListSessions(m.sessions))
	api.Handle("DELETE /admin/sessions/{id}", handleRevokeSession(m.sessions, m.gw, m.met, m.log))
	api.Handle("DELETE /admin/sessions", handleRevokeSubject(m.sessions, m.gw, m.met, m.log))
	// The token is checked first, on every path under /admin/ and for every
	// method: without it the answer is 401, never a 404 or 405 that would
	// tell what exists.
	return requireAdmin(token, api), nil
}

// handleHealthz answers 200 while the process runs.
func handleHealthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
}

// handleReadyz answers 200 while ready holds and the store answers (see
// pingStore), 503 otherwise: while starting, while draining, or when Redis
// is gone.
func handleReadyz(ready *atomic.Bool, store sessionstore.Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		if err := pingStore(r.Context(), store); err != nil {
			http.Error(w, "session store unavailable", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
}

// requireAdmin checks the admin bearer token in constant time; anything
// else gets 401.
func requireAdmin(token []byte, next http.Handler) http.Handler {
	const scheme = "bearer "
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := r.Header.Get("Authorization")
		ok := len(v) > len(scheme) && strings.EqualFold(v[:len(scheme)], scheme)
		if !ok || subtle.ConstantTimeCompare([]byte(v[len(scheme):]), token) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gateway-admin"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// sessionView is a session as the admin API shows it.
type sessionView struct {
	SessionID     string   `json:"session_id"`
	Subject       string   `json:"subject"`
	Roles         []string `json:"roles,omitempty"`
	CreatedAt     string   `json:"created_at"`
	RefreshedAt   string   `json:"refreshed_at"`
	IdleExpiresAt string   `json:"idle_expires_at"`
	ExpiresAt     string   `json:"expires_at"`
}

// handleListSessions answers GET /admin/sessions?subject=S with the
// subject's live sessions.
func handleListSessions(sessions *auth.Sessions) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		subject := r.URL.Query().Get("subject")
		if subject == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "subject required"})
			return
		}
		list, err := sessions.List(r.Context(), subject)
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable"})
			return
		}
		out := make([]sessionView, 0, len(list))
		for _, s := range list {
			out = append(out, sessionView{
				SessionID: s.ID, Subject: s.Subject, Roles: s.Roles,
				CreatedAt: rfc3339(s.CreatedAt), RefreshedAt: rfc3339(s.RefreshedAt),
				IdleExpiresAt: rfc3339(s.IdleExpiresAt), ExpiresAt: rfc3339(s.ExpiresAt),
			})
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// handleRevokeSession answers DELETE /admin/sessions/{id}: it revokes the
// session and closes its WebSockets on this replica.
func handleRevokeSession(sessions *auth.Sessions, gw *proxy.Gateway, met *metrics.Metrics, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		revoked, err := sessions.Revoke(r.Context(), id, auth.ReasonAdmin)
		if err == nil || errors.Is(err, auth.ErrSessionUnknown) {
			gw.EndSession(id, auth.ReasonAdmin) // its WebSockets on this replica
		}
		switch {
		case errors.Is(err, auth.ErrSessionUnknown):
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found"})
		case err != nil:
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable"})
		default:
			if revoked {
				met.SessionsRevoked.WithLabelValues(auth.ReasonAdmin).Add(1)
				log.Info("session revoked", "event", proxy.EventSessionRevoked, "reason", auth.ReasonAdmin,
					"session", id, "client", r.RemoteAddr)
			}
			w.WriteHeader(http.StatusNoContent)
		}
	})
}

// handleRevokeSubject answers DELETE /admin/sessions?subject=S: it revokes
// every session of the subject and closes their WebSockets on this replica.
func handleRevokeSubject(sessions *auth.Sessions, gw *proxy.Gateway, met *metrics.Metrics, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		subject := r.URL.Query().Get("subject")
		if subject == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "subject required"})
			return
		}
		n, err := sessions.RevokeSubject(r.Context(), subject, auth.ReasonAdmin)
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable"})
			return
		}
		gw.EndSubject(subject, auth.ReasonAdmin)
		met.SessionsRevoked.WithLabelValues(auth.ReasonAdmin).Add(float64(n))
		log.Info("sessions revoked", "event", proxy.EventSessionRevoked, "reason", auth.ReasonAdmin,
			"subject", subject, "count", n, "client", r.RemoteAddr)
		writeJSON(w, http.StatusOK, map[string]int{"revoked": n})
	})
}

// rfc3339 formats t in UTC, to the second.
func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// writeJSON answers status with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
