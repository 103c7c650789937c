package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// env.yml (and each decrypted vault/ file) is a flat YAML mapping of config
// var names to plain values:
//
//	# comments and blank lines are ignored
//	DATABASE_POOL: 5
//	GREETING: "hello\tworld"
//	QUOTED: 'it''s'
//	EMPTY:
//	CERT: |
//	  -----BEGIN CERTIFICATE-----
//	  ...
//
// Values are taken as written (5 stays "5", yes stays "yes"); single- and
// double-quoted scalars and literal (|) or folded (>) blocks work. Nested
// mappings, lists, anchors and tags are refused with the line and reason.

var envKeyRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// parseError is a problem at a line of a file.
type parseError struct {
	file   string
	line   int
	reason string
}

func (e *parseError) Error() string {
	return fmt.Sprintf("%s line %d: %s", e.file, e.line, e.reason)
}

// Pair is one config var and the line it came from.
type Pair struct {
	Key, Value string
	Line       int
}

// parseEnvYAML parses a flat mapping; file names the source in errors.
func parseEnvYAML(file string, data []byte) ([]Pair, error) {
	if !utf8.Valid(data) {
		return nil, &parseError{file, 1, "the file is not UTF-8 text"}
	}
	text := strings.TrimPrefix(string(data), "\ufeff")
	lines := strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n")
	var out []Pair
	seen := map[string]int{}
	fail := func(n int, format string, args ...any) error {
		return &parseError{file, n, fmt.Sprintf(format, args...)}
	}
	for i := 0; i < len(lines); i++ {
		n := i + 1
		line := lines[i]
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if trimmed == "---" && len(out) == 0 {
			continue
		}
		if trimmed == "..." {
			break
		}
		if strings.HasPrefix(line, "\t") {
			return nil, fail(n, "tabs are not allowed for indentation in YAML")
		}
		if line[0] == ' ' {
			return nil, fail(n, "unexpected indentation: env.yml holds only KEY: value lines (nested values are not supported)")
		}
		if strings.HasPrefix(trimmed, "- ") || trimmed == "-" {
			return nil, fail(n, "a list is not supported: write KEY: value lines")
		}
		key, rest, ok := strings.Cut(line, ":")
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '\t') {
			return nil, fail(n, "expected KEY: value")
		}
		key = strings.TrimSpace(key)
		if !envKeyRe.MatchString(key) {
			return nil, fail(n, "invalid key %q: use letters, digits and underscores, not starting with a digit", key)
		}
		if first, dup := seen[key]; dup {
			return nil, fail(n, "%s is already set on line %d", key, first)
		}
		seen[key] = n
		rest = strings.TrimSpace(rest)
		var value string
		switch {
		case rest == "" || strings.HasPrefix(rest, "#"):
			// KEY: with nothing: a value on the following indented
			// lines is a nested mapping or list, which is refused.
			if j := nextContent(lines, i+1); j >= 0 && strings.HasPrefix(lines[j], " ") {
				return nil, fail(j+1, "nested values are not supported: give %s a plain value", key)
			}
			value = ""
		case rest[0] == '"':
			v, err := doubleQuoted(rest)
			if err != nil {
				return nil, fail(n, "%s: %v", key, err)
			}
			value = v
		case rest[0] == '\'':
			v, err := singleQuoted(rest)
			if err != nil {
				return nil, fail(n, "%s: %v", key, err)
			}
			value = v
		case rest[0] == '|' || rest[0] == '>':
			v, next, err := blockScalar(lines, i, rest)
			if err != nil {
				return nil, fail(n, "%s: %v", key, err)
			}
			value, i = v, next-1
		case rest[0] == '[' || rest[0] == '{':
			return nil, fail(n, "%s: lists and mappings are not supported: give a plain value (quote it if it starts with %c)", key, rest[0])
		case rest[0] == '&' || rest[0] == '*' || rest[0] == '!':
			return nil, fail(n, "%s: anchors, aliases and tags are not supported: quote the value", key)
		case rest[0] == '@' || rest[0] == '`' || rest[0] == '%':
			return nil, fail(n, "%s: a plain value cannot start with %c: quote it", key, rest[0])
		default:
			value = plainScalar(rest)
			if strings.Contains(value, ": ") {
				return nil, fail(n, "%s: a plain value cannot contain \": \": quote it", key)
			}
		}
		if strings.ContainsRune(value, 0) {
			return nil, fail(n, "%s: the value contains a NUL byte", key)
		}
		out = append(out, Pair{Key: key, Value: value, Line: n})
	}
	return out, nil
}

