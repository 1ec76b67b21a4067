package main

import (
	"bytes"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// The project documents its own surface: README.md, THREAT-MODEL.md, the
// Markdown under docs/ and gateway.example.toml. What they point at must be
// in the repository, and they speak the user's words, not the words of the
// process that wrote them.

// trackedFiles lists the files git tracks, relative to the repository root.
func trackedFiles(t testing.TB) []string {
	t.Helper()
	out, err := exec.Command("git", "-C", repoRoot, "ls-files", "-z").Output()
	if err != nil || len(out) == 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("git ls-files: %v", err)
		}
		t.Skipf("not a git checkout (git ls-files: %v)", err)
	}
	return strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
}

// readText reads a tracked file, and reports false for a binary one.
func readText(t testing.TB, name string) (string, bool) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, name))
	if err != nil {
		t.Fatal(err)
	}
	head := b
	if len(head) > 8000 {
		head = head[:8000]
	}
	return string(b), !bytes.ContainsRune(head, 0)
}

// documentation is the set of files that document the project to its
// users: every tracked Markdown file and the example configuration.
func documentation(files []string) []string {
	var docs []string
	for _, f := range files {
		if strings.HasSuffix(f, ".md") || f == "gateway.example.toml" {
			docs = append(docs, f)
		}
	}
	return docs
}

var (
	// A Markdown inline link's target, or a reference definition's.
	mdLinkRE = regexp.MustCompile(`\]\(\s*<?([^()\s>]+)>?(?:\s+"[^"]*")?\s*\)|(?m)^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)`)
	// A run of characters that can make up a path.
	pathTokenRE = regexp.MustCompile(`[A-Za-z0-9_.*?/<>{}$-]+`)
	// A Markdown file's name.
	mdNameRE = regexp.MustCompile(`[A-Za-z0-9_./-]*[A-Za-z0-9_-]\.md\b`)
	schemeRE = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)
	// A Go name qualified by its package's path: cmd/gateway.TestX.
	goNameRE = regexp.MustCompile(`^(.*/[a-z][a-z0-9_]*)\.[A-Z]`)
)

// exists reports whether name, relative to the repository root, is a file
// or directory of the working tree; with glob characters, whether the
// pattern matches one.
func exists(name string) bool {
	full := filepath.Join(repoRoot, filepath.FromSlash(name))
	if strings.ContainsAny(name, "*?[") {
		m, _ := filepath.Glob(full)
		return len(m) > 0
	}
	_, err := os.Stat(full)
	return err == nil
}

