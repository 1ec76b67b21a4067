package proxy

import (
	"fmt"
	"strings"
)

// The enumerated settings of Config and Route. Each is a string type whose
// values are the configuration's own words, so that the gateway's TOML
// configuration decodes into them directly (UnmarshalText) and writes them
// back (MarshalText): there is no second set of names to keep in step. The
// zero value of each is its default, so a Config or Route that leaves it
// out behaves as it did when these were booleans and iota constants.

// Delivery says how access tokens travel between the gateway and the
// browser. The zero value means DeliveryBearer.
type Delivery string

const (
	// DeliveryBearer returns tokens in the login and refresh bodies; the
	// client sends them as Authorization: Bearer.
	DeliveryBearer Delivery = "bearer"
	// DeliveryCookie sets them in an HttpOnly cookie only.
	DeliveryCookie Delivery = "cookie"
	// DeliveryBoth does both.
	DeliveryBoth Delivery = "both"
)

var deliveryWords = []Delivery{DeliveryBearer, DeliveryCookie, DeliveryBoth}

// String returns the configuration word of d ("bearer" for the zero value).
func (d Delivery) String() string { return modeString(d, DeliveryBearer) }

// MarshalText returns the configuration word of d, or an error naming the
// allowed words if d is none of them.
func (d Delivery) MarshalText() ([]byte, error) { return marshalMode(d, DeliveryBearer, deliveryWords) }

// UnmarshalText sets d from its configuration word: bearer, cookie or both.
// Any other text is an error naming the allowed words, and leaves d as it
// was.
func (d *Delivery) UnmarshalText(text []byte) error { return unmarshalMode(d, text, deliveryWords) }

// AuthMode says what a route asks of a request's token. The zero value
// means AuthRequired.
type AuthMode string

const (
	// AuthRequired answers 401 without a valid token.
	AuthRequired AuthMode = "required"
	// AuthOptional forwards a request without a token anonymously, and
	// answers 401 for a token that is present but not valid.
	AuthOptional AuthMode = "optional"
	// AuthNone never looks at a token; identity headers are still stripped.
	AuthNone AuthMode = "none"
)

var authModeWords = []AuthMode{AuthRequired, AuthOptional, AuthNone}

// String returns the configuration word of m ("required" for the zero
// value).
func (m AuthMode) String() string { return modeString(m, AuthRequired) }

// MarshalText returns the configuration word of m, or an error naming the
// allowed words if m is none of them.
func (m AuthMode) MarshalText() ([]byte, error) { return marshalMode(m, AuthRequired, authModeWords) }

// UnmarshalText sets m from its configuration word: required, optional or
// none. Any other text is an error naming the allowed words, and leaves m as
// it was.
func (m *AuthMode) UnmarshalText(text []byte) error { return unmarshalMode(m, text, authModeWords) }

// Revocation says when a token's session is checked in the store. The zero
// value means RevocationRefresh.
type Revocation string

const (
	// RevocationRefresh checks the session only when its token is
	// refreshed: a revoked session's token works until it expires.
	RevocationRefresh Revocation = "refresh"
	// RevocationEveryRequest also checks it on each proxied request, at
	// the cost of one store read per request.
	RevocationEveryRequest Revocation = "every_request"
)

var revocationWords = []Revocation{RevocationRefresh, RevocationEveryRequest}

// String returns the configuration word of r ("refresh" for the zero
// value).
func (r Revocation) String() string { return modeString(r, RevocationRefresh) }

// MarshalText returns the configuration word of r, or an error naming the
// allowed words if r is none of them.
func (r Revocation) MarshalText() ([]byte, error) {
	return marshalMode(r, RevocationRefresh, revocationWords)
}

// UnmarshalText sets r from its configuration word: refresh or
// every_request. Any other text is an error naming the allowed words, and
// leaves r as it was.
func (r *Revocation) UnmarshalText(text []byte) error { return unmarshalMode(r, text, revocationWords) }

// DPoPMode says whether tokens may or must be bound to a client's key with
// DPoP (RFC 9449). The zero value means DPoPAllowed.
type DPoPMode string

const (
	// DPoPAllowed binds the session of a login that carries a valid DPoP
	// proof, and keeps serving unbound sessions as bearer tokens.
	DPoPAllowed DPoPMode = "allowed"
	// DPoPRequired refuses a login without a valid DPoP proof: every
	// session is bound.
	DPoPRequired DPoPMode = "required"
	// DPoPOff ignores DPoP headers at login: no session is bound. Tokens
	// that are bound all the same (minted before the change) still need
	// their proof.
	DPoPOff DPoPMode = "off"
)

var dpopModeWords = []DPoPMode{DPoPOff, DPoPAllowed, DPoPRequired}

// String returns the configuration word of m ("allowed" for the zero
// value).
func (m DPoPMode) String() string { return modeString(m, DPoPAllowed) }

// MarshalText returns the configuration word of m, or an error naming the
// allowed words if m is none of them.
func (m DPoPMode) MarshalText() ([]byte, error) { return marshalMode(m, DPoPAllowed, dpopModeWords) }

// UnmarshalText sets m from its configuration word: off, allowed or
// required. Any other text is an error naming the allowed words, and leaves
// m as it was.
func (m *DPoPMode) UnmarshalText(text []byte) error { return unmarshalMode(m, text, dpopModeWords) }

// SpoofAction says what happens to a request that carries a header under
// the identity prefix. The zero value means SpoofStrip.
type SpoofAction string

const (
	// SpoofStrip removes the headers and serves the request.
	SpoofStrip SpoofAction = "strip"
	// SpoofReject answers 400.
	SpoofReject SpoofAction = "reject"
)

var spoofActionWords = []SpoofAction{SpoofStrip, SpoofReject}

// String returns the configuration word of a ("strip" for the zero value).
func (a SpoofAction) String() string { return modeString(a, SpoofStrip) }

// MarshalText returns the configuration word of a, or an error naming the
// allowed words if a is none of them.
func (a SpoofAction) MarshalText() ([]byte, error) {
	return marshalMode(a, SpoofStrip, spoofActionWords)
}

// UnmarshalText sets a from its configuration word: strip or reject. Any
// other text is an error naming the allowed words, and leaves a as it was.
func (a *SpoofAction) UnmarshalText(text []byte) error {
	return unmarshalMode(a, text, spoofActionWords)
}

func modeString[M ~string](m, zero M) string {
	if m == "" {
		return string(zero)
	}
	return string(m)
}

func marshalMode[M ~string](m, zero M, allowed []M) ([]byte, error) {
	if m == "" {
		m = zero
	}
	for _, a := range allowed {
		if m == a {
			return []byte(m), nil
		}
	}
	return nil, notOneOf(string(m), allowed)
}

func unmarshalMode[M ~string](m *M, text []byte, allowed []M) error {
	for _, a := range allowed {
		if string(text) == string(a) {
			*m = a
			return nil
		}
	}
	return notOneOf(string(text), allowed)
}

// notOneOf is the message the configuration has always given for an
// unknown word: `"maybe" is not one of required, optional, none`.
func notOneOf[M ~string](s string, allowed []M) error {
	words := make([]string, len(allowed))
	for i, a := range allowed {
		words[i] = string(a)
	}
	return fmt.Errorf("%q is not one of %s", s, strings.Join(words, ", "))
}
