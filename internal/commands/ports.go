package commands

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/berth-paas/berth/internal/pipeline"
	"github.com/berth-paas/berth/internal/store"
	"github.com/berth-paas/berth/internal/ui"
)

func (h *handlers) registerPorts(r *Registry) {
	r.AddNamespace("ports", "Map host ports to the container ports of an app's web processes")
	r.Add(&Command{Name: "ports:list", Usage: "<app> [--format json]", Help: "List the port mappings of an app", MinArgs: 1, MaxArgs: 1, Flags: []Flag{formatFlag}, Run: h.portsList})
	r.Add(&Command{Name: "ports:add", Usage: "<app> <scheme>:<host-port>:<container-port>...", Help: "Add port mappings to an app", MinArgs: 2, MaxArgs: -1, Run: h.portsAdd})
	r.Add(&Command{Name: "ports:set", Usage: "<app> <scheme>:<host-port>:<container-port>...", Help: "Replace the port mappings of an app", MinArgs: 2, MaxArgs: -1, Run: h.portsSet})
	r.Add(&Command{Name: "ports:remove", Usage: "<app> (<host-port>|<scheme>:<host-port>[:<container-port>])...", Help: "Remove port mappings from an app", MinArgs: 2, MaxArgs: -1, Run: h.portsRemove})
	r.Add(&Command{Name: "ports:clear", Usage: "<app>", Help: "Remove every port mapping of an app (back to the default)", MinArgs: 1, MaxArgs: 1, Run: h.portsClear})
	r.Add(&Command{Name: "ports:report", Usage: "[<app>] [--format json]", Help: "Display the port mappings of apps", MaxArgs: 1, Flags: []Flag{formatFlag}, Run: h.portsReport})
}

// portJSON is one mapping in JSON output (Dokku's keys).
type portJSON struct {
	Scheme        string `json:"scheme"`
	HostPort      int    `json:"host_port"`
	ContainerPort int    `json:"container_port"`
}

func toJSON(ms []store.PortMapping) []portJSON {
	out := make([]portJSON, len(ms))
	for i, m := range ms {
		out[i] = portJSON{Scheme: m.Scheme, HostPort: m.HostPort, ContainerPort: m.ContainerPort}
	}
	return out
}

func mappingsText(ms []store.PortMapping) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.String()
	}
	return strings.Join(parts, " ")
}

func (h *handlers) portsList(ctx context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return err
	}
	ms, detected, err := h.Pipeline.PortMappings(ctx, a.Name)
	if err != nil {
		return err
	}
	if asJSON {
		return ui.JSON(c.Stdout, toJSON(ms))
	}
	if detected {
		ui.Section(c.Stdout, "Port mappings for %s (none set: the default)", a.Name)
	} else {
		ui.Section(c.Stdout, "Port mappings for %s", a.Name)
	}
	rows := [][]string{{"scheme", "host port", "container port"}}
	for _, m := range ms {
		rows = append(rows, []string{m.Scheme, strconv.Itoa(m.HostPort), strconv.Itoa(m.ContainerPort)})
	}
	printTable(c, rows)
	return nil
}

// printTable prints rows as indented, aligned columns.
func printTable(c *Call, rows [][]string) {
	width := map[int]int{}
	for _, r := range rows {
		for i, cell := range r {
			width[i] = max(width[i], len(cell))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		for i, cell := range r {
			if i < len(r)-1 {
				cell += strings.Repeat(" ", width[i]-len(cell)+3)
			}
			b.WriteString(cell)
		}
		ui.Detail(c.Stdout, "%s", b.String())
	}
}

// applyPorts stores and applies the mappings, reporting what happened.
func (h *handlers) applyPorts(ctx context.Context, c *Call, app string, ms []store.PortMapping) error {
	if err := h.Pipeline.SetPortMappings(ctx, app, ms, c.Caller.Name, c.Stdout); err != nil {
		return err
	}
	if len(ms) == 0 {
		def, err := h.Pipeline.DetectedPortMappings(ctx, app)
		if err != nil {
			return err
		}
		ui.Detail(c.Stdout, "Port map: %s (the default)", mappingsText(def))
		return nil
	}
	ui.Detail(c.Stdout, "Port map: %s", mappingsText(ms))
	return nil
}

func (h *handlers) portsAdd(ctx context.Context, c *Call) error {
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return err
	}
	add, err := pipeline.ParsePortMappings(c.Args[1:])
	if err != nil {
		return err
	}
	cur, _, err := h.Pipeline.PortMappings(ctx, a.Name)
	if err != nil {
		return err
	}
	// A mapping of the same scheme and host port is replaced.
	var next []store.PortMapping
	for _, m := range cur {
		replaced := false
		for _, n := range add {
			replaced = replaced || (n.Scheme == m.Scheme && n.HostPort == m.HostPort)
		}
		if !replaced {
			next = append(next, m)
		}
	}
	next = append(next, add...)
	if err := checkHostPorts(next); err != nil {
		return err
	}
	ui.Step(c.Stdout, "Adding port mappings to %s: %s", a.Name, mappingsText(add))
	return h.applyPorts(ctx, c, a.Name, next)
}