// TestDocumentationLinks: every relative link of every tracked Markdown
// file leads to a file of the repository (and, with a #fragment into a
// Markdown file, to one of its headings); every repository path named in
// the documentation (a word whose first element is one of the repository's
// top-level directories, like cmd/gateway/main.go or deploy/kubernetes/,
// or the package of a name like cmd/gateway.TestBinaryLimits) exists.
func TestDocumentationLinks(t *testing.T) {
	files := trackedFiles(t)
	topDirs := map[string]bool{}
	for _, f := range files {
		if dir, _, ok := strings.Cut(f, "/"); ok {
			topDirs[dir] = true
		}
	}
	anchors := map[string]map[string]bool{} // Markdown file -> its heading anchors
	anchorsOf := func(name string) map[string]bool {
		if a, ok := anchors[name]; ok {
			return a
		}
		text, _ := readText(t, name)
		anchors[name] = headingAnchors(text)
		return anchors[name]
	}

	checked := 0
	for _, doc := range documentation(files) {
		text, _ := readText(t, doc)
		dir := path.Dir(doc)
		if strings.HasSuffix(doc, ".md") {
			for _, m := range mdLinkRE.FindAllStringSubmatch(text, -1) {
				target := m[1] + m[2]
				if schemeRE.MatchString(target) || strings.HasPrefix(target, "//") {
					continue // another site
				}
				file, frag, _ := strings.Cut(target, "#")
				if file == "" {
					file = doc
				} else {
					file = path.Clean(path.Join(dir, file))
				}
				checked++
				if !exists(file) {
					t.Errorf("%s: link (%s): %s is not in the repository", doc, target, file)
					continue
				}
				if frag != "" && strings.HasSuffix(file, ".md") && !anchorsOf(file)[frag] {
					t.Errorf("%s: link (%s): %s has no heading #%s", doc, target, file, frag)
				}
			}
		}
		for _, tok := range pathTokenRE.FindAllString(text, -1) {
			tok = strings.TrimRight(tok, ".")
			p := strings.TrimPrefix(tok, "./")
			first, _, ok := strings.Cut(p, "/")
			if !ok || !topDirs[first] || strings.ContainsAny(p, "<>{}$") {
				continue // not a repository path, or a placeholder like adversarial/<topic>_test.go
			}
			if m := goNameRE.FindStringSubmatch(p); m != nil {
				p = m[1] // cmd/gateway.TestX names a test of the package cmd/gateway
			}
			checked++
			if !exists(p) && !exists(path.Join(dir, p)) {
				t.Errorf("%s names %s, which is not in the repository", doc, tok)
			}
		}
	}
	if checked < 10 {
		t.Errorf("checked %d links and paths in the documentation, want at least 10: is the scan broken?", checked)
	}
}

// TestNoMentionOfMissingMarkdown: no tracked text file names a Markdown
// file that the repository does not have (a specification or a style guide
// kept elsewhere): a user can only read what ships.
func TestNoMentionOfMissingMarkdown(t *testing.T) {
	files := trackedFiles(t)
	names := map[string]bool{} // base names of the tracked Markdown files
	for _, f := range files {
		if strings.HasSuffix(f, ".md") {
			names[path.Base(f)] = true
		}
	}
	for _, f := range files {
		switch path.Base(f) {
		case "go.sum", "package-lock.json":
			continue // generated
		}
		text, ok := readText(t, f)
		if !ok {
			continue
		}
		for i, line := range strings.Split(text, "\n") {
			for _, m := range mdNameRE.FindAllString(line, -1) {
				p := strings.TrimPrefix(m, "./")
				if exists(path.Join(path.Dir(f), p)) || exists(p) || (!strings.Contains(p, "/") && names[p]) {
					continue
				}
				t.Errorf("%s:%d names %s, which is not in the repository: %s", f, i+1, m, strings.TrimSpace(line))
			}
		}
	}
}

// TestExampleConfigSpeaksToUsers: gateway.example.toml explains keys in
// the user's terms. It once marked keys "extension" (of a specification
// the user never sees).
func TestExampleConfigSpeaksToUsers(t *testing.T) {
	text, _ := readText(t, "gateway.example.toml")
	word := regexp.MustCompile(`(?i)\bextensions?\b`)
	for i, line := range strings.Split(text, "\n") {
		if word.MatchString(line) {
			t.Errorf("gateway.example.toml:%d says %q: %s", i+1, word.FindString(line), strings.TrimSpace(line))
		}
	}
}

// headingAnchors returns the anchors GitHub gives a Markdown file's
// headings: lower case, punctuation dropped, spaces as hyphens, a repeated
// one suffixed -1, -2, ...
func headingAnchors(text string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	fence := ""
	for _, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
			switch {
			case fence == "":
				fence = trimmed[:3]
			case strings.HasPrefix(trimmed, fence):
				fence = ""
			}
			continue
		}
		if fence != "" || !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimLeft(line, "#")
		if title != "" && title[0] != ' ' {
			continue // "#word" is not a heading
		}
		var b strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(title)) {
			switch {
			case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			seen[a] = n + 1
			a += "-" + strconv.Itoa(n)
		} else {
			seen[a] = 1
		}
		out[a] = true
	}
	return out
}
