package buildpack

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/berth-paas/berth/internal/untar"
	"github.com/berth-paas/berth/internal/validate"
)

// ValidateSpec checks a buildpack reference: an absolute local path, a git
// URL (https, http, ssh, git, file, or user@host:path) with an optional
// #ref, or an http(s) tarball URL.
func ValidateSpec(spec string) error {
	if spec == "" || strings.ContainsAny(spec, " \t\n\x00") {
		return fmt.Errorf("invalid buildpack %q", spec)
	}
	if strings.HasPrefix(spec, "/") {
		return nil
	}
	base, ref, hasRef := strings.Cut(spec, "#")
	if hasRef {
		if err := validate.GitRef(ref); err != nil {
			return fmt.Errorf("buildpack %s: %w", spec, err)
		}
	}
	if err := validate.GitURL(base); err != nil {
		return fmt.Errorf("invalid buildpack %q: use an absolute path on the server, a git URL (#ref) or a tarball URL", spec)
	}
	return nil
}

func isTarball(u string) bool {
	for _, ext := range []string{".tgz", ".tar.gz", ".tar", ".tar.bz2", ".tbz2"} {
		if strings.HasSuffix(strings.ToLower(u), ext) {
			return true
		}
	}
	return false
}

// Fetch makes the buildpack spec available as a directory under dir.
func Fetch(ctx context.Context, spec, dir string) (Pack, error) {
	if err := ValidateSpec(spec); err != nil {
		return Pack{}, err
	}
	if strings.HasPrefix(spec, "/") {
		fi, err := os.Stat(spec)
		if err != nil || !fi.IsDir() {
			return Pack{}, fmt.Errorf("buildpack %s: no such directory on the server", spec)
		}
		return Pack{Name: spec, Dir: spec}, nil
	}
	dst, err := os.MkdirTemp(dir, "buildpack-")
	if err != nil {
		return Pack{}, err
	}
	base, ref, _ := strings.Cut(spec, "#")
	if (strings.HasPrefix(base, "http://") || strings.HasPrefix(base, "https://")) && isTarball(base) {
		if err := download(ctx, base, dst); err != nil {
			return Pack{}, fmt.Errorf("fetch buildpack %s: %w", spec, err)
		}
		return Pack{Name: spec, Dir: dst}, nil
	}
	if err := clone(ctx, base, ref, dst); err != nil {
		return Pack{}, fmt.Errorf("fetch buildpack %s: %w", spec, err)
	}
	return Pack{Name: spec, Dir: dst}, nil
}

func clone(ctx context.Context, repo, ref, dst string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	args := []string{"clone", "--quiet"}
	if ref == "" {
		args = append(args, "--depth", "1")
	}
	args = append(args, "--", repo, dst)
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git clone failed: %s", strings.TrimSpace(string(out)))
	}
	if ref != "" {
		cmd := exec.CommandContext(ctx, "git", "-C", dst, "checkout", "--quiet", ref, "--")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("git checkout %s failed: %s", ref, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

func download(ctx context.Context, u, dst string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	// Tarballs often hold one top directory; strip it when they do.
	tmp := dst + ".tar"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if _, err := f.ReadFrom(http.MaxBytesReader(nil, resp.Body, 512<<20)); err != nil {
		f.Close()
		return err
	}
	f.Close()
	for _, strip := range []bool{true, false} {
		os.RemoveAll(dst)
		os.MkdirAll(dst, 0o755)
		rf, err := os.Open(tmp)
		if err != nil {
			return err
		}
		err = untar.Extract(rf, dst, strip, untar.Limits{MaxBytes: 1 << 30})
		rf.Close()
		if err == nil {
			if _, serr := os.Stat(filepath.Join(dst, "bin")); serr == nil || !strip {
				return nil
			}
			continue
		}
		if strip && strings.Contains(err.Error(), "more than one top-level") {
			continue
		}
		return err
	}
	return nil
}
