package proxy

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"

	"github.com/spa-gateway/gateway/auth"
	"github.com/spa-gateway/gateway/metrics"
)

// OAuth 2.0 / RFC 6750 error codes, and the gateway's own.
const (
	errInvalidRequest    = "invalid_request"
	errInvalidToken      = "invalid_token"
	errInvalidGrant      = "invalid_grant"
	errAccessDenied      = "access_denied"
	errInsufficientScope = "insufficient_scope"
	errUnauthorized      = "unauthorized"
	errForbidden         = "forbidden"
	errBadGateway        = "bad_gateway"
	errGatewayTimeout    = "gateway_timeout"
	errUnavailable       = "temporarily_unavailable"
	errNotFound          = "not_found"
	errNotImplemented    = "not_implemented"
	errMethodNotAllowed  = "method_not_allowed"
	errTooManyRequests   = "too_many_requests"
	errTooLarge          = "request_too_large"
	errRequestTimeout    = "request_timeout"
	errServer            = "server_error"
)

// realm opens every Bearer challenge (a DPoP one names no realm).
const realm = `Bearer realm="gateway"`

type errorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// writeError answers with the JSON error body the README documents. description
// must never hold a token, a password or anything else the client sent
// unescaped; it is a fixed phrase of ours.
func writeError(w http.ResponseWriter, status int, code, description string) {
	writeJSON(w, status, errorBody{Error: code, Description: description})
}

// writeJSON answers status with v as a JSON line: never cached (every
// JSON answer of the gateway's is about a credential or a session), never
// sniffed as anything but JSON, with its length. v is one of the
// gateway's own body types, which always marshal.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, _ := json.Marshal(v)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

// Errors of the gateway's own, besides auth's, that reach problemFor.
var (
	// errTokenMissing: the request carried no token where one is needed.
	errTokenMissing = errors.New("token missing")
	// errReadBody wraps the failure to read a login body: the body limit
	// (*http.MaxBytesError), the read deadline, or a broken connection.
	errReadBody = errors.New("read body")
	// errLoginSource wraps a login source's failure to check credentials
	// (auth.ErrUpstreamUnavailable, or the request's ctx ending first).
	errLoginSource = errors.New("login source")
	// errRoleRequired: the token holds none of the roles its route
	// requires.
	errRoleRequired = errors.New("role required")
)

// badCredential is the reason a request's credential is ambiguous (two
// Authorization headers, a header and a cookie token that differ: see
// extractToken), a fixed phrase of ours: 400 invalid_request.
type badCredential string

func (e badCredential) Error() string { return "bad credential: " + string(e) }

// crossSite is the reason the cookie's CSRF or origin rule refused a
// request (see cookieRule), a fixed phrase of ours: 403 forbidden.
type crossSite string

func (e crossSite) Error() string { return "cross-site request: " + string(e) }

// problem is the gateway's answer to an error, and how it is counted.
type problem struct {
	status int
	// code is the body's "error": RFC 6750's where one applies; "" (with
	// challenge) is the bare challenge of a request without a token.
	code string
	// description is the body's error_description: a fixed phrase of ours.
	description string
	// challenge answers with a WWW-Authenticate challenge (see fail).
	challenge bool
	// validation and refresh are the results counted in
	// gateway_token_validations_total and gateway_refreshes_total by the
	// handler that counts that metric; "" counts nothing there.
	validation, refresh string
	// logged is the message the error is logged with at level Error, for
	// the failures that are the gateway's or a dependency's, not the
	// client's; "" is not logged.
	logged string
	// close asks the client to close its connection (Connection: close).
	close bool
	// dpop makes the challenge a DPoP one (RFC 9449 section 7.1)
	// whatever the request's scheme: the DPoP errors.
	dpop bool
	// nonce sets a fresh DPoP-Nonce on the answer (use_dpop_nonce).
	nonce bool
}

