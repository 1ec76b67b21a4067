package auth

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// upstreamRequest is what the test upstream received.
type upstreamRequest struct {
	method, contentType string
	body                []byte
}

// newUpstream starts an upstream login endpoint answering with answer and
// recording the last request.
func newUpstream(tb testing.TB, answer http.HandlerFunc) (*httptest.Server, *atomic.Pointer[upstreamRequest]) {
	tb.Helper()
	var last atomic.Pointer[upstreamRequest]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		last.Store(&upstreamRequest{method: r.Method, contentType: r.Header.Get("Content-Type"), body: body})
		answer(w, r)
	}))
	tb.Cleanup(srv.Close)
	return srv, &last
}

func TestUpstreamLoginSuccess(t *testing.T) {
	srv, last := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Auth-Subject", " alice ")
		w.Header().Set("Set-Cookie", "legacy=1")
		_, _ = io.WriteString(w, `{"ok":true}`)
	})
	u := &UpstreamLogin{URL: srv.URL + "/login", SubjectHeader: "X-Auth-Subject", Roles: map[string][]string{"alice": {"admin"}}}
	body := []byte("username=alice&password=p%40ss")
	c := Credentials{Username: "alice", Password: "p@ss", ContentType: "application/x-www-form-urlencoded", Body: body}
	id, err := u.Authenticate(t.Context(), c)
	if err != nil {
		t.Fatalf("Authenticate = %v", err)
	}
	if id.Subject != "alice" || !slices.Equal(id.Roles, []string{"admin"}) {
		t.Errorf("Authenticate = %+v, want alice [admin]", id)
	}
	got := last.Load()
	if got.method != http.MethodPost || got.contentType != c.ContentType || !bytes.Equal(got.body, body) {
		t.Errorf("upstream got %s %q %q, want POST %q %q", got.method, got.contentType, got.body, c.ContentType, body)
	}
	id.Roles[0] = "changed"
	if again, _ := u.Authenticate(t.Context(), c); again.Roles[0] != "admin" {
		t.Errorf("Identity.Roles shares the Roles map's slice")
	}
}

func TestUpstreamLoginAnswers(t *testing.T) {
	other, _ := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Auth-Subject", "mallory")
	})
	tests := []struct {
		name       string
		answer     http.HandlerFunc
		client     *http.Client
		wantStatus int // *UpstreamRejected with this status; 0: ErrUpstreamUnavailable
		wantBad    bool
		wantBody   string
	}{
		{"401 relayed", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("WWW-Authenticate", `Basic realm="legacy"`)
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":"bad password"}`)
		}, nil, 401, true, `{"error":"bad password"}`},
		{"403 relayed", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "locked", http.StatusForbidden)
		}, nil, 403, true, "locked\n"},
		{"500 relayed, not bad credentials", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "oops", http.StatusInternalServerError)
		}, nil, 500, false, "oops\n"},
		{"redirect to another host not followed", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.URL+"/steal", http.StatusTemporaryRedirect)
		}, nil, 307, false, ""},
		{"redirect not followed with the caller's client", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.URL+"/steal", http.StatusFound)
		}, &http.Client{}, 302, false, ""},
		{"2xx without subject header", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusOK)
		}, nil, 0, false, ""},
		{"2xx with empty subject header", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Auth-Subject", "  ")
			w.WriteHeader(http.StatusNoContent)
		}, nil, 0, false, ""},
		{"rejection body over 1 MiB", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write(bytes.Repeat([]byte("x"), 1<<20+1))
		}, nil, 0, false, ""},
		{"upstream hangs up", func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
		}, nil, 0, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := newUpstream(t, tt.answer)
			u := &UpstreamLogin{URL: srv.URL, SubjectHeader: "X-Auth-Subject", Client: tt.client}
			id, err := u.Authenticate(t.Context(), Credentials{ContentType: "application/json", Body: []byte(`{}`)})
			if err == nil {
				t.Fatalf("Authenticate = %+v, nil error; want an error", id)
			}
			if tt.wantStatus == 0 {
				if !errors.Is(err, ErrUpstreamUnavailable) {
					t.Errorf("Authenticate error = %v, want ErrUpstreamUnavailable", err)
				}
				return
			}
			var rej *UpstreamRejected
			if !errors.As(err, &rej) {
				t.Fatalf("Authenticate error = %v, want *UpstreamRejected", err)
			}
			if rej.Status != tt.wantStatus || (tt.wantBody != "" && string(rej.Body) != tt.wantBody) {
				t.Errorf("UpstreamRejected = %d %q, want %d %q", rej.Status, rej.Body, tt.wantStatus, tt.wantBody)
			}
			if got := errors.Is(err, ErrBadCredentials); got != tt.wantBad {
				t.Errorf("errors.Is(err, ErrBadCredentials) = %v, want %v", got, tt.wantBad)
			}
			if errors.Is(err, ErrUpstreamUnavailable) {
				t.Errorf("a relayed answer matches ErrUpstreamUnavailable")
			}
			if tt.wantStatus/100 == 3 && !strings.HasPrefix(rej.Header.Get("Location"), other.URL) {
				t.Errorf("Location = %q, want the redirect target", rej.Header.Get("Location"))
			}
			if tt.wantStatus == 401 && rej.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("UpstreamRejected.Header lacks the upstream's WWW-Authenticate")
			}
		})
	}
}

