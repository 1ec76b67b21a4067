package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/spa-gateway/gateway/auth"
)

// Exit codes, as the README documents them.
const (
	exitOK      = 0 // success, and -h
	exitFailure = 1 // failure at run time
	exitUsage   = 2 // usage or configuration error
)

// Errors and exit codes. A command returns an error; run prints it to stderr
// (one "gateway: ..." line per problem of an errors.Join) and maps it to an
// exit code with exitCode:
//
//   - nil or flag.ErrHelp (the user asked for -h): 0.
//   - an error holding a usageError (bad flags or arguments) or a
//     *ConfigError (what LoadConfig, Validate and loadConfig return): 2.
//   - anything else (listen, store, I/O failures): 1.
//
// So serve returns LoadConfig's or loadConfig's errors as they are (wrapping
// them with %w keeps them 2), wraps a bad flag as usageError{err}, and
// returns run-time failures plainly. An error wrapped in reportedError has
// already been written to stderr (the flag package prints its own); run
// only maps it to its exit code.

// usageError marks an error as the invoker's: a bad flag, a missing or
// extra argument, bad input. run exits 2 for it.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// reportedError marks an error already written to stderr.
type reportedError struct{ error }

func (e reportedError) Unwrap() error { return e.error }

// exitCode maps a command's error to the process's exit code.
func exitCode(err error) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, new(usageError)), errors.As(err, new(*ConfigError)):
		return exitUsage
	}
	return exitFailure
}

const usage = `Usage: gateway <command> [flags]

A JWT authentication gateway in front of legacy HTTP backends.

Commands:
  serve          run the gateway (--config FILE, or --dev to try it)
  check-config   validate a configuration file and every file it names
  keygen         write a new signing key (--alg ALG --out FILE)
  hash-password  read a password on stdin, print its bcrypt hash
  sessions       list or revoke a subject's sessions on a running gateway (admin API)
  version        print the version (also: gateway --version)
  help           print this help, or a command's (gateway help keygen)

Run 'gateway <command> -h' for a command's flags.
Exit codes: 0 success, 1 failure at run time, 2 usage or configuration error.
`

// run runs the command named by args[0] (args excludes the program name)
// and returns the process's exit code. It never exits itself; main does.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	err := dispatch(ctx, args, stdin, stdout, stderr)
	if err != nil && !errors.Is(err, flag.ErrHelp) && !errors.As(err, new(reportedError)) {
		for _, p := range problemsOf(err) {
			fmt.Fprintf(stderr, "gateway: %v\n", p)
		}
	}
	return exitCode(err)
}

func dispatch(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return reportedError{usageError{errors.New("no command")}}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serve(ctx, rest, stdout, stderr)
	case "check-config":
		return checkConfigCmd(ctx, rest, stdout, stderr)
	case "keygen":
		return keygenCmd(rest, stdout, stderr)
	case "hash-password":
		return hashPasswordCmd(rest, stdin, stdout, stderr)
	case "version", "--version", "-version":
		return versionCmd(rest, stdout, stderr)
	case "sessions":
		return sessionsCmd(ctx, rest, stdout, stderr)
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 && rest[0] != "help" && isCommand(rest[0]) {
			// The command's own -h, printed to stdout since it was asked for.
			return dispatch(ctx, []string{rest[0], "-h"}, stdin, stdout, stdout)
		}
		if len(rest) > 0 {
			return usageError{fmt.Errorf("help: unknown command %q", rest[0])}
		}
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "gateway: unknown command %q\n\n%s", cmd, usage)
	return reportedError{usageError{fmt.Errorf("unknown command %q", cmd)}}
}

func isCommand(s string) bool {
	switch s {
	case "serve", "check-config", "keygen", "hash-password", "version", "sessions":
		return true
	}
	return false
}

// problemsOf flattens errors.Join trees into their leaves.
func problemsOf(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, problemsOf(e)...)
		}
		return out
	}
	return []error{err}
}

// newFlagSet returns a ContinueOnError flag set whose usage, written to
// stderr, is "Usage: gateway synopsis", the description, and the flags.
func newFlagSet(name, synopsis, description string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: gateway %s\n\n%s\n", synopsis, description)
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprint(fs.Output(), "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses args and refuses positional arguments. Its errors are
// flag.ErrHelp (exit 0) or usage errors (exit 2).
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return reportedError{usageError{err}} // the flag package printed it
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("%s: unexpected argument %q (see gateway %s -h)", fs.Name(), fs.Arg(0), fs.Name())}
	}
	return nil
}

func checkConfigCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check-config", "check-config --config FILE",
		"Validates the configuration file and every file it names (keys, users file,\n"+
			"admin token, TLS files), and reports every problem at once, each naming its\n"+
			"key. Prints \"ok: FILE\" and exits 0, or exits 2. With \"ok\", stderr notes what a valid\n"+
			"configuration will do that may be unintended: login disabled, an upstream not\n"+
			"answering (each is dialled, for a second at most), a users file mixing bcrypt costs.", stderr)
	path := fs.String("config", "", "the configuration `FILE`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" {
		return usageError{errors.New("check-config: --config FILE is required")}
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		for _, p := range problemsOf(err) {
			var ce *ConfigError
			if errors.As(p, &ce) && (ce.Key != "" || ce.Line > 0) {
				fmt.Fprintf(stderr, "%s: %v\n", *path, p)
			} else {
				fmt.Fprintf(stderr, "gateway: %v\n", p)
			}
			var pe toml.ParseError
			if errors.As(p, &pe) && ce != nil && ce.Key == "" {
				// A syntax error: show where, without repeating the message.
				where := pe.ErrorWithPosition()
				if i := strings.Index(where, "At line"); i >= 0 {
					where = where[i:]
				}
				fmt.Fprintf(stderr, "%s\n", indent(where))
			}
		}
		return reportedError{err}
	}
	fmt.Fprintf(stdout, "ok: %s\n", *path)
	for _, n := range configNotes(ctx, cfg, new(net.Dialer).DialContext) {
		fmt.Fprintln(stderr, n) // diagnostics: stdout keeps the one "ok" line scripts read
	}
	return nil
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

// loadConfig is LoadConfig, Validate, then checkFileContents for the files
// whose keys have no problem yet: what check-config reports, and what serve
// starts from, before it opens anything. A file that does not parse whole
// (a syntax error, a wrong type, an unknown word) is validated all the same,
// with its faulty keys at their defaults, so that one run reports every
// problem; Validate's findings for those keys, which would be about the
// defaults, are left out, as are its findings in a table whose broken
// header removed it whole (route: at least one [[route]] is needed; or the
// next route's problem under the index of the one removed). Every error it returns holds *ConfigError values
// naming their keys, joined.
func loadConfig(path string) (Config, error) {
	cfg, blanked, ok, perr := parseConfig(path)
	if !ok {
		return Config{}, perr
	}
	bad := make(map[string]bool)
	for _, p := range problemsOf(perr) {
		if ce, ok := p.(*ConfigError); ok && ce.Key != "" {
			bad[ce.Key] = true
		}
	}
	var verr []error
	for _, p := range problemsOf(cfg.Validate()) {
		if p == nil {
			continue
		}
		var ce *ConfigError
		if errors.As(p, &ce) {
			known := bad[ce.Key] || inTables(ce.Key, blanked)
			bad[ce.Key] = true
			if known {
				continue
			}
		}
		verr = append(verr, p)
	}
	if err := errors.Join(perr, errors.Join(verr...), checkFileContents(&cfg, bad)); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// inTables reports whether the dotted key is one of tables or under one.
func inTables(key string, tables []string) bool {
	for _, t := range tables {
		if key == t || strings.HasPrefix(key, t+"[") || strings.HasPrefix(key, t+".") {
			return true
		}
	}
	return false
}

// checkFileContents loads every file cfg names the way serve will (keys with
// auth.LoadKey and auth.LoadPublicKey, the users file, the admin token, the
// TLS pair) and reports those that do not load as *ConfigError naming their
// key. Keys in skip already have a problem and are not loaded again.
func checkFileContents(cfg *Config, skip map[string]bool) error {
	var p problems
	t := &cfg.Tokens
	if !skip["tokens.algorithm"] && !skip["tokens.key_file"] {
		signing, err := auth.LoadKey(t.Algorithm, t.KeyFile)
		if err != nil {
			p.add("tokens.key_file", "%w", err)
		}
		var verify []*auth.Key
		for i, f := range t.VerifyKeyFiles {
			key := fmt.Sprintf("tokens.verify_key_files[%d]", i)
			if skip[key] {
				continue
			}
			k, err := auth.LoadPublicKey(t.Algorithm, f)
			if err != nil {
				p.add(key, "%w", err)
				continue
			}
			verify = append(verify, k)
		}
		if signing != nil && len(p) == 0 {
			if _, err := auth.NewKeySet(signing, verify...); err != nil {
				p.add("tokens.verify_key_files", "%w", err)
			}
		}
	}
	if l := &cfg.Login; l.UsersFile != "" && !skip["login.users_file"] {
		if _, err := auth.LoadUsersFile(l.UsersFile, l.Roles); err != nil {
			p.add("login.users_file", "%w", err)
		}
	}
	if a := &cfg.Admin; a.TokenFile != "" && !skip["admin.token_file"] {
		if _, err := LoadAdminToken(a.TokenFile); err != nil {
			p.add("admin.token_file", "%w", err)
		}
	}
	if s := &cfg.Server; s.TLS() && !skip["server.tls_cert_file"] && !skip["server.tls_key_file"] {
		if _, err := tls.LoadX509KeyPair(s.TLSCertFile, s.TLSKeyFile); err != nil {
			p.add("server.tls_cert_file", "with server.tls_key_file: %w", err)
		}
	}
	return errors.Join(p...)
}

func keygenCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("keygen", "keygen [--alg ALG] --out FILE [--force]",
		"Writes a new private key for tokens.key_file, mode 0600: a PKCS#8 PEM key for\n"+
			"EdDSA, ES256 or RS256, or a random secret for HS256. Refuses to replace an\n"+
			"existing file unless --force.", stderr)
	alg := fs.String("alg", auth.EdDSA, "the `ALG`orithm: EdDSA, ES256, RS256 or HS256")
	out := fs.String("out", "", "the `FILE` to write")
	force := fs.Bool("force", false, "replace FILE if it exists")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch *alg {
	case auth.EdDSA, auth.ES256, auth.RS256, auth.HS256:
	default:
		return usageError{fmt.Errorf("keygen: --alg %q is not one of EdDSA, ES256, RS256, HS256", *alg)}
	}
	if *out == "" {
		return usageError{errors.New("keygen: --out FILE is required")}
	}
	k, err := auth.GenerateKey(*alg)
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	data, err := k.PrivatePEM()
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	if err := writeSecretFile(*out, data, *force); err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s key %s to %s\n", *alg, k.ID(), *out)
	return nil
}

// writeSecretFile writes data to path with mode 0600. Without force an
// existing file is an error and is left alone; with force the file is
// replaced atomically (a new file renamed over it, so the old file's mode
// does not carry over).
func writeSecretFile(path string, data []byte, force bool) (err error) {
	var f *os.File
	if force {
		f, err = os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	} else {
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s already exists (use --force to replace it)", path)
		}
	}
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if force {
		return os.Rename(f.Name(), path)
	}
	return nil
}

