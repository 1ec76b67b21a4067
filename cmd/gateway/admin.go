package main

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/proxy"
)

// The admin API (README, "Endpoints"), on the admin listener under /admin/, behind
// the bearer token of admin.token_file:
//
//	GET    /admin/sessions?subject=S   200, the subject's live sessions (sessionView)
//	DELETE /admin/sessions/ID          204; 404 if unknown
//	DELETE /admin/sessions?subject=S   200 {"revoked":N}
//
// "gateway sessions list|revoke" (sessions.go) is its client.

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

// adminAPI serves /admin/sessions; requireAdmin guards it.
func (m *Main) adminAPI() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/sessions", func(w http.ResponseWriter, r *http.Request) {
		subject := r.URL.Query().Get("subject")
		if subject == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "subject required"})
			return
		}
		list, err := m.sessions.List(r.Context(), subject)
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
	mux.HandleFunc("DELETE /admin/sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
		revoked, err := m.sessions.Revoke(r.Context(), r.PathValue("id"), auth.ReasonAdmin)
		if err == nil || errors.Is(err, auth.ErrSessionUnknown) {
			m.gw.EndSession(r.PathValue("id"), auth.ReasonAdmin) // its WebSockets on this replica
		}
		switch {
		case errors.Is(err, auth.ErrSessionUnknown):
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found"})
		case err != nil:
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable"})
		default:
			if revoked {
				m.met.SessionsRevoked.WithLabelValues(auth.ReasonAdmin).Add(1)
				m.log.Info("session revoked", "event", proxy.EventSessionRevoked, "reason", auth.ReasonAdmin,
					"session", r.PathValue("id"), "client", r.RemoteAddr)
			}
			w.WriteHeader(http.StatusNoContent)
		}
	})
	mux.HandleFunc("DELETE /admin/sessions", func(w http.ResponseWriter, r *http.Request) {
		subject := r.URL.Query().Get("subject")
		if subject == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "subject required"})
			return
		}
		n, err := m.sessions.RevokeSubject(r.Context(), subject, auth.ReasonAdmin)
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable"})
			return
		}
		m.gw.EndSubject(subject, auth.ReasonAdmin)
		m.met.SessionsRevoked.WithLabelValues(auth.ReasonAdmin).Add(float64(n))
		m.log.Info("sessions revoked", "event", proxy.EventSessionRevoked, "reason", auth.ReasonAdmin,
			"subject", subject, "count", n, "client", r.RemoteAddr)
		writeJSON(w, http.StatusOK, map[string]int{"revoked": n})
	})
	return mux
}

// rfc3339 formats t in UTC, to the second.
func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// writeJSON answers status with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
