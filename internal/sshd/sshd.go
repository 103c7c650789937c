// Package sshd is berth's SSH door: public-key authentication against the
// keys added with ssh-keys:add, `git push` to APP (the real git
// receive-pack), and every other command through the command registry.
package sshd

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	"github.com/kballard/go-shellquote"
	gossh "golang.org/x/crypto/ssh"

	"github.com/berth-paas/berth/internal/commands"
	"github.com/berth-paas/berth/internal/pipeline"
	"github.com/berth-paas/berth/internal/plugins"
	"github.com/berth-paas/berth/internal/store"
	"github.com/berth-paas/berth/internal/ui"
	"github.com/berth-paas/berth/internal/validate"
)

type ctxKey struct{}

// Server is the SSH server.
type Server struct {
	Store    *store.Store
	Registry *commands.Registry
	Pipeline *pipeline.Pipeline
	// DataDir is passed to git hooks so they find the command socket.
	DataDir string
	Logger  *slog.Logger

	srv *gliderssh.Server
}

// HostSigner returns the server's host key, generating and storing an
// ed25519 key on first use.
func HostSigner(ctx context.Context, st *store.Store) (gossh.Signer, error) {
	v, ok, err := st.SecretSetting(ctx, "ssh-host-key")
	if err != nil {
		return nil, err
	}
	if !ok {
		// Earlier versions kept the key unsealed: seal it, keep the identity.
		if plain, found, err := st.Setting(ctx, "", "ssh-host-key"); err == nil && found {
			if err := st.SetSecretSetting(ctx, "ssh-host-key", plain); err != nil {
				return nil, err
			}
			if err := st.SetSetting(ctx, "", "ssh-host-key", ""); err != nil {
				return nil, err
			}
			v, ok = plain, true
		}
	}
	if !ok {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate SSH host key: %w", err)
		}
		block, err := gossh.MarshalPrivateKey(priv, "berth host key")
		if err != nil {
			return nil, fmt.Errorf("encode SSH host key: %w", err)
		}
		v = string(pem.EncodeToMemory(block))
		if err := st.SetSecretSetting(ctx, "ssh-host-key", v); err != nil {
			return nil, err
		}
	}
	signer, err := gossh.ParsePrivateKey([]byte(v))
	if err != nil {
		return nil, fmt.Errorf("read SSH host key: %w", err)
	}
	return signer, nil
}

// ListenAndServe serves SSH on addr until ctx is done.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	signer, err := HostSigner(ctx, s.Store)
	if err != nil {
		return err
	}
	s.srv = &gliderssh.Server{
		Addr:             addr,
		Handler:          s.handle,
		PublicKeyHandler: s.authorize,
		IdleTimeout:      30 * time.Minute,
	}
	s.srv.AddHostKey(signer)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen for SSH on %s: %w", addr, err)
	}
	s.Logger.Info("SSH server listening", "addr", l.Addr().String())
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.srv.Shutdown(sctx)
	}()
	if err := s.srv.Serve(l); err != nil && !errors.Is(err, gliderssh.ErrServerClosed) {
		return fmt.Errorf("serve SSH: %w", err)
	}
	return nil
}

func (s *Server) authorize(ctx gliderssh.Context, key gliderssh.PublicKey) bool {
	fp := gossh.FingerprintSHA256(key)
	k, err := s.Store.KeyByFingerprint(ctx, fp)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.Logger.Warn("look up SSH key", "err", err)
		}
		return false
	}
	ctx.SetValue(ctxKey{}, k.Name)
	return true
}

