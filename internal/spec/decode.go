package spec

import (
	"bytes"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Decoding speaks the spec's language: every problem names the field path
// (batch.max_objects, source.kafka.sasl.username), what was expected there
// and the fix, never a Go type. The YAML is first read as a node tree and
// checked against the spec's types field by field, so that every problem
// is found at once; only a spec with none is decoded into Spec.

// Paths of problems that belong to no field.
const (
	// PathSpec is the whole spec (empty, or not a mapping of fields).
	PathSpec = "(spec)"
	// PathYAML is the YAML text itself (a syntax error).
	PathYAML = "(yaml)"
)

// decode reads a spec, or says what is wrong with it.
func decode(raw []byte, kinds sourceKinds) (*Spec, []Problem) {
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		return nil, []Problem{{Path: PathYAML, Message: syntaxMessage(err)}}
	}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		doc = doc.Content[0]
	}
	if doc.Kind == 0 || doc.Kind == yaml.DocumentNode || isNull(doc) {
		return nil, []Problem{{Path: PathSpec, Message: "the spec is empty: write at least name, kind, source and task " +
			"(examples/connectors/ has one of each kind)"}}
	}
	if doc.Kind != yaml.MappingNode {
		return nil, []Problem{{Path: PathSpec, Message: fmt.Sprintf("expected fields such as name: and kind:, got %s", describe(doc))}}
	}
	var problems []Problem
	add := func(path, msg string) { problems = append(problems, Problem{Path: path, Message: msg}) }
	// The source sections of stream kinds are the kinds' own: each is
	// checked against its kind's configuration and set aside, and the
	// rest is the spec's.
	sections := takeStreamSections(doc, kinds, add)
	checkNode(doc, reflect.TypeFor[Spec](), "", add)
	for i, p := range problems {
		// An unknown source section may be a stream kind's this binary
		// was not built with: name the ones it knows.
		if rest, ok := strings.CutPrefix(p.Message, "unknown field: remove it, or use one of "); ok && strings.Count(p.Path, ".") == 1 && strings.HasPrefix(p.Path, "source.") {
			problems[i].Message = "unknown field: remove it, or use one of " + rest + kinds.sectionNames()
		}
	}
	if len(problems) > 0 {
		return nil, problems
	}
	if len(sections) > 0 {
		rest, err := yaml.Marshal(doc)
		if err != nil {
			return nil, []Problem{{Path: PathYAML, Message: err.Error()}}
		}
		raw = rest
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	var s Spec
	if err := dec.Decode(&s); err != nil {
		// The checks above should have caught it; say it as YAML does.
		return nil, []Problem{{Path: PathYAML, Message: strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	s.streamSections = sections
	return &s, nil
}

// sectionNames lists the source kinds' sections for a problem: ", nats,
// pubsub (a source kind's section; a kind of another module needs a
// starter built with it)".
func (k sourceKinds) sectionNames() string {
	names := slices.Sorted(maps.Keys(k))
	return ", " + strings.Join(names, ", ") + " (a source kind's section; a kind of another module needs a starter built with it)"
}

// takeStreamSections removes the sections of source that source kinds
// (stream and queue) own from doc, checking each against its kind's
// configuration type, and returns them by kind name.
func takeStreamSections(doc *yaml.Node, kinds sourceKinds, add func(path, msg string)) map[string]*yaml.Node {
	var src *yaml.Node
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if doc.Content[i].Value == "source" && doc.Content[i+1].Kind == yaml.MappingNode {
			src = doc.Content[i+1]
		}
	}
	if src == nil || len(kinds) == 0 {
		return nil
	}
	sections := map[string]*yaml.Node{}
	var kept []*yaml.Node
	for i := 0; i+1 < len(src.Content); i += 2 {
		key, value := src.Content[i], src.Content[i+1]
		k, ok := kinds[key.Value]
		if !ok {
			kept = append(kept, key, value)
			continue
		}
		at := "source." + key.Value
		if _, twice := sections[key.Value]; twice {
			add(at, "written twice: keep one")
			continue
		}
		checkNode(value, reflect.TypeOf(k.newConfig()), at, add)
		sections[key.Value] = value
	}
	src.Content = kept
	return sections
}

var (
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	timeType        = reflect.TypeFor[time.Time]()
	linePrefix      = regexp.MustCompile(`^(yaml: )?line \d+: `)
)

// checkNode checks that n can be decoded into a value of type t at path,
// calling add for every problem it finds below it.
func checkNode(n *yaml.Node, t reflect.Type, path string, add func(path, msg string)) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if isNull(n) {
		return // left out, as if not written
	}
	switch {
	case reflect.PointerTo(t).Implements(unmarshalerType):
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			add(path, linePrefix.ReplaceAllString(err.Error(), ""))
		}
		return
	case t == timeType:
		var v time.Time
		if n.Kind != yaml.ScalarNode || n.Decode(&v) != nil {
			add(path, fmt.Sprintf("%s is not a time: write one in RFC 3339, such as 2026-11-01T00:00:00Z", describe(n)))
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		checkFields(n, t, path, add)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			add(path, fmt.Sprintf("expected a list (such as [a, b]), got %s", describe(n)))
			return
		}
		for i, c := range n.Content {
			checkNode(c, t.Elem(), path+"["+strconv.Itoa(i)+"]", add)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			add(path, fmt.Sprintf("expected a mapping (key: value), got %s", describe(n)))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			at := join(path, keyLabel(k))
			if err := k.Decode(reflect.New(t.Key()).Interface()); err != nil {
				add(at, fmt.Sprintf("%s is not a valid key here: expected %s", describe(k), expected(t.Key())))
				continue
			}
			checkNode(v, t.Elem(), at, add)
		}
	default:
		if n.Kind != yaml.ScalarNode {
			add(path, fmt.Sprintf("expected %s, got %s", expected(t), describe(n)))
			return
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			msg := fmt.Sprintf("%s is not %s", describe(n), expected(t))
			if fix := example(t); fix != "" {
				msg += ": write " + fix
			}
			add(path, msg)
		}
	}
}

