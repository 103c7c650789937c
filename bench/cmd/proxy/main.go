// Command proxy measures berth's HTTP proxy next to nginx configured the way
// Dokku configures it, on the same machine in one run. It starts a berth
// server on loopback, deploys the fixture app (a small Go HTTP server in an
// image FROM scratch), starts Debian's nginx as its own process on a
// loopback port with Dokku's proxy settings in front of the same container,
// and runs wrk against the container directly, through nginx and through
// berth, in turn, for several interleaved rounds. It prints one summary line
// with the median requests/s and latency percentiles of each, and the
// berth/nginx ratios.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/berth-paas/berth/internal/testkit"
)

func main() {
	rounds := flag.Int("rounds", 5, "interleaved rounds (direct, nginx, berth each)")
	duration := flag.Duration("duration", 10*time.Second, "wrk duration per run")
	conns := flag.Int("connections", 50, "wrk connections")
	threads := flag.Int("threads", 2, "wrk threads")
	flag.Parse()
	if err := run(*rounds, *duration, *conns, *threads); err != nil {
		fmt.Fprintln(os.Stderr, "proxy:", err)
		os.Exit(1)
	}
}

// tools says which Debian packages the benchmark needs.
func tools() error {
	var missing []string
	for _, t := range []string{"nginx", "wrk"} {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s not found: install with `apt-get install -y %s` (or run scripts/install-deps.sh --test)",
			strings.Join(missing, " and "), strings.Join(missing, " "))
	}
	return testkit.CheckTools()
}

func run(rounds int, duration time.Duration, conns, threads int) error {
	if rounds < 1 || duration < time.Second || conns < 1 || threads < 1 || threads > conns {
		return errors.New("need -rounds >= 1, -duration >= 1s, -threads between 1 and -connections")
	}
	if err := tools(); err != nil {
		return err
	}
	root, err := testkit.RepoRoot()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "berth-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bins, err := testkit.Build(root, dir)
	if err != nil {
		return err
	}
	key, pub, err := testkit.NewKey(dir, "key")
	if err != nil {
		return err
	}
	srv, err := testkit.NewServer(bins.Berth, dir)
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	defer srv.Stop(syscall.SIGTERM)
	if err := srv.AddKey("bench", pub); err != nil {
		return err
	}
	app := "proxybench"
	defer srv.Run("", "apps:destroy", "--force", app)
	repoDir := filepath.Join(dir, "repo")
	if err := os.Mkdir(repoDir, 0o755); err != nil {
		return err
	}
	repo, err := testkit.NewRepo(repoDir, bins.Fixture, nil)
	if err != nil {
		return err
	}
	if out, code := srv.Push(context.Background(), repo, app, key); code != 0 {
		return fmt.Errorf("push failed:\n%s", out)
	}
	backend, err := webAddr(app)
	if err != nil {
		return err
	}
	host := app + "." + srv.Domain

	ngx, err := startNginx(filepath.Join(dir, "nginx"), backend, host)
	if err != nil {
		return err
	}
	defer ngx.stop()

	targets := []struct{ name, url string }{
		{"direct", "http://" + backend + "/"},
		{"nginx", "http://" + ngx.addr + "/"},
		{"berth", "http://" + srv.HTTPAddr + "/"},
	}
	// Warm up every path (connections, pools, page cache).
	for _, t := range targets {
		if _, err := runWrk(t.url, host, 2*time.Second, conns, threads); err != nil {
			return fmt.Errorf("warm up %s: %w", t.name, err)
		}
	}
	results := map[string][]wrkResult{}
	for r := 0; r < rounds; r++ {
		// Rotate the order so no path always runs first or last.
		for i := range targets {
			t := targets[(r+i)%len(targets)]
			res, err := runWrk(t.url, host, duration, conns, threads)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r+1, t.name, err)
			}
			results[t.name] = append(results[t.name], res)
		}
	}
	med := map[string]wrkResult{}
	for name, rs := range results {
		med[name] = median(rs)
	}
	d, n, b := med["direct"], med["nginx"], med["berth"]
	fmt.Printf("proxy: rounds=%d duration=%s connections=%d threads=%d "+
		"direct_rps=%.0f direct_p50=%s direct_p99=%s "+
		"nginx_rps=%.0f nginx_p50=%s nginx_p99=%s "+
		"berth_rps=%.0f berth_p50=%s berth_p99=%s "+
		"rps_ratio=%.2f p50_ratio=%.2f p99_ratio=%.2f errors=%d cpus=%d\n",
		rounds, duration, conns, threads,
		d.rps, ms(d.p50), ms(d.p99), n.rps, ms(n.p50), ms(n.p99), b.rps, ms(b.p50), ms(b.p99),
		b.rps/n.rps, float64(b.p50)/float64(n.p50), float64(b.p99)/float64(n.p99),
		errorsOf(results), runtime.NumCPU())
	return nil
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + "ms"
}

