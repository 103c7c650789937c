package commands

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/berth-paas/berth/internal/certs"
	"github.com/berth-paas/berth/internal/dns"
	"github.com/berth-paas/berth/internal/pipeline"
	"github.com/berth-paas/berth/internal/store"
	"github.com/berth-paas/berth/internal/ui"
	"github.com/berth-paas/berth/internal/validate"
)

// Deps are what commands act on.
type Deps struct {
	Store    *store.Store
	Pipeline *pipeline.Pipeline
	Version  string
	Logger   *slog.Logger
	// Certs and DNS back the certs:*, letsencrypt:* and dns:* commands
	// (the server always sets them; help needs neither).
	Certs *certs.Manager
	DNS   *dns.Manager
}

// New returns a registry holding every built-in command.
func New(d *Deps) *Registry {
	r := NewRegistry(d.Logger)
	h := &handlers{Deps: d}
	h.registerApps(r)
	h.registerConfig(r)
	h.registerDomains(r)
	h.registerPs(r)
	h.registerLogs(r)
	h.registerKeys(r)
	h.registerGit(r)
	h.registerChecks(r)
	h.registerReleases(r)
	h.registerRun(r)
	h.registerEvents(r)
	h.registerPorts(r)
	h.registerCerts(r)
	h.registerLetsencrypt(r)
	h.registerDNS(r)
	h.registerBuilders(r)
	r.AddNamespace("version", "Print berth's version")
	r.Add(&Command{Name: "version", Help: "Print berth's version", MaxArgs: 0, Run: func(ctx context.Context, c *Call) error {
		fmt.Fprintf(c.Stdout, "berth %s\n", d.Version)
		return nil
	}})
	// Last: plugin commands must not take the names of core commands.
	h.registerACL(r)
	h.registerPlugins(r)
	return r
}

type handlers struct{ *Deps }

// app validates name and returns the app, or a clear error.
func (h *handlers) app(ctx context.Context, name string) (store.App, error) {
	if err := validate.AppName(name); err != nil {
		return store.App{}, err
	}
	a, err := h.Store.App(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return a, fmt.Errorf("app %s does not exist", name)
	}
	return a, err
}

// appsArg returns the app named by the optional first argument, or every
// app when there is none.
func (h *handlers) appsArg(ctx context.Context, c *Call) ([]store.App, error) {
	if len(c.Args) > 0 {
		a, err := h.app(ctx, c.Args[0])
		if err != nil {
			return nil, err
		}
		return []store.App{a}, nil
	}
	return h.Store.Apps(ctx)
}

// report runs a :report command: it builds of(app) for the app named on
// the command line, or for every app, and prints them as JSON (--format
// json) or one after the other with render.
func report[T any](ctx context.Context, h *handlers, c *Call, of func(store.App) (T, error), render func(T)) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	apps, err := h.appsArg(ctx, c)
	if err != nil {
		return err
	}
	reports := make([]T, 0, len(apps))
	for _, a := range apps {
		r, err := of(a)
		if err != nil {
			return err
		}
		reports = append(reports, r)
	}
	if asJSON {
		return emitJSON(c, reports)
	}
	if len(reports) == 0 {
		ui.Warn(c.Stderr, "There are no apps yet")
	}
	for _, r := range reports {
		render(r)
	}
	return nil
}

// emitJSON prints the report of the app named on the command line, or the
// list of every app's reports.
func emitJSON[T any](c *Call, reports []T) error {
	if len(c.Args) > 0 && len(reports) == 1 {
		return ui.JSON(c.Stdout, reports[0])
	}
	if reports == nil {
		reports = []T{}
	}
	return ui.JSON(c.Stdout, reports)
}

// formatFlag is the --format flag of list and report commands.
var formatFlag = Flag{Name: "format", Value: true, Help: "output format: stdout (default) or json"}

// wantJSON reads --format; anything but stdout or json is an error.
func wantJSON(c *Call) (bool, error) {
	switch c.Flag("format") {
	case "", "stdout", "text":
		return false, nil
	case "json":
		return true, nil
	default:
		return false, &UsageError{Msg: fmt.Sprintf("unknown format %q: use stdout or json", c.Flag("format"))}
	}
}

// confirm asks the caller to type want, Dokku style; it reads one line.
func confirm(c *Call, what, want string) error {
	fmt.Fprintf(c.Stderr, " !     WARNING: Potentially Destructive Action\n !     This command will destroy %s.\n !     To proceed, type \"%s\"\n\n> ", what, want)
	line, err := bufio.NewReader(io.LimitReader(c.Stdin, 1024)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read confirmation: %w", err)
	}
	if strings.TrimSpace(line) != want {
		return Exit(1, "Confirmation did not match %s. Aborted.", want)
	}
	return nil
}
