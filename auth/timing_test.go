package auth

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// medianAuth is the median time of n Authenticate calls with c.
func medianAuth(t *testing.T, u *UsersFile, c Credentials, n int) time.Duration {
	t.Helper()
	d := make([]time.Duration, n)
	for i := range d {
		start := time.Now()
		if _, err := u.Authenticate(t.Context(), c); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("Authenticate(%q) = %v, want ErrBadCredentials", c.Username, err)
		}
		d[i] = time.Since(start)
	}
	slices.Sort(d)
	return d[n/2]
}

// TestUnknownUserTimesLikeWrongPassword measures what an attacker would:
// the time of a login for an unknown user and for a known user with a wrong
// password. Both run one bcrypt comparison of the same cost (the dummy hash
// has the file's cost, see TestUsersFileDummyCost), so their medians must
// be within a factor of two, a tolerance wide enough for a loaded CI
// machine. The control shows the measurement can tell: a user whose hash
// costs 2^3 times more than the dummy is told apart by the same method.
func TestUnknownUserTimesLikeWrongPassword(t *testing.T) {
	if testing.Short() {
		t.Skip("timing measurement")
	}
	hash := func(cost int) string {
		h, err := bcrypt.GenerateFromPassword([]byte("right"), cost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	// Two users at cost 5 make it the file's cost; "slow" is the control.
	file := "alice:" + hash(5) + "\nbob:" + hash(5) + "\nslow:" + hash(8) + "\n"
	u, err := ParseUsers(strings.NewReader(file), nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 15
	wrong := medianAuth(t, u, Credentials{Username: "alice", Password: "wrong"}, n)
	unknown := medianAuth(t, u, Credentials{Username: "mallory", Password: "wrong"}, n)
	if ratio := float64(unknown) / float64(wrong); ratio < 0.5 || ratio > 2 {
		t.Errorf("unknown user: median %v; wrong password: median %v; want the same time (ratio %.2f)", unknown, wrong, ratio)
	}
	slow := medianAuth(t, u, Credentials{Username: "slow", Password: "wrong"}, 5)
	if ratio := float64(slow) / float64(unknown); ratio < 3 {
		t.Errorf("control: cost 8 median %v vs cost 5 median %v (ratio %.2f); the measurement cannot tell an 8x difference", slow, unknown, ratio)
	}
	t.Logf("medians: wrong password %v, unknown user %v, cost-8 user %v", wrong, unknown, slow)
}
