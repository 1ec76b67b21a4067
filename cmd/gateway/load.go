package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/BurntSushi/toml"
)

// LoadConfig reads the TOML file at path over Default and returns the
// result, with relative file paths resolved against path's directory. It
// does not Validate. Every error it returns holds one or more *ConfigError:
// an unreadable file, syntax errors (each with its line), unknown keys
// (keys are case-sensitive), values of the wrong type and bad durations and
// words, all reported at once and each naming its key.
func LoadConfig(path string) (Config, error) {
	cfg, _, _, err := parseConfig(path)
	if err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// parseConfig is LoadConfig, but on problems it also returns what it could
// decode of the rest of the file, so that loadConfig can validate that and
// report every problem of the file in one run. Each key with a problem keeps
// its default there, and each table in blanked (a broken header, see
// decodeLoose) is missing whole. ok is false when nothing could be decoded:
// the file is unreadable, or has more syntax errors than maxSyntaxErrors.
func parseConfig(path string) (cfg Config, blanked []string, ok bool, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, nil, false, &ConfigError{Err: err}
	}
	// A first, loose pass gives the shape of the document: it reports
	// syntax errors, lets checkShape name every misplaced key and wrong
	// type at once, and tells which defaults the strict pass must not
	// merge into (routes, headers.claims).
	text, raw, blanked, errs := decodeLoose(string(data))
	if raw == nil {
		return Config{}, nil, false, errors.Join(errs...)
	}
	shape := checkShape("", raw, reflect.TypeFor[Config]())

	cfg = defaultsFor(raw)
	md, derr := toml.Decode(text, &cfg)
	switch {
	case derr != nil:
		errs = append(errs, mergeDecodeError(shape, derr)...)
		// The strict decode stopped half way. checkShape removed every
		// key it named from raw, so what is left decodes whole.
		if cfg, ok = decodePruned(raw); !ok {
			return Config{}, nil, false, errors.Join(errs...)
		}
	case len(shape) == 0:
		// Backstop: checkShape should already have named these.
		for _, k := range md.Undecoded() {
			errs = append(errs, &ConfigError{Key: k.String(), Err: errors.New("unknown key")})
		}
	default:
		errs = append(errs, shape...)
	}
	cfg.resolvePaths(filepath.Dir(path))
	return cfg, blanked, true, errors.Join(errs...)
}

// defaultsFor returns Default made ready for decoding the document raw
// into: the decoder reuses the elements of a slice that is long enough, so
// each [[route]] decodes over DefaultRoute; and a [headers.claims] table
// replaces the default claims instead of merging into them.
func defaultsFor(raw map[string]any) Config {
	cfg := Default()
	if routes, ok := asArray(raw["route"]); ok {
		cfg.Route = make([]RouteConfig, len(routes))
		for i := range cfg.Route {
			cfg.Route[i] = DefaultRoute()
		}
	}
	if t, ok := raw["tokens"].(map[string]any); ok {
		if ext, ok := asArray(t["external"]); ok {
			cfg.Tokens.External = make([]ExternalTokensConfig, len(ext))
			for i := range cfg.Tokens.External {
				cfg.Tokens.External[i] = DefaultExternal()
			}
		}
	}
	if h, ok := raw["headers"].(map[string]any); ok {
		if _, ok := h["claims"]; ok {
			cfg.Headers.Claims = nil
		}
	}
	return cfg
}

// decodePruned decodes the document raw, from which checkShape removed
// every key it found a problem with, over the defaults. The decoder reads
// only TOML text, so raw is written out again first; the lines are lost,
// which is why the file's own text is decoded first. ok is false if the
// decode fails all the same (a shape checkShape cannot remove in place,
// such as an element of [[route]] that is not a table).
func decodePruned(raw map[string]any) (Config, bool) {
	var b strings.Builder
	if err := toml.NewEncoder(&b).Encode(raw); err != nil {
		return Config{}, false
	}
	cfg := defaultsFor(raw)
	if _, err := toml.Decode(b.String(), &cfg); err != nil {
		return Config{}, false
	}
	return cfg, true
}

// mergeDecodeError returns checkShape's problems with what the strict
// decoder found. Its only structured errors are bad text values (a
// toml.ParseError with the key and its line): the line is attached to
// checkShape's problem for that key if that is a duration (as it always
// was: the enumerated keys were Validate's problems, without a line, and
// keep that form), except inside arrays of tables, where the decoder's key
// has no index and its line is that of the last element.
func mergeDecodeError(problems []error, err error) []error {
	var pe toml.ParseError
	if errors.As(err, &pe) && pe.LastKey != "" && isDurationKey(pe.LastKey) {
		for _, p := range problems {
			if ce, ok := p.(*ConfigError); ok && ce.Key == pe.LastKey && ce.Line == 0 {
				ce.Line = pe.Position.Line
				return problems
			}
		}
	}
	if len(problems) > 0 {
		return problems // checkShape saw the same document and named the keys
	}
	ce := &ConfigError{Err: err}
	if errors.As(err, &pe) {
		ce.Key, ce.Line = pe.LastKey, pe.Position.Line
	}
	return append(problems, ce)
}

