// Package images makes the base images berth needs without a registry: a
// runtime base image and a buildpack build stack, each a Debian root file
// system made with debootstrap from the host's Debian mirror and imported
// into the Docker Engine.
package images

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/moby/go-archive"

	"github.com/berth-paas/berth/internal/ui"
)

// Image is one image to make.
type Image struct {
	Ref      string   // tag, e.g. berth/base:bookworm
	Packages []string // extra packages (--include)
	Purpose  string
}

// Options of a bootstrap.
type Options struct {
	Suite  string // Debian suite; default: the host's
	Mirror string // default: the host's apt mirror
	Force  bool   // rebuild images that exist
	// CacheDir keeps downloaded packages between runs.
	CacheDir string
	TmpDir   string
}

// Standard returns the runtime and stack images for suite.
func Standard(suite string) []Image {
	return []Image{
		{Ref: "berth/base:" + suite, Packages: []string{"ca-certificates"}, Purpose: "runtime base"},
		{Ref: "berth/stack:" + suite, Packages: []string{"ca-certificates", "curl", "git", "xz-utils", "bzip2", "unzip", "procps"}, Purpose: "buildpack build stack"},
	}
}

var suiteRe = regexp.MustCompile(`^[a-z][a-z0-9-]{1,31}$`)

// HostSuite reads the host's Debian codename.
func HostSuite() (string, error) {
	data, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "", fmt.Errorf("read /etc/os-release: %w", err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VERSION_CODENAME="); ok && suiteRe.MatchString(strings.Trim(v, `"`)) {
			return strings.Trim(v, `"`), nil
		}
	}
	return "", errors.New("the host's Debian codename is unknown: pass --suite")
}

// HostMirror reads the host's Debian package mirror from apt's sources.
func HostMirror() string {
	if data, err := os.ReadFile("/etc/apt/sources.list.d/debian.sources"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(l, "URIs:"); ok {
				if f := strings.Fields(v); len(f) > 0 && !strings.Contains(f[0], "security") {
					return f[0]
				}
			}
		}
	}
	if f, err := os.Open("/etc/apt/sources.list"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) >= 3 && fs[0] == "deb" && !strings.Contains(fs[1], "security") {
				if strings.HasPrefix(fs[1], "[") && len(fs) >= 4 {
					return fs[2]
				}
				return fs[1]
			}
		}
	}
	return "http://deb.debian.org/debian"
}

// Bootstrap makes images that do not exist yet (all of them with Force).
func Bootstrap(ctx context.Context, cli *client.Client, imgs []Image, o Options, out io.Writer) error {
	if o.Suite == "" || !suiteRe.MatchString(o.Suite) {
		return fmt.Errorf("invalid Debian suite %q", o.Suite)
	}
	if u, err := url.Parse(o.Mirror); err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "file") {
		return fmt.Errorf("invalid mirror %q: use an http(s) or file URL", o.Mirror)
	}
	var todo []Image
	for _, img := range imgs {
		if _, err := cli.ImageInspect(ctx, img.Ref); err == nil && !o.Force {
			ui.Step(out, "%s (%s) is already present", img.Ref, img.Purpose)
			continue
		} else if err != nil && !client.IsErrNotFound(err) {
			return fmt.Errorf("inspect %s: %w", img.Ref, err)
		}
		todo = append(todo, img)
	}
	if len(todo) == 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		return errors.New("debootstrap needs root: run berth server as root to bootstrap images")
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return errors.New("debootstrap is not installed: run `apt-get install debootstrap`")
	}
	if err := os.MkdirAll(o.CacheDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", o.CacheDir, err)
	}
	for _, img := range todo {
		if err := bootstrapOne(ctx, cli, img, o, out); err != nil {
			return fmt.Errorf("bootstrap %s: %w", img.Ref, err)
		}
	}
	return nil
}

func bootstrapOne(ctx context.Context, cli *client.Client, img Image, o Options, out io.Writer) error {
	ui.Step(out, "Making %s (%s) from Debian %s at %s", img.Ref, img.Purpose, o.Suite, o.Mirror)
	root, err := os.MkdirTemp(o.TmpDir, "rootfs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	args := []string{"--variant=minbase", "--cache-dir=" + o.CacheDir}
	if len(img.Packages) > 0 {
		args = append(args, "--include="+strings.Join(img.Packages, ","))
	}
	args = append(args, o.Suite, root, o.Mirror)
	cmd := exec.CommandContext(ctx, "debootstrap", args...)
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		pw.Close()
		pr.Close()
		return fmt.Errorf("start debootstrap: %w", err)
	}
	pw.Close()
	// Keep debootstrap's I: lines that say what it is doing; drop its
	// per-package noise.
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		l := sc.Text()
		if noise(l) {
			continue
		}
		ui.Detail(out, "%s", l)
	}
	pr.Close()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("debootstrap failed: %w", err)
	}
	for _, junk := range []string{"var/cache/apt/archives", "var/lib/apt/lists"} {
		entries, _ := os.ReadDir(filepath.Join(root, junk))
		for _, e := range entries {
			if !e.IsDir() {
				os.Remove(filepath.Join(root, junk, e.Name()))
			}
		}
	}
	ui.Detail(out, "Importing the root file system into the Docker Engine")
	rd, err := archive.TarWithOptions(root, &archive.TarOptions{})
	if err != nil {
		return fmt.Errorf("pack the root file system: %w", err)
	}
	defer rd.Close()
	resp, err := cli.ImageImport(ctx, image.ImportSource{Source: rd, SourceName: "-"}, img.Ref, image.ImportOptions{
		Changes: []string{`ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`, `CMD ["/bin/bash"]`},
	})
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	defer resp.Close()
	dec := json.NewDecoder(resp)
	for {
		var m struct {
			Error  string `json:"error"`
			Status string `json:"status"`
		}
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return fmt.Errorf("import: %w", err)
		}
		if m.Error != "" {
			return fmt.Errorf("import: %s", m.Error)
		}
	}
	ui.Detail(out, "%s is ready", img.Ref)
	return nil
}

func noise(l string) bool {
	for _, p := range []string{"I: Retrieving", "I: Validating", "I: Extracting", "I: Unpacking ", "I: Configuring "} {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	return false
}