// maxPasswordBytes is bcrypt's limit: longer passwords cannot be hashed
// without silently ignoring their end.
const maxPasswordBytes = 72

func hashPasswordCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("hash-password", "hash-password [NAME] < password.txt",
		"Reads one line from stdin (the password, without its line ending) and prints\n"+
			"its bcrypt hash; with NAME, the whole users file line \"NAME:HASH\". Input is\n"+
			"not hidden: pipe it, or type it and press Enter then Ctrl-D.", stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return reportedError{usageError{err}}
	}
	var name string
	switch fs.NArg() {
	case 0:
	case 1:
		name = fs.Arg(0)
		if name == "" || name != strings.TrimSpace(name) || strings.ContainsAny(name, ":\r\n") || strings.HasPrefix(name, "#") {
			// What ParseUsers would read back as another name, or not at all.
			return usageError{fmt.Errorf("hash-password: NAME %q cannot be a users file name (no \":\", line break, leading \"#\" or surrounding spaces)", name)}
		}
	default:
		return usageError{fmt.Errorf("hash-password: unexpected argument %q (see gateway hash-password -h)", fs.Arg(1))}
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("hash-password: read stdin: %w", err)
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	switch {
	case line == "":
		return usageError{errors.New("hash-password: empty password on stdin")}
	case len(line) > maxPasswordBytes:
		return usageError{fmt.Errorf("hash-password: password is %d bytes, bcrypt allows at most %d", len(line), maxPasswordBytes)}
	}
	hash, err := auth.HashPassword([]byte(line))
	if err != nil {
		return fmt.Errorf("hash-password: %w", err)
	}
	if name != "" {
		hash = name + ":" + hash
	}
	fmt.Fprintln(stdout, hash)
	return nil
}