// isDurationKey reports whether the dotted key (no array index) names a
// Duration field of Config.
func isDurationKey(key string) bool {
	t := reflect.TypeFor[Config]()
	for name := range strings.SplitSeq(key, ".") {
		if t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || t == durationType {
			return false
		}
		f, ok := fieldByTag(t, name)
		if !ok {
			return false
		}
		t = f.Type
	}
	return t == durationType
}

// resolvePaths makes the relative file paths relative to dir.
func (c *Config) resolvePaths(dir string) {
	res := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	res(&c.Server.TLSCertFile)
	res(&c.Server.TLSKeyFile)
	res(&c.Admin.TokenFile)
	res(&c.Tokens.KeyFile)
	for i := range c.Tokens.VerifyKeyFiles {
		res(&c.Tokens.VerifyKeyFiles[i])
	}
	res(&c.Login.UsersFile)
	res(&c.Login.OIDC.ClientSecretFile)
	if c.Store.Backend == BackendBbolt {
		res(&c.Store.Path)
	}
	res(&c.Store.RedisPasswordFile)
	res(&c.Store.RedisTLSCAFile)
}

// maxSyntaxErrors bounds the syntax errors decodeLoose reports, and so the
// times it parses the file again.
const maxSyntaxErrors = 20

// decodeLoose decodes text into a generic tree. The TOML parser stops at
// its first syntax error; so that the problems after it are reported in the
// same run, decodeLoose records the error, blanks the line it is on and
// parses again, up to maxSyntaxErrors times. It returns the text as it
// finally parsed (with the same line numbers as the file), the tree, the
// dotted names of the tables whose broken header blanked their section,
// and a *ConfigError with the line for each syntax error. The tree is nil
// if the file could not be made to parse.
//
// The repaired text is only ever used to find more problems: a file with a
// syntax error is refused whatever the rest says, so what a blanked line
// did to the meaning of the rest cannot matter beyond the messages.
// Blanking is safe in the sense that it never hides a problem of another
// line and always makes progress (a line already blank ends the repair).
// What it can do is add follow-on messages, which is why it blanks a whole
// section for a broken table header (see blankAt), and why an error inside
// a multi-line string or array (whose other lines stay) may be followed by
// errors for the lines after it, or by a problem of that key's value.
func decodeLoose(text string) (string, map[string]any, []string, []error) {
	var (
		blanked []string
		errs    []error
	)
	var last toml.ParseError // the previous syntax error
	for {
		var raw map[string]any
		_, err := toml.Decode(text, &raw)
		if err == nil {
			return text, raw, blanked, errs
		}
		ce := &ConfigError{Err: err}
		var pe toml.ParseError
		if !errors.As(err, &pe) {
			return text, nil, blanked, append(errs, ce)
		}
		ce.Line = pe.Position.Line
		// Blanking a line can leave the parser where it was (in an open
		// multi-line string): the same error again is not a new one.
		if pe.Position.Line != last.Position.Line || pe.Message != last.Message {
			errs = append(errs, ce)
		}
		last = pe
		next, table, ok := blankAt(text, pe.Position.Start)
		if !ok {
			return text, nil, blanked, errs
		}
		if table != "" {
			blanked = append(blanked, table)
		}
		if len(errs) == maxSyntaxErrors {
			return text, nil, blanked, append(errs, &ConfigError{Err: fmt.Errorf("stopped after %d syntax errors: the rest of the file was not checked", maxSyntaxErrors)})
		}
		text = next
	}
}

// blankAt empties the line of text holding byte offset off (the parser's
// error position; an offset at a newline is the line that newline ends),
// keeping its newline so that the lines after it keep their numbers. A
// line that opens a table ("[server", "[[route]") is blanked with the rest
// of its section, up to the next line that starts with "[": its keys would
// otherwise land in the table before it and be reported as unknown there.
// (So a broken [[route]] header also removes that route, and the indexes
// of the routes after it count one less.) table is then the table's
// dotted name as far as the header gives it ("route", "headers.claims"),
// and empty otherwise. ok is false if the line is blank already, when
// blanking cannot help.
func blankAt(text string, off int) (next, table string, ok bool) {
	lines := strings.SplitAfter(text, "\n")
	off = min(max(off, 0), len(text))
	n := 0
	for n < len(lines)-1 && off >= len(lines[n]) {
		off -= len(lines[n])
		n++
	}
	line := strings.TrimSpace(lines[n])
	if line == "" {
		return text, "", false
	}
	header := strings.HasPrefix(line, "[")
	if header {
		table, _, _ = strings.Cut(strings.TrimLeft(line, "[ \t"), "]")
		table = strings.Join(strings.Fields(table), "")
	}
	for i := n; i < len(lines); i++ {
		if i > n && (!header || strings.HasPrefix(strings.TrimSpace(lines[i]), "[")) {
			break
		}
		if strings.HasSuffix(lines[i], "\n") {
			lines[i] = "\n"
		} else {
			lines[i] = ""
		}
	}
	return strings.Join(lines, ""), table, true
}
