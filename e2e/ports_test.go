package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-paas/berth/internal/testkit"
)

// portMapping is one row of ports:list --format json.
type portMapping struct {
	Scheme        string `json:"scheme"`
	HostPort      int    `json:"host_port"`
	ContainerPort int    `json:"container_port"`
}

// freePort returns a loopback port nothing listens on right now.
func freePort(t testing.TB) string {
	t.Helper()
	p, err := testkit.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// echoThrough connects to the raw TCP port, reads the fixture's greeting,
// sends msg and returns the greeting once the echo of msg came back.
func echoThrough(port, msg string) (string, error) {
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	greeting, err := br.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read greeting: %w", err)
	}
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return "", err
	}
	echo, err := br.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read echo: %w", err)
	}
	if echo != msg+"\n" {
		return "", fmt.Errorf("echo %q, want %q", echo, msg)
	}
	return strings.TrimSpace(greeting), nil
}

// mustEcho expects the TCP echo on port to answer from release.
func (s *Server) mustEcho(port, release string) {
	s.t.Helper()
	eventually(s.t, 10*time.Second, func() error {
		greeting, err := echoThrough(port, "ping "+release)
		if err != nil {
			return err
		}
		if greeting != "echo release="+release {
			return fmt.Errorf("greeting %q, want release %s", greeting, release)
		}
		return nil
	})
}

