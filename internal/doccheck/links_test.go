package doccheck

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// maxReadmeLines is the most lines README.md may hold: it is the front
// door, and the manual lives under docs/.
const maxReadmeLines = 300

// link is one Markdown link or image found in a document.
type link struct {
	line   int    // 1-based line number
	target string // what is between the parentheses
}

// document is a Markdown file read for its links and heading anchors.
type document struct {
	path    string          // absolute path
	links   []link          // links and images outside code
	anchors map[string]bool // GitHub-style slugs of its headings
}

// parser extracts links and headings from Markdown; it holds compiled
// patterns only, so one value serves a whole test.
type parser struct {
	link     *regexp.Regexp // [text](target) or ![alt](target), optional "title"
	codeSpan *regexp.Regexp // `code`, ``code``
	heading  *regexp.Regexp // ATX heading: up to three spaces, 1-6 '#', text
}

// newParser compiles the patterns a parser uses.
func newParser() parser {
	return parser{
		link:     regexp.MustCompile(`!?\[([^\]]*)\]\(\s*<?([^)\s>]*)>?(?:\s+"[^"]*")?\s*\)`),
		codeSpan: regexp.MustCompile("(`+)[^`]*?(`+)"),
		heading:  regexp.MustCompile(`^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$`),
	}
}

// parse reads a Markdown file: the links of every line outside fenced code
// blocks and inline code spans, and the slugs of its headings (repeated
// headings get -1, -2, … as on GitHub).
func (p parser) parse(path string) (*document, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	doc := &document{path: path, anchors: map[string]bool{}}
	seen := map[string]int{}
	fence := ""
	for i, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) {
				fence = ""
			}
			continue
		}
		if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
			fence = trimmed[:3]
			continue
		}
		if m := p.heading.FindStringSubmatch(line); m != nil {
			slug := p.slug(m[2])
			if n := seen[slug]; n > 0 {
				doc.anchors[fmt.Sprintf("%s-%d", slug, n)] = true
			} else {
				doc.anchors[slug] = true
			}
			seen[slug]++
		}
		for _, m := range p.link.FindAllStringSubmatch(p.codeSpan.ReplaceAllString(line, ""), -1) {
			doc.links = append(doc.links, link{line: i + 1, target: m[2]})
		}
	}
	return doc, nil
}

// slug is GitHub's anchor for a heading: links replaced by their text,
// lowercased, characters other than letters, digits, spaces, hyphens and
// underscores removed, spaces turned into hyphens.
func (p parser) slug(heading string) string {
	heading = p.link.ReplaceAllString(heading, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case unicode.IsLetter(r), unicode.IsDigit(r), r == '-', r == '_':
			b.WriteRune(r)
		}
	}
	return b.String()
}

// repoRoot walks up from the working directory to the folder holding go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

// docFiles lists README.md and docs/*.md under root.
func docFiles(t *testing.T, root string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{filepath.Join(root, "README.md")}, files...)
}

// external reports whether a link target leaves the repository.
func external(target string) bool {
	for _, scheme := range []string{"http://", "https://", "mailto:"} {
		if strings.HasPrefix(strings.ToLower(target), scheme) {
			return true
		}
	}
	return false
}

// TestReadmeStaysShort fails when README.md holds more than maxReadmeLines
// lines.
func TestReadmeStaysShort(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Count(string(data), "\n")
	if len(data) > 0 && !strings.HasSuffix(string(data), "\n") {
		lines++
	}
	if lines > maxReadmeLines {
		t.Errorf("README.md: %d lines, more than %d: move the detail into a page under docs/ and link it", lines, maxReadmeLines)
	}
}

// TestRelativeLinksResolve checks every relative link and image of README.md
// and docs/*.md: its file exists and, when it names an anchor, the Markdown
// file it points to (or the same file) has a heading with that slug.
func TestRelativeLinksResolve(t *testing.T) {
	root := repoRoot(t)
	p := newParser()
	parsed := map[string]*document{}
	load := func(path string) (*document, error) {
		if doc, ok := parsed[path]; ok {
			return doc, nil
		}
		doc, err := p.parse(path)
		if err == nil {
			parsed[path] = doc
		}
		return doc, err
	}
	checked := 0
	for _, file := range docFiles(t, root) {
		doc, err := load(file)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, file)
		for _, l := range doc.links {
			if l.target == "" || external(l.target) {
				continue
			}
			checked++
			where := fmt.Sprintf("%s:%d: link %q", rel, l.line, l.target)
			pathPart, anchor, _ := strings.Cut(l.target, "#")
			target := file
			if pathPart != "" {
				unescaped, err := url.PathUnescape(pathPart)
				if err != nil {
					t.Errorf("%s: %v", where, err)
					continue
				}
				target = filepath.Join(filepath.Dir(file), filepath.FromSlash(unescaped))
				if _, err := os.Stat(target); err != nil {
					t.Errorf("%s: %s does not exist", where, unescaped)
					continue
				}
			}
			if anchor == "" {
				continue
			}
			if !strings.EqualFold(filepath.Ext(target), ".md") {
				t.Errorf("%s: an anchor on a file that is not Markdown", where)
				continue
			}
			tdoc, err := load(target)
			if err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			if !tdoc.anchors[anchor] {
				trel, _ := filepath.Rel(root, target)
				t.Errorf("%s: %s has no heading whose anchor is #%s", where, trel, anchor)
			}
		}
	}
	if checked == 0 {
		t.Error("no relative link found: the parser is broken")
	}
	t.Logf("%d relative links checked", checked)
}

// TestSlug holds slug to GitHub's anchors for headings like the manual's.
func TestSlug(t *testing.T) {
	p := newParser()
	for heading, want := range map[string]string{
		"The S3 cursor": "the-s3-cursor",
		"Two paths: `make dev` without Docker, or docker compose":                        "two-paths-make-dev-without-docker-or-docker-compose",
		"Input gateway: S3 objects without keys on compute nodes":                        "input-gateway-s3-objects-without-keys-on-compute-nodes",
		"Kinesis connector: one durable consumer per shard, following splits and merges": "kinesis-connector-one-durable-consumer-per-shard-following-splits-and-merges",
		"Queue connectors: SQS (and SNS through SQS)":                                    "queue-connectors-sqs-and-sns-through-sqs",
		"snake_case and [a link](x.md)":                                                  "snake_case-and-a-link",
	} {
		if got := p.slug(heading); got != want {
			t.Errorf("slug(%q) = %q, want %q", heading, got, want)
		}
	}
}

// TestParseSkipsCode shows links inside fenced blocks and code spans are
// not links, and repeated headings get numbered anchors.
func TestParseSkipsCode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.md")
	text := "# Title\n\n[one](a.md) `[two](b.md)`\n\n```\n[three](c.md)\n# not a heading\n```\n\n## Title\n![img](d.png \"t\")\n"
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	doc, err := newParser().parse(path)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(doc.links)
	if want := "[{3 a.md} {11 d.png}]"; got != want {
		t.Errorf("links = %s, want %s", got, want)
	}
	for _, a := range []string{"title", "title-1"} {
		if !doc.anchors[a] {
			t.Errorf("no anchor %q in %v", a, doc.anchors)
		}
	}
	if doc.anchors["not-a-heading"] {
		t.Error("a heading inside a fenced block counted")
	}
}
