package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseEnvYAML(t *testing.T) {
	in := `---
# a comment
PLAIN: hello world   # trailing comment
NUMBER: 5
BOOL: yes
EMPTY:
SINGLE: 'it''s # not a comment'
DOUBLE: "tab\there \"q\" \u00e9"
URL: postgres://u:p@db:5432/x?a=1#frag
LITERAL: |
  line one
    indented
  line three

FOLDED: >-
  folded
  text

  para
AFTER: 'x'
`
	got, err := parseEnvYAML("env.yml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"PLAIN": "hello world", "NUMBER": "5", "BOOL": "yes", "EMPTY": "",
		"SINGLE": "it's # not a comment", "DOUBLE": "tab\there \"q\" é",
		"URL":     "postgres://u:p@db:5432/x?a=1#frag",
		"LITERAL": "line one\n  indented\nline three\n",
		"FOLDED":  "folded text\npara",
		"AFTER":   "x",
	}
	m := map[string]string{}
	var order []string
	for _, p := range got {
		m[p.Key] = p.Value
		order = append(order, p.Key)
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("got %q\nwant %q", m, want)
	}
	if order[0] != "PLAIN" || got[0].Line != 3 {
		t.Fatalf("order/lines: %v %+v", order, got[0])
	}
}

func TestParseEnvYAMLErrors(t *testing.T) {
	for in, want := range map[string]string{
		"A: 1\nA: 2\n":    "env.yml line 2: A is already set on line 1",
		"A: 1\n  B: 2\n":  "env.yml line 2: unexpected indentation",
		"A:\n  B: 2\n":    "env.yml line 2: nested values are not supported",
		"- a\n":           "env.yml line 1: a list is not supported",
		"A: [1, 2]\n":     "env.yml line 1: A: lists and mappings are not supported",
		"A: {b: 1}\n":     "env.yml line 1: A: lists and mappings are not supported",
		"1BAD: x\n":       "env.yml line 1: invalid key \"1BAD\"",
		"BAD-KEY: x\n":    "env.yml line 1: invalid key \"BAD-KEY\"",
		"just text\n":     "env.yml line 1: expected KEY: value",
		"A: 'open\n":      "env.yml line 1: A: the single-quoted value is not closed",
		"A: \"open\n":     "env.yml line 1: A: the double-quoted value is not closed",
		"A: \"x\" y\n":    "env.yml line 1: A: unexpected text after the closing quote",
		"A: \"\\q\"\n":    "env.yml line 1: A: unknown escape \\q",
		"A: &anchor x\n":  "env.yml line 1: A: anchors, aliases and tags are not supported",
		"A: b: c\n":       "env.yml line 1: A: a plain value cannot contain \": \"",
		"OK: 1\n\tB: 2\n": "env.yml line 2: tabs are not allowed",
		"A:x\n":           "env.yml line 1: expected KEY: value",
		"A: |x\n  b\n":    "env.yml line 1: A: unsupported block header",
		"A: \"\\u12\"\n":  "env.yml line 1: A: incomplete \\u escape",
	} {
		_, err := parseEnvYAML("env.yml", []byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parse %q: %v, want %q", in, err, want)
		}
	}
}
