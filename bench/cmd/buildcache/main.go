// Command buildcache measures what the build cache saves: the first and the
// second build of an unchanged app, for the Dockerfile builder (engine
// layer cache) and the buildpack builder (CACHE_DIR kept per app). Each
// first build is made cold with a unique marker. It prints one line.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/berth-paas/berth/internal/testkit"
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "build-cache:", err)
		os.Exit(1)
	}
}

var buildRe = regexp.MustCompile(`build ([0-9.]+)s`)

func run() error {
	env, err := testkit.NewEnv()
	if err != nil {
		return err
	}
	defer env.Close()
	srv, key := env.Server, env.Key
	if out, code := srv.Run("", "images:bootstrap", "--set-default"); code != 0 {
		return fmt.Errorf("images:bootstrap: %s", out)
	}
	marker := strconv.FormatInt(time.Now().UnixNano(), 10)
	// The Dockerfile app does real work in a RUN step (64 MiB generated and
	// hashed) after copying a marker that makes the first build cold.
	dockerfile := "FROM berth/base:bookworm\nCOPY marker /marker\nRUN head -c 67108864 /dev/urandom | sha256sum > /deps.sha256 && sleep 2\nCOPY fixture /fixture\nCMD [\"/fixture\"]\n"
	root, err := testkit.RepoRoot()
	if err != nil {
		return err
	}
	pack, err := filepath.Abs(filepath.Join(root, "bench", "testdata", "buildpacks", "cached"))
	if err != nil {
		return err
	}
	results := map[string][2]float64{}
	for _, tc := range []struct {
		name  string
		files map[string]string
	}{
		{"dockerfile", map[string]string{"Dockerfile": dockerfile, "marker": marker}},
		{"buildpack", map[string]string{"Dockerfile": "", "marker": marker, ".buildpacks": pack + "\n"}},
	} {
		app := "cache-" + tc.name
		repo, err := env.Repo(app, tc.files)
		if err != nil {
			return err
		}
		var builds [2]float64
		for i := 0; i < 2; i++ {
			if i == 1 {
				repo.Commit("unchanged")
			}
			out, code := srv.Push(context.Background(), repo, app, key)
			if code != 0 {
				return fmt.Errorf("%s push %d failed:\n%s", tc.name, i+1, out)
			}
			m := buildRe.FindStringSubmatch(out)
			if m == nil {
				return fmt.Errorf("no build time in the output:\n%s", out)
			}
			builds[i], _ = strconv.ParseFloat(m[1], 64)
		}
		results[tc.name] = builds
		srv.Run("", "apps:destroy", "--force", app)
	}
	d, b := results["dockerfile"], results["buildpack"]
	fmt.Printf("build-cache: dockerfile first=%.2fs second=%.2fs ratio=%.2f buildpack first=%.2fs second=%.2fs ratio=%.2f\n",
		d[0], d[1], d[1]/d[0], b[0], b[1], b[1]/b[0])
	return nil
}
