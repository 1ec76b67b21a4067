package redisstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/spa-gateway/gateway/sessionstore"
)

// Fields of a session hash. encodeSession and decodeSession are the one
// place that knows them, with the scripts (see scripts.go).
const (
	fieldSubject       = "sub"
	fieldRoles         = "roles"
	fieldJTI           = "jti"
	fieldIssuedAt      = "iat"
	fieldPrevJTI       = "pjti"
	fieldRotatedAt     = "rot"
	fieldCreatedAt     = "cre"
	fieldRefreshedAt   = "ref"
	fieldIdleExpiresAt = "idle"
	fieldExpiresAt     = "exp"
	fieldRevokedAt     = "rva"
	fieldRevokeReason  = "rvr"
	// The client context (sessionstore.Session.LoginUserAgent, ...) and
	// the DPoP binding: absent from sessions stored before they were
	// recorded, and from sessions where they are empty.
	fieldLoginUserAgent   = "lua"
	fieldLoginClient      = "lcl"
	fieldRefreshUserAgent = "rua"
	fieldRefreshClient    = "rcl"
	fieldJKT              = "jkt"
	// The identity provider of an OpenID Connect login
	// (sessionstore.Session.Issuer, ...): absent from every other session.
	fieldIssuer          = "iss"
	fieldIdPSessionID    = "isid"
	fieldIdPRefreshToken = "irt"
	fieldIDToken         = "idt"
)

// millis is t in decimal unix milliseconds, the precision the store keeps.
func millis(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// fromMillis is the inverse of millis, in UTC.
func fromMillis(s string) (time.Time, error) {
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	return time.UnixMilli(ms).UTC(), nil
}

// encodeSession returns the session's hash as field/value pairs: the fields
// that are always there first, then those that are set.
func encodeSession(sess *sessionstore.Session) ([]any, error) {
	v := []any{
		fieldSubject, sess.Subject,
		fieldJTI, sess.JTI,
		fieldIssuedAt, millis(sess.IssuedAt),
		fieldCreatedAt, millis(sess.CreatedAt),
		fieldRefreshedAt, millis(sess.RefreshedAt),
		fieldIdleExpiresAt, millis(sess.IdleExpiresAt),
		fieldExpiresAt, millis(sess.ExpiresAt),
	}
	if len(sess.Roles) > 0 {
		roles, err := json.Marshal(sess.Roles)
		if err != nil {
			return nil, err
		}
		v = append(v, fieldRoles, string(roles))
	}
	if sess.PrevJTI != "" {
		v = append(v, fieldPrevJTI, sess.PrevJTI)
	}
	if !sess.RotatedAt.IsZero() {
		v = append(v, fieldRotatedAt, millis(sess.RotatedAt))
	}
	for _, f := range [...]struct{ name, value string }{
		{fieldLoginUserAgent, sess.LoginUserAgent},
		{fieldLoginClient, sess.LoginClient},
		{fieldRefreshUserAgent, sess.RefreshUserAgent},
		{fieldRefreshClient, sess.RefreshClient},
		{fieldJKT, sess.JKT},
		{fieldIssuer, sess.Issuer},
		{fieldIdPSessionID, sess.IdPSessionID},
		{fieldIdPRefreshToken, sess.IdPRefreshToken},
		{fieldIDToken, sess.IDToken},
	} {
		if f.value != "" {
			v = append(v, f.name, f.value)
		}
	}
	if sess.Revoked() {
		v = append(v, fieldRevokedAt, millis(sess.RevokedAt))
		if sess.RevokeReason != "" {
			v = append(v, fieldRevokeReason, sess.RevokeReason)
		}
	}
	return v, nil
}

// errDamaged means a session hash lacks a field or holds a value this code
// cannot read: another program wrote under the key prefix, or a newer
// gateway did.
var errDamaged = errors.New("damaged session")

// decodeSession builds the session id from its hash. An empty hash is
// sessionstore.ErrNotFound.
func decodeSession(id string, h map[string]string) (sessionstore.Session, error) {
	if len(h) == 0 {
		return sessionstore.Session{}, sessionstore.ErrNotFound
	}
	sess := sessionstore.Session{
		ID:           id,
		Subject:      h[fieldSubject],
		JTI:          h[fieldJTI],
		PrevJTI:      h[fieldPrevJTI],
		RevokeReason: h[fieldRevokeReason],

		LoginUserAgent:   h[fieldLoginUserAgent],
		LoginClient:      h[fieldLoginClient],
		RefreshUserAgent: h[fieldRefreshUserAgent],
		RefreshClient:    h[fieldRefreshClient],
		JKT:              h[fieldJKT],

		Issuer:          h[fieldIssuer],
		IdPSessionID:    h[fieldIdPSessionID],
		IdPRefreshToken: h[fieldIdPRefreshToken],
		IDToken:         h[fieldIDToken],
	}
	if _, ok := h[fieldSubject]; !ok {
		return sessionstore.Session{}, fmt.Errorf("%w: no %s field", errDamaged, fieldSubject)
	}
	if roles, ok := h[fieldRoles]; ok {
		if err := json.Unmarshal([]byte(roles), &sess.Roles); err != nil {
			return sessionstore.Session{}, fmt.Errorf("%w: %s: %w", errDamaged, fieldRoles, err)
		}
	}
	times := []struct {
		field    string
		dst      *time.Time
		optional bool
	}{
		{fieldIssuedAt, &sess.IssuedAt, false},
		{fieldCreatedAt, &sess.CreatedAt, false},
		{fieldRefreshedAt, &sess.RefreshedAt, false},
		{fieldIdleExpiresAt, &sess.IdleExpiresAt, false},
		{fieldExpiresAt, &sess.ExpiresAt, false},
		{fieldRotatedAt, &sess.RotatedAt, true},
		{fieldRevokedAt, &sess.RevokedAt, true},
	}
	for _, tf := range times {
		s, ok := h[tf.field]
		if !ok {
			if tf.optional {
				continue
			}
			return sessionstore.Session{}, fmt.Errorf("%w: no %s field", errDamaged, tf.field)
		}
		t, err := fromMillis(s)
		if err != nil {
			return sessionstore.Session{}, fmt.Errorf("%w: %s: %w", errDamaged, tf.field, err)
		}
		*tf.dst = t
	}
	return sess, nil
}

// decodeReply decodes a script's {code, field, value, ...} answer.
func decodeReply(id string, reply []any) (code string, sess sessionstore.Session, err error) {
	if len(reply) == 0 || len(reply)%2 != 1 {
		return "", sess, fmt.Errorf("unexpected script answer of %d values", len(reply))
	}
	code, ok := reply[0].(string)
	if !ok {
		return "", sess, fmt.Errorf("unexpected script answer %T", reply[0])
	}
	if len(reply) == 1 {
		return code, sess, nil
	}
	h := make(map[string]string, len(reply)/2)
	for i := 1; i < len(reply); i += 2 {
		k, ok1 := reply[i].(string)
		v, ok2 := reply[i+1].(string)
		if !ok1 || !ok2 {
			return "", sess, fmt.Errorf("unexpected script answer %T, %T", reply[i], reply[i+1])
		}
		h[k] = v
	}
	sess, err = decodeSession(id, h)
	return code, sess, err
}
