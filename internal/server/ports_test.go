package server

import "testing"

func TestPortsOptions(t *testing.T) {
	cases := []struct {
		http, ssh, ports, host string
		reserved               int
	}{
		{":80", ":2222", "", "", 2222},
		{"127.0.0.1:8080", "127.0.0.1:2200", "", "127.0.0.1", 2200},
		{"[::1]:8080", "", "", "::1", 0},
		{":80", "", "10.0.0.5", "10.0.0.5", 0},
	}
	for _, c := range cases {
		host, reserved, err := portsOptions(Config{HTTPAddr: c.http, SSHAddr: c.ssh, PortsHost: c.ports})
		if err != nil {
			t.Fatal(err)
		}
		if host != c.host {
			t.Errorf("%s: host %q, want %q", c.http, host, c.host)
		}
		if _, ok := reserved[c.reserved]; c.reserved != 0 && !ok || c.reserved == 0 && len(reserved) != 0 {
			t.Errorf("%s/%s: reserved %v", c.http, c.ssh, reserved)
		}
	}
}

func TestPortsOptionsRefusesBadHost(t *testing.T) {
	for _, h := range []string{"example.com", "1.2.3", "0.0.0.0:80"} {
		if _, _, err := portsOptions(Config{HTTPAddr: ":80", PortsHost: h}); err == nil {
			t.Errorf("--ports-host %q accepted", h)
		}
	}
}
