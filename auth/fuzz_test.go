package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/spa-gateway/gateway/auth/authtest"
)

// FuzzVerify feeds arbitrary strings to Verify and VerifyExpired. Neither
// may panic; every error is ErrTokenExpired or ErrTokenInvalid; and
// VerifyExpired relaxes exp and nothing else: it accepts exactly what
// Verify accepts plus what Verify refuses only as expired.
func FuzzVerify(f *testing.F) {
	fx := newFixture(f, EdDSA, 0)
	good := fx.mint(f)
	f.Add(good)
	f.Add(fx.good(f, authtest.With(fx.claims(), "exp", fx.clock.Now().Add(-time.Minute).Unix())))
	f.Add(authtest.Forge(f, authtest.With(fx.header(), "alg", "none"), fx.claims(), nil))
	f.Add(good[:len(good)-1])
	f.Add(good + "=")
	f.Add(strings.Replace(good, ".", "..", 1))
	f.Add("")
	f.Add("..")
	f.Add("e30.e30.")
	f.Fuzz(func(t *testing.T, raw string) {
		tok, err := fx.verifier.Verify(raw)
		etok, eerr := fx.verifier.VerifyExpired(raw)
		checkRelaxesOnlyExp(t, tok, err, etok, eerr)
	})
}

// FuzzVerifyClaims signs whatever header and payload the fuzzer makes with
// the gateway's own key, so that every claim rule is explored behind a
// valid signature. A token Verify accepts must satisfy every rule of
// the token rules, checked here independently of the verifier's code.
func FuzzVerifyClaims(f *testing.F) {
	fx := newFixture(f, EdDSA, 0)
	js := func(v any) string {
		b, _ := json.Marshal(v)
		return string(b)
	}
	now := fx.clock.Now().Unix()
	f.Add(js(fx.header()), js(fx.claims()))
	f.Add(js(fx.header()), js(authtest.With(fx.claims(), "exp", now-1)))
	f.Add(js(fx.header()), js(authtest.With(fx.claims(), "aud", []string{"x", testAudience})))
	f.Add(js(fx.header()), js(authtest.With(fx.claims(), "nbf", now+1)))
	f.Add(js(fx.header()), js(authtest.With(fx.claims(), "iat", 1.5e9, "exp", float64(now)+0.5)))
	f.Add(js(authtest.With(fx.header(), "crit", []string{"exp"})), js(fx.claims()))
	f.Add(js(authtest.With(fx.header(), "alg", "HS256")), js(fx.claims()))
	f.Add(js(authtest.With(fx.header(), "kid", nil)), js(fx.claims()))
	f.Add(`{"alg":"EdDSA","alg":"none"}`, `{"iss":"gateway","aud":"api","sub":"a","exp":99999999999,"exp":1}`)
	f.Add(`{"alg":"EdDSA"}`, `{"iss":"gateway","aud":"api","sub":"a","exp":1e11}`)
	f.Fuzz(func(t *testing.T, header, payload string) {
		input := authtest.Encode([]byte(header)) + "." + authtest.Encode([]byte(payload))
		raw := input + "." + authtest.Encode(signWith(fx.key)(t, input))
		tok, err := fx.verifier.Verify(raw)
		etok, eerr := fx.verifier.VerifyExpired(raw)
		checkRelaxesOnlyExp(t, tok, err, etok, eerr)
		if err == nil {
			checkAccepted(t, fx, header, payload, true)
		}
		if eerr == nil {
			checkAccepted(t, fx, header, payload, false)
		}
	})
}

