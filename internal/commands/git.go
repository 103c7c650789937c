package commands

import (
	"context"
	"strings"

	"github.com/berth-paas/berth/internal/pipeline"
	"github.com/berth-paas/berth/internal/plugins"
	"github.com/berth-paas/berth/internal/ui"
)

// gitHookEnv lists the variables the pre-receive hook forwards: git's
// quarantine (the pushed objects are not in the repository yet) and the
// push's lock token and pusher.
var gitHookEnv = []string{"GIT_QUARANTINE_PATH", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES"}

// GitHookEnv is the list of environment variables the hook client sends.
func GitHookEnv() []string {
	return append([]string{"BERTH_LOCK_TOKEN", "BERTH_PUSHER"}, gitHookEnv...)
}

func (h *handlers) registerGit(r *Registry) {
	r.AddNamespace("git", "Deploy apps with git")
	r.Add(&Command{Name: "git:hook", Usage: "<app>", Help: "Deploy a push (run by the repository's pre-receive hook)",
		MinArgs: 1, MaxArgs: 1, LocalOnly: true, Hidden: true, Run: h.gitHook})
}

func (h *handlers) gitHook(ctx context.Context, c *Call) error {
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return err
	}
	ref, err := pipeline.ParsePushedRefs(c.Stdin)
	if err != nil {
		return err
	}
	var gitEnv []string
	for _, k := range gitHookEnv {
		if v, ok := c.Env[k]; ok && !strings.ContainsRune(v, 0) {
			gitEnv = append(gitEnv, k+"="+v)
		}
	}
	by := c.Env["BERTH_PUSHER"]
	if by == "" {
		by = c.Caller.Name
	}
	// Plugins fired by the deploy see the pusher as SSH_NAME, as in Dokku.
	ctx = plugins.WithCaller(ctx, "", by)
	err = h.Pipeline.DeployGit(ctx, pipeline.GitDeploy{
		App: a.Name, Rev: ref.New, GitEnv: gitEnv, LockToken: c.Env["BERTH_LOCK_TOKEN"], By: by,
	}, c.Stdout)
	if err != nil {
		ui.Warn(c.Stdout, "Deploy failed: %s", sentence(err))
		return Exit(1, "")
	}
	return nil
}
