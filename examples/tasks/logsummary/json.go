package main

import (
	"sort"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// The task reads and writes its little JSON by hand rather than with
// encoding/json (and fmt and flag, which it brings): Bacalhau v1.7's WASM
// executor compiles the module for every task, and those packages make
// the module half again as large and its compile time (wazero's, on the
// node, per task) about 1.6 times as long.

// jsonValue is one value of a JSON object: a string (unescaped), a number
// or literal (as written), or a nested object or array (skipped).
type jsonValue struct {
	kind byte // 's' string, 'n' number, 'l' true/false/null, 'o' object or array
	text string
}

// jsonObject reads a JSON object's top-level fields. ok is false when the
// line is not one JSON object.
func jsonObject(s string) (fields jsonFields, ok bool) {
	p := &jsonReader{s: s}
	p.space()
	if !p.eat('{') {
		return nil, false
	}
	fields = jsonFields{}
	p.space()
	if p.eat('}') {
		return fields, p.end()
	}
	for {
		p.space()
		key, ok := p.str()
		if !ok {
			return nil, false
		}
		p.space()
		if !p.eat(':') {
			return nil, false
		}
		p.space()
		v, ok := p.value()
		if !ok {
			return nil, false
		}
		fields[key] = v
		p.space()
		if p.eat('}') {
			return fields, p.end()
		}
		if !p.eat(',') {
			return nil, false
		}
	}
}

// String is a field's string value.
func (f jsonFields) String(name string) (string, bool) {
	v, ok := f[name]
	if !ok || v.kind != 's' {
		return "", false
	}
	return v.text, true
}

// Int is a field's integer value.
func (f jsonFields) Int(name string) (int64, bool) {
	v, ok := f[name]
	if !ok || v.kind != 'n' {
		return 0, false
	}
	n, err := strconv.ParseInt(v.text, 10, 64)
	return n, err == nil
}

// jsonFields are an object's fields.
type jsonFields map[string]jsonValue

type jsonReader struct {
	s string
	i int
}

func (p *jsonReader) space() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == '\n' || p.s[p.i] == '\r') {
		p.i++
	}
}

func (p *jsonReader) eat(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *jsonReader) end() bool {
	p.space()
	return p.i == len(p.s)
}

func (p *jsonReader) value() (jsonValue, bool) {
	if p.i >= len(p.s) {
		return jsonValue{}, false
	}
	switch c := p.s[p.i]; {
	case c == '"':
		s, ok := p.str()
		return jsonValue{kind: 's', text: s}, ok
	case c == '{' || c == '[':
		return jsonValue{kind: 'o'}, p.skip()
	case c == '-' || c >= '0' && c <= '9':
		start := p.i
		p.i++
		for p.i < len(p.s) && strings.IndexByte("0123456789.eE+-", p.s[p.i]) >= 0 {
			p.i++
		}
		text := p.s[start:p.i]
		if _, err := strconv.ParseFloat(text, 64); err != nil {
			return jsonValue{}, false
		}
		return jsonValue{kind: 'n', text: text}, true
	default:
		for _, lit := range []string{"true", "false", "null"} {
			if strings.HasPrefix(p.s[p.i:], lit) {
				p.i += len(lit)
				return jsonValue{kind: 'l', text: lit}, true
			}
		}
		return jsonValue{}, false
	}
}

// skip passes over a nested object or array, strings inside included.
func (p *jsonReader) skip() bool {
	depth := 0
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case '"':
			if _, ok := p.str(); !ok {
				return false
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				p.i++
				return true
			}
		}
		p.i++
	}
	return false
}

// str reads a JSON string at p.i and unescapes it.
func (p *jsonReader) str() (string, bool) {
	if !p.eat('"') {
		return "", false
	}
	var b strings.Builder
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return b.String(), true
		case c < 0x20:
			return "", false
		case c != '\\':
			b.WriteByte(c)
			p.i++
			continue
		}
		if p.i+1 >= len(p.s) {
			return "", false
		}
		e := p.s[p.i+1]
		p.i += 2
		switch e {
		case '"', '\\', '/':
			b.WriteByte(e)
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return "", false
			}
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if strings.HasPrefix(p.s[p.i:], `\u`) {
					save := p.i
					p.i += 2
					if r2, ok = p.hex4(); !ok {
						return "", false
					}
					if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
						b.WriteRune(d)
						continue
					}
					p.i = save
				}
				r = utf8.RuneError
			}
			b.WriteRune(r)
		default:
			return "", false
		}
	}
	return "", false
}