// checkFields checks a mapping against the fields of struct type t.
func checkFields(n *yaml.Node, t reflect.Type, path string, add func(path, msg string)) {
	if n.Kind != yaml.MappingNode {
		add(path, fmt.Sprintf("expected fields (key: value), got %s", describe(n)))
		return
	}
	fields := map[string]reflect.Type{}
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		fields[name] = f.Type
		names = append(names, name)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, value := n.Content[i].Value, n.Content[i+1]
		at := join(path, keyLabel(n.Content[i]))
		ft, ok := fields[key]
		switch {
		case !ok:
			add(at, unknownField(key, names))
		case seen[key]:
			add(at, "written twice: keep one")
		default:
			checkNode(value, ft, at, add)
		}
		seen[key] = true
	}
}

// unknownField says what to write instead of an unknown field.
func unknownField(key string, names []string) string {
	if slices.Contains(names, key+"_env") {
		return fmt.Sprintf("unknown field: secrets never go in a spec; set %s_env to the name of an environment variable the worker reads it from", key)
	}
	for _, n := range names {
		if closeTo(key, n) {
			return fmt.Sprintf("unknown field: did you mean %s?", n)
		}
	}
	return "unknown field: remove it, or use one of " + strings.Join(names, ", ")
}

// closeTo tells whether a and b differ by at most one edit (a typo).
func closeTo(a, b string) bool {
	if a == b {
		return false
	}
	la, lb := len(a), len(b)
	if la-lb > 1 || lb-la > 1 {
		return false
	}
	i := 0
	for i < la && i < lb && a[i] == b[i] {
		i++
	}
	switch {
	case la == lb:
		return a[i+1:] == b[i+1:] || (i+1 < la && a[i] == b[i+1] && a[i+1] == b[i] && a[i+2:] == b[i+2:])
	case la > lb:
		return a[i+1:] == b[i:]
	default:
		return a[i:] == b[i+1:]
	}
}

// expected says in the spec's words what a value of type t is.
func expected(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "text"
	}
	return "a value of another shape"
}

// example shows how to write a value of type t, when that helps.
func example(t reflect.Type) string {
	switch expected(t) {
	case "a whole number":
		return "digits, such as 10"
	case "a number":
		return "digits, such as 0.5"
	case "true or false":
		return "true or false, unquoted"
	}
	return ""
}

// describe shows a node as the user wrote it.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping (key: value)"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	}
	return "nothing"
}

// keyLabel is a mapping key as a path element: its text, or how it looks
// when it has none a path can show.
func keyLabel(k *yaml.Node) string {
	switch {
	case k.Kind != yaml.ScalarNode:
		return "(" + describe(k) + ")"
	case strings.TrimSpace(k.Value) == "":
		return strconv.Quote(k.Value)
	}
	return k.Value
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// syntaxMessage is a YAML syntax error with its line, and what usually
// causes it.
func syntaxMessage(err error) string {
	return strings.TrimPrefix(err.Error(), "yaml: ") + " (check the indentation, and that every [, { and quote is closed)"
}
