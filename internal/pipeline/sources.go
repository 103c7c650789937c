package pipeline

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"

	"github.com/berth-paas/berth/internal/appjson"
	"github.com/berth-paas/berth/internal/procfile"
	"github.com/berth-paas/berth/internal/scheduler"
	"github.com/berth-paas/berth/internal/ui"
	"github.com/berth-paas/berth/internal/untar"
	"github.com/berth-paas/berth/internal/validate"
)

// Registry credentials are kept sealed, one setting per server.
const registryPrefix = "registry-auth:"

// RegistryAuth is a stored registry login.
type RegistryAuth struct {
	Server   string `json:"server"`
	Username string `json:"username"`
	Password string `json:"password"`
}

// SaveRegistryAuth stores a login for server (after checking it with the
// registry through the engine).
func (p *Pipeline) SaveRegistryAuth(ctx context.Context, a RegistryAuth) error {
	if _, err := p.docker.RegistryLogin(ctx, registry.AuthConfig{Username: a.Username, Password: a.Password, ServerAddress: a.Server}); err != nil {
		return fmt.Errorf("log in to %s: %w", a.Server, err)
	}
	b, _ := json.Marshal(a)
	return p.store.SetSecretSetting(ctx, registryPrefix+a.Server, string(b))
}

// RemoveRegistryAuth forgets the login for server.
func (p *Pipeline) RemoveRegistryAuth(ctx context.Context, server string) error {
	return p.store.SetSecretSetting(ctx, registryPrefix+server, "")
}

// registryAuth returns the stored login for server, if any.
func (p *Pipeline) registryAuth(ctx context.Context, server string) (*RegistryAuth, error) {
	v, ok, err := p.store.SecretSetting(ctx, registryPrefix+server)
	if err != nil || !ok || v == "" {
		return nil, err
	}
	var a RegistryAuth
	if err := json.Unmarshal([]byte(v), &a); err != nil {
		return nil, fmt.Errorf("read the login for %s: %w", server, err)
	}
	return &a, nil
}

// ParseImageRef validates an image reference (name[:tag][@digest]).
func ParseImageRef(s string) (reference.Named, error) {
	if strings.HasPrefix(s, "-") || len(s) > 512 {
		return nil, fmt.Errorf("invalid image reference %q", s)
	}
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return nil, fmt.Errorf("invalid image reference %q: %v", s, err)
	}
	return reference.TagNameOnly(named), nil
}

// DeployImage deploys a prebuilt image as a new release: taken from the
// local engine when present, else pulled (with the stored registry login
// for its server). Its Procfile and app.json, if the image carries them in
// its working directory, are read as for a pushed tree.
func (p *Pipeline) DeployImage(ctx context.Context, app, ref, by string, out io.Writer) error {
	named, err := ParseImageRef(ref)
	if err != nil {
		return err
	}
	a, release, err := p.lockApp(ctx, app, out)
	if err != nil {
		return err
	}
	defer release()
	ctx = withPhases(ctx, "receive")
	p.event(ctx, app, "deploy", "git:from-image %s started by %s", named, by)
	src := source{kind: "docker-image", meta: named.String()}
	b, err := p.recordBuild(ctx, app, src, BuilderImage, out, func(out io.Writer) (built, error) {
		phase(ctx, "build")
		id, err := p.pullImage(ctx, named, out)
		if err != nil {
			return built{}, err
		}
		return built{imageID: id, builder: BuilderImage}, nil
	})
	if err != nil {
		p.event(ctx, app, "deploy-failed", "git:from-image %s failed: %v", named, err)
		return err
	}
	procs, aj, err := p.imageMetadata(ctx, b.imageID, out)
	if err != nil {
		return err
	}
	if len(nonRelease(procs)) == 0 {
		img, err := p.docker.ImageInspect(ctx, b.imageID)
		if err != nil {
			return fmt.Errorf("inspect image: %w", err)
		}
		if img.Config == nil || (len(img.Config.Cmd) == 0 && len(img.Config.Entrypoint) == 0) {
			return errors.New("the image has no CMD or ENTRYPOINT and no Procfile")
		}
		procs["web"] = ""
	}
	err = p.release(ctx, a, b, procs, aj, src, "git:from-image "+named.String(), by, out)
	if err != nil {
		p.event(ctx, app, "deploy-failed", "git:from-image %s failed: %v", named, err)
	}
	return err
}