// nextContent returns the index of the next line that is neither blank nor
// a comment, or -1.
func nextContent(lines []string, from int) int {
	for j := from; j < len(lines); j++ {
		t := strings.TrimSpace(lines[j])
		if t != "" && !strings.HasPrefix(t, "#") {
			return j
		}
	}
	return -1
}

// plainScalar strips a trailing " # comment".
func plainScalar(s string) string {
	if i := strings.Index(s, " #"); i >= 0 {
		s = s[:i]
	}
	if i := strings.Index(s, "\t#"); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// afterQuoted checks that only a comment follows a closing quote.
func afterQuoted(rest string) error {
	rest = strings.TrimSpace(rest)
	if rest != "" && !strings.HasPrefix(rest, "#") {
		return fmt.Errorf("unexpected text after the closing quote: %q", rest)
	}
	return nil
}

func singleQuoted(s string) (string, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		if s[i] == '\'' {
			if i+1 < len(s) && s[i+1] == '\'' {
				b.WriteByte('\'')
				i++
				continue
			}
			return b.String(), afterQuoted(s[i+1:])
		}
		b.WriteByte(s[i])
	}
	return "", fmt.Errorf("the single-quoted value is not closed on its line")
}

func doubleQuoted(s string) (string, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			return b.String(), afterQuoted(s[i+1:])
		case '\\':
			if i+1 >= len(s) {
				return "", fmt.Errorf("the double-quoted value ends with a backslash")
			}
			i++
			switch e := s[i]; e {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case '0':
				return "", fmt.Errorf("\\0 (NUL) is not allowed in a config value")
			case '"', '\\', '/', ' ':
				b.WriteByte(e)
			case 'u', 'U', 'x':
				size := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
				if i+1+size > len(s) {
					return "", fmt.Errorf("incomplete \\%c escape", e)
				}
				r, err := strconv.ParseUint(s[i+1:i+1+size], 16, 32)
				if err != nil || !utf8.ValidRune(rune(r)) || r == 0 {
					return "", fmt.Errorf("invalid \\%c escape", e)
				}
				b.WriteRune(rune(r))
				i += size
			default:
				return "", fmt.Errorf("unknown escape \\%c", e)
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", fmt.Errorf("the double-quoted value is not closed on its line")
}

// blockScalar reads a literal (|) or folded (>) block starting after line
// i; it returns the value and the index of the first line after it.
func blockScalar(lines []string, i int, header string) (string, int, error) {
	h := plainScalar(header)
	style, chomp := h[0], byte(0)
	for _, c := range []byte(h[1:]) {
		switch {
		case c == '-' || c == '+':
			if chomp != 0 {
				return "", 0, fmt.Errorf("bad block header %q", h)
			}
			chomp = c
		default:
			return "", 0, fmt.Errorf("unsupported block header %q (use |, |-, >, >-)", h)
		}
	}
	indent := -1
	var body []string
	j := i + 1
	for ; j < len(lines); j++ {
		l := lines[j]
		if strings.TrimSpace(l) == "" {
			body = append(body, "")
			continue
		}
		ind := len(l) - len(strings.TrimLeft(l, " "))
		if strings.HasPrefix(strings.TrimLeft(l, " "), "\t") && ind == 0 {
			return "", 0, fmt.Errorf("tabs are not allowed for indentation in YAML")
		}
		if indent < 0 {
			if ind == 0 {
				break
			}
			indent = ind
		}
		if ind < indent {
			break
		}
		body = append(body, l[indent:])
	}
	// Trailing blank lines belong to the chomping, not the content.
	trailing := 0
	for len(body) > 0 && body[len(body)-1] == "" {
		body = body[:len(body)-1]
		trailing++
	}
	var v string
	if style == '|' {
		v = strings.Join(body, "\n")
	} else {
		var b strings.Builder
		for k, l := range body {
			switch {
			case k == 0:
			case l == "":
				b.WriteByte('\n')
			case body[k-1] == "":
			case strings.HasPrefix(l, " ") || strings.HasPrefix(body[k-1], " "):
				b.WriteByte('\n')
			default:
				b.WriteByte(' ')
			}
			b.WriteString(l)
		}
		v = b.String()
	}
	switch chomp {
	case '-':
	case '+':
		if len(body) > 0 {
			v += "\n" + strings.Repeat("\n", trailing)
		}
	default:
		if len(body) > 0 {
			v += "\n"
		}
	}
	return v, j, nil
}
