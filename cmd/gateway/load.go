package main

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"

	"github.com/BurntSushi/toml"
)

// LoadConfig reads the TOML file at path over Default and returns the
// result, with relative file paths resolved against path's directory. It
// does not Validate. Every error it returns holds one or more *ConfigError:
// an unreadable file, a syntax error (with its line), unknown keys (keys are
// case-sensitive), values of the wrong type and bad durations, all reported
// at once and each naming its key.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, &ConfigError{Err: err}
	}
	// A first, loose pass gives the shape of the document: it reports
	// syntax errors, lets checkShape name every misplaced key and wrong
	// type at once, and tells which defaults the strict pass must not
	// merge into (routes, headers.claims).
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		ce := &ConfigError{Err: err}
		var pe toml.ParseError
		if errors.As(err, &pe) {
			ce.Line = pe.Position.Line
		}
		return Config{}, ce
	}
	errs := checkShape("", raw, reflect.TypeFor[Config]())

	cfg := Default()
	if routes, ok := asArray(raw["route"]); ok {
		// The decoder reuses the elements of a slice that is long enough,
		// so each [[route]] decodes over DefaultRoute.
		cfg.Route = make([]RouteConfig, len(routes))
		for i := range cfg.Route {
			cfg.Route[i] = DefaultRoute()
		}
	}
	if h, ok := raw["headers"].(map[string]any); ok {
		if _, ok := h["claims"]; ok {
			cfg.Headers.Claims = nil // replace, do not merge into, the default claims
		}
	}
	md, err := toml.Decode(string(data), &cfg)
	switch {
	case err != nil:
		errs = mergeDecodeError(errs, err)
	case len(errs) == 0:
		// Backstop: checkShape should already have named these.
		for _, k := range md.Undecoded() {
			errs = append(errs, &ConfigError{Key: k.String(), Err: errors.New("unknown key")})
		}
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	cfg.resolvePaths(filepath.Dir(path))
	return cfg, nil
}

// mergeDecodeError adds what the strict decoder found to checkShape's
// problems. Its only structured errors are bad durations (a
// toml.ParseError with the key and its line): the line is attached to
// checkShape's problem for that key, except inside arrays of tables, where
// the decoder's key has no index and its line is that of the last element.
func mergeDecodeError(problems []error, err error) []error {
	var pe toml.ParseError
	if errors.As(err, &pe) && pe.LastKey != "" {
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
	if c.Store.Backend == BackendBbolt {
		res(&c.Store.Path)
	}
	res(&c.Store.RedisPasswordFile)
	res(&c.Store.RedisTLSCAFile)
}
