// Package e2e runs berth end to end: a real `berth server` on loopback
// ports with a temporary data dir, real git and ssh clients, and the real
// Docker Engine. Fixture apps are static Go binaries in images FROM scratch,
// so no image is ever pulled.
package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-paas/berth/internal/testkit"
)

var (
	berthBin   string // the berth binary under test
	fixtureBin string // the fixture app binary
	sshKey     string // private key registered on every server
	sshPub     []byte
	workDir    string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if err := testkit.CheckTools(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	var err error
	workDir, err = os.MkdirTemp("", "berth-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(workDir)
	bins, err := testkit.Build("..", workDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	berthBin, fixtureBin = bins.Berth, bins.Fixture
	if sshKey, sshPub, err = testkit.NewKey(workDir, "id_ed25519"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	return m.Run()
}

// Server is a berth server under test.
type Server struct {
	*testkit.Server
	t    testing.TB
	apps sync.Map // app names created through this harness, destroyed at cleanup
}

// startServer starts a berth server with a fresh data dir and the test key
// registered. It is stopped (and its apps destroyed) when the test ends.
func startServer(t testing.TB) *Server {
	t.Helper()
	return startServerWith(t, nil)
}

// startServerWith is startServer with a chance to adjust the server (its
// listeners…) before it starts.
func startServerWith(t testing.TB, adjust func(*testkit.Server)) *Server {
	t.Helper()
	ks, err := testkit.NewServer(berthBin, workDir)
	if err != nil {
		t.Fatal(err)
	}
	if adjust != nil {
		adjust(ks)
	}
	s := &Server{Server: ks, t: t}
	s.start(t)
	t.Cleanup(func() {
		s.apps.Range(func(k, _ any) bool {
			s.berth("apps:destroy", "--force", k.(string))
			return true
		})
		s.stop(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("server log:\n%s", s.Log.String())
		}
	})
	if err := s.AddKey("e2e", sshPub); err != nil {
		t.Fatal(err)
	}
	return s
}

// start (re)starts the server process on the same data dir and ports.
func (s *Server) start(t testing.TB) {
	t.Helper()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
}

// stop signals the server and waits for it to exit.
func (s *Server) stop(sig syscall.Signal) { s.Stop(sig) }

// berth runs a command through the local CLI; it returns stdout+stderr and
// the exit code.
func (s *Server) berth(args ...string) (string, int) { return s.Run("", args...) }

func (s *Server) berthIn(stdin string, args ...string) (string, int) { return s.Run(stdin, args...) }

func exitCode(err error) int { return testkit.ExitCode(err) }

// ssh runs a berth command over SSH with the real ssh client.
func (s *Server) ssh(stdin string, args ...string) (string, int) {
	return s.SSH(sshKey, stdin, args...)
}

// mustBerth runs a CLI command and fails the test on a non-zero exit.
func (s *Server) mustBerth(args ...string) string {
	s.t.Helper()
	out, code := s.berth(args...)
	if code != 0 {
		s.t.Fatalf("berth %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// appName returns a unique app name for this test run.
func appName(prefix string) string {
	b := make([]byte, 3)
	rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// Repo is a git work tree of a fixture app.
type Repo struct {
	*testkit.Repo
	t testing.TB
}

// newRepo makes a git repository holding the fixture binary, a Dockerfile
// and the given extra files.
func newRepo(t testing.TB, files map[string]string) *Repo {
	t.Helper()
	r, err := testkit.NewRepo(t.TempDir(), fixtureBin, files)
	if err != nil {
		t.Fatal(err)
	}
	return &Repo{Repo: r, t: t}
}

func (r *Repo) git(args ...string) string {
	r.t.Helper()
	out, err := r.Git(args...)
	if err != nil {
		r.t.Fatal(err)
	}
	return out
}

// write writes files (an empty content deletes the file).
func (r *Repo) write(files map[string]string) {
	r.t.Helper()
	if err := r.Write(files); err != nil {
		r.t.Fatal(err)
	}
}

func (r *Repo) commit(msg string) {
	r.t.Helper()
	if err := r.Commit(msg); err != nil {
		r.t.Fatal(err)
	}
}

// push pushes the repo's main branch to app on s with the real git and ssh
// clients; it returns the output and git's exit code.
func (s *Server) push(r *Repo, app string, extra ...string) (string, int) {
	s.apps.Store(app, true)
	return s.Push(context.Background(), r.Repo, app, sshKey, extra...)
}

// mustPush pushes and fails the test when the push fails.
func (s *Server) mustPush(r *Repo, app string, extra ...string) string {
	s.t.Helper()
	out, code := s.push(r, app, extra...)
	if code != 0 {
		s.t.Fatalf("git push to %s failed (exit %d):\n%s", app, code, out)
	}
	return out
}

// host is the default host name of app on the test servers.
func host(app string) string { return app + ".berth.test" }

var httpClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// get sends GET path to the proxy with the given Host header.
func (s *Server) get(hostname, path string) (int, string) {
	s.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+s.HTTPAddr+path, nil)
	req.Host = hostname
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// mustGet expects a 200 and returns the body.
func (s *Server) mustGet(hostname, path string) string {
	s.t.Helper()
	code, body := s.get(hostname, path)
	if code != 200 {
		s.t.Fatalf("GET %s%s: %d %s", hostname, path, code, body)
	}
	return body
}

// eventually retries fn until it returns nil or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// docker runs the docker CLI and returns its trimmed output.
func docker(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// containers lists the names of app's containers (running or not).
func containers(t testing.TB, app string) []string {
	out := docker(t, "ps", "-a", "--filter", "label=berth.app="+app, "--format", "{{.Names}}")
	if out == "" {
		return nil
	}
	return strings.Fields(out)
}

// jsonOut runs a CLI command and decodes its JSON output into v.
func (s *Server) jsonOut(v any, args ...string) {
	s.t.Helper()
	cmd := exec.Command(berthBin, append([]string{"--data-dir", s.DataDir}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		s.t.Fatalf("berth %s: %v", strings.Join(args, " "), err)
	}
	if err := json.Unmarshal(out, v); err != nil {
		s.t.Fatalf("berth %s: bad JSON %v:\n%s", strings.Join(args, " "), err, out)
	}
}

// symlink makes name (in the repository) a symbolic link to target.
func (r *Repo) symlink(target, name string) {
	r.t.Helper()
	if err := os.Symlink(target, filepath.Join(r.Dir, name)); err != nil {
		r.t.Fatal(err)
	}
}
