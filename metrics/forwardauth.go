package metrics

import "github.com/prometheus/client_golang/prometheus"

// Label values of gateway_forward_auth_decisions_total's "result": the
// answers of /auth/verify, the forward-auth endpoint an ingress asks
// before it proxies a request itself.
const (
	// ForwardAllowed: 200, the original request may pass (with a token,
	// or anonymously where its route allows).
	ForwardAllowed = "allowed"
	// ForwardUnauthorized: 401, no valid token (or proof).
	ForwardUnauthorized = "unauthorized"
	// ForwardForbidden: 403, a role the token lacks, or the cookie's CSRF rule.
	ForwardForbidden = "forbidden"
	// ForwardBadRequest: 400 or 404, the original URI refused by the
	// path checks, or naming no route.
	ForwardBadRequest = "bad_request"
	// ForwardUntrusted: 403, the caller is not in trusted_proxies, so the
	// request it describes cannot be believed.
	ForwardUntrusted = "untrusted_caller"
	// ForwardError: 5xx, the gateway could not decide (store unavailable).
	ForwardError = "error"
)

// newForwardAuth is gateway_forward_auth_decisions_total: by route prefix
// of the original URI (RouteUnmatched where none was found) and result.
func newForwardAuth() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_forward_auth_decisions_total",
		Help: "Answers of /auth/verify (forward-auth) by route prefix of the original request and result.",
	}, []string{"route", "result"})
}
