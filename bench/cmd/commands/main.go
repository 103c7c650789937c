// Command commands measures command dispatch: apps:create, and read
// commands (apps:list, apps:report, ps:report, config:show) through the real
// CLI over the command socket, with many apps; and the server's resident
// memory. It prints one summary line.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/berth-paas/berth/internal/testkit"
)

func main() {
	apps := flag.Int("apps", 500, "apps to create")
	runs := flag.Int("runs", 50, "runs of each read command")
	flag.Parse()
	if err := run(*apps, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "commands:", err)
		os.Exit(1)
	}
}

func run(apps, runs int) error {
	env, err := testkit.NewEnv()
	if err != nil {
		return err
	}
	defer env.Close()
	srv, bins := env.Server, env.Bins

	timeIt := func(args ...string) (time.Duration, error) {
		t0 := time.Now()
		if out, code := srv.Run("", args...); code != 0 {
			return 0, fmt.Errorf("%v: %s", args, out)
		}
		return time.Since(t0), nil
	}
	var creates []time.Duration
	for i := 0; i < apps; i++ {
		d, err := timeIt("apps:create", fmt.Sprintf("app-%04d", i))
		if err != nil {
			return err
		}
		creates = append(creates, d)
		if i%10 == 0 {
			if _, err := timeIt("config:set", "--no-restart", fmt.Sprintf("app-%04d", i), "A=1", "B=2"); err != nil {
				return err
			}
		}
	}
	reads := map[string][]string{
		"apps:list":   {"apps:list"},
		"apps:report": {"apps:report", "app-0250"},
		"ps:report":   {"ps:report", "app-0250"},
		"config:show": {"config:show", "app-0250"},
	}
	results := map[string][]time.Duration{}
	for i := 0; i < runs; i++ {
		for name, args := range reads {
			d, err := timeIt(args...)
			if err != nil {
				return err
			}
			results[name] = append(results[name], d)
		}
	}
	// The floor of any CLI command: starting the berth binary itself.
	var floor []time.Duration
	for i := 0; i < runs; i++ {
		t0 := time.Now()
		exec.Command(bins.Berth, "--version").Run()
		floor = append(floor, time.Since(t0))
	}
	rss := serverRSS(srv)
	parts := []string{fmt.Sprintf("apps:create_p50=%s", ms(pct(creates, 50)))}
	names := make([]string, 0, len(results))
	for n := range results {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s_p50=%s_p99=%s", n, ms(pct(results[n], 50)), ms(pct(results[n], 99))))
	}
	fmt.Printf("commands: apps=%d %s cli_start_p50=%s server_rss=%.1fMB\n", apps, strings.Join(parts, " "), ms(pct(floor, 50)), rss)
	return nil
}

func pct(d []time.Duration, p int) time.Duration {
	s := append([]time.Duration{}, d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, len(s)*p/100)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }

// serverRSS reads the server process's resident memory in MB.
func serverRSS(srv *testkit.Server) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", srv.PID()))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return float64(kb) / 1024
		}
	}
	return -1
}