func TestUpstreamLoginRedirectNeverReachesTarget(t *testing.T) {
	var hits atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("X-Auth-Subject", "mallory")
	}))
	defer target.Close()
	srv, _ := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL, http.StatusPermanentRedirect)
	})
	for _, client := range []*http.Client{nil, {}, http.DefaultClient} {
		u := &UpstreamLogin{URL: srv.URL, SubjectHeader: "X-Auth-Subject", Client: client}
		if id, err := u.Authenticate(t.Context(), Credentials{Body: []byte("password=secret")}); err == nil {
			t.Errorf("Authenticate = %+v, want an error", id)
		}
	}
	if got := hits.Load(); got != 0 {
		t.Errorf("redirect target got %d requests, want 0", got)
	}
	if http.DefaultClient.CheckRedirect != nil {
		t.Errorf("Authenticate changed http.DefaultClient")
	}
}

func TestUpstreamLoginUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := strings.Replace(srv.URL, "http://", "http://user:s3cr3t@", 1) + "/login?key=t0ps3cr3t"
	srv.Close()
	u := &UpstreamLogin{URL: url, SubjectHeader: "X-Auth-Subject"}
	_, err := u.Authenticate(t.Context(), Credentials{Body: []byte("password=hunter2")})
	if !errors.Is(err, ErrUpstreamUnavailable) {
		t.Fatalf("Authenticate = %v, want ErrUpstreamUnavailable", err)
	}
	for _, secret := range []string{"s3cr3t", "t0ps3cr3t", "hunter2"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error %q contains %q", err, secret)
		}
	}
	u.URL = "http://[::1"
	if _, err := u.Authenticate(t.Context(), Credentials{}); !errors.Is(err, ErrUpstreamUnavailable) {
		t.Errorf("Authenticate(bad URL) = %v, want ErrUpstreamUnavailable", err)
	}
}

func TestUpstreamLoginCancelled(t *testing.T) {
	arrived := make(chan struct{})
	var once sync.Once
	srv, _ := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(arrived) })
		<-r.Context().Done()
	})
	u := &UpstreamLogin{URL: srv.URL, SubjectHeader: "X-Auth-Subject"}
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-arrived
		cancel()
	}()
	_, err := u.Authenticate(ctx, Credentials{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Authenticate = %v, want context.Canceled", err)
	}
	if errors.Is(err, ErrUpstreamUnavailable) {
		t.Errorf("a cancelled login matches ErrUpstreamUnavailable")
	}
}

// Both login sources satisfy Authenticator.
var (
	_ Authenticator = (*UsersFile)(nil)
	_ Authenticator = (*UpstreamLogin)(nil)
)