// checkHostPorts refuses two mappings of one app on the same host port.
func checkHostPorts(ms []store.PortMapping) error {
	for i, m := range ms {
		for _, o := range ms[:i] {
			if o.HostPort == m.HostPort {
				return fmt.Errorf("port mappings %s and %s use the same host port", o, m)
			}
		}
	}
	return nil
}

func (h *handlers) portsSet(ctx context.Context, c *Call) error {
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return err
	}
	ms, err := pipeline.ParsePortMappings(c.Args[1:])
	if err != nil {
		return err
	}
	ui.Step(c.Stdout, "Setting port mappings of %s to %s", a.Name, mappingsText(ms))
	return h.applyPorts(ctx, c, a.Name, ms)
}

func (h *handlers) portsRemove(ctx context.Context, c *Call) error {
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return err
	}
	var sels []pipeline.PortSelector
	for _, arg := range c.Args[1:] {
		sel, err := pipeline.ParsePortSelector(arg)
		if err != nil {
			return err
		}
		sels = append(sels, sel)
	}
	cur, _, err := h.Pipeline.PortMappings(ctx, a.Name)
	if err != nil {
		return err
	}
	var next, removed []store.PortMapping
	for _, m := range cur {
		hit := false
		for _, sel := range sels {
			hit = hit || sel.Matches(m)
		}
		if hit {
			removed = append(removed, m)
		} else {
			next = append(next, m)
		}
	}
	for i, sel := range sels {
		found := false
		for _, m := range removed {
			found = found || sel.Matches(m)
		}
		if !found {
			return fmt.Errorf("no port mapping of %s matches %s (it has: %s)", a.Name, c.Args[1+i], mappingsText(cur))
		}
	}
	ui.Step(c.Stdout, "Removing port mappings from %s: %s", a.Name, mappingsText(removed))
	return h.applyPorts(ctx, c, a.Name, next)
}

func (h *handlers) portsClear(ctx context.Context, c *Call) error {
	a, err := h.app(ctx, c.Args[0])
	if err != nil {
		return err
	}
	ui.Step(c.Stdout, "Clearing the port mappings of %s", a.Name)
	return h.applyPorts(ctx, c, a.Name, nil)
}

type portsReport struct {
	App         string     `json:"app"`
	Map         []portJSON `json:"ports-map"`
	MapDetected []portJSON `json:"ports-map-detected"`
	Listening   []string   `json:"ports-listening"`
}

func (h *handlers) portsReport(ctx context.Context, c *Call) error {
	return report(ctx, h, c, func(a store.App) (portsReport, error) {
		set, err := h.Store.PortMappings(ctx, a.Name)
		if err != nil {
			return portsReport{}, err
		}
		detected, err := h.Pipeline.DetectedPortMappings(ctx, a.Name)
		if err != nil {
			return portsReport{}, err
		}
		r := portsReport{App: a.Name, Map: toJSON(set), MapDetected: toJSON(detected), Listening: []string{}}
		for _, port := range h.Pipeline.ListeningPorts(a.Name) {
			for _, m := range set {
				if m.HostPort == port {
					r.Listening = append(r.Listening, m.Scheme+"://"+joinHostPort(h.Pipeline.PortsHost(), port))
				}
			}
		}
		return r, nil
	}, func(r portsReport) {
		ui.Section(c.Stdout, "%s ports information", r.App)
		ui.Fields(c.Stdout, []ui.Field{
			{Key: "Ports map", Value: mappingsText(mappingsOf(r.App, r.Map))},
			{Key: "Ports map detected", Value: mappingsText(mappingsOf(r.App, r.MapDetected))},
			{Key: "Ports listening", Value: strings.Join(r.Listening, " ")},
		})
	})
}

// mappingsOf turns JSON rows back into mappings.
func mappingsOf(app string, rows []portJSON) []store.PortMapping {
	out := make([]store.PortMapping, len(rows))
	for i, r := range rows {
		out[i] = store.PortMapping{App: app, Scheme: r.Scheme, HostPort: r.HostPort, ContainerPort: r.ContainerPort}
	}
	return out
}

func joinHostPort(host string, port int) string {
	if host == "" {
		host = "*"
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(port)
}
