package pipeline

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-paas/berth/internal/proxy"
	"github.com/berth-paas/berth/internal/store"
)

func TestParsePortMapping(t *testing.T) {
	good := map[string]store.PortMapping{
		"http:80:5000":    {Scheme: "http", HostPort: 80, ContainerPort: 5000},
		"https:443:8443":  {Scheme: "https", HostPort: 443, ContainerPort: 8443},
		"tcp:65535:1":     {Scheme: "tcp", HostPort: 65535, ContainerPort: 1},
		"tcp:09000:07000": {Scheme: "tcp", HostPort: 9000, ContainerPort: 7000},
	}
	for in, want := range good {
		got, err := ParsePortMapping(in)
		if err != nil || got != want {
			t.Errorf("ParsePortMapping(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "http", "http:80", "http:80:5000:1", "udp:53:53", "HTTP:80:5000",
		"http:0:5000", "http:80:65536", "http:-1:5000", "http:+80:5000", "http: 80:5000", "http:80:5e3", "http::5000", "tcp:123456:1"} {
		if m, err := ParsePortMapping(in); err == nil {
			t.Errorf("ParsePortMapping(%q) = %+v, want an error", in, m)
		}
	}
	if _, err := ParsePortMappings([]string{"http:80:5000", "http:80:5000"}); err == nil || !strings.Contains(err.Error(), "given twice") {
		t.Errorf("duplicate mapping: %v", err)
	}
	if _, err := ParsePortMappings([]string{"http:8081:5000", "tcp:8081:6000"}); err == nil || !strings.Contains(err.Error(), "same host port") {
		t.Errorf("host port used twice: %v", err)
	}
}

func TestParsePortSelector(t *testing.T) {
	m := store.PortMapping{Scheme: "tcp", HostPort: 9000, ContainerPort: 7000}
	for in, match := range map[string]bool{"9000": true, "tcp:9000": true, "tcp:9000:7000": true, "http:9000": false, "tcp:9000:7001": false, "9001": false} {
		sel, err := ParsePortSelector(in)
		if err != nil {
			t.Fatalf("ParsePortSelector(%q): %v", in, err)
		}
		if sel.Matches(m) != match {
			t.Errorf("%q matches %s = %v, want %v", in, m, !match, match)
		}
	}
	for _, in := range []string{"", "x", "tcp", "udp:9000", "tcp:9000:7000:1", "0"} {
		if _, err := ParsePortSelector(in); err == nil {
			t.Errorf("ParsePortSelector(%q) accepted", in)
		}
	}
}

func testPipeline(t *testing.T) *Pipeline {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(context.Background(), filepath.Join(dir, "berth.db"), filepath.Join(dir, "key"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &Pipeline{store: st, router: proxy.New(proxy.Options{}), opts: Options{
		HTTPPort: 8080, HTTPSPort: 8443, ReservedPorts: map[int]string{2222: "berth's SSH server"},
	}}
}

func TestWebPortAndMainRouting(t *testing.T) {
	p := testPipeline(t)
	parse := func(args ...string) []store.PortMapping {
		ms, err := ParsePortMappings(args)
		if err != nil {
			t.Fatal(err)
		}
		return ms
	}
	cases := []struct {
		ms   []store.PortMapping
		port int
		main bool
	}{
		{nil, 0, true},
		{parse("http:80:3000"), 3000, true},
		{parse("http:8080:3000"), 3000, true}, // the --http-addr port is the proxy's too
		{parse("tcp:9000:9000", "https:443:4000"), 4000, true},
		{parse("http:9001:6000", "http:80:7000"), 7000, true},
		{parse("http:9001:6000"), 6000, false},
		{parse("tcp:9000:9000"), 0, false},
	}
	for _, c := range cases {
		port, ok := p.webPort(c.ms)
		if port != c.port || ok != (c.port != 0) || p.servesMain(c.ms) != c.main {
			t.Errorf("%v: webPort %d %v servesMain %v; want %d %v", c.ms, port, ok, p.servesMain(c.ms), c.port, c.main)
		}
	}
}

func TestCheckPortMappings(t *testing.T) {
	ctx := context.Background()
	p := testPipeline(t)
	for _, a := range []string{"shop", "other"} {
		if err := p.store.CreateApp(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.store.SetPortMappings(ctx, "other", []store.PortMapping{
		{App: "other", Scheme: "tcp", HostPort: 9000, ContainerPort: 9000},
		{App: "other", Scheme: "http", HostPort: 80, ContainerPort: 5000},
	}); err != nil {
		t.Fatal(err)
	}
	refused := map[string]string{
		"tcp:9000:7000":                  "already used by app other (tcp:9000:9000)",
		"http:9000:5000":                 "already used by app other",
		"tcp:2222:22":                    "port 2222 is used by berth's SSH server",
		"tcp:80:5000":                    "the HTTP proxy's port",
		"tcp:8080:5000":                  "the HTTP proxy's port",
		"tcp:443:5000":                   "the HTTPS proxy's port",
		"http:443:5000":                  "the HTTPS proxy's port",
		"https:9443:5000":                "https is only served on the HTTPS proxy's port (443 or 8443)",
		"http:80:5000 https:443:5001":    "same container port",
		"http:8080:5000 https:8443:6000": "same container port",
	}
	for args, want := range refused {
		ms, err := ParsePortMappings(strings.Fields(args))
		if err != nil {
			t.Fatal(err)
		}
		err = p.checkPortMappings(ctx, "shop", ms)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", args, err, want)
		}
	}
	for _, args := range []string{"http:80:5000", "http:80:5000 https:443:5000 tcp:9001:7000 http:9002:5000", "tcp:9000:9000"} {
		ms, _ := ParsePortMappings(strings.Fields(args))
		app := "shop"
		if args == "tcp:9000:9000" {
			app = "other" // an app may keep its own port
		}
		if err := p.checkPortMappings(ctx, app, ms); err != nil {
			t.Errorf("%s refused: %v", args, err)
		}
	}
}
