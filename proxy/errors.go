package proxy

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// OAuth 2.0 / RFC 6750 error codes, and the gateway's own.
const (
	errInvalidRequest    = "invalid_request"
	errInvalidToken      = "invalid_token"
	errInvalidGrant      = "invalid_grant"
	errInsufficientScope = "insufficient_scope"
	errUnauthorized      = "unauthorized"
	errForbidden         = "forbidden"
	errBadGateway        = "bad_gateway"
	errGatewayTimeout    = "gateway_timeout"
	errUnavailable       = "temporarily_unavailable"
	errNotFound          = "not_found"
	errMethodNotAllowed  = "method_not_allowed"
	errTooManyRequests   = "too_many_requests"
	errTooLarge          = "request_too_large"
	errRequestTimeout    = "request_timeout"
)

// realm is the WWW-Authenticate realm of every challenge.
const realm = `Bearer realm="gateway"`

type errorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// writeError answers with the JSON error body the README documents. description
// must never hold a token, a password or anything else the client sent
// unescaped; it is a fixed phrase of ours.
func writeError(w http.ResponseWriter, status int, code, description string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	body, _ := json.Marshal(errorBody{Error: code, Description: description})
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

// writeChallenge answers 401 or 403 with an RFC 6750 WWW-Authenticate
// challenge. code "" is the no-token case: a bare challenge with error
// "unauthorized" in the body.
func writeChallenge(w http.ResponseWriter, status int, code, description string) {
	switch code {
	case "":
		w.Header().Set("WWW-Authenticate", realm)
		writeError(w, status, errUnauthorized, description)
		return
	case errInsufficientScope:
		w.Header().Set("WWW-Authenticate", realm+`, error="insufficient_scope"`)
	default:
		// description is one of our fixed phrases (auth.Describe and the
		// session messages): no quotes or backslashes to escape.
		w.Header().Set("WWW-Authenticate", realm+`, error="`+code+`", error_description="`+description+`"`)
	}
	writeError(w, status, code, description)
}
