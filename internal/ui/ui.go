// Package ui writes user-facing output the way Heroku and Dokku do: "----->"
// step headers, "=====>" section headers, indented detail lines and aligned
// "Key:  value" reports.
package ui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"
)

// Indentation is the prefix of detail lines under a header.
const Indentation = "       "

// Step prints a "-----> " step header.
func Step(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, "-----> "+format+"\n", args...)
}

// Section prints a "=====> " section header.
func Section(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, "=====> "+format+"\n", args...)
}

// Detail prints an indented detail line.
func Detail(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, Indentation+format+"\n", args...)
}

// Warn prints a " !     " warning line.
func Warn(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, " !     "+format+"\n", args...)
}

// Field is one line of a report.
type Field struct {
	Key   string
	Value string
}

// Fields prints key/value lines aligned on one column, indented.
func Fields(w io.Writer, fields []Field) {
	width := 0
	for _, f := range fields {
		if n := utf8.RuneCountInString(f.Key); n > width {
			width = n
		}
	}
	var b strings.Builder
	for _, f := range fields {
		b.WriteString(Indentation)
		b.WriteString(f.Key)
		b.WriteString(":")
		b.WriteString(strings.Repeat(" ", width-utf8.RuneCountInString(f.Key)+2))
		b.WriteString(f.Value)
		b.WriteString("\n")
	}
	io.WriteString(w, b.String())
}

// JSON prints v as indented JSON followed by a newline.
func JSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// SortedKeys returns the keys of m in order.
func SortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// NewBuildWriter indents build output the way Heroku shows buildpack
// output: lines that are already formatted ("----->", " !     " or indented
// by seven spaces) pass as they are, others are indented.
func NewBuildWriter(w io.Writer) *IndentWriter {
	iw := NewIndentWriter(w, Indentation)
	iw.keep = func(line []byte) bool {
		return bytes.HasPrefix(line, []byte("-----> ")) || bytes.HasPrefix(line, []byte(" !     ")) || bytes.HasPrefix(line, []byte(Indentation))
	}
	return iw
}

// IndentWriter prefixes every line written through it with prefix. It is
// safe for concurrent use; partial lines are held until their newline or
// Flush.
type IndentWriter struct {
	mu      sync.Mutex
	w       io.Writer
	prefix  string
	partial []byte
	// keep, when set, says which lines pass without the prefix.
	keep func(line []byte) bool
}

// NewIndentWriter returns a writer that indents every line by prefix.
func NewIndentWriter(w io.Writer, prefix string) *IndentWriter {
	return &IndentWriter{w: w, prefix: prefix}
}

// Write implements io.Writer.
func (iw *IndentWriter) Write(p []byte) (int, error) {
	iw.mu.Lock()
	defer iw.mu.Unlock()
	n := len(p)
	var out bytes.Buffer
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			iw.partial = append(iw.partial, p...)
			break
		}
		line := append(iw.partial, bytes.TrimRight(p[:i], "\r")...)
		if iw.keep == nil || !iw.keep(line) {
			out.WriteString(iw.prefix)
		}
		out.Write(line)
		out.WriteByte('\n')
		iw.partial = iw.partial[:0]
		p = p[i+1:]
	}
	if out.Len() > 0 {
		if _, err := iw.w.Write(out.Bytes()); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// Flush writes any partial line held back.
func (iw *IndentWriter) Flush() error {
	iw.mu.Lock()
	defer iw.mu.Unlock()
	if len(iw.partial) == 0 {
		return nil
	}
	_, err := fmt.Fprintf(iw.w, "%s%s\n", iw.prefix, iw.partial)
	iw.partial = iw.partial[:0]
	return err
}
