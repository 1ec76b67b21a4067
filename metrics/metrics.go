// Package metrics defines the gateway's Prometheus metrics. Nothing here is
// global: New registers the collectors on the Registerer it is given, so
// every test can use a fresh registry.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Label values of gateway_refreshes_total's "result".
const (
	RefreshSuccess        = "success"
	RefreshGrace          = "grace"
	RefreshNotExpired     = "not_expired"
	RefreshInvalidToken   = "invalid_token"
	RefreshUnknownSession = "unknown_session"
	RefreshRevoked        = "revoked"
	RefreshExpired        = "expired"
	RefreshReuseDetected  = "reuse_detected"
	RefreshMissing        = "missing" // the request carried no token
	// RefreshIdPUnavailable: an OpenID Connect session's provider could not
	// be asked (login.oidc.recheck = "refresh"); nothing changed (503).
	RefreshIdPUnavailable = "idp_unavailable"
)

// Label values of gateway_oidc_logins_total's "result": how a callback
// from the OpenID Provider ended.
const (
	OIDCSuccess        = "success"
	OIDCRefused        = "refused"          // error= from the provider, or its refusal of the code
	OIDCInvalidState   = "invalid_state"    // login state missing, expired, forged or not this browser's
	OIDCInvalidIDToken = "invalid_id_token" // the ID token failed a check
	OIDCUnavailable    = "unavailable"      // the provider, or the session store, could not be reached
)

// Label values of gateway_token_validations_total's "result".
const (
	ValidationValid   = "valid"
	ValidationMissing = "missing"
	ValidationExpired = "expired"
	ValidationInvalid = "invalid"
	ValidationRevoked = "revoked"
)

// Label values of gateway_logins_total's "result".
const (
	LoginSuccess     = "success"
	LoginFailure     = "failure"
	LoginRateLimited = "rate_limited"
)

// Label values of gateway_sessions_created_total's "bound": whether the
// login's session is bound to a DPoP key.
const (
	BoundTrue  = "true"
	BoundFalse = "false"
)

// Label values of gateway_config_reloads_total's "result".
const (
	ReloadSuccess = "success"
	ReloadFailure = "failure" // the old configuration keeps serving
)

// RouteAuth is the "route" label of the gateway's own endpoints (/auth/...,
// /.well-known/jwks.json); RouteUnmatched that of requests no route matched.
const (
	RouteAuth      = "auth"
	RouteUnmatched = "unmatched"
)

// Metrics holds every collector the README's metrics table lists. A nil *Metrics is not valid;
// use New.
type Metrics struct {
	Logins               *prometheus.CounterVec
	Refreshes            *prometheus.CounterVec
	Logouts              prometheus.Counter
	SessionsCreated      *prometheus.CounterVec
	SessionsRevoked      *prometheus.CounterVec
	TokenValidations     *prometheus.CounterVec
	HTTPRequests         *prometheus.CounterVec
	HTTPRequestDuration  *prometheus.HistogramVec
	UpstreamErrors       *prometheus.CounterVec
	SpoofedHeaders       *prometheus.CounterVec
	StoreOperationLength *prometheus.HistogramVec
	// JWKSFetches counts the fetches of external issuers' key sets, by
	// issuer name and result (JWKSSuccess, JWKSError).
	JWKSFetches *prometheus.CounterVec
	// JWKSLastSuccess is the Unix time of each issuer's last good fetch.
	JWKSLastSuccess *prometheus.GaugeVec

	// BuildInfo is gateway_build_info{version,goversion}, set to 1 by the
	// command for its own version; it has no series until then.
	BuildInfo *prometheus.GaugeVec
	// ConfigReloads and ConfigLastReloadSuccess are the configuration
	// reload's metrics (issue 15): registered now so that the shipped
	// alert and dashboard find them; they stay at zero until something
	// reloads and sets them.
	ConfigReloads           *prometheus.CounterVec
	ConfigLastReloadSuccess prometheus.Gauge
	// ForwardAuth counts the answers of /auth/verify (forwardauth.go).
	ForwardAuth *prometheus.CounterVec
	// OIDCLogins counts the callbacks of OpenID Connect logins by result;
	// a successful one also counts in Logins as a success.
	OIDCLogins *prometheus.CounterVec
}

// Label values of gateway_jwks_fetches_total's "result".
const (
	JWKSSuccess = "success"
	JWKSError   = "error"
)

// proxyBuckets run from 100µs to 10s: a verified request through a local
// sidecar is sub-millisecond, a slow legacy backend takes seconds.
var proxyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// New creates the collectors and registers them, with the Go and process
// collectors, on reg. It returns an error if any is already registered.
//
// activeSessions is called at each scrape for gateway_sessions_active; it
// must be cheap (the stores keep a counter rather than scanning) and return
// NaN when the store cannot be read. Nil leaves the gauge out.
func New(reg prometheus.Registerer, activeSessions func() float64) (*Metrics, error) {
	m := newMetrics()
	if err := m.register(reg, activeSessions); err != nil {
		return nil, err
	}
	m.knownLabels()
	return m, nil
}

