// Package e2e runs berth end to end: a real `berth server` on loopback
// ports with a temporary data dir, real git and ssh clients, and the real
// Docker Engine. Fixture apps are static Go binaries in images FROM scratch,
// so no image is ever pulled.
package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
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
	for _, tool := range []string{"docker", "git", "ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %s is required (run scripts/install-deps.sh): %v\n", tool, err)
			return 1
		}
	}
	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: the Docker Engine does not answer (run scripts/install-deps.sh): %v\n%s\n", err, out)
		return 1
	}
	var err error
	workDir, err = os.MkdirTemp("", "berth-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(workDir)
	berthBin = filepath.Join(workDir, "berth")
	fixtureBin = filepath.Join(workDir, "fixture")
	build := func(out, pkg string) error {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Stderr = os.Stderr
		return cmd.Run()
	}
	if err := build(berthBin, "../cmd/berth"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build berth:", err)
		return 1
	}
	if err := build(fixtureBin, "./testdata/fixture"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build fixture:", err)
		return 1
	}
	sshKey = filepath.Join(workDir, "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", sshKey).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: ssh-keygen: %v %s\n", err, out)
		return 1
	}
	sshPub, _ = os.ReadFile(sshKey + ".pub")
	return m.Run()
}

// Server is a berth server under test.
type Server struct {
	t        testing.TB
	DataDir  string
	HTTPAddr string
	SSHPort  string
	cmd      *exec.Cmd
	log      *lockedBuffer
	apps     sync.Map // app names created through this harness, destroyed at cleanup
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freePort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// startServer starts a berth server with a fresh data dir and the test key
// registered. It is stopped (and its apps destroyed) when the test ends.
func startServer(t testing.TB) *Server {
	t.Helper()
	dir, err := os.MkdirTemp(workDir, "data-")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, DataDir: dir, HTTPAddr: "127.0.0.1:" + freePort(t), SSHPort: freePort(t)}
	s.start(t)
	t.Cleanup(func() {
		s.apps.Range(func(k, _ any) bool {
			s.berth("apps:destroy", "--force", k.(string))
			return true
		})
		s.stop(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("server log:\n%s", s.log.String())
		}
	})
	if out, code := s.berthIn(string(sshPub), "ssh-keys:add", "e2e"); code != 0 {
		t.Fatalf("ssh-keys:add: %s", out)
	}
	return s
}

// start (re)starts the server process on the same data dir and ports.
func (s *Server) start(t testing.TB) {
	t.Helper()
	if s.log == nil {
		s.log = &lockedBuffer{}
	}
	s.cmd = exec.Command(berthBin, "server", "--data-dir", s.DataDir, "--http-addr", s.HTTPAddr,
		"--https-addr", "", "--ssh-addr", "127.0.0.1:"+s.SSHPort, "--domain", "berth.test", "--log-level", "debug")
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, code := s.berth("apps:list"); code == 0 {
			if c, err := net.Dial("tcp", "127.0.0.1:"+s.SSHPort); err == nil {
				c.Close()
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not start:\n%s", s.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop signals the server and waits for it to exit.
func (s *Server) stop(sig syscall.Signal) {
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

// berth runs a command through the local CLI; it returns stdout+stderr and
// the exit code.
func (s *Server) berth(args ...string) (string, int) { return s.berthIn("", args...) }

func (s *Server) berthIn(stdin string, args ...string) (string, int) {
	out, _, code := s.berthSplit(stdin, args...)
	return out, code
}

// berthSplit runs a CLI command and returns stdout+stderr combined, stderr
// alone and the exit code.
func (s *Server) berthSplit(stdin string, args ...string) (string, string, int) {
	cmd := exec.Command(berthBin, append([]string{"--data-dir", s.DataDir}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var all, errb lockedBuffer
	cmd.Stdout = &all
	cmd.Stderr = io.MultiWriter(&all, &errb)
	err := cmd.Run()
	return all.String(), errb.String(), exitCode(err)
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

func (s *Server) sshArgs() []string {
	return []string{"-i", sshKey, "-p", s.SSHPort, "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes"}
}

// ssh runs a berth command over SSH with the real ssh client.
func (s *Server) ssh(stdin string, args ...string) (string, int) {
	all := append(s.sshArgs(), "git@127.0.0.1")
	all = append(all, args...)
	cmd := exec.Command("ssh", all...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), exitCode(err)
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
	t   testing.TB
	Dir string
}

// newRepo makes a git repository holding the fixture binary, a Dockerfile
// and the given extra files.
func newRepo(t testing.TB, files map[string]string) *Repo {
	t.Helper()
	dir := t.TempDir()
	data, err := os.ReadFile(fixtureBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "fixture"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	base := map[string]string{"Dockerfile": "FROM scratch\nCOPY fixture /fixture\nCMD [\"/fixture\"]\n"}
	for k, v := range files {
		base[k] = v
	}
	r := &Repo{t: t, Dir: dir}
	r.git("init", "-q", "-b", "main")
	r.write(base)
	r.commit("initial")
	return r
}

func (r *Repo) git(args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = r.Dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=e2e", "GIT_AUTHOR_EMAIL=e2e@berth.test", "GIT_COMMITTER_NAME=e2e", "GIT_COMMITTER_EMAIL=e2e@berth.test")
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// write writes files (an empty content deletes the file).
func (r *Repo) write(files map[string]string) {
	r.t.Helper()
	for name, content := range files {
		p := filepath.Join(r.Dir, name)
		if content == "" {
			os.Remove(p)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
}

func (r *Repo) commit(msg string) {
	r.t.Helper()
	r.git("add", "-A")
	r.git("commit", "-q", "--allow-empty", "-m", msg)
}

// push pushes the repo's main branch to app on s with the real git and ssh
// clients; it returns the output and git's exit code.
func (s *Server) push(r *Repo, app string, extra ...string) (string, int) {
	s.apps.Store(app, true)
	// extra holds flags (-f…) and refspecs (main:refs/heads/x); the default
	// refspec is main.
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
	cmd := exec.Command("git", args...)
	cmd.Dir = r.Dir
	cmd.Env = append(os.Environ(), "GIT_SSH_COMMAND=ssh -i "+sshKey+" -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes")
	out, err := cmd.CombinedOutput()
	return string(out), exitCode(err)
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