func (p *jsonReader) hex4() (rune, bool) {
	if p.i+4 > len(p.s) {
		return 0, false
	}
	n, err := strconv.ParseUint(p.s[p.i:p.i+4], 16, 32)
	if err != nil {
		return 0, false
	}
	p.i += 4
	return rune(n), true
}

// jsonWriter writes a JSON document.
type jsonWriter struct{ b []byte }

func (w *jsonWriter) raw(s string) { w.b = append(w.b, s...) }

// str writes s as a JSON string: invalid UTF-8 becomes U+FFFD, as
// encoding/json writes it.
func (w *jsonWriter) str(s string) {
	w.b = append(w.b, '"')
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			w.b = append(w.b, `\ufffd`...)
		case r == '"' || r == '\\':
			w.b = append(w.b, '\\', byte(r))
		case r == '\n':
			w.b = append(w.b, `\n`...)
		case r == '\r':
			w.b = append(w.b, `\r`...)
		case r == '\t':
			w.b = append(w.b, `\t`...)
		case r == '\b':
			w.b = append(w.b, `\b`...)
		case r == '\f':
			w.b = append(w.b, `\f`...)
		case r < 0x20 || r == '\u2028' || r == '\u2029':
			w.b = append(w.b, `\u`...)
			h := strconv.FormatInt(int64(r), 16)
			w.b = append(w.b, "0000"[len(h):]...)
			w.b = append(w.b, h...)
		default:
			w.b = append(w.b, s[i:i+size]...)
		}
		i += size
	}
	w.b = append(w.b, '"')
}

func (w *jsonWriter) int(n int64) { w.b = strconv.AppendInt(w.b, n, 10) }

// strings writes a list of strings (null when nil, as encoding/json does).
func (w *jsonWriter) strings(l []string) {
	if l == nil {
		w.raw("null")
		return
	}
	w.raw("[")
	for i, s := range l {
		if i > 0 {
			w.raw(",")
		}
		w.str(s)
	}
	w.raw("]")
}

// field writes a field's name (with the comma before it unless first).
func (w *jsonWriter) field(name string, first bool) {
	if !first {
		w.raw(",")
	}
	w.str(name)
	w.raw(":")
}

// marshal writes the summary as encoding/json would (fields in order,
// omitempty ones left out when empty, map keys sorted).
func (s *Summary) marshal() []byte {
	w := &jsonWriter{}
	w.raw("{")
	w.field("files", true)
	w.int(int64(s.Files))
	w.field("inputs", false)
	w.strings(s.Inputs)
	w.field("requests", false)
	w.int(int64(s.Requests))
	w.field("bytes", false)
	w.int(s.Bytes)
	w.field("by_status", false)
	if s.ByStatus == nil {
		w.raw("null")
	} else {
		w.raw("{")
		for i, k := range sortedKeys(s.ByStatus) {
			w.field(k, i == 0)
			w.int(int64(s.ByStatus[k]))
		}
		w.raw("}")
	}
	w.field("top_paths", false)
	if s.TopPaths == nil {
		w.raw("null")
	} else {
		w.raw("[")
		for i, p := range s.TopPaths {
			if i > 0 {
				w.raw(",")
			}
			w.raw("{")
			w.field("path", true)
			w.str(p.Path)
			w.field("count", false)
			w.int(int64(p.Count))
			w.raw("}")
		}
		w.raw("]")
	}
	w.field("malformed", false)
	w.int(int64(s.Malformed))
	if len(s.KafkaOffsets) > 0 {
		w.field("kafka_offsets", false)
		w.raw("{")
		for i, k := range sortedKeys(s.KafkaOffsets) {
			w.field(k, i == 0)
			w.raw("[")
			for j, o := range s.KafkaOffsets[k] {
				if j > 0 {
					w.raw(",")
				}
				w.int(o)
			}
			w.raw("]")
		}
		w.raw("}")
	}
	for _, l := range []struct {
		name string
		list []string
	}{{"kinesis_records", s.KinesisRecords}, {"source_records", s.SourceRecords}, {"message_ids", s.MessageIDs}, {"failed_ids", s.FailedIDs}, {"paths", s.Paths}} {
		if len(l.list) > 0 {
			w.field(l.name, false)
			w.strings(l.list)
		}
	}
	w.raw("}")
	return w.b
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
