package main

// The shape check exists because of how BurntSushi/toml decodes into a
// struct. Its strict decode (toml.Decode into Config) stops at the first
// value of a wrong type and returns it as a plain error whose key and line
// are only in its text; which value that is depends on Go's map order, so
// two runs over one file can name different keys; it reports a bad duration
// only for the first one it meets; inside an array of tables its key has no
// index; and it matches keys to fields without case, so "[Server]" would
// silently configure [server]. Its MetaData.Undecoded lists unknown keys, but
// only after a decode that did not stop.
//
// So LoadConfig first decodes the file loosely, into map[string]any, which
// only syntax can fail, and checkShape compares that undecoded tree with the
// Go types of Config: it names every unknown key (case-sensitively), every
// value of a wrong type and every bad duration in one run, each with its
// full key ("route[1].timeout").

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

var durationType = reflect.TypeFor[Duration]()

// checkShape compares the loosely decoded value v of key with the Go type t
// it must decode into, and names every unknown key, wrong type and bad
// duration. It knows the kinds Config uses; a field of another kind is
// reported, so that a test of the example file catches it.
func checkShape(key string, v any, t reflect.Type) []error {
	bad := func(format string, args ...any) []error {
		return []error{&ConfigError{Key: key, Err: fmt.Errorf(format, args...)}}
	}
	if t == durationType {
		s, ok := v.(string)
		if !ok {
			return bad("must be a duration string such as \"15m\", not %s", tomlTypeName(v))
		}
		var d Duration
		if err := d.UnmarshalText([]byte(s)); err != nil {
			return bad("%w", err)
		}
		return nil
	}
	var errs []error
	switch t.Kind() {
	case reflect.String:
		if _, ok := v.(string); !ok {
			return bad("must be a string, not %s", tomlTypeName(v))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return bad("must be true or false, not %s", tomlTypeName(v))
		}
	case reflect.Int:
		if _, ok := v.(int64); !ok {
			return bad("must be an integer, not %s", tomlTypeName(v))
		}
	case reflect.Slice:
		arr, ok := asArray(v)
		if !ok {
			if t.Elem().Kind() == reflect.Struct {
				return bad("must be an array of tables ([[%s]]), not %s", key, tomlTypeName(v))
			}
			return bad("must be an array, not %s", tomlTypeName(v))
		}
		for i, e := range arr {
			errs = append(errs, checkShape(fmt.Sprintf("%s[%d]", key, i), e, t.Elem())...)
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return bad("must be a table, not %s", tomlTypeName(v))
		}
		for _, k := range sortedKeys(m) {
			errs = append(errs, checkShape(joinKey(key, k), m[k], t.Elem())...)
		}
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return bad("must be a table, not %s", tomlTypeName(v))
		}
		for _, k := range sortedKeys(m) {
			f, ok := fieldByTag(t, k)
			if !ok {
				msg := "unknown key"
				if f, ok := fieldByTagFold(t, k); ok {
					msg = fmt.Sprintf("unknown key (keys are case-sensitive: did you mean %q?)", f)
				}
				errs = append(errs, &ConfigError{Key: joinKey(key, k), Err: errors.New(msg)})
				continue
			}
			errs = append(errs, checkShape(joinKey(key, k), m[k], f.Type)...)
		}
	default:
		return bad("unsupported configuration field type %s", t)
	}
	return errs
}

// asArray returns a TOML array (of values or of tables) as []any.
func asArray(v any) ([]any, bool) {
	switch a := v.(type) {
	case []any:
		return a, true
	case []map[string]any:
		out := make([]any, len(a))
		for i := range a {
			out[i] = a[i]
		}
		return out, true
	}
	return nil, false
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if f := t.Field(i); f.Tag.Get("toml") == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func fieldByTagFold(t reflect.Type, name string) (string, bool) {
	for i := range t.NumField() {
		if tag := t.Field(i).Tag.Get("toml"); strings.EqualFold(tag, name) {
			return tag, true
		}
	}
	return "", false
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

var bareKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// joinKey appends k to the dotted key prefix, quoting k as TOML would.
func joinKey(prefix, k string) string {
	if !bareKey.MatchString(k) {
		k = strconv.Quote(k)
	}
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

func tomlTypeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	case time.Time:
		return "a date-time"
	}
	return fmt.Sprintf("a %T", v)
}
