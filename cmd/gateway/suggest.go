package main

import (
	"fmt"
	"reflect"
	"strings"
)

// unknownKey is the message for k, which is not a key of the table at
// tableKey (of struct type t): "unknown key", and the key probably meant
// when there is one: the same key in other case, a key of the same table
// within a typo or two ("acess_ttl": did you mean "access_ttl"?), or a key
// of exactly one other table (access_ttl written under [server]).
func unknownKey(tableKey, k string, t reflect.Type) string {
	if f, ok := fieldByTagFold(t, k); ok {
		return fmt.Sprintf("unknown key (keys are case-sensitive: did you mean %q?)", f)
	}
	if f, ok := nearestTag(t, k); ok {
		return fmt.Sprintf("unknown key (did you mean %q?)", f)
	}
	if other, ok := onlyTableOf(k, tableKey); ok {
		return fmt.Sprintf("unknown key (%s is a key of %s)", k, other)
	}
	return "unknown key"
}

// nearestTag returns the key of struct type t closest to k, if it is close
// enough to be a typo of it (at most 2 edits, and at most one per three
// characters, so that short keys are not matched with anything) and no
// other key is as close.
func nearestTag(t reflect.Type, k string) (string, bool) {
	best, bestDist, tie := "", -1, false
	for i := range t.NumField() {
		tag := t.Field(i).Tag.Get("toml")
		d := editDistance(k, tag)
		switch {
		case bestDist < 0 || d < bestDist:
			best, bestDist, tie = tag, d, false
		case d == bestDist:
			tie = true
		}
	}
	if bestDist < 1 || bestDist > 2 || 3*bestDist > len(k)+2 || tie {
		return "", false
	}
	return best, true
}

// editDistance is the optimal string alignment distance between a and b:
// the insertions, deletions, substitutions and transpositions of adjacent
// bytes that make one of the other (Damerau–Levenshtein without editing a
// substring twice). Keys are ASCII, so bytes are characters.
func editDistance(a, b string) int {
	// d[i][j] is the distance between a[:i] and b[:j].
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// onlyTableOf returns the table of Config ("[tokens]", "[[route]]") that
// has the key k, if exactly one does besides the table at tableKey, where k
// was written.
func onlyTableOf(k, tableKey string) (string, bool) {
	here := strings.Split(tableKey, "[")[0] // route[1] is a [[route]]
	var found []string
	root := reflect.TypeFor[Config]()
	for i := range root.NumField() {
		f := root.Field(i)
		name, t, header := f.Tag.Get("toml"), f.Type, "[%s]"
		if t.Kind() == reflect.Slice {
			t, header = t.Elem(), "[[%s]]"
		}
		if t.Kind() != reflect.Struct || name == here {
			continue
		}
		if _, ok := fieldByTag(t, k); ok {
			found = append(found, fmt.Sprintf(header, name))
		}
	}
	if len(found) != 1 {
		return "", false
	}
	return found[0], true
}