// getPort sends GET path to 127.0.0.1:port with an arbitrary Host.
func getPort(port, path string) (int, string, error) {
	req, _ := http.NewRequest("GET", "http://127.0.0.1:"+port+path, nil)
	req.Host = "whatever.example"
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// failBerth runs a command that must fail and returns its output.
func (s *Server) failBerth(args ...string) string {
	s.t.Helper()
	out, code := s.berth(args...)
	if code == 0 {
		s.t.Fatalf("berth %s succeeded, want a failure:\n%s", strings.Join(args, " "), out)
	}
	return out
}

func TestPortsTCP(t *testing.T) {
	s := startServer(t)
	app := appName("tcp")
	s.mustBerth("apps:create", app)
	s.apps.Store(app, true)
	s.mustBerth("config:set", "--no-restart", app, "ECHO_PORT=7000")
	repo := newRepo(t, nil)
	s.mustPush(repo, app)

	hp := freePort(t)
	out := s.mustBerth("ports:add", app, "tcp:"+hp+":7000")
	if !strings.Contains(out, "tcp:"+hp+":7000 listening on 127.0.0.1:"+hp) {
		t.Errorf("ports:add output:\n%s", out)
	}
	s.mustEcho(hp, "v1")
	var ms []portMapping
	s.jsonOut(&ms, "ports:list", app, "--format", "json")
	want := []portMapping{{"http", 80, 5000}, {"tcp", mustAtoi(t, hp), 7000}}
	if fmt.Sprint(ms) != fmt.Sprint(want) {
		t.Errorf("ports:list = %v, want %v (ports:add keeps the default http:80:5000)", ms, want)
	}
	s.mustGet(host(app), "/") // HTTP still served

	// Isolation: the host port belongs to app; berth's own ports are refused.
	other := appName("tcp-other")
	s.mustBerth("apps:create", other)
	s.apps.Store(other, true)
	if out := s.failBerth("ports:add", other, "tcp:"+hp+":5000"); !strings.Contains(out, "already used by app "+app) {
		t.Errorf("conflicting port: %s", out)
	}
	if out := s.failBerth("ports:set", other, "tcp:"+s.SSHPort+":22"); !strings.Contains(out, "berth's SSH server") {
		t.Errorf("SSH port: %s", out)
	}
	_, httpPort, _ := net.SplitHostPort(s.HTTPAddr)
	if out := s.failBerth("ports:set", other, "tcp:"+httpPort+":5000"); !strings.Contains(out, "HTTP proxy's port") {
		t.Errorf("HTTP port: %s", out)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, busyPort, _ := net.SplitHostPort(busy.Addr().String())
	if out := s.failBerth("ports:set", other, "tcp:"+busyPort+":5000"); !strings.Contains(out, "address already in use") {
		t.Errorf("busy port: %s", out)
	}
	var otherMs []portMapping
	s.jsonOut(&otherMs, "ports:list", other, "--format", "json")
	if len(otherMs) != 1 || otherMs[0].Scheme != "http" {
		t.Errorf("a refused mapping was stored: %v", otherMs)
	}
	for _, bad := range []string{"udp:53:53", "tcp:0:1", "tcp:70000:1", "tcp:9000", "tcp:x:1"} {
		s.failBerth("ports:add", other, bad)
	}

	// A redeploy re-points the port at the new container.
	repo.commit("redeploy")
	s.mustPush(repo, app)
	s.mustEcho(hp, "v2")

	// The mapping and its listener survive a server restart.
	s.stop(syscall.SIGTERM)
	s.start(t)
	s.mustEcho(hp, "v2")
	var report struct {
		Map       []portMapping `json:"ports-map"`
		Listening []string      `json:"ports-listening"`
	}
	s.jsonOut(&report, "ports:report", app, "--format", "json")
	if len(report.Map) != 2 || len(report.Listening) != 1 || report.Listening[0] != "tcp://127.0.0.1:"+hp {
		t.Errorf("ports:report = %+v", report)
	}

	// ports:remove closes the listener; the port is free for others.
	s.mustBerth("ports:remove", app, hp)
	if c, err := net.DialTimeout("tcp", "127.0.0.1:"+hp, time.Second); err == nil {
		c.Close()
		t.Fatal("the port still accepts connections after ports:remove")
	}
	s.mustBerth("ports:add", other, "tcp:"+hp+":5000")
	s.mustBerth("apps:destroy", "--force", other)
	if c, err := net.DialTimeout("tcp", "127.0.0.1:"+hp, time.Second); err == nil {
		c.Close()
		t.Fatal("the port still accepts connections after apps:destroy")
	}
}

func TestPortsHTTP(t *testing.T) {
	s := startServer(t)
	app := appName("http")
	s.mustBerth("apps:create", app)
	s.apps.Store(app, true)
	// Set before the first deploy: the web process gets PORT=7000.
	s.mustBerth("ports:set", app, "http:80:7000")
	repo := newRepo(t, nil)
	s.mustPush(repo, app)
	if got := s.mustGet(host(app), "/env?k=PORT"); got != "7000" {
		t.Fatalf("PORT = %q, want 7000", got)
	}

	// An extra HTTP port serves the app whatever the Host header.
	hp := freePort(t)
	s.mustBerth("ports:add", app, "http:"+hp+":7000")
	eventually(t, 5*time.Second, func() error {
		code, body, err := getPort(hp, "/env?k=PORT")
		if err != nil || code != 200 || body != "7000" {
			return fmt.Errorf("GET on port %s: %d %q %v", hp, code, body, err)
		}
		return nil
	})

	// Changing the container port restarts the app on it, health-gated.
	out := s.mustBerth("ports:set", app, "http:80:5000", "http:"+hp+":5000")
	if !strings.Contains(out, "Restarting") {
		t.Errorf("no restart announced:\n%s", out)
	}
	if got := s.mustGet(host(app), "/env?k=PORT"); got != "5000" {
		t.Fatalf("PORT = %q after ports:set, want 5000", got)
	}
	if code, body, err := getPort(hp, "/env?k=PORT"); err != nil || code != 200 || body != "5000" {
		t.Fatalf("extra port after the restart: %d %q %v", code, body, err)
	}

	// Without a mapping of the proxy's port the app's hosts are not routed.
	s.mustBerth("ports:set", app, "http:"+hp+":5000")
	if code, _ := s.get(host(app), "/"); code != http.StatusNotFound {
		t.Errorf("host answered %d without an http:80 mapping, want 404", code)
	}
	if code, _, err := getPort(hp, "/"); err != nil || code != 200 {
		t.Errorf("extra port: %d %v", code, err)
	}

	// ports:clear goes back to http:80:$PORT.
	out = s.mustBerth("ports:clear", app)
	if !strings.Contains(out, "http:80:5000 (the default)") {
		t.Errorf("ports:clear output:\n%s", out)
	}
	s.mustGet(host(app), "/")
	if _, _, err := getPort(hp, "/"); err == nil {
		t.Error("the extra port still answers after ports:clear")
	}
	if out := s.failBerth("ports:add", app, "https:8443:5000"); !strings.Contains(out, "https is only served on the HTTPS proxy's port") {
		t.Errorf("https on an extra port: %s", out)
	}
}

func mustAtoi(t testing.TB, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
