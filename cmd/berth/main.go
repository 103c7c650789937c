// Command berth is a self-hosted, Heroku-style PaaS in one binary.
//
//	berth server [flags]              run the server
//	berth [--data-dir D] CMD ARGS...  run a command on the local server
//
// When git runs it as a repository's pre-receive hook it deploys the push.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/berth-paas/berth/internal/commands"
	"github.com/berth-paas/berth/internal/rpc"
	"github.com/berth-paas/berth/internal/server"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = ""

func berthVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

const defaultDataDir = "/var/lib/berth"

func main() {
	if filepath.Base(os.Args[0]) == "pre-receive" {
		os.Exit(preReceive())
	}
	args := os.Args[1:]
	dataDir := envOr("BERTH_DATA_DIR", defaultDataDir)
	// Global flags before the command.
	for len(args) > 0 && strings.HasPrefix(args[0], "--data-dir") {
		if v, ok := strings.CutPrefix(args[0], "--data-dir="); ok {
			dataDir, args = v, args[1:]
			continue
		}
		if len(args) < 2 {
			fatal("--data-dir needs a value")
		}
		dataDir, args = args[1], args[2:]
	}
	if len(args) > 0 && args[0] == "server" {
		os.Exit(serve(args[1:], dataDir))
	}
	if len(args) == 1 && (args[0] == "--version" || args[0] == "-v") {
		fmt.Printf("berth %s\n", berthVersion())
		return
	}
	os.Exit(client(args, dataDir))
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, " !     "+format+"\n", args...)
	os.Exit(1)
}

func serve(args []string, dataDir string) int {
	fs := flag.NewFlagSet("berth server", flag.ContinueOnError)
	cfg := server.Config{Version: berthVersion()}
	fs.StringVar(&cfg.DataDir, "data-dir", dataDir, "state directory (env BERTH_DATA_DIR)")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", envOr("BERTH_HTTP_ADDR", ":80"), "address of the HTTP proxy (env BERTH_HTTP_ADDR)")
	fs.StringVar(&cfg.HTTPSAddr, "https-addr", envOrEmpty("BERTH_HTTPS_ADDR", ":443"), "address of the HTTPS proxy, empty disables (env BERTH_HTTPS_ADDR)")
	fs.StringVar(&cfg.SSHAddr, "ssh-addr", envOr("BERTH_SSH_ADDR", ":2222"), "address of the SSH server (env BERTH_SSH_ADDR)")
	fs.StringVar(&cfg.PortsHost, "ports-host", os.Getenv("BERTH_PORTS_HOST"), "IP address the ports of port mappings listen on (env BERTH_PORTS_HOST; default: the host of --http-addr)")
	fs.StringVar(&cfg.Domain, "domain", envOr("BERTH_DOMAIN", "localhost"), "global domain: apps answer at APP.DOMAIN (env BERTH_DOMAIN)")
	fs.StringVar(&cfg.DockerHost, "docker-host", os.Getenv("BERTH_DOCKER_HOST"), "Docker Engine address (env BERTH_DOCKER_HOST; default: the environment's Docker)")
	logLevel := fs.String("log-level", envOr("BERTH_LOG_LEVEL", "info"), "debug, info, warn or error (env BERTH_LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, " !     berth server takes no arguments (got %q)\n", fs.Args())
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, " !     invalid --log-level %q\n", *logLevel)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := server.Run(ctx, cfg, log); err != nil {
		log.Error("server failed", "err", err)
		return 1
	}
	return 0
}

// envOrEmpty is envOr, except that an env var set to "" also counts.
func envOrEmpty(k, def string) string {
	if v, ok := os.LookupEnv(k); ok {
		return v
	}
	return def
}

func client(args []string, dataDir string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	sock := server.SocketPath(dataDir)
	req := rpc.Request{Args: args}
	// The working directory lets commands resolve relative paths given on
	// the command line (plugin:install ./dir).
	if wd, err := os.Getwd(); err == nil {
		req.Env = map[string]string{"PWD": wd}
	}
	code, err := rpc.Call(ctx, sock, req, os.Stdin, os.Stdout, os.Stderr)
	if err == nil {
		return code
	}
	if ctx.Err() != nil {
		return 130
	}
	// Without a server, help and version still answer from this binary.
	if len(args) == 0 || args[0] == "help" || args[0] == "version" {
		reg := commands.New(&commands.Deps{Version: berthVersion()})
		return reg.Run(ctx, args, os.Stdin, os.Stdout, os.Stderr, commands.Caller{Name: "local", Local: true}, nil)
	}
	fmt.Fprintf(os.Stderr, " !     %v\n", err)
	return 1
}

// preReceive runs as a bare repository's pre-receive hook: it hands the
// pushed refs to the server, which deploys them and streams the output back
// to the pusher. A non-zero exit rejects the push.
func preReceive() int {
	dataDir := os.Getenv("BERTH_DATA_DIR")
	if dataDir == "" {
		fmt.Fprintln(os.Stderr, " !     This repository is managed by berth: push over berth's SSH server.")
		return 1
	}
	gitDir, err := filepath.Abs(envOr("GIT_DIR", "."))
	if err != nil {
		fmt.Fprintf(os.Stderr, " !     %v\n", err)
		return 1
	}
	app := strings.TrimSuffix(filepath.Base(gitDir), ".git")
	env := map[string]string{}
	for _, k := range commands.GitHookEnv() {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	code, err := rpc.Call(ctx, server.SocketPath(dataDir), rpc.Request{Args: []string{"git:hook", app}, Env: env}, os.Stdin, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintf(os.Stderr, " !     %v\n", err)
		return 1
	}
	return code
}
