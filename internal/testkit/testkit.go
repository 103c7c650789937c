// Package testkit runs berth for real, for the end-to-end tests and the
// benchmarks: it builds the binaries, starts `berth server` on loopback
// ports with a data dir of its own, and pushes fixture apps with the real
// git and ssh clients. Fixture apps are static Go binaries in images FROM
// scratch, so nothing is ever pulled.
package testkit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Binaries are the programs a run needs.
type Binaries struct {
	Berth   string // the berth binary under test
	Fixture string // the fixture app (e2e/testdata/fixture)
}

// CheckTools fails when a tool berth's tests need is missing or the Docker
// Engine does not answer.
func CheckTools() error {
	for _, tool := range []string{"docker", "git", "ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is required (run scripts/install-deps.sh): %w", tool, err)
		}
	}
	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		return fmt.Errorf("the Docker Engine does not answer (run scripts/install-deps.sh): %v\n%s", err, out)
	}
	return nil
}

// Build compiles berth and the fixture app (statically) into dir. root is
// the repository root.
func Build(root, dir string) (Binaries, error) {
	b := Binaries{Berth: filepath.Join(dir, "berth"), Fixture: filepath.Join(dir, "fixture")}
	for out, pkg := range map[string]string{b.Berth: "./cmd/berth", b.Fixture: "./e2e/testdata/fixture"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if o, err := cmd.CombinedOutput(); err != nil {
			return b, fmt.Errorf("build %s: %v\n%s", pkg, err, o)
		}
	}
	return b, nil
}

// NewKey makes an ed25519 key pair in dir and returns the private key path
// and the public key.
func NewKey(dir, name string) (string, []byte, error) {
	key := filepath.Join(dir, name)
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		return "", nil, fmt.Errorf("ssh-keygen: %v %s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	return key, pub, err
}

// FreePort returns a loopback TCP port that is free now.
func FreePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port, nil
}

// LockedBuffer is a bytes.Buffer safe for concurrent writers.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Server is a berth server process.
type Server struct {
	Bin      string
	DataDir  string
	HTTPAddr string
	// HTTPSAddr is the HTTPS proxy address; "" (the default) disables HTTPS.
	HTTPSAddr string
	SSHPort   string
	Domain    string
	// Key is the private key registered as "e2e" by Setup.
	Key string
	Log *LockedBuffer
	cmd *exec.Cmd
}

// NewServer prepares a server with a new data dir under dir and free ports.
func NewServer(bin, dir string) (*Server, error) {
	data, err := os.MkdirTemp(dir, "data-")
	if err != nil {
		return nil, err
	}
	hp, err := FreePort()
	if err != nil {
		return nil, err
	}
	sp, err := FreePort()
	if err != nil {
		return nil, err
	}
	return &Server{Bin: bin, DataDir: data, HTTPAddr: "127.0.0.1:" + hp, SSHPort: sp, Domain: "berth.test", Log: &LockedBuffer{}}, nil
}

