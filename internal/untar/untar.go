// Package untar extracts tarballs from outside (git:from-archive, buildpack
// tarballs) into a directory, refusing any entry that would land outside it:
// absolute or ".." paths, symlinks or hard links that point outside, device
// files. Writes go through os.Root, so nothing escapes even by a symlink.
package untar

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// Limits bound what an archive may hold.
type Limits struct {
	MaxBytes   int64 // total size of the files (default 2 GiB)
	MaxEntries int   // number of entries (default 200000)
}

// Extract reads a tar stream (plain, gzip or bzip2, detected from its first
// bytes) into dst, which must exist. With stripTop, a single top-level
// directory holding everything is removed from the paths (as GitHub
// tarballs have one).
func Extract(r io.Reader, dst string, stripTop bool, lim Limits) error {
	if lim.MaxBytes == 0 {
		lim.MaxBytes = 2 << 30
	}
	if lim.MaxEntries == 0 {
		lim.MaxEntries = 200000
	}
	br := bufio.NewReader(r)
	magic, _ := br.Peek(3)
	var src io.Reader = br
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		gz, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("read gzip: %w", err)
		}
		defer gz.Close()
		src = gz
	case bytes.HasPrefix(magic, []byte("BZh")):
		src = bzip2.NewReader(br)
	}
	root, err := os.OpenRoot(dst)
	if err != nil {
		return fmt.Errorf("open %s: %w", dst, err)
	}
	defer root.Close()
	tr := tar.NewReader(src)
	var total int64
	top := ""
	links := map[string]bool{} // symlinks made so far
	for n := 0; ; n++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		if n >= lim.MaxEntries {
			return fmt.Errorf("the archive has more than %d entries", lim.MaxEntries)
		}
		if h.Typeflag == tar.TypeXGlobalHeader || h.Typeflag == tar.TypeXHeader {
			continue
		}
		name, err := cleanName(h.Name)
		if err != nil {
			return err
		}
		if stripTop {
			first, rest, _ := strings.Cut(name, "/")
			if top == "" {
				top = first
			}
			if first != top {
				return fmt.Errorf("the archive has more than one top-level entry (%s, %s): it cannot be stripped", top, first)
			}
			if rest == "" {
				continue
			}
			name = rest
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return fmt.Errorf("create %s: %w", name, err)
			}
		case tar.TypeReg, tar.TypeRegA:
			total += h.Size
			if total > lim.MaxBytes {
				return fmt.Errorf("the archive holds more than %d MiB", lim.MaxBytes>>20)
			}
			if err := mkParent(root, name); err != nil {
				return err
			}
			f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, os.FileMode(h.Mode&0o755)|0o600)
			if err != nil {
				return fmt.Errorf("create %s: %w", name, err)
			}
			_, err = io.Copy(f, io.LimitReader(tr, h.Size))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("write %s: %w", name, err)
			}
		case tar.TypeSymlink:
			if err := checkLink(name, h.Linkname, links); err != nil {
				return err
			}
			links[name] = true
			if err := mkParent(root, name); err != nil {
				return err
			}
			if err := root.Symlink(h.Linkname, name); err != nil {
				return fmt.Errorf("create symlink %s: %w", name, err)
			}
		case tar.TypeLink:
			target, err := cleanName(h.Linkname)
			if err != nil {
				return fmt.Errorf("hard link %s: %w", name, err)
			}
			if stripTop {
				_, target, _ = strings.Cut(target, "/")
			}
			if err := mkParent(root, name); err != nil {
				return err
			}
			if err := root.Link(target, name); err != nil {
				return fmt.Errorf("create hard link %s: %w", name, err)
			}
		default:
			return fmt.Errorf("the archive entry %s is a device, pipe or other special file: refused", name)
		}
	}
	return nil
}

func mkParent(root *os.Root, name string) error {
	if dir := path.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	return nil
}

// cleanName validates an entry name: relative, no "..".
func cleanName(n string) (string, error) {
	if n == "" || strings.HasPrefix(n, "/") || strings.ContainsRune(n, 0) {
		return "", fmt.Errorf("the archive entry %q has an absolute or empty path: refused", n)
	}
	c := path.Clean(strings.TrimPrefix(n, "./"))
	if c == ".." || strings.HasPrefix(c, "../") || strings.Contains(n, "/../") || strings.HasSuffix(n, "/..") {
		return "", fmt.Errorf("the archive entry %q leaves the archive (..): refused", n)
	}
	return c, nil
}

// checkLink refuses a symlink whose target leaves the archive, read as
// text, or whose target goes through another symlink of the archive (a
// chain such as x -> . and y -> x/.. escapes though each looks harmless).
func checkLink(name, target string, links map[string]bool) error {
	if target == "" || strings.HasPrefix(target, "/") {
		return fmt.Errorf("the symlink %s points to %q, outside the archive: refused", name, target)
	}
	resolved := path.Clean(path.Join(path.Dir(name), target))
	if resolved == ".." || strings.HasPrefix(resolved, "../") {
		return fmt.Errorf("the symlink %s points to %q, outside the archive: refused", name, target)
	}
	cur := path.Dir(name)
	for _, part := range strings.Split(target, "/") {
		cur = path.Join(cur, part)
		if links[cur] {
			return fmt.Errorf("the symlink %s points through the symlink %s: refused", name, cur)
		}
	}
	return nil
}
