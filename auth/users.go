package auth

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// HashCost is the bcrypt cost HashPassword uses. bcrypt.DefaultCost is 10;
// 12 is today's usual advice (OWASP's password storage guidance asks for at
// least 10, and 12 still answers in about a quarter of a second).
const HashCost = 12

// hashCost is HashCost, lowered by the tests to keep them fast.
var hashCost = HashCost

// maxUsersCost is the highest bcrypt cost a users file may use: 16 already
// takes seconds per login, and a typo such as 31 would hang every login
// (and ParseUsers, which makes a dummy hash of that cost).
const maxUsersCost = 16

// bcryptAlphabet is bcrypt's base64 alphabet, for the salt and hash.
const bcryptAlphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// maxUsersLine bounds one line of a users file.
const maxUsersLine = 64 << 10

// HashPassword returns the bcrypt hash (cost HashCost) of password, as a
// users file line wants it after "user:". An empty password, or one longer
// than bcrypt's 72 bytes, is an error.
func HashPassword(password []byte) (string, error) {
	if len(password) == 0 {
		return "", errors.New("hash password: empty password")
	}
	h, err := bcrypt.GenerateFromPassword(password, hashCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// UsersFile is an Authenticator over an htpasswd-style users file
// (login.users_file). It is immutable and safe for concurrent use.
type UsersFile struct {
	hashes map[string][]byte
	roles  map[string][]string
	// dummy is compared against for unknown users, so that they cost the
	// same bcrypt time as known ones.
	dummy []byte
	// costs counts the users of each bcrypt cost.
	costs map[int]int
}

// Costs returns how many users of the file have each bcrypt cost. More
// than one entry means logins of some users take measurably longer than
// others', and unknown users (checked at the most common cost) can be told
// from them: see ParseUsers.
func (u *UsersFile) Costs() map[int]int {
	return maps.Clone(u.costs)
}

// LoadUsersFile reads the users file at path: see ParseUsers. Errors name
// the path and the line, never a hash.
func LoadUsersFile(path string, roles map[string][]string) (*UsersFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	defer f.Close()
	u, err := ParseUsers(f, roles)
	if err != nil {
		return nil, fmt.Errorf("users file %s: %w", path, err)
	}
	return u, nil
}

// ParseUsers reads users in htpasswd format: one "user:hash" a line, blank
// lines and lines starting with "#" ignored, surrounding spaces trimmed.
// Only bcrypt hashes are accepted ($2a$, $2b$, and $2y$ which `htpasswd -B`
// writes); any other hash type, a malformed line or a user listed twice is
// an error naming the line number. roles maps usernames to their roles
// (nil: nobody has any); it is copied.
//
// An unknown user is checked against a dummy hash of the file's most common
// cost, so that unknown users and wrong passwords take the same time; give
// every user the same cost, or the users of other costs can be told apart.
func ParseUsers(r io.Reader, roles map[string][]string) (*UsersFile, error) {
	u := &UsersFile{hashes: map[string][]byte{}, roles: make(map[string][]string, len(roles))}
	for name, rs := range roles {
		u.roles[name] = slices.Clone(rs)
	}
	costs := map[int]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxUsersLine)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		name, hash, ok := strings.Cut(text, ":")
		if !ok || name == "" {
			return nil, fmt.Errorf("line %d: want user:hash", line)
		}
		if _, dup := u.hashes[name]; dup {
			return nil, fmt.Errorf("line %d: user %q listed twice", line, name)
		}
		cost, err := bcryptCost(hash)
		if err != nil {
			return nil, fmt.Errorf("line %d: user %q: %w", line, name, err)
		}
		u.hashes[name] = []byte(hash)
		costs[cost]++
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", line+1, err)
	}

	dummyCost, seen := hashCost, 0
	for cost, n := range costs {
		if n > seen || (n == seen && cost > dummyCost) {
			dummyCost, seen = cost, n
		}
	}
	password := make([]byte, 32)
	if _, err := io.ReadFull(rand.Reader, password); err != nil {
		return nil, fmt.Errorf("dummy hash: %w", err)
	}
	dummy, err := bcrypt.GenerateFromPassword(password, dummyCost)
	if err != nil {
		return nil, fmt.Errorf("dummy hash: %w", err)
	}
	u.dummy = dummy
	u.costs = costs
	return u, nil
}

// bcryptCost checks that hash is a bcrypt hash of a version we accept and
// returns its cost.
func bcryptCost(hash string) (int, error) {
	const hashLen = 60 // "$2b$" + 2 cost digits + "$" + 22 salt + 31 hash
	notBcrypt := errors.New("not a bcrypt hash (want $2a$, $2b$ or $2y$, as htpasswd -B writes)")
	switch {
	case len(hash) != hashLen:
		return 0, notBcrypt
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
	default:
		return 0, notBcrypt
	}
	// The cost is two decimal digits ("$2b$12$"): bcrypt.Cost reads it
	// with strconv.Atoi, which also takes "+9", a form no tool writes
	// (found by fuzzing ParseUsers).
	if hash[4] < '0' || hash[4] > '9' || hash[5] < '0' || hash[5] > '9' || hash[6] != '$' {
		return 0, notBcrypt
	}
	for _, c := range hash[7:] {
		if !strings.ContainsRune(bcryptAlphabet, c) {
			return 0, notBcrypt
		}
	}
	cost, err := bcrypt.Cost([]byte(hash))
	if err != nil {
		return 0, notBcrypt
	}
	if cost > maxUsersCost {
		return 0, fmt.Errorf("bcrypt cost %d above %d: every login would take minutes", cost, maxUsersCost)
	}
	return cost, nil
}

// Authenticate checks c.Username and c.Password against the file. Unknown
// users and wrong passwords both get ErrBadCredentials after the same bcrypt
// work. The Identity's Subject is the username, its Roles those the roles
// map gives it.
func (u *UsersFile) Authenticate(ctx context.Context, c Credentials) (Identity, error) {
	if err := ctx.Err(); err != nil {
		return Identity{}, err
	}
	hash, known := u.hashes[c.Username]
	if !known {
		hash = u.dummy
	}
	err := bcrypt.CompareHashAndPassword(hash, []byte(c.Password))
	if !known || err != nil {
		return Identity{}, ErrBadCredentials
	}
	return Identity{Subject: c.Username, Roles: slices.Clone(u.roles[c.Username])}, nil
}
