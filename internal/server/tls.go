package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/berth-paas/berth/internal/certs"
	"github.com/berth-paas/berth/internal/dns"
	"github.com/berth-paas/berth/internal/pipeline"
	"github.com/berth-paas/berth/internal/plugins"
	"github.com/berth-paas/berth/internal/proxy"
	"github.com/berth-paas/berth/internal/store"
)

// tlsParts are the certificate, DNS and front-door parts of the server.
type tlsParts struct {
	certs *certs.Manager
	dns   *dns.Manager
	edge  *proxy.Edge
}

// listenHTTPS binds the HTTPS address; "" disables HTTPS (nil listener,
// port 0).
func listenHTTPS(addr string) (net.Listener, int, error) {
	if addr == "" {
		return nil, 0, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, 0, fmt.Errorf("listen for HTTPS on %s: %w", addr, err)
	}
	return ln, ln.Addr().(*net.TCPAddr).Port, nil
}

// newTLS assembles the certificate manager, the DNS record manager and the
// proxy's front doors, and registers their trigger handlers: records and
// certificates follow domains:* (post-domains-update), deploys
// (post-deploy), renames (post-app-rename) and apps:destroy (pre-delete).
func newTLS(ctx context.Context, st *store.Store, router *proxy.Router, pipe *pipeline.Pipeline, bus *plugins.Bus,
	httpLn net.Listener, httpsPort int, log *slog.Logger) *tlsParts {
	host, _, _ := net.SplitHostPort(httpLn.Addr().String())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = ""
	}
	mgr := certs.New(ctx, certs.Options{
		Store: st, Router: router, Hosts: pipe.Hosts, ListenHost: host,
		HTTPPort: httpLn.Addr().(*net.TCPAddr).Port, HTTPSPort: httpsPort, Logger: log,
	})
	edge := proxy.NewEdge(router, httpsPort, mgr.HandleHTTPChallenge)
	mgr.SetEdge(edge)
	t := &tlsParts{certs: mgr, dns: dns.NewManager(st, pipe.Hosts, log), edge: edge}

	sync := func(ctx context.Context, app string, out io.Writer) {
		if err := t.certs.Sync(ctx, app); err != nil {
			fmt.Fprintf(out, "certificates: %v\n", err)
		}
		if on, _ := t.dns.Enabled(ctx, app); !on {
			if recs, _ := st.DNSRecords(ctx, app); len(recs) == 0 {
				return
			}
		}
		res, err := t.dns.Sync(ctx, app)
		printRecords(out, res)
		if err != nil {
			fmt.Fprintf(out, "DNS records: %v\n", err)
		}
	}
	bus.Register("post-domains-update", "tls", func(ctx context.Context, args []string, _ io.Reader, out io.Writer) error {
		if len(args) > 0 {
			sync(ctx, args[0], out)
		}
		return nil
	})
	bus.Register("post-deploy", "tls", func(ctx context.Context, args []string, _ io.Reader, out io.Writer) error {
		if len(args) > 0 {
			sync(ctx, args[0], out)
		}
		return nil
	})
	bus.Register("post-app-rename", "tls", func(ctx context.Context, args []string, _ io.Reader, out io.Writer) error {
		if len(args) > 1 {
			t.certs.Forget(ctx, args[0], false)
			sync(ctx, args[1], out)
		}
		return nil
	})
	bus.Register("pre-delete", "tls", func(ctx context.Context, args []string, _ io.Reader, out io.Writer) error {
		if len(args) == 0 {
			return nil
		}
		app := args[0]
		res, err := t.dns.Remove(ctx, app)
		printRecords(out, res)
		if err != nil {
			// The app goes anyway; say what is left behind.
			fmt.Fprintf(out, "DNS records could not be removed (remove them at the provider): %v\n", err)
		}
		t.certs.Forget(ctx, app, true)
		return nil
	})
	return t
}

func printRecords(out io.Writer, res dns.Result) {
	for _, r := range res.Added {
		fmt.Fprintf(out, "DNS: created %s %s %s\n", r.Name, r.Type, r.Value)
	}
	for _, r := range res.Removed {
		fmt.Fprintf(out, "DNS: removed %s %s %s\n", r.Name, r.Type, r.Value)
	}
}