// webAddr returns "ip:port" of the app's web container on the berth
// network.
func webAddr(app string) (string, error) {
	out, err := exec.Command("docker", "ps", "--filter", "label=berth.app="+app, "--filter", "label=berth.process=web",
		"--format", "{{.ID}}").Output()
	if err != nil {
		return "", fmt.Errorf("list web containers: %w", err)
	}
	ids := strings.Fields(string(out))
	if len(ids) != 1 {
		return "", fmt.Errorf("want one web container of %s, found %d", app, len(ids))
	}
	out, err = exec.Command("docker", "inspect", "-f",
		`{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}{{index .Config.Labels "berth.port"}}`, ids[0]).Output()
	if err != nil {
		return "", fmt.Errorf("inspect web container: %w", err)
	}
	f := strings.Fields(string(out))
	if len(f) < 2 || net.ParseIP(f[0]) == nil {
		return "", fmt.Errorf("no address for the web container: %q", out)
	}
	return net.JoinHostPort(f[0], f[len(f)-1]), nil
}

// nginxConf is Debian's nginx.conf reduced to what matters here, with the
// server block Dokku's nginx-vhosts template writes for an app with the
// port mapping http:80:5000, plus upstream keep-alive (an upstream block
// with keepalive, HTTP/1.1 and an empty Connection header). The access log
// is off (Dokku writes one per app): that favours nginx, berth logs no
// requests.
var nginxConf = template.Must(template.New("nginx").Parse(`worker_processes auto;
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/error.log warn;
events {
  worker_connections 768;
}
http {
  sendfile on;
  tcp_nopush on;
  types_hash_max_size 2048;
  server_tokens off;
  default_type application/octet-stream;
  access_log off;
  gzip on;
  client_body_temp_path {{.Dir}}/tmp/body;
  proxy_temp_path {{.Dir}}/tmp/proxy;
  fastcgi_temp_path {{.Dir}}/tmp/fastcgi;
  uwsgi_temp_path {{.Dir}}/tmp/uwsgi;
  scgi_temp_path {{.Dir}}/tmp/scgi;

  upstream app-5000 {
    server {{.Backend}};
    keepalive 64;
  }
  server {
    listen {{.Listen}};
    server_name {{.Host}};
    location / {
      gzip on;
      gzip_min_length 1100;
      gzip_buffers 4 32k;
      gzip_types text/css text/javascript text/xml text/plain text/x-component application/javascript application/x-javascript application/json application/xml application/rss+xml font/truetype application/x-font-ttf font/opentype application/vnd.ms-fontobject image/svg+xml;
      gzip_vary on;
      gzip_comp_level 6;

      proxy_pass http://app-5000;
      proxy_http_version 1.1;
      proxy_read_timeout 60s;
      proxy_buffer_size 4k;
      proxy_buffering on;
      proxy_buffers 8 4k;
      proxy_busy_buffers_size 8k;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Port $server_port;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Request-Start $msec;
    }
  }
}
`))

