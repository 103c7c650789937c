// Command zerodowntime measures failed requests across redeploys: it starts
// a berth server on loopback, deploys a fixture app that takes a while to
// start and has an app.json health check, then runs a bounded load through
// berth's proxy (keep-alive clients, loopback only) while the app is
// redeployed by git push again and again. It prints one summary line.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-paas/berth/internal/testkit"
)

func main() {
	clients := flag.Int("clients", 50, "concurrent clients")
	redeploys := flag.Int("redeploys", 20, "redeploys while the load runs")
	startDelay := flag.Duration("start-delay", 1500*time.Millisecond, "how long the app takes to start listening")
	flag.Parse()
	if err := run(*clients, *redeploys, *startDelay); err != nil {
		fmt.Fprintln(os.Stderr, "zero-downtime:", err)
		os.Exit(1)
	}
}

func run(clients, redeploys int, startDelay time.Duration) error {
	env, err := testkit.NewEnv()
	if err != nil {
		return err
	}
	defer env.Close()
	srv, key := env.Server, env.Key
	app := "zdt"
	defer srv.Run("", "apps:destroy", "--force", app)
	repo, err := env.Repo("repo", map[string]string{
		"app.json": `{"healthchecks": {"web": [{"type": "startup", "name": "health", "path": "/health", "content": "ok", "attempts": 5, "wait": 1, "timeout": 2}]}}`,
	})
	if err != nil {
		return err
	}
	if out, code := srv.Run("", "apps:create", app); code != 0 {
		return fmt.Errorf("apps:create: %s", out)
	}
	if out, code := srv.Run("", "config:set", "--no-restart", app, fmt.Sprintf("STARTUP_DELAY_MS=%d", startDelay.Milliseconds())); code != 0 {
		return fmt.Errorf("config:set: %s", out)
	}
	ctx := context.Background()
	if out, code := srv.Push(ctx, repo, app, key); code != 0 {
		return fmt.Errorf("first push failed:\n%s", out)
	}

	var sent, non2xx, connErrs atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1, Proxy: nil}}
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", "http://"+srv.HTTPAddr+"/", nil)
				req.Host = app + "." + srv.Domain
				resp, err := client.Do(req)
				sent.Add(1)
				if err != nil {
					connErrs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode < 200 || resp.StatusCode > 299 {
					non2xx.Add(1)
					firstErr.CompareAndSwap(nil, resp.Status)
				}
			}
		}()
	}
	start := time.Now()
	var deployTimes []time.Duration
	for i := 1; i <= redeploys; i++ {
		if err := repo.Commit(fmt.Sprintf("redeploy %d", i)); err != nil {
			return err
		}
		t0 := time.Now()
		out, code := srv.Push(ctx, repo, app, key)
		if code != 0 {
			close(stop)
			wg.Wait()
			return fmt.Errorf("redeploy %d failed:\n%s", i, out)
		}
		if !strings.Contains(out, fmt.Sprintf("release v%d", i+1)) {
			close(stop)
			wg.Wait()
			return fmt.Errorf("redeploy %d did not make release v%d:\n%s", i, i+1, out)
		}
		deployTimes = append(deployTimes, time.Since(t0))
	}
	close(stop)
	wg.Wait()
	elapsed := time.Since(start)
	var total time.Duration
	for _, d := range deployTimes {
		total += d
	}
	fe, _ := firstErr.Load().(string)
	fmt.Printf("zero-downtime: clients=%d redeploys=%d requests=%d non2xx=%d conn_errors=%d failed=%d duration=%.1fs rps=%.0f mean_redeploy=%.2fs cpus=%d%s\n",
		clients, redeploys, sent.Load(), non2xx.Load(), connErrs.Load(), non2xx.Load()+connErrs.Load(), elapsed.Seconds(),
		float64(sent.Load())/elapsed.Seconds(), (total / time.Duration(len(deployTimes))).Seconds(), runtime.NumCPU(), firstErrNote(fe))
	if non2xx.Load()+connErrs.Load() > 0 {
		os.Exit(2)
	}
	return nil
}

func firstErrNote(e string) string {
	if e == "" {
		return ""
	}
	return fmt.Sprintf(" first_failure=%q", e)
}