func (s *Server) handle(sess gliderssh.Session) {
	ctx := sess.Context()
	keyName, _ := ctx.Value(ctxKey{}).(string)
	caller := commands.Caller{Name: keyName, User: sess.User()}
	// Split like a shell would split words, but take no operator (;, &,
	// |) as syntax: a value such as a=1&b=2 stays one argument.
	args, err := shellquote.Split(sess.RawCommand())
	if err != nil {
		ui.Warn(sess.Stderr(), "Cannot parse the command: %v.", err)
		sess.Exit(1)
		return
	}
	s.Logger.Info("ssh command", "key", keyName, "remote", sess.RemoteAddr().String(), "command", firstWords(args))
	var code int
	switch {
	case len(args) > 0 && (args[0] == "git-receive-pack" || args[0] == "git-upload-pack"):
		code = s.git(ctx, sess, caller, args)
	default:
		code = s.Registry.Run(ctx, args, sess, sess, sess.Stderr(), caller, nil)
	}
	sess.Exit(code)
}

func firstWords(args []string) string {
	if len(args) > 2 {
		args = args[:2]
	}
	return strings.Join(args, " ")
}

var gitProtocolRe = regexp.MustCompile(`^[a-z0-9=:.,-]{1,64}$`)

// appFromRepoPath turns a git remote path ("/shop", "shop.git") into an app name.
func appFromRepoPath(p string) (string, error) {
	name := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(p, "~/"), "/"), ".git")
	if err := validate.AppName(name); err != nil {
		return "", err
	}
	return name, nil
}

func (s *Server) git(ctx gliderssh.Context, sess gliderssh.Session, caller commands.Caller, args []string) int {
	stderr := sess.Stderr()
	fail := func(format string, a ...any) int {
		ui.Warn(stderr, format, a...)
		return 1
	}
	if len(args) != 2 {
		return fail("Usage: %s <app>.", args[0])
	}
	app, err := appFromRepoPath(args[1])
	if err != nil {
		return fail("%s.", err)
	}
	// user-auth plugins' stderr reaches the pusher.
	if err := s.Registry.Authorize(plugins.WithOutput(ctx, stderr), caller, []string{args[0], app}); err != nil {
		return fail("%s.", strings.TrimSuffix(err.Error(), "."))
	}
	env := []string{"BERTH_DATA_DIR=" + s.DataDir, "BERTH_PUSHER=" + caller.Name}
	for _, kv := range sess.Environ() {
		if k, v, _ := strings.Cut(kv, "="); k == "GIT_PROTOCOL" && gitProtocolRe.MatchString(v) {
			env = append(env, kv)
		}
	}
	_, err = s.Store.App(ctx, app)
	exists := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fail("%s.", err)
	}

	if args[0] == "git-upload-pack" {
		if !exists {
			return fail("App %s does not exist.", app)
		}
		repo := s.Pipeline.RepoPath(app)
		if _, err := os.Stat(repo); err != nil {
			return fail("App %s has no git repository yet: push it first.", app)
		}
		return s.runGit(ctx, sess, env, "upload-pack", repo)
	}

	if !exists {
		off, err := commands.AutocreationDisabled(ctx, s.Store)
		if err != nil {
			return fail("%s.", err)
		}
		if off {
			return fail("App auto-creation is disabled: create the app with 'apps:create %s' first.", app)
		}
		ui.Step(stderr, "Creating %s...", app)
		if err := s.Pipeline.CreateApp(ctx, app, stderr); err != nil && !errors.Is(err, store.ErrExists) {
			return fail("Create app %s: %v.", app, err)
		}
	}
	release, token, err := s.Pipeline.Lock(ctx, app, stderr)
	if err != nil {
		return fail("%s.", err)
	}
	defer release()
	repo, err := s.Pipeline.EnsureRepo(ctx, app)
	if err != nil {
		return fail("%s.", err)
	}
	env = append(env, "BERTH_LOCK_TOKEN="+token)
	return s.runGit(ctx, sess, env, "receive-pack", repo)
}

func (s *Server) runGit(ctx context.Context, sess gliderssh.Session, env []string, sub, repo string) int {
	cmd := exec.CommandContext(ctx, "git", sub, repo)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = sess
	cmd.Stdout = sess
	cmd.Stderr = sess.Stderr()
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		ui.Warn(sess.Stderr(), "git %s failed: %v.", sub, err)
		return 1
	}
	return 0
}