func checkRelaxesOnlyExp(t *testing.T, tok *Token, err error, etok *Token, eerr error) {
	t.Helper()
	for _, e := range []error{err, eerr} {
		if e != nil && !errors.Is(e, ErrTokenExpired) && !errors.Is(e, ErrTokenInvalid) {
			t.Fatalf("error %v is neither ErrTokenExpired nor ErrTokenInvalid", e)
		}
	}
	switch {
	case err == nil && eerr != nil:
		t.Fatalf("Verify accepts, VerifyExpired refuses: %v", eerr)
	case errors.Is(err, ErrTokenExpired) && eerr != nil:
		t.Fatalf("Verify refuses only as expired, VerifyExpired refuses: %v", eerr)
	case errors.Is(err, ErrTokenInvalid) && eerr == nil:
		t.Fatalf("VerifyExpired accepts what Verify refuses as %v: it must relax exp only", err)
	case err == nil && (tok.Subject != etok.Subject || tok.SessionID != etok.SessionID || tok.ID != etok.ID):
		t.Fatalf("Verify and VerifyExpired disagree on the token: %+v, %+v", tok, etok)
	}
	if (err == nil) != (tok != nil) || (eerr == nil) != (etok != nil) {
		t.Fatal("a token and an error, or neither")
	}
	if eerr != nil && (strings.Contains(Describe(eerr), `"`) || strings.Contains(Describe(eerr), `\`)) {
		t.Fatalf("Describe(%v) holds a quote or backslash", eerr)
	}
}

// checkAccepted checks an accepted token's header and claims against the
// contract, decoding them independently of the verifier.
func checkAccepted(t *testing.T, fx *fixture, header, payload string, enforceExp bool) {
	t.Helper()
	var h map[string]any
	if err := json.Unmarshal([]byte(header), &h); err != nil {
		t.Fatalf("accepted a header that is not a JSON object: %q", header)
	}
	if h["alg"] != fx.alg {
		t.Fatalf("accepted alg %v, want only %s", h["alg"], fx.alg)
	}
	if _, ok := h["crit"]; ok {
		t.Fatal("accepted a crit header")
	}
	if kid, ok := h["kid"]; ok && kid != fx.key.ID() {
		t.Fatalf("accepted kid %v, not a key of the set", kid)
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(payload)))
	dec.UseNumber()
	var c map[string]any
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("accepted a payload that is not a JSON object: %q", payload)
	}
	if c["iss"] != testIssuer {
		t.Fatalf("accepted iss %v", c["iss"])
	}
	switch aud := c["aud"].(type) {
	case string:
		if aud != testAudience {
			t.Fatalf("accepted aud %q", aud)
		}
	case []any:
		found := false
		for _, a := range aud {
			found = found || a == testAudience
		}
		if !found {
			t.Fatalf("accepted aud %v", aud)
		}
	default:
		t.Fatalf("accepted aud %v", c["aud"])
	}
	if sub, _ := c["sub"].(string); sub == "" {
		t.Fatalf("accepted sub %v", c["sub"])
	}
	now := float64(fx.clock.Now().UnixNano()) / 1e9
	date := func(name string) (float64, bool) {
		n, ok := c[name].(json.Number)
		if !ok {
			if _, present := c[name]; present {
				t.Fatalf("accepted %s %v, not a number", name, c[name])
			}
			return 0, false
		}
		v, err := strconv.ParseFloat(string(n), 64)
		if err != nil || math.IsNaN(v) {
			t.Fatalf("accepted %s %v", name, n)
		}
		return v, true
	}
	// Beyond a millisecond of now, so that float rounding cannot decide.
	const ms = 1e-3
	exp, ok := date("exp")
	switch {
	case !ok:
		t.Fatal("accepted a token without exp")
	case enforceExp && exp < now-ms:
		t.Fatalf("Verify accepted exp %v at %v", exp, now)
	}
	if nbf, ok := date("nbf"); ok && nbf > now+ms {
		t.Fatalf("accepted nbf %v in the future of %v", nbf, now)
	}
	if iat, ok := date("iat"); ok && iat > now+ms {
		t.Fatalf("accepted iat %v in the future of %v", iat, now)
	}
}

// costRE finds bcrypt costs in a users file.
var costRE = regexp.MustCompile(`\$2[aby]\$(\d\d)\$`)

// FuzzParseUsers: the users-file parser never panics, refuses what it
// cannot use with an error naming a line, and a file it accepts answers
// ErrBadCredentials for an unknown user and a wrong password alike.
func FuzzParseUsers(f *testing.F) {
	hash, err := bcrypt.GenerateFromPassword([]byte("wonderland"), bcrypt.MinCost)
	if err != nil {
		f.Fatal(err)
	}
	h4 := string(hash)
	f.Add("alice:" + h4 + "\n")
	f.Add("# comment\n\nalice:" + h4 + "\nbob:" + strings.Replace(h4, "$2a$", "$2y$", 1) + "\n")
	f.Add("alice:" + h4 + "\nalice:" + h4 + "\n")
	f.Add("alice:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=\n")
	f.Add("alice:$apr1$x$y\n")
	f.Add(":" + h4 + "\n")
	f.Add("alice\n")
	f.Add("  alice : " + h4 + "  \r\n")
	f.Add("alice:$2b$31$" + strings.Repeat("a", 53) + "\n")
	f.Add(strings.Repeat("x", maxUsersLine+1))
	f.Fuzz(func(t *testing.T, file string) {
		// Each accepted file costs a bcrypt hash of its most common cost;
		// above 6 the fuzzer would spend its time in bcrypt, not in the
		// parser (costs up to 16 are tested in users_test.go).
		for _, m := range costRE.FindAllStringSubmatch(file, -1) {
			if n, _ := strconv.Atoi(m[1]); n > 6 && n <= maxUsersCost {
				t.Skip()
			}
		}
		u, err := ParseUsers(strings.NewReader(file), nil)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "line ") {
				t.Fatalf("ParseUsers error %q does not name a line", err)
			}
			// The error may quote a user name, which may look like anything,
			// even like another line's hash (the seeds "00000000:00000000"
			// and "00000000:\n:00000000" came from that): every quoted name
			// is removed before looking for a hash.
			lines := strings.Split(file, "\n")
			msg := err.Error()
			for _, line := range lines {
				name, _, _ := strings.Cut(strings.TrimSpace(line), ":")
				msg = strings.ReplaceAll(msg, strconv.Quote(name), "")
			}
			for _, line := range lines {
				_, hash, _ := strings.Cut(strings.TrimSpace(line), ":")
				if hash = strings.TrimSpace(hash); len(hash) >= 8 && strings.Contains(msg, hash) {
					t.Fatalf("ParseUsers error %q shows a hash", err)
				}
			}
			return
		}
		ctx := t.Context()
		for name := range u.hashes {
			if _, err := u.Authenticate(ctx, Credentials{Username: name, Password: "\x00not the password"}); !errors.Is(err, ErrBadCredentials) {
				t.Fatalf("wrong password for %q: %v, want ErrBadCredentials", name, err)
			}
		}
		if _, err := u.Authenticate(ctx, Credentials{Username: "\x00nobody", Password: "x"}); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("unknown user: %v, want ErrBadCredentials", err)
		}
	})
}