type nginx struct {
	addr string
	cmd  *exec.Cmd
	log  *testkit.LockedBuffer
}

// startNginx runs nginx in the foreground as a child process, listening on
// a free loopback port, with its files in dir.
func startNginx(dir, backend, host string) (*nginx, error) {
	for _, d := range []string{dir, filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	port, err := testkit.FreePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + port
	var conf bytes.Buffer
	if err := nginxConf.Execute(&conf, map[string]string{"Dir": dir, "Backend": backend, "Listen": addr, "Host": host}); err != nil {
		return nil, err
	}
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, conf.Bytes(), 0o644); err != nil {
		return nil, err
	}
	n := &nginx{addr: addr, log: &testkit.LockedBuffer{}}
	n.cmd = exec.Command("nginx", "-p", dir, "-c", confPath, "-g", "daemon off;")
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	if err := n.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start nginx: %w", err)
	}
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		req.Host = host
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return n, nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if time.Now().After(deadline) {
			n.stop()
			errLog, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			return nil, fmt.Errorf("nginx did not answer on %s: %v\n%s%s", addr, err, n.log.String(), errLog)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop asks nginx to quit (SIGQUIT: graceful) and waits, killing it after
// 10 s.
func (n *nginx) stop() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGQUIT)
	done := make(chan struct{})
	go func() { _ = n.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = n.cmd.Process.Kill()
		<-done
	}
	n.cmd = nil
}

type wrkResult struct {
	rps      float64
	p50, p99 time.Duration
	errors   int
}

var (
	rpsRe     = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	pctRe     = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	non2xxRe  = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
	sockErrRe = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// runWrk runs wrk with latency percentiles and parses its report.
func runWrk(url, host string, d time.Duration, conns, threads int) (wrkResult, error) {
	cmd := exec.Command("wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns),
		"-d", strconv.Itoa(int(d.Seconds()))+"s", "--latency", "-H", "Host: "+host, url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	var r wrkResult
	m := rpsRe.FindSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no Requests/sec in wrk output:\n%s", out)
	}
	r.rps, _ = strconv.ParseFloat(string(m[1]), 64)
	for _, p := range pctRe.FindAllSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(string(p[2]), 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[string(p[3])]
		dur := time.Duration(v * float64(unit))
		if string(p[1]) == "50" {
			r.p50 = dur
		} else {
			r.p99 = dur
		}
	}
	if r.p50 == 0 || r.p99 == 0 {
		return r, fmt.Errorf("no latency percentiles in wrk output:\n%s", out)
	}
	if m := non2xxRe.FindSubmatch(out); m != nil {
		n, _ := strconv.Atoi(string(m[1]))
		r.errors += n
	}
	if m := sockErrRe.FindSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.Atoi(string(s))
			r.errors += n
		}
	}
	return r, nil
}

// median returns the median of each measure over rs, taken separately.
func median(rs []wrkResult) wrkResult {
	rps := make([]float64, len(rs))
	p50 := make([]time.Duration, len(rs))
	p99 := make([]time.Duration, len(rs))
	for i, r := range rs {
		rps[i], p50[i], p99[i] = r.rps, r.p50, r.p99
	}
	sort.Float64s(rps)
	sort.Slice(p50, func(i, j int) bool { return p50[i] < p50[j] })
	sort.Slice(p99, func(i, j int) bool { return p99[i] < p99[j] })
	m := len(rs) / 2
	if len(rs)%2 == 1 {
		return wrkResult{rps: rps[m], p50: p50[m], p99: p99[m]}
	}
	return wrkResult{rps: (rps[m-1] + rps[m]) / 2, p50: (p50[m-1] + p50[m]) / 2, p99: (p99[m-1] + p99[m]) / 2}
}

func errorsOf(results map[string][]wrkResult) int {
	n := 0
	for _, rs := range results {
		for _, r := range rs {
			n += r.errors
		}
	}
	return n
}
