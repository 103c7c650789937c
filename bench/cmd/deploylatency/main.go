// Command deploylatency measures a cached redeploy: the time from `git push`
// start to the new release serving, for a small Dockerfile app whose layers
// are cached, split into berth's phases; and the floor for the same app:
// `docker build` + `docker run` + first HTTP 200, with the docker CLI. It
// prints one summary line.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/berth-paas/berth/internal/testkit"
)

func main() {
	runs := flag.Int("runs", 7, "measured redeploys (and floor runs)")
	flag.Parse()
	if err := run(*runs); err != nil {
		fmt.Fprintln(os.Stderr, "deploy-latency:", err)
		os.Exit(1)
	}
}

var phaseRe = regexp.MustCompile(`Deployed in ([0-9.]+)s \(([^)]*)\)`)

func run(runs int) error {
	env, err := testkit.NewEnv()
	if err != nil {
		return err
	}
	defer env.Close()
	srv, key, dir := env.Server, env.Key, env.Dir
	app := "lat"
	defer srv.Run("", "apps:destroy", "--force", app)
	repo, err := env.Repo("repo", nil)
	if err != nil {
		return err
	}
	ctx := context.Background()
	if out, code := srv.Push(ctx, repo, app, key); code != 0 {
		return fmt.Errorf("first push failed:\n%s", out)
	}

	var totals []float64
	phases := map[string][]float64{}
	var order []string
	for i := 0; i < runs; i++ {
		repo.Commit(fmt.Sprintf("redeploy %d", i))
		t0 := time.Now()
		out, code := srv.Push(ctx, repo, app, key)
		if code != 0 {
			return fmt.Errorf("redeploy failed:\n%s", out)
		}
		if err := waitFor(srv.HTTPAddr, app+"."+srv.Domain, fmt.Sprintf("release=v%d", i+2)); err != nil {
			return err
		}
		totals = append(totals, time.Since(t0).Seconds())
		m := phaseRe.FindStringSubmatch(out)
		if m == nil {
			return fmt.Errorf("no phase summary in the push output:\n%s", out)
		}
		for _, part := range strings.Split(m[2], ", ") {
			name, secs, _ := strings.Cut(part, " ")
			v, _ := strconv.ParseFloat(strings.TrimSuffix(secs, "s"), 64)
			if _, seen := phases[name]; !seen {
				order = append(order, name)
			}
			phases[name] = append(phases[name], v)
		}
	}

	// The floor: the same build context, built and run with the docker CLI.
	floorDir := filepath.Join(dir, "floor")
	os.Mkdir(floorDir, 0o755)
	for _, f := range []string{"Dockerfile", "fixture"} {
		data, err := os.ReadFile(filepath.Join(repo.Dir, f))
		if err != nil {
			return err
		}
		os.WriteFile(filepath.Join(floorDir, f), data, 0o755)
	}
	tag := "berth-bench-floor:latest"
	defer exec.Command("docker", "rmi", "-f", tag).Run()
	if out, err := exec.Command("docker", "build", "-q", "-t", tag, floorDir).CombinedOutput(); err != nil {
		return fmt.Errorf("docker build: %v %s", err, out)
	}
	var floors []float64
	for i := 0; i < runs; i++ {
		t0 := time.Now()
		if out, err := exec.Command("docker", "build", "-q", "-t", tag, floorDir).CombinedOutput(); err != nil {
			return fmt.Errorf("docker build: %v %s", err, out)
		}
		name := fmt.Sprintf("berth-bench-floor-%d", i)
		if out, err := exec.Command("docker", "run", "-d", "--name", name, "--network", "berth", "-e", "PORT=5000", tag).CombinedOutput(); err != nil {
			return fmt.Errorf("docker run: %v %s", err, out)
		}
		ipOut, err := exec.Command("docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name).Output()
		if err != nil {
			return err
		}
		if err := waitFor(strings.TrimSpace(string(ipOut))+":5000", "", ""); err != nil {
			return err
		}
		floors = append(floors, time.Since(t0).Seconds())
		exec.Command("docker", "rm", "-f", name).Run()
	}
	var ph []string
	for _, name := range order {
		ph = append(ph, fmt.Sprintf("%s=%.2fs", name, median(phases[name])))
	}
	b, f := median(totals), median(floors)
	fmt.Printf("deploy-latency: runs=%d berth_p50=%.2fs floor_p50=%.2fs ratio=%.2f berth_phases_p50: %s\n", runs, b, f, b/f, strings.Join(ph, " "))
	return nil
}

// waitFor polls http://addr/ (with Host host) until it answers 200 and, when
// want is set, the body contains want.
func waitFor(addr, host, want string) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		if host != "" {
			req.Host = host
		}
		if resp, err := client.Do(req); err == nil {
			buf := make([]byte, 512)
			n, _ := resp.Body.Read(buf)
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.Contains(string(buf[:n]), want) {
				return nil
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("%s did not serve %q within 60s", addr, want)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64{}, v...)
	sort.Float64s(s)
	return s[len(s)/2]
}