// problemFor is the one mapping of an error a handler meets to its answer:
// auth's verification and session errors (an own session's included), the body's limit and read
// deadline, the login source, the session store and minting. The wrappers
// the handlers add (errLoginSource, errReadBody) are matched first: what
// they wrap could match a later case (a login source's timeout is a
// net.Error, as the body's read deadline is).
func problemFor(err error) problem {
	if p, ok := dpopProblem(err); ok {
		return p
	}
	if p, ok := oidcProblem(err); ok {
		return p
	}
	var mbe *http.MaxBytesError
	var ne net.Error
	var bad badCredential
	var cross crossSite
	switch {
	case errors.As(err, &bad):
		return problem{status: http.StatusBadRequest, code: errInvalidRequest, description: string(bad),
			refresh: metrics.RefreshInvalidToken}
	case errors.As(err, &cross):
		return problem{status: http.StatusForbidden, code: errForbidden, description: string(cross),
			refresh: metrics.RefreshInvalidToken}
	case errors.Is(err, errLoginSource):
		return problem{status: http.StatusBadGateway, code: errBadGateway, description: "login service unavailable",
			logged: "login source"}
	case errors.As(err, &mbe):
		return problem{status: http.StatusRequestEntityTooLarge, code: errTooLarge, description: "body too large"}
	case errors.Is(err, errReadBody) && errors.As(err, &ne) && ne.Timeout():
		return problem{status: http.StatusRequestTimeout, code: errRequestTimeout, description: "body not received in time", close: true}
	case errors.Is(err, errReadBody):
		return problem{status: http.StatusBadRequest, code: errInvalidRequest, description: "unreadable body"}
	case errors.Is(err, errRoleRequired):
		return problem{status: http.StatusForbidden, code: errInsufficientScope, description: "role required", challenge: true}
	case errors.Is(err, errTokenMissing):
		return problem{status: http.StatusUnauthorized, description: "token missing", challenge: true,
			validation: metrics.ValidationMissing, refresh: metrics.RefreshMissing}
	case errors.Is(err, auth.ErrTokenExpired):
		return problem{status: http.StatusUnauthorized, code: errInvalidToken, description: auth.Describe(err), challenge: true,
			validation: metrics.ValidationExpired, refresh: metrics.RefreshInvalidToken}
	case errors.Is(err, auth.ErrTokenInvalid):
		return problem{status: http.StatusUnauthorized, code: errInvalidToken, description: auth.Describe(err), challenge: true,
			validation: metrics.ValidationInvalid, refresh: metrics.RefreshInvalidToken}
	case errors.Is(err, auth.ErrNoSession):
		return problem{status: http.StatusUnauthorized, code: errInvalidToken, description: "token names no session", challenge: true,
			refresh: metrics.RefreshInvalidToken}
	case errors.Is(err, auth.ErrTokenNotExpired):
		return problem{status: http.StatusUnauthorized, code: errInvalidToken, description: "token not expired", challenge: true,
			refresh: metrics.RefreshNotExpired}
	case errors.Is(err, auth.ErrOtherSession):
		// Before ErrSessionUnknown, which it wraps: the session asked
		// for, not the caller's, is unknown. Another user's answers the
		// same, so that no one learns which session IDs exist.
		return problem{status: http.StatusNotFound, code: errNotFound, description: "no such session"}
	case errors.Is(err, auth.ErrUnknownScope):
		return problem{status: http.StatusBadRequest, code: errInvalidRequest, description: `scope must be "others" or "all"`}
	case errors.Is(err, auth.ErrSessionUnknown):
		return problem{status: http.StatusUnauthorized, code: errInvalidToken, description: "session revoked", challenge: true,
			validation: metrics.ValidationRevoked, refresh: metrics.RefreshUnknownSession}
	case errors.Is(err, auth.ErrSessionRevoked):
		return problem{status: http.StatusUnauthorized, code: errInvalidToken, description: "session revoked", challenge: true,
			validation: metrics.ValidationRevoked, refresh: metrics.RefreshRevoked}
	case errors.Is(err, auth.ErrSessionExpired):
		return problem{status: http.StatusUnauthorized, code: errInvalidToken, description: "session expired", challenge: true,
			validation: metrics.ValidationRevoked, refresh: metrics.RefreshExpired}
	case errors.Is(err, auth.ErrTokenReused):
		return problem{status: http.StatusUnauthorized, code: errInvalidToken, description: "token reuse detected", challenge: true,
			validation: metrics.ValidationRevoked, refresh: metrics.RefreshReuseDetected}
	case errors.Is(err, auth.ErrStoreUnavailable):
		return problem{status: http.StatusServiceUnavailable, code: errUnavailable, description: "session store unavailable",
			logged: "session store unavailable"}
	case errors.Is(err, auth.ErrKeysUnavailable):
		// The gateway's failure, not the token's: an external issuer's
		// keys were never fetched, or not for longer than max_stale.
		return problem{status: http.StatusServiceUnavailable, code: errUnavailable, description: "issuer keys unavailable",
			logged: "issuer keys unavailable"}
	case errors.Is(err, auth.ErrBadCredentials):
		return problem{status: http.StatusUnauthorized, code: errInvalidGrant, description: "invalid username or password"}
	case errors.Is(err, auth.ErrMint):
		return problem{status: http.StatusInternalServerError, code: errServer, description: "could not mint a token",
			logged: "mint token"}
	}
	return problem{status: http.StatusInternalServerError, code: errServer, description: "internal error", logged: "unexpected error"}
}

// oidcProblem is problemFor's part for the OpenID Connect login: a
// callback refused (400) and a provider that cannot be asked (503, at the
// login, the callback or a rechecking refresh).
func oidcProblem(err error) (problem, bool) {
	switch {
	case errors.Is(err, auth.ErrLoginState):
		return problem{status: http.StatusBadRequest, code: errInvalidRequest,
			description: "login state missing, expired or not this browser's; start the login again"}, true
	case errors.Is(err, auth.ErrIDToken):
		return problem{status: http.StatusBadRequest, code: errInvalidGrant, description: "the identity provider's ID token was refused"}, true
	case errors.Is(err, auth.ErrLogoutToken):
		return problem{status: http.StatusBadRequest, code: errInvalidRequest, description: "logout token refused"}, true
	case errors.Is(err, auth.ErrLogoutUnsupported):
		return problem{status: http.StatusNotImplemented, code: errNotImplemented,
			description: `a logout token without sid needs login.oidc.subject_claim = "sub"`}, true
	case errors.Is(err, auth.ErrIdPRefused):
		return problem{status: http.StatusBadRequest, code: errAccessDenied, description: "the identity provider did not log you in"}, true
	case errors.Is(err, auth.ErrIdPUnavailable):
		return problem{status: http.StatusServiceUnavailable, code: errUnavailable, description: "identity provider unavailable",
			logged: "identity provider unavailable", refresh: metrics.RefreshIdPUnavailable}, true
	}
	return problem{}, false
}

