package main

// The shape check exists because of how BurntSushi/toml decodes into a
// struct. Its strict decode (toml.Decode into Config) stops at the first
// value of a wrong type and returns it as a plain error whose key and line
// are only in its text; which value that is depends on Go's map order, so
// two runs over one file can name different keys; it reports a bad text
// value (a duration, an enumerated word) only for the first one it meets;
// inside an array of tables its key has no index; and it matches keys to
// fields without case, so "[Server]" would silently configure [server]. Its MetaData.Undecoded lists unknown keys, but
// only after a decode that did not stop.
//
// So LoadConfig first decodes the file loosely, into map[string]any, which
// only syntax can fail (decodeLoose), and checkShape compares that
// undecoded tree with the Go types of Config: it names every unknown key
// (case-sensitively, with the key probably meant, see unknownKey), every
// value of a wrong type and every bad text value (durations, the
// enumerated keys) in one run, each with its full key ("route[1].timeout").
// It also removes what it names from the tree, so that the rest of the file
// still decodes and loadConfig can validate it in the same run.

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

var (
	durationType      = reflect.TypeFor[Duration]()
	textUnmarshalType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// checkShape compares the loosely decoded value v of key with the Go type t
// it must decode into, and names every unknown key, wrong type and bad text
// value (durations, the enumerated keys). It removes each key it names from
// the tables of v, so that what is left decodes into Config without error
// and can be validated (see parseConfig). It knows the kinds Config uses; a
// field of another kind is reported, so that a test of the example file
// catches it.
func checkShape(key string, v any, t reflect.Type) []error {
	bad := func(format string, args ...any) []error {
		return []error{&ConfigError{Key: key, Err: fmt.Errorf(format, args...)}}
	}
	if reflect.PointerTo(t).Implements(textUnmarshalType) {
		s, ok := v.(string)
		switch {
		case !ok && t == durationType:
			return bad("must be a duration string such as \"15m\", not %s", tomlTypeName(v))
		case !ok:
			return bad("must be a string, not %s", tomlTypeName(v))
		}
		if err := reflect.New(t).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			return bad("%w", err)
		}
		return nil
	}
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
		var errs []error
		for i, e := range arr {
			errs = append(errs, checkShape(fmt.Sprintf("%s[%d]", key, i), e, t.Elem())...)
		}
		return errs
	case reflect.Map, reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return bad("must be a table, not %s", tomlTypeName(v))
		}
		return checkTable(key, m, t)
	default:
		return bad("unsupported configuration field type %s", t)
	}
	return nil
}

// checkTable is checkShape for a table m of key, of struct or map type t.
// It deletes from m each entry that is unknown or whose value is wrong
// itself; an entry that is a table or an array of tables keeps its place
// and has only its own wrong entries removed, so that the indexes of
// [[route]] stay those of the file.
func checkTable(key string, m map[string]any, t reflect.Type) []error {
	var errs []error
	for _, k := range sortedKeys(m) {
		var ft reflect.Type
		if t.Kind() == reflect.Map {
			ft = t.Elem()
		} else {
			f, ok := fieldByTag(t, k)
			if !ok {
				errs = append(errs, &ConfigError{Key: joinKey(key, k), Err: errors.New(unknownKey(key, k, t))})
				delete(m, k)
				continue
			}
			ft = f.Type
		}
		kerrs := checkShape(joinKey(key, k), m[k], ft)
		if len(kerrs) > 0 && !prunedInside(m[k], ft) {
			delete(m, k)
		}
		errs = append(errs, kerrs...)
	}
	return errs
}

// prunedInside reports whether checkShape removed v's problems from inside
// v (a table, or an array of tables), rather than v being wrong as a whole.
func prunedInside(v any, t reflect.Type) bool {
	if reflect.PointerTo(t).Implements(textUnmarshalType) {
		return false
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		_, ok := v.(map[string]any)
		return ok
	case reflect.Slice:
		arr, ok := asArray(v)
		if !ok || t.Elem().Kind() != reflect.Struct {
			return false
		}
		for _, e := range arr {
			if _, ok := e.(map[string]any); !ok {
				return false // an element that is not a table cannot be removed in place
			}
		}
		return true
	}
	return false
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
