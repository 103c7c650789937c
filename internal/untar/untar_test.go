package untar

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type entry struct {
	name, body, link string
	typ              byte
}

func makeTar(t *testing.T, gz bool, entries ...entry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Typeflag: e.typ, Linkname: e.link, Size: int64(len(e.body))}
		if e.typ == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	if !gz {
		return buf.Bytes()
	}
	var z bytes.Buffer
	w := gzip.NewWriter(&z)
	w.Write(buf.Bytes())
	w.Close()
	return z.Bytes()
}

func TestExtract(t *testing.T) {
	dst := t.TempDir()
	data := makeTar(t, true,
		entry{name: "top/", typ: tar.TypeDir},
		entry{name: "top/a/b.txt", body: "hello"},
		entry{name: "top/link", typ: tar.TypeSymlink, link: "a/b.txt"},
		entry{name: "top/a/up", typ: tar.TypeSymlink, link: "../a/b.txt"},
	)
	if err := Extract(bytes.NewReader(data), dst, true, Limits{}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dst, "link"))
	if err != nil || string(got) != "hello" {
		t.Fatalf("link read %q %v", got, err)
	}
}

func TestExtractRefusesEscapes(t *testing.T) {
	outside := t.TempDir()
	for name, entries := range map[string][]entry{
		"dotdot":          {{name: "../evil", body: "x"}},
		"dotdot inside":   {{name: "a/../../evil", body: "x"}},
		"absolute":        {{name: "/tmp/evil", body: "x"}},
		"abs symlink":     {{name: "l", typ: tar.TypeSymlink, link: outside}},
		"escape symlink":  {{name: "a/l", typ: tar.TypeSymlink, link: "../../etc/passwd"}},
		"write through":   {{name: "l", typ: tar.TypeSymlink, link: "."}, {name: "l/../../evil", body: "x"}},
		"escape hardlink": {{name: "h", typ: tar.TypeLink, link: "../../etc/passwd"}},
		"device":          {{name: "dev", typ: tar.TypeChar}},
		"symlink chain":   {{name: "x", typ: tar.TypeSymlink, link: "."}, {name: "y", typ: tar.TypeSymlink, link: "x/.."}},
	} {
		dst := t.TempDir()
		err := Extract(bytes.NewReader(makeTar(t, false, entries...)), dst, false, Limits{})
		if err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("%s: err = %v, want a refusal", name, err)
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(dst), "evil")); err == nil {
			t.Errorf("%s: wrote outside the destination", name)
		}
	}
}

func TestExtractLimits(t *testing.T) {
	data := makeTar(t, false, entry{name: "big", body: strings.Repeat("x", 100)})
	if err := Extract(bytes.NewReader(data), t.TempDir(), false, Limits{MaxBytes: 10}); err == nil {
		t.Fatal("size limit not enforced")
	}
	data = makeTar(t, false, entry{name: "a", body: "1"}, entry{name: "b", body: "2"})
	if err := Extract(bytes.NewReader(data), t.TempDir(), true, Limits{}); err == nil {
		t.Fatal("stripping two top-level entries should fail")
	}
}
