package ui

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func TestHeaders(t *testing.T) {
	var b bytes.Buffer
	Step(&b, "Building %s", "shop")
	Section(&b, "Application deployed:")
	Detail(&b, "http://%s", "shop.localhost")
	Warn(&b, "%d problems", 2)
	want := "-----> Building shop\n" +
		"=====> Application deployed:\n" +
		"       http://shop.localhost\n" +
		" !     2 problems\n"
	if b.String() != want {
		t.Fatalf("got\n%q\nwant\n%q", b.String(), want)
	}
}

func TestFieldsAlignment(t *testing.T) {
	var b bytes.Buffer
	Fields(&b, []Field{
		{"Name", "shop"},
		{"Deployed release", "v3"},
		{"Größe", "1"}, // 5 runes, 7 bytes: aligned by runes
		{"URL", ""},
	})
	want := "" +
		"       Name:              shop\n" +
		"       Deployed release:  v3\n" +
		"       Größe:             1\n" +
		"       URL:               \n"
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
	// Every value starts in the same column (counted in runes).
	col := -1
	for _, line := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
		i := strings.Index(line, ":")
		rest := line[i+1:]
		c := len([]rune(line[:i+1])) + len(rest) - len(strings.TrimLeft(rest, " "))
		if col >= 0 && c != col {
			t.Fatalf("value columns differ: %d vs %d in %q", col, c, line)
		}
		col = c
	}

	// The longest key is not ASCII: widths are counted in runes, not bytes.
	b.Reset()
	Fields(&b, []Field{{"Größenänderung", "a"}, {"Name", "b"}})
	want = "" +
		"       Größenänderung:  a\n" +
		"       Name:            b\n"
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}

	b.Reset()
	Fields(&b, nil)
	if b.Len() != 0 {
		t.Fatalf("Fields(nil) wrote %q", b.String())
	}
}

func TestSortedKeys(t *testing.T) {
	got := SortedKeys(map[string]int{"web": 1, "clock": 0, "worker": 2})
	if want := []string{"clock", "web", "worker"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("SortedKeys = %v, want %v", got, want)
	}
	if got := SortedKeys(map[string]bool{}); len(got) != 0 {
		t.Fatalf("SortedKeys(empty) = %v", got)
	}
}

func TestJSON(t *testing.T) {
	var b bytes.Buffer
	if err := JSON(&b, map[string]any{"b": 1, "a": []string{"x"}}); err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"a\": [\n    \"x\"\n  ],\n  \"b\": 1\n}\n"
	if b.String() != want {
		t.Fatalf("JSON = %q, want %q", b.String(), want)
	}
}

func TestIndentWriterLines(t *testing.T) {
	var b bytes.Buffer
	w := NewIndentWriter(&b, "  > ")
	for _, s := range []string{"one\ntw", "o\n", "", "thr", "ee", "\nfour\r\nfive\n\nsix"} {
		n, err := w.Write([]byte(s))
		if err != nil || n != len(s) {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	want := "  > one\n  > two\n  > three\n  > four\n  > five\n  > \n"
	if b.String() != want {
		t.Fatalf("before Flush:\n%q\nwant\n%q", b.String(), want)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	want += "  > six\n"
	if b.String() != want {
		t.Fatalf("after Flush:\n%q\nwant\n%q", b.String(), want)
	}
	// Flush with nothing held back writes nothing, and the partial buffer
	// does not leak into the next line.
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("seven\n"))
	want += "  > seven\n"
	if b.String() != want {
		t.Fatalf("after second Flush:\n%q\nwant\n%q", b.String(), want)
	}
}

func TestIndentWriterPartialIsNotWrittenEarly(t *testing.T) {
	var b bytes.Buffer
	w := NewIndentWriter(&b, "| ")
	w.Write([]byte("no newline yet"))
	if b.Len() != 0 {
		t.Fatalf("a partial line was written before its newline: %q", b.String())
	}
	w.Write([]byte(" still"))
	w.Write([]byte(" going\nnext"))
	if b.String() != "| no newline yet still going\n" {
		t.Fatalf("got %q", b.String())
	}
}

type failWriter struct{}

func (failWriter) Write(p []byte) (int, error) { return 0, errors.New("broken pipe") }

func TestIndentWriterErrors(t *testing.T) {
	w := NewIndentWriter(failWriter{}, "> ")
	if _, err := w.Write([]byte("partial")); err != nil {
		t.Fatalf("a held-back partial line failed: %v", err)
	}
	if _, err := w.Write([]byte(" line\n")); err == nil {
		t.Fatal("Write did not report the underlying error")
	}
	w.Write([]byte("again"))
	if err := w.Flush(); err == nil {
		t.Fatal("Flush did not report the underlying error")
	}
}

// lockedBuffer records every Write call separately.
type lockedBuffer struct {
	mu     sync.Mutex
	writes []string
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes = append(l.writes, string(p))
	return len(p), nil
}

func TestIndentWriterConcurrent(t *testing.T) {
	var out lockedBuffer
	w := NewIndentWriter(&out, "    ")
	const writers, lines = 8, 200
	var wg sync.WaitGroup
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < lines; i++ {
				// Whole lines, sometimes two per Write.
				if i%2 == 0 {
					fmt.Fprintf(w, "writer %d line %d\n", g, i)
				} else {
					fmt.Fprintf(w, "writer %d line %d\nwriter %d line %d.5\n", g, i, g, i)
				}
			}
		}()
	}
	wg.Wait()
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	all := strings.Join(out.writes, "")
	got := strings.Split(strings.TrimSuffix(all, "\n"), "\n")
	if want := writers * (lines + lines/2); len(got) != want {
		t.Fatalf("%d lines, want %d", len(got), want)
	}
	seen := map[string]bool{}
	next := map[int]int{}
	for _, l := range got {
		var g, i int
		if _, err := fmt.Sscanf(l, "    writer %d line %d", &g, &i); err != nil {
			t.Fatalf("mangled line %q", l)
		}
		if seen[l] {
			t.Fatalf("duplicate line %q", l)
		}
		seen[l] = true
		// Each writer's lines keep their order.
		if i < next[g] {
			t.Fatalf("writer %d: line %d after line %d", g, i, next[g])
		}
		next[g] = i
	}
}
