// Package server assembles berth's parts (store, Docker, pipeline, proxy,
// command registry and its doors) and runs them until shutdown.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/docker/docker/client"

	"github.com/berth-paas/berth/internal/commands"
	"github.com/berth-paas/berth/internal/pipeline"
	"github.com/berth-paas/berth/internal/plugins"
	"github.com/berth-paas/berth/internal/proxy"
	"github.com/berth-paas/berth/internal/rpc"
	"github.com/berth-paas/berth/internal/scheduler"
	"github.com/berth-paas/berth/internal/sshd"
	"github.com/berth-paas/berth/internal/store"
)

// Config is what `berth server` is started with.
type Config struct {
	DataDir    string
	HTTPAddr   string
	HTTPSAddr  string
	SSHAddr    string
	Domain     string
	DockerHost string
	Version    string
	// PortsHost is the IP address the extra ports of port mappings listen
	// on; empty: the host of HTTPAddr.
	PortsHost string
}

// SocketPath is where the command socket of a data dir lives.
func SocketPath(dataDir string) string { return filepath.Join(dataDir, "berth.sock") }

// NetworkName is the Docker network app containers join.
const NetworkName = "berth"

// Run starts the server and blocks until ctx is done, then shuts down
// gracefully: listeners close, in-flight proxied requests finish (up to 30 s).
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("resolve data dir: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir %s: %w", dataDir, err)
	}
	if err := os.Chmod(dataDir, 0o700); err != nil {
		return fmt.Errorf("restrict data dir %s: %w", dataDir, err)
	}
	if cfg.HTTPAddr == "" {
		return errors.New("--http-addr is required (the proxy's address, e.g. :80)")
	}
	st, err := store.Open(ctx, filepath.Join(dataDir, "berth.db"), filepath.Join(dataDir, "config.key"))
	if err != nil {
		return err
	}
	defer st.Close()

	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if cfg.DockerHost != "" {
		opts = append(opts, client.WithHost(cfg.DockerHost))
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return fmt.Errorf("configure Docker client: %w", err)
	}
	defer cli.Close()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	ping, err := cli.Ping(pctx)
	cancel()
	if err != nil {
		return fmt.Errorf("cannot reach the Docker Engine at %s (start dockerd, or pass --docker-host): %w", cli.DaemonHost(), err)
	}
	log.Info("connected to Docker Engine", "host", cli.DaemonHost(), "api", ping.APIVersion)

	httpLn, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen for HTTP on %s: %w", cfg.HTTPAddr, err)
	}
	httpPort := httpLn.Addr().(*net.TCPAddr).Port
	httpsLn, httpsPort, err := listenHTTPS(cfg.HTTPSAddr)
	if err != nil {
		httpLn.Close()
		return err
	}
	closeListeners := func() {
		httpLn.Close()
		if httpsLn != nil {
			httpsLn.Close()
		}
	}

	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the berth executable: %w", err)
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return fmt.Errorf("find the berth executable: %w", err)
	}
	router := proxy.New(proxy.Options{Logger: log})
	bus := plugins.NewBus()
	pluginMgr, err := plugins.NewManager(plugins.Options{DataDir: dataDir, Executable: exe, Settings: st, Logger: log})
	if err != nil {
		closeListeners()
		return err
	}
	bus.SetPlugins(pluginMgr)
	instance, err := st.InstanceID(ctx)
	if err != nil {
		closeListeners()
		return err
	}
	sched := scheduler.NewDocker(cli, NetworkName, instance)
	var tlsp *tlsParts
	portsHost, reservedPorts, err := portsOptions(cfg)
	if err != nil {
		closeListeners()
		return err
	}
	pipe := pipeline.New(st, cli, sched, router, bus, pipeline.Options{
		DataDir: dataDir, Domain: cfg.Domain, HTTPPort: httpPort, Executable: exe, Logger: log,
		PortsHost: portsHost, ReservedPorts: reservedPorts,
		HTTPSPort: httpsPort, SecureHost: func(app, host string) bool { return tlsp.certs.SecureHost(app, host) },
	})
	tlsp = newTLS(ctx, st, router, pipe, bus, httpLn, httpsPort, log)
	defer tlsp.certs.Stop()
	reg := commands.New(&commands.Deps{Store: st, Pipeline: pipe, Version: cfg.Version, Logger: log, Certs: tlsp.certs, DNS: tlsp.dns})

	if err := pipe.Reconcile(ctx); err != nil {
		closeListeners()
		return fmt.Errorf("reconcile containers: %w", err)
	}
	tlsp.certs.Start(ctx)

	if err := sched.RemoveStaleOneOffs(ctx); err != nil {
		log.Warn("remove stale one-off containers", "err", err)
	}
	if err := pipe.StartCron(ctx); err != nil {
		closeListeners()
		return fmt.Errorf("start cron: %w", err)
	}

	sockLn, err := rpc.Listen(SocketPath(dataDir))
	if err != nil {
		closeListeners()
		return err
	}

	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	errc := make(chan error, 5)
	run := func(name string, fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(); err != nil {
				errc <- fmt.Errorf("%s: %w", name, err)
				stop()
			}
		}()
	}

	httpSrv := &http.Server{
		Handler:           tlsp.edge.HTTP(),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	// The front proxies plain GET and HEAD requests itself and hands
	// every other connection to httpSrv (see proxy.Front).
	httpFront := proxy.NewFront(router, tlsp.edge, httpSrv)
	run("http", func() error {
		log.Info("HTTP proxy listening", "addr", httpLn.Addr().String(), "domain", cfg.Domain)
		if err := httpFront.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	var httpsSrv *http.Server
	if httpsLn != nil {
		httpsSrv = &http.Server{
			Handler:           tlsp.edge.HTTPS(),
			TLSConfig:         tlsp.certs.TLSConfig(),
			ReadHeaderTimeout: 30 * time.Second,
			IdleTimeout:       120 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		}
		run("https", func() error {
			log.Info("HTTPS proxy listening", "addr", httpsLn.Addr().String())
			if err := httpsSrv.ServeTLS(httpsLn, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	if cfg.SSHAddr != "" {
		ssh := &sshd.Server{Store: st, Registry: reg, Pipeline: pipe, DataDir: dataDir, Logger: log}
		run("ssh", func() error { return ssh.ListenAndServe(ctx, cfg.SSHAddr) })
	}
	rpcSrv := &rpc.Server{Registry: reg, Logger: log}
	run("command socket", func() error {
		log.Info("command socket listening", "path", SocketPath(dataDir))
		return rpcSrv.Serve(ctx, sockLn)
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		pipe.WatchContainers(ctx)
	}()
	log.Info("berth server started", "version", cfg.Version, "data-dir", dataDir, "http-port", strconv.Itoa(httpPort))

	<-ctx.Done()
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	httpFront.Shutdown(sctx)
	if httpsSrv != nil {
		httpsSrv.Shutdown(sctx)
	}
	pipe.ClosePorts(sctx)
	wg.Wait()
	pipe.WaitRetirements(sctx)
	pipe.WaitCron(sctx)
	os.Remove(SocketPath(dataDir))
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}