// pullImage returns the id of ref, pulling it when the engine lacks it.
func (p *Pipeline) pullImage(ctx context.Context, ref reference.Named, out io.Writer) (string, error) {
	if img, err := p.docker.ImageInspect(ctx, ref.String()); err == nil {
		ui.Step(out, "Using image %s from the local engine", ref)
		return img.ID, nil
	}
	server := reference.Domain(ref)
	ui.Step(out, "Pulling %s", ref)
	opts := image.PullOptions{}
	if a, err := p.registryAuth(ctx, server); err != nil {
		return "", err
	} else if a != nil {
		enc, err := registry.EncodeAuthConfig(registry.AuthConfig{Username: a.Username, Password: a.Password, ServerAddress: server})
		if err != nil {
			return "", err
		}
		opts.RegistryAuth = enc
		ui.Detail(out, "with the login of %s for %s", a.Username, server)
	}
	rc, err := p.docker.ImagePull(ctx, ref.String(), opts)
	if err != nil {
		return "", fmt.Errorf("pull %s: %w", ref, err)
	}
	defer rc.Close()
	dec := json.NewDecoder(rc)
	last := ""
	for {
		var m struct {
			Status string `json:"status"`
			ID     string `json:"id"`
			Error  string `json:"error"`
		}
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return "", fmt.Errorf("pull %s: %w", ref, err)
		}
		if m.Error != "" {
			return "", fmt.Errorf("pull %s: %s", ref, m.Error)
		}
		if m.Status != "" && m.Status != last && m.ID == "" {
			ui.Detail(out, "%s", m.Status)
			last = m.Status
		}
	}
	img, err := p.docker.ImageInspect(ctx, ref.String())
	if err != nil {
		return "", fmt.Errorf("inspect %s after the pull: %w", ref, err)
	}
	return img.ID, nil
}

// imageMetadata reads Procfile and app.json from an image's working dir.
func (p *Pipeline) imageMetadata(ctx context.Context, imageID string, out io.Writer) (map[string]string, *appjson.AppJSON, error) {
	procs := map[string]string{}
	aj := &appjson.AppJSON{}
	img, err := p.docker.ImageInspect(ctx, imageID)
	if err != nil {
		return nil, nil, fmt.Errorf("inspect image: %w", err)
	}
	dir := "/"
	if img.Config != nil && img.Config.WorkingDir != "" {
		dir = img.Config.WorkingDir
	}
	c, err := p.docker.ContainerCreate(ctx, &container.Config{Image: imageID, Labels: map[string]string{"berth.kind": "probe", scheduler.LabelApp: "", scheduler.LabelInstance: p.sched.Instance()}},
		&container.HostConfig{NetworkMode: "none"}, nil, nil, "")
	if err != nil {
		return nil, nil, fmt.Errorf("read the image's files: %w", err)
	}
	defer p.docker.ContainerRemove(context.WithoutCancel(ctx), c.ID, container.RemoveOptions{Force: true})
	read := func(name string) ([]byte, error) {
		rc, _, err := p.docker.CopyFromContainer(ctx, c.ID, path.Join(dir, name))
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		tr := tar.NewReader(rc)
		if _, err := tr.Next(); err != nil {
			return nil, err
		}
		return io.ReadAll(io.LimitReader(tr, 1<<20))
	}
	if data, err := read("Procfile"); err == nil {
		if procs, err = procfile.Parse(data); err != nil {
			return nil, nil, err
		}
		ui.Detail(out, "Using the Procfile of the image (%s)", path.Join(dir, "Procfile"))
	}
	if data, err := read("app.json"); err == nil {
		if aj, err = appjson.Parse(data); err != nil {
			return nil, nil, err
		}
		ui.Detail(out, "Using the app.json of the image (%s)", path.Join(dir, "app.json"))
	}
	return procs, aj, nil
}

