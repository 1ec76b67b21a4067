package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// Known-answer vectors from Openwall's crypt_blowfish (wrapper.c tests);
// $2y$ is what `htpasswd -B` writes.
const (
	vector2y      = "$2y$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW" // "U*U"
	vector2yOctet = "$2y$05$/OK.fbVrR/bpIqNJ5ianF.Sa7shbm4.OzKpvFnX1pQLmQW96oUlCq" // "\xa3"
	vector2b      = "$2b$05$/OK.fbVrR/bpIqNJ5ianF.CE5elHaaO4EbggVDjb8P19RukzXSM3e" // "\xff\xff\xa3"
)

func hashFor(tb testing.TB, password string) string {
	tb.Helper()
	h, err := HashPassword([]byte(password))
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

func TestUsersFileAuthenticate(t *testing.T) {
	file := strings.Join([]string{
		"# users of the gateway",
		"",
		"alice:" + hashFor(t, "alice-password") + "\r",
		"  bob:" + vector2y + "  ",
		"\t# indented comment",
		"carol:" + vector2yOctet,
		"dave:" + vector2b,
		"erin with spaces:" + hashFor(t, "pw"),
	}, "\n")
	roles := map[string][]string{"alice": {"admin", "dev"}, "nobody": {"x"}}
	u, err := ParseUsers(strings.NewReader(file), roles)
	if err != nil {
		t.Fatalf("ParseUsers = %v", err)
	}
	roles["alice"][0] = "changed after parsing"

	tests := []struct {
		name      string
		user, pw  string
		wantRoles []string
		wantErr   error
	}{
		{"$2a$ from HashPassword", "alice", "alice-password", []string{"admin", "dev"}, nil},
		{"$2y$ as htpasswd -B writes", "bob", "U*U", nil, nil},
		{"$2y$ with an 8-bit password", "carol", "\xa3", nil, nil},
		{"$2b$", "dave", "\xff\xff\xa3", nil, nil},
		{"username with spaces", "erin with spaces", "pw", nil, nil},
		{"wrong password", "alice", "alice-passwore", nil, ErrBadCredentials},
		{"empty password", "alice", "", nil, ErrBadCredentials},
		{"wrong $2y$ password", "bob", "U*U*", nil, ErrBadCredentials},
		{"unknown user", "mallory", "alice-password", nil, ErrBadCredentials},
		{"unknown user with roles", "nobody", "", nil, ErrBadCredentials},
		{"username of another case", "Alice", "alice-password", nil, ErrBadCredentials},
		{"empty username", "", "", nil, ErrBadCredentials},
		{"comment as username", "# users of the gateway", "", nil, ErrBadCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := u.Authenticate(t.Context(), Credentials{Username: tt.user, Password: tt.pw})
			if tt.wantErr != nil {
				if err != tt.wantErr {
					t.Errorf("Authenticate = %+v, %v; want %v", id, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Authenticate = %v, want nil", err)
			}
			if id.Subject != tt.user || !slices.Equal(id.Roles, tt.wantRoles) {
				t.Errorf("Authenticate = %+v, want subject %q roles %v", id, tt.user, tt.wantRoles)
			}
		})
	}
}

func TestUsersFileCancelled(t *testing.T) {
	u, err := ParseUsers(strings.NewReader("alice:"+vector2y), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := u.Authenticate(ctx, Credentials{Username: "bob", Password: "U*U"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Authenticate(cancelled) = %v, want context.Canceled", err)
	}
}

func TestUsersFileDummyCost(t *testing.T) {
	// Unknown users must cost what known ones cost: the dummy hash has
	// the file's most common cost.
	hashAt := func(cost int) string {
		h, err := bcrypt.GenerateFromPassword([]byte("pw"), cost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	tests := []struct {
		name  string
		costs []int
		want  int
	}{
		{"empty file", nil, hashCost},
		{"one cost", []int{5}, 5},
		{"most common wins", []int{4, 6, 6}, 6},
		{"tie: the higher", []int{4, 5}, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var file strings.Builder
			for i, c := range tt.costs {
				fmt.Fprintf(&file, "user%d:%s\n", i, hashAt(c))
			}
			u, err := ParseUsers(strings.NewReader(file.String()), nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := bcrypt.Cost(u.dummy)
			if err != nil || got != tt.want {
				t.Errorf("dummy cost = %d (%v), want %d", got, err, tt.want)
			}
		})
	}
}

func TestParseUsersErrors(t *testing.T) {
	good := "alice:" + vector2y + "\n"
	tests := []struct {
		name     string
		file     string
		wantLine int
		want     string
		secret   string // must not appear in the error
	}{
		{"apr1 MD5", good + "bob:$apr1$abcdefgh$0123456789abcdefghijkl\n", 2, "not a bcrypt hash", "$apr1$abcdefgh"},
		{"SHA1", "# c\nbob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n", 2, "not a bcrypt hash", "W6ph5Mm5"},
		{"crypt DES", "bob:rl0uE3aBf0H.M\n", 1, "not a bcrypt hash", "rl0uE3"},
		{"plain text", "\n\nbob:secret-password\n", 3, "not a bcrypt hash", "secret-password"},
		{"$2x$ (buggy crypt_blowfish)", "bob:" + strings.Replace(vector2y, "$2y$", "$2x$", 1), 1, "not a bcrypt hash", "CCCCCCCC"},
		{"$2$ (original)", "bob:$2$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeWx", 1, "not a bcrypt hash", "CCCCCCCC"},
		{"truncated bcrypt", "bob:" + vector2y[:59], 1, "not a bcrypt hash", "CCCCCCCC"},
		{"bcrypt with trailing junk", "bob:" + vector2y + "x", 1, "not a bcrypt hash", "CCCCCCCC"},
		{"bcrypt with a bad character", "bob:" + vector2y[:40] + "*" + vector2y[41:], 1, "not a bcrypt hash", "CCCCCCCC"},
		{"bcrypt cost out of range", "bob:$2y$32$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", 1, "not a bcrypt hash", "CCCCCCCC"},
		{"bcrypt cost too slow", "bob:$2y$20$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", 1, "cost 20", "CCCCCCCC"},
		{"missing colon", good + "bob\n", 2, "want user:hash", ""},
		{"empty username", good + ":" + vector2y + "\n", 2, "want user:hash", "CCCCCCCC"},
		{"duplicate user", good + "# again\nalice:" + vector2yOctet + "\n", 3, "listed twice", "/OK.fbVrR"},
		{"line too long", good + "bob:" + strings.Repeat("x", maxUsersLine) + "\n", 2, "too long", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := ParseUsers(strings.NewReader(tt.file), nil)
			if err == nil {
				t.Fatalf("ParseUsers = %d users, nil error; want an error", len(u.hashes))
			}
			msg := err.Error()
			if wantLine := fmt.Sprintf("line %d:", tt.wantLine); !strings.Contains(msg, wantLine) {
				t.Errorf("error %q does not name %q", msg, wantLine)
			}
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error %q does not contain %q", msg, tt.want)
			}
			if tt.secret != "" && strings.Contains(msg, tt.secret) {
				t.Errorf("error %q contains the hash", msg)
			}
		})
	}
}

func TestLoadUsersFile(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "users", []byte("alice:"+vector2y+"\n"))
	u, err := LoadUsersFile(path, map[string][]string{"alice": {"ops"}})
	if err != nil {
		t.Fatalf("LoadUsersFile = %v", err)
	}
	id, err := u.Authenticate(t.Context(), Credentials{Username: "alice", Password: "U*U"})
	if err != nil || id.Subject != "alice" || !slices.Equal(id.Roles, []string{"ops"}) {
		t.Errorf("Authenticate = %+v, %v; want alice [ops]", id, err)
	}

	bad := writeFile(t, dir, "bad", []byte("alice:{SHA}x\n"))
	for _, p := range []string{bad, dir + "/missing"} {
		if _, err := LoadUsersFile(p, nil); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("LoadUsersFile(%s) = %v, want an error naming the path", p, err)
		}
	}
}

func TestHashPassword(t *testing.T) {
	h := hashFor(t, "correct horse")
	if !strings.HasPrefix(h, "$2a$") {
		t.Errorf("HashPassword = %q…, want a $2a$ bcrypt hash", h[:4])
	}
	if cost, err := bcrypt.Cost([]byte(h)); err != nil || cost != hashCost {
		t.Errorf("cost = %d (%v), want %d", cost, err, hashCost)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(h), []byte("correct horse")); err != nil {
		t.Errorf("hash does not verify: %v", err)
	}
	if h2 := hashFor(t, "correct horse"); h2 == h {
		t.Errorf("two hashes of one password are equal: no salt")
	}
	if HashCost != 12 {
		t.Errorf("HashCost = %d, want 12", HashCost)
	}
	for _, pw := range [][]byte{nil, []byte(strings.Repeat("p", 73))} {
		if _, err := HashPassword(pw); err == nil {
			t.Errorf("HashPassword(%d bytes) = nil error, want an error", len(pw))
		}
	}
}

func TestUsersFileCosts(t *testing.T) {
	file := "alice:" + hashFor(t, "a") + "\nbob:" + vector2y + "\ncarol:" + vector2b + "\n"
	u, err := ParseUsers(strings.NewReader(file), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, want := u.Costs(), map[int]int{hashCost: 1, 5: 2}
	if hashCost == 5 {
		want = map[int]int{5: 3}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Costs() = %v, want %v", got, want)
	}
}