// newMetrics creates the collectors, unregistered.
func newMetrics() *Metrics {
	return &Metrics{
		Logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_logins_total",
			Help: "Login attempts by result.",
		}, []string{"result"}),
		Refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_refreshes_total",
			Help: "Refresh attempts by result.",
		}, []string{"result"}),
		Logouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_logouts_total",
			Help: "Logouts answered 204.",
		}),
		SessionsCreated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_sessions_created_total",
			Help: "Sessions created by a login, by whether they are bound to a DPoP key.",
		}, []string{"bound"}),
		OIDCLogins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_oidc_logins_total",
			Help: "OpenID Connect login callbacks by result.",
		}, []string{"result"}),
		SessionsRevoked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_sessions_revoked_total",
			Help: "Sessions revoked, by reason.",
		}, []string{"reason"}),
		TokenValidations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_token_validations_total",
			Help: "Access token checks on proxied requests, by result.",
		}, []string{"result"}),
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_http_requests_total",
			Help: "Requests answered on the main listener, by route prefix and status code.",
		}, []string{"route", "code"}),
		HTTPRequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gateway_http_request_duration_seconds",
			Help:    "Time from request to the end of the answer, by route prefix.",
			Buckets: proxyBuckets,
		}, []string{"route"}),
		UpstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_upstream_errors_total",
			Help: "Requests the upstream could not answer (502 or 504), by route prefix.",
		}, []string{"route"}),
		SpoofedHeaders: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_spoofed_headers_total",
			Help: "Requests that carried a header under the identity prefix, by route prefix.",
		}, []string{"route"}),
		StoreOperationLength: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gateway_store_operation_duration_seconds",
			Help:    "Session store operations, by operation.",
			Buckets: proxyBuckets,
		}, []string{"op"}),
		JWKSFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_jwks_fetches_total",
			Help: "Fetches of external issuers' JWKS, by issuer name and result.",
		}, []string{"issuer", "result"}),
		JWKSLastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gateway_jwks_last_success_timestamp_seconds",
			Help: "Unix time of the last successful fetch of each external issuer's JWKS.",
		}, []string{"issuer"}),
		BuildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gateway_build_info",
			Help: "Always 1, labelled with the gateway's version and the Go version it was built with.",
		}, []string{"version", "goversion"}),
		ConfigReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_config_reloads_total",
			Help: "Configuration reloads, by result (failure: the previous configuration keeps serving).",
		}, []string{"result"}),
		ConfigLastReloadSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gateway_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last configuration successfully loaded (at start-up or by a reload).",
		}),
		ForwardAuth: newForwardAuth(),
	}
}

// register registers m's collectors, the Go and process collectors, and
// the gauge of activeSessions unless it is nil, on reg, in that order.
func (m *Metrics) register(reg prometheus.Registerer, activeSessions func() float64) error {
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.Logins, m.Refreshes, m.Logouts, m.SessionsCreated, m.SessionsRevoked,
		m.TokenValidations, m.HTTPRequests, m.HTTPRequestDuration,
		m.UpstreamErrors, m.SpoofedHeaders, m.StoreOperationLength, m.OIDCLogins,
		m.JWKSFetches, m.JWKSLastSuccess,
		m.BuildInfo, m.ConfigReloads, m.ConfigLastReloadSuccess,
		m.ForwardAuth,
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	if activeSessions == nil {
		return nil
	}
	return reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gateway_sessions_active",
		Help: "Sessions stored and not revoked (expired ones count until the sweeper removes them).",
	}, activeSessions))
}

// knownLabels makes the label values known up front, so that dashboards
// and alerts see zeros rather than absent series.
func (m *Metrics) knownLabels() {
	for _, r := range []string{LoginSuccess, LoginFailure, LoginRateLimited} {
		m.Logins.WithLabelValues(r)
	}
	for _, r := range []string{RefreshSuccess, RefreshGrace, RefreshNotExpired, RefreshInvalidToken,
		RefreshUnknownSession, RefreshRevoked, RefreshExpired, RefreshReuseDetected, RefreshMissing, RefreshIdPUnavailable} {
		m.Refreshes.WithLabelValues(r)
	}
	for _, b := range []string{BoundTrue, BoundFalse} {
		m.SessionsCreated.WithLabelValues(b)
	}
	for _, r := range []string{OIDCSuccess, OIDCRefused, OIDCInvalidState, OIDCInvalidIDToken, OIDCUnavailable} {
		m.OIDCLogins.WithLabelValues(r)
	}
	for _, r := range []string{"logout", "reuse_detected", "admin", "session_limit", "idp_refused", "idp_logout"} {
		m.SessionsRevoked.WithLabelValues(r)
	}
	for _, r := range []string{ValidationValid, ValidationMissing, ValidationExpired, ValidationInvalid, ValidationRevoked} {
		m.TokenValidations.WithLabelValues(r)
	}
	for _, r := range []string{ReloadSuccess, ReloadFailure} {
		m.ConfigReloads.WithLabelValues(r)
	}
}