// DeployArchive builds and deploys a tarball (from an http(s) URL, or from
// r when url is "-"). Entries that would land outside the build directory
// are refused before anything is built.
func (p *Pipeline) DeployArchive(ctx context.Context, app, archiveURL string, r io.Reader, by string, out io.Writer) error {
	if archiveURL != "-" {
		u, err := url.Parse(archiveURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("invalid archive URL %q: use http(s)://… or - for stdin", archiveURL)
		}
	}
	a, release, err := p.lockApp(ctx, app, out)
	if err != nil {
		return err
	}
	defer release()
	ctx = withPhases(ctx, "receive")
	p.event(ctx, app, "deploy", "git:from-archive %s started by %s", archiveURL, by)
	if archiveURL != "-" {
		ui.Step(out, "Downloading %s", archiveURL)
		req, err := http.NewRequestWithContext(ctx, "GET", archiveURL, nil)
		if err != nil {
			return err
		}
		client := &http.Client{Timeout: 10 * time.Minute}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("download %s: %w", archiveURL, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("download %s: HTTP %s", archiveURL, resp.Status)
		}
		r = resp.Body
	}
	tmp, err := p.tmpDir()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(tmp, app+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := untar.Extract(r, dir, false, untar.Limits{}); err != nil {
		return fmt.Errorf("unpack the archive: %w", err)
	}
	if err := p.fire(ctx, out, "post-extract", app, dir, ""); err != nil {
		return err
	}
	err = p.buildAndDeploy(ctx, a, source{dir: dir, kind: "archive", meta: archiveURL}, "git:from-archive", by, out)
	if err != nil {
		p.event(ctx, app, "deploy-failed", "git:from-archive failed: %v", err)
	}
	return err
}

// ValidGitURL checks a repository for git:sync: a git URL, or an absolute
// path to a repository on the server.
func ValidGitURL(s string) error {
	if strings.HasPrefix(s, "/") && !strings.ContainsAny(s, "\x00\n") {
		return nil
	}
	return validate.GitURL(s)
}

// Sync fetches ref (default: the remote's HEAD) of a remote repository into
// app's repository as its deploy branch, and with build deploys it.
func (p *Pipeline) Sync(ctx context.Context, app, repoURL, ref string, build bool, by string, out io.Writer) error {
	if err := ValidGitURL(repoURL); err != nil {
		return err
	}
	if ref != "" {
		if err := validate.GitRef(ref); err != nil {
			return err
		}
	}
	_, release, err := p.lockApp(ctx, app, out)
	if err != nil {
		return err
	}
	defer release()
	repo, err := p.EnsureRepo(ctx, app)
	if err != nil {
		return err
	}
	fetchRef := ref
	if fetchRef == "" {
		fetchRef = "HEAD"
	}
	ui.Step(out, "Syncing %s from %s (%s)", app, repoURL, fetchRef)
	cmd := exec.CommandContext(ctx, "git", "-C", repo, "fetch", "--quiet", "--force", "--", repoURL, fetchRef)
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
	if o, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git fetch %s %s: %s", repoURL, fetchRef, strings.TrimSpace(string(o)))
	}
	o, err := exec.CommandContext(ctx, "git", "-C", repo, "rev-parse", "FETCH_HEAD^{commit}").Output()
	if err != nil {
		return fmt.Errorf("read the fetched revision: %w", err)
	}
	rev := strings.TrimSpace(string(o))
	if o, err := exec.CommandContext(ctx, "git", "-C", repo, "update-ref", "refs/heads/main", rev).CombinedOutput(); err != nil {
		return fmt.Errorf("update main: %s", strings.TrimSpace(string(o)))
	}
	ui.Detail(out, "main is now %s", short(rev))
	if !build {
		return nil
	}
	return p.deployRev(withPhases(ctx, "receive"), app, rev, nil, "git:sync", by, out)
}
