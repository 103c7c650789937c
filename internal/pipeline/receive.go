package pipeline

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/moby/go-archive"
)

// DeployBranches are the branches a push deploys.
var DeployBranches = []string{"main", "master"}

var revRe = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)

// RepoPath is the bare git repository of app.
func (p *Pipeline) RepoPath(app string) string {
	return filepath.Join(p.opts.DataDir, "repos", app+".git")
}

// EnsureRepo creates app's bare repository if needed and (re)installs its
// pre-receive hook, which calls back into berth to deploy the pushed revision.
func (p *Pipeline) EnsureRepo(ctx context.Context, app string) (string, error) {
	repo := p.RepoPath(app)
	if _, err := os.Stat(filepath.Join(repo, "HEAD")); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(repo), 0o755); err != nil {
			return "", fmt.Errorf("create repos directory: %w", err)
		}
		if out, err := exec.CommandContext(ctx, "git", "init", "--bare", "--quiet", "--initial-branch=main", repo).CombinedOutput(); err != nil {
			return "", fmt.Errorf("create git repository for %s: %v: %s", app, err, bytes.TrimSpace(out))
		}
	} else if err != nil {
		return "", fmt.Errorf("check git repository of %s: %w", app, err)
	}
	hook := filepath.Join(repo, "hooks", "pre-receive")
	if target, err := os.Readlink(hook); err != nil || target != p.opts.Executable {
		if err := os.MkdirAll(filepath.Dir(hook), 0o755); err != nil {
			return "", fmt.Errorf("create hooks directory: %w", err)
		}
		tmp := hook + ".tmp"
		os.Remove(tmp)
		if err := os.Symlink(p.opts.Executable, tmp); err != nil {
			return "", fmt.Errorf("install pre-receive hook: %w", err)
		}
		if err := os.Rename(tmp, hook); err != nil {
			return "", fmt.Errorf("install pre-receive hook: %w", err)
		}
	}
	return repo, nil
}

// PushedRef is one line a pre-receive hook reads: old and new revision of a ref.
type PushedRef struct{ Old, New, Ref string }

// ParsePushedRefs reads pre-receive hook input and returns the revision to
// deploy. Only one deploy branch may be pushed; other refs, deletions and
// malformed lines are refused with a clear error.
func ParsePushedRefs(r io.Reader) (PushedRef, error) {
	var deploy *PushedRef
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 || !revRe.MatchString(f[0]) || !revRe.MatchString(f[1]) {
			return PushedRef{}, fmt.Errorf("malformed ref update %q", sc.Text())
		}
		ref := PushedRef{Old: f[0], New: f[1], Ref: f[2]}
		branch, ok := strings.CutPrefix(ref.Ref, "refs/heads/")
		if !ok || !isDeployBranch(branch) {
			return PushedRef{}, fmt.Errorf("pushing %s is not supported: push to main or master (for example: git push berth HEAD:main)", ref.Ref)
		}
		if strings.Trim(ref.New, "0") == "" {
			return PushedRef{}, fmt.Errorf("deleting branch %s is not supported", branch)
		}
		if deploy != nil {
			return PushedRef{}, errors.New("push one deploy branch at a time (main or master)")
		}
		deploy = &ref
	}
	if err := sc.Err(); err != nil {
		return PushedRef{}, fmt.Errorf("read pushed refs: %w", err)
	}
	if deploy == nil {
		return PushedRef{}, errors.New("nothing to deploy: no branch was pushed")
	}
	return *deploy, nil
}

func isDeployBranch(b string) bool {
	for _, d := range DeployBranches {
		if b == d {
			return true
		}
	}
	return false
}

// extract writes the tree of rev in app's repository into dst. gitEnv
// carries the quarantine variables of a push in progress, if any.
func (p *Pipeline) extract(ctx context.Context, app, rev string, gitEnv []string, dst string) error {
	if !revRe.MatchString(rev) {
		return fmt.Errorf("invalid git revision %q", rev)
	}
	cmd := exec.CommandContext(ctx, "git", "archive", "--format=tar", rev)
	cmd.Dir = p.RepoPath(app)
	cmd.Env = append(os.Environ(), gitEnv...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("export %s: %w", rev, err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("export %s: %w", rev, err)
	}
	untarErr := archive.Untar(stdout, dst, &archive.TarOptions{NoLchown: true})
	io.Copy(io.Discard, stdout)
	waitErr := cmd.Wait()
	if waitErr != nil {
		return fmt.Errorf("export %s: %v: %s", short(rev), waitErr, bytes.TrimSpace(stderr.Bytes()))
	}
	if untarErr != nil {
		return fmt.Errorf("unpack %s: %w", short(rev), untarErr)
	}
	return nil
}

func short(rev string) string {
	if len(rev) > 7 {
		return rev[:7]
	}
	return rev
}

func indent(s string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(s, "\n") {
		if line == "" {
			continue
		}
		b.WriteString("       ")
		b.WriteString(line)
		if !strings.HasSuffix(line, "\n") {
			b.WriteString("\n")
		}
	}
	return b.String()
}