// Start starts (or restarts) the server process and waits until its command
// socket and SSH port answer.
func (s *Server) Start() error {
	s.cmd = exec.Command(s.Bin, "server", "--data-dir", s.DataDir, "--http-addr", s.HTTPAddr,
		"--https-addr", s.HTTPSAddr, "--ssh-addr", "127.0.0.1:"+s.SSHPort, "--domain", s.Domain, "--log-level", "debug")
	s.cmd.Stdout, s.cmd.Stderr = s.Log, s.Log
	if err := s.cmd.Start(); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, code := s.Run("", "apps:list"); code == 0 {
			if c, err := net.Dial("tcp", "127.0.0.1:"+s.SSHPort); err == nil {
				c.Close()
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server did not start:\n%s", s.Log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// PID is the server's process id (0 when not running).
func (s *Server) PID() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// AddKey registers the public key pub as name.
func (s *Server) AddKey(name string, pub []byte) error {
	if out, code := s.Run(string(pub), "ssh-keys:add", name); code != 0 {
		return fmt.Errorf("ssh-keys:add %s: %s", name, out)
	}
	return nil
}

// Stop signals the server and waits for it to exit (killing it after 45 s).
func (s *Server) Stop(sig syscall.Signal) {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(45 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
	s.cmd = nil
}

// Run runs a berth command through the local CLI and returns its stdout and
// stderr (interleaved) and exit code.
func (s *Server) Run(stdin string, args ...string) (string, int) {
	out, _, code := s.RunSplit(stdin, args...)
	return out, code
}

// RunSplit is Run that also returns stderr alone.
func (s *Server) RunSplit(stdin string, args ...string) (string, string, int) {
	cmd := exec.Command(s.Bin, append([]string{"--data-dir", s.DataDir}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var all, errb LockedBuffer
	cmd.Stdout = &all
	cmd.Stderr = io.MultiWriter(&all, &errb)
	err := cmd.Run()
	return all.String(), errb.String(), ExitCode(err)
}

// SSHOptions are the ssh client options for talking to the server with key.
func SSHOptions(key string) []string {
	return []string{"-i", key, "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes"}
}

// SSH runs a berth command over SSH with the real ssh client.
func (s *Server) SSH(key, stdin string, args ...string) (string, int) {
	all := append(SSHOptions(key), "-p", s.SSHPort, "git@127.0.0.1")
	cmd := exec.Command("ssh", append(all, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), ExitCode(err)
}

// Push pushes repo to app with git over SSH. extra holds git push flags
// (-f…) and refspecs (main:refs/heads/x); the default refspec is main.
func (s *Server) Push(ctx context.Context, repo *Repo, app, key string, extra ...string) (string, int) {
	args := []string{"push"}
	var refspecs []string
	for _, e := range extra {
		if strings.HasPrefix(e, "-") {
			args = append(args, e)
		} else {
			refspecs = append(refspecs, e)
		}
	}
	if len(refspecs) == 0 {
		refspecs = []string{"main"}
	}
	args = append(args, fmt.Sprintf("ssh://git@127.0.0.1:%s/%s", s.SSHPort, app))
	args = append(args, refspecs...)
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = repo.Dir
	cmd.Env = append(os.Environ(), "GIT_SSH_COMMAND=ssh "+strings.Join(SSHOptions(key), " "))
	out, err := cmd.CombinedOutput()
	return string(out), ExitCode(err)
}

// ExitCode returns the exit code an exec error stands for (0 for nil).
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// Repo is a git work tree of a fixture app.
type Repo struct {
	Dir string
}

// NewRepo makes a git repository in dir holding the fixture binary, a
// Dockerfile running it, and the given extra files.
func NewRepo(dir, fixture string, files map[string]string) (*Repo, error) {
	data, err := os.ReadFile(fixture)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "fixture"), data, 0o755); err != nil {
		return nil, err
	}
	base := map[string]string{"Dockerfile": "FROM scratch\nCOPY fixture /fixture\nCMD [\"/fixture\"]\n"}
	for k, v := range files {
		base[k] = v
	}
	r := &Repo{Dir: dir}
	if _, err := r.Git("init", "-q", "-b", "main"); err != nil {
		return nil, err
	}
	if err := r.Write(base); err != nil {
		return nil, err
	}
	return r, r.Commit("initial")
}

// Git runs git in the repository.
func (r *Repo) Git(args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = r.Dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=e2e", "GIT_AUTHOR_EMAIL=e2e@berth.test", "GIT_COMMITTER_NAME=e2e", "GIT_COMMITTER_EMAIL=e2e@berth.test")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Write writes files (an empty content deletes the file).
func (r *Repo) Write(files map[string]string) error {
	for name, content := range files {
		p := filepath.Join(r.Dir, name)
		if content == "" {
			os.Remove(p)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Commit commits everything (even nothing).
func (r *Repo) Commit(msg string) error {
	if _, err := r.Git("add", "-A"); err != nil {
		return err
	}
	_, err := r.Git("commit", "-q", "--allow-empty", "-m", msg)
	return err
}

// RepoRoot finds the repository root (the directory holding go.mod) from the
// working directory up.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside the berth repository")
		}
		dir = parent
	}
}

// Env is a running server with everything a benchmark needs: binaries
// built from the repository, a temporary dir, and an SSH key registered.
type Env struct {
	Dir    string
	Bins   Binaries
	Key    string // private key registered as "bench"
	Server *Server
}

// NewEnv checks the tools, builds berth and the fixture, starts a server
// on loopback with a new data dir and registers a key. Close stops it all.
func NewEnv() (*Env, error) {
	if err := CheckTools(); err != nil {
		return nil, err
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "berth-bench-")
	if err != nil {
		return nil, err
	}
	e := &Env{Dir: dir}
	fail := func(err error) (*Env, error) {
		e.Close()
		return nil, err
	}
	if e.Bins, err = Build(root, dir); err != nil {
		return fail(err)
	}
	key, pub, err := NewKey(dir, "key")
	if err != nil {
		return fail(err)
	}
	e.Key = key
	if e.Server, err = NewServer(e.Bins.Berth, dir); err != nil {
		return fail(err)
	}
	if err := e.Server.Start(); err != nil {
		return fail(err)
	}
	if err := e.Server.AddKey("bench", pub); err != nil {
		return fail(err)
	}
	return e, nil
}

// Repo makes a fixture app repository named name inside the env's dir.
func (e *Env) Repo(name string, files map[string]string) (*Repo, error) {
	dir := filepath.Join(e.Dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return NewRepo(dir, e.Bins.Fixture, files)
}

// Close stops the server and removes the env's dir.
func (e *Env) Close() {
	if e.Server != nil {
		e.Server.Stop(syscall.SIGTERM)
	}
	os.RemoveAll(e.Dir)
}