// dpopProblem is problemFor's part for DPoP: the proof's errors, the
// scheme's, and a binding the session does not have. A login's proof
// (errLoginProof) comes before the DPoP errors it wraps: at a token
// endpoint a refused proof is 400 (RFC 9449 section 5), elsewhere 401 with
// a DPoP challenge (section 7.1).
func dpopProblem(err error) (problem, bool) {
	switch {
	case errors.Is(err, errLoginProof):
		// Before the DPoP errors it wraps: at the login, a token
		// endpoint, a refused proof is 400 (RFC 9449 section 5).
		return problem{status: http.StatusBadRequest, code: auth.DPoPErrorCode(err), description: auth.DescribeDPoP(err),
			nonce: errors.Is(err, auth.ErrDPoPNonceRequired)}, true
	case errors.Is(err, errProofUnchecked):
		return problem{status: http.StatusServiceUnavailable, code: errUnavailable, description: "DPoP proof could not be checked",
			logged: "dpop replay cache"}, true
	case errors.Is(err, auth.ErrDPoPNonceRequired):
		return problem{status: http.StatusUnauthorized, code: auth.DPoPErrorUseNonce, description: auth.DescribeDPoP(err),
			challenge: true, dpop: true, nonce: true, validation: metrics.ValidationInvalid, refresh: metrics.RefreshInvalidToken}, true
	case errors.Is(err, auth.ErrDPoPProofInvalid):
		return problem{status: http.StatusUnauthorized, code: auth.DPoPErrorInvalidProof, description: auth.DescribeDPoP(err),
			challenge: true, dpop: true, validation: metrics.ValidationInvalid, refresh: metrics.RefreshInvalidToken}, true
	case errors.Is(err, errUnboundDPoP):
		return problem{status: http.StatusUnauthorized, code: errInvalidToken, description: "DPoP scheme needs a bound token",
			challenge: true, dpop: true, validation: metrics.ValidationInvalid, refresh: metrics.RefreshInvalidToken}, true
	case errors.Is(err, errBoundBearer):
		return problem{status: http.StatusUnauthorized, code: errInvalidToken, description: "bound token needs the DPoP scheme",
			challenge: true, dpop: true, validation: metrics.ValidationInvalid, refresh: metrics.RefreshInvalidToken}, true
	case errors.Is(err, auth.ErrBindingMismatch):
		return problem{status: http.StatusUnauthorized, code: errInvalidToken, description: "token binding does not match its session",
			challenge: true, dpop: true, refresh: metrics.RefreshInvalidToken}, true
	}
	return problem{}, false
}

// fail answers with err's problem, logs it if it is the gateway's own, and
// returns it for the caller to count. scheme is how the request presented
// its token (schemeNone where it presented none, or none was read): a
// challenge is a DPoP one on a DPoP request (RFC 9449 section 7.1), and
// for the DPoP errors whatever the scheme; the bare challenge of a request
// without a token is always Bearer's.
func (g *Gateway) fail(w http.ResponseWriter, scheme authScheme, err error) problem {
	p := problemFor(err)
	if p.logged != "" {
		g.log.Error(p.logged, "err", err)
	}
	if p.close {
		w.Header().Set("Connection", "close")
	}
	if p.nonce {
		g.offerNonce(w)
	}
	code := p.code
	if p.challenge {
		dpop := p.dpop || (scheme == schemeDPoP && p.code != "")
		w.Header().Set("WWW-Authenticate", g.challenge(dpop, p.code, p.description))
		if code == "" {
			code = errUnauthorized
		}
	}
	writeError(w, p.status, code, p.description)
	return p
}

// challenge is the WWW-Authenticate value of a refusal with code and
// description: Bearer's (RFC 6750), or with dpop a DPoP one with the
// accepted algs (RFC 9449 section 7.1). code "" is the bare challenge of a
// request without a token; insufficient_scope names the code alone.
func (g *Gateway) challenge(dpop bool, code, description string) string {
	var params string
	switch code {
	case "":
	case errInsufficientScope:
		params = `error="insufficient_scope"`
	default:
		// description is one of our fixed phrases (auth.Describe,
		// auth.DescribeDPoP and the session messages): only RFC 6750's
		// characters, no quotes or backslashes to escape.
		params = `error="` + code + `", error_description="` + description + `"`
	}
	switch {
	case dpop && params == "":
		return `DPoP algs="` + g.dpopAlgs + `"`
	case dpop:
		return `DPoP ` + params + `, algs="` + g.dpopAlgs + `"`
	case params == "":
		return realm
	}
	return realm + ", " + params
}
