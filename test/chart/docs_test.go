package chart

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// readmeMaxLines is how long the README may grow: what the driver is, the
// two commands, install, the feature table, configuration in short and
// where to read more. Everything else has a page under docs/.
const readmeMaxLines = 150

// TestReadmeShort fails when README.md grows past readmeMaxLines.
func TestReadmeShort(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if n := lineCount(string(data)); n > readmeMaxLines {
		t.Errorf("README.md has %d lines, more than %d: move the detail to a page under docs/ and link it", n, readmeMaxLines)
	}
}

// TestDocLinks fails on a relative link of README.md or a page under docs/
// whose file or directory does not exist, or whose #anchor names no heading
// of the Markdown file it points at.
func TestDocLinks(t *testing.T) {
	root := repoRoot(t)
	pages := []string{filepath.Join(root, "README.md")}
	err := filepath.WalkDir(filepath.Join(root, "docs"), func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".md") {
			pages = append(pages, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]map[string]bool{}
	links := 0
	for _, page := range pages {
		data, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, page)
		for _, l := range markdownLinks(string(data)) {
			links++
			if msg := checkLink(page, l, anchors); msg != "" {
				t.Errorf("%s:%d: link %q: %s", rel, l.line, l.target, msg)
			}
		}
	}
	if links == 0 {
		t.Fatalf("no links found in %d pages: the link pattern is broken", len(pages))
	}
}

// checkLink says what is wrong with one link of page ("" when nothing is);
// anchors caches each Markdown file's headings.
func checkLink(page string, l link, anchors map[string]map[string]bool) string {
	path, anchor, _ := strings.Cut(l.target, "#")
	file := page
	if path != "" {
		file = filepath.Join(filepath.Dir(page), filepath.FromSlash(path))
		if _, err := os.Stat(file); err != nil {
			return "no such file or directory"
		}
	}
	if anchor == "" || !strings.HasSuffix(file, ".md") {
		return ""
	}
	if anchors[file] == nil {
		data, err := os.ReadFile(file)
		if err != nil {
			return err.Error()
		}
		anchors[file] = headingAnchors(string(data))
	}
	if !anchors[file][anchor] {
		return fmt.Sprintf("no heading of %s has the anchor #%s", filepath.Base(file), anchor)
	}
	return ""
}

// link is a Markdown link's target and the line it is on.
type link struct {
	target string
	line   int
}

// markdownLinks lists the relative links (and images) of a Markdown text,
// outside fenced code blocks and code spans.
func markdownLinks(text string) []link {
	linkPattern := regexp.MustCompile(`\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	codeSpan := regexp.MustCompile("`[^`]*`")
	absolute := regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`) // https:, mailto:
	var out []link
	fenced := false
	for i, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			continue
		}
		for _, m := range linkPattern.FindAllStringSubmatch(codeSpan.ReplaceAllString(line, ""), -1) {
			if !absolute.MatchString(m[1]) {
				out = append(out, link{target: m[1], line: i + 1})
			}
		}
	}
	return out
}

// headingAnchors are the anchors GitHub gives the headings of a Markdown
// text: lower case, punctuation dropped, spaces as hyphens, a repeated one
// numbered (-1, -2, ...).
func headingAnchors(text string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	fenced := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if fenced || !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(title) {
			switch {
			case unicode.IsLetter(r), unicode.IsDigit(r), r == '-', r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			seen[a]++
			a = fmt.Sprintf("%s-%d", a, n)
		} else {
			seen[a] = 1
		}
		out[a] = true
	}
	return out
}

// lineCount counts lines as wc -l does, with a last line that lacks its
// newline counted too.
func lineCount(s string) int {
	n := strings.Count(s, "\n")
	if s != "" && !strings.HasSuffix(s, "\n") {
		n++
	}
	return n
}

// repoPathInDocs is a path of the repository named in prose or code spans
// of the docs: pkg/…, cmd/…, test/…, hack/…, deploy/… ending in a file.
var repoPathInDocs = regexp.MustCompile("(?:^|[\\s`(])((?:pkg|cmd|test|hack|deploy)/[A-Za-z0-9_./-]+\\.(?:go|sh|yaml|json|md|tpl))")

// TestDocPathsExist fails when README.md or a page under docs/ names a
// file of the repository that is not there (a file renamed or removed
// since the page was written).
func TestDocPathsExist(t *testing.T) {
	root := repoRoot(t)
	pages, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	pages = append(pages, filepath.Join(root, "README.md"))
	seen := 0
	for _, page := range pages {
		data, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, page)
		for i, line := range strings.Split(string(data), "\n") {
			for _, m := range repoPathInDocs.FindAllStringSubmatch(line, -1) {
				if top := strings.SplitN(m[1], "/", 3); len(top) == 3 {
					if _, err := os.Stat(filepath.Join(root, top[0], top[1])); err != nil {
						continue // another project's file (SWITCHING.md cites upstream's and Kubernetes')
					}
				}
				seen++
				if _, err := os.Stat(filepath.Join(root, m[1])); err != nil {
					t.Errorf("%s:%d names %s, which does not exist", rel, i+1, m[1])
				}
			}
		}
	}
	if seen == 0 {
		t.Fatal("no repository paths found in the docs: the pattern is broken")
	}
}
