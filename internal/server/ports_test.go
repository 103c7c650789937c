package server

import "testing"

func TestPortsOptions(t *testing.T) {
	cases := []struct {
		http, ssh, host string
		reserved        int
	}{
		{":80", ":2222", "", 2222},
		{"127.0.0.1:8080", "127.0.0.1:2200", "127.0.0.1", 2200},
		{"[::1]:8080", "", "::1", 0},
	}
	for _, c := range cases {
		host, reserved := portsOptions(Config{HTTPAddr: c.http, SSHAddr: c.ssh})
		if host != c.host {
			t.Errorf("%s: host %q, want %q", c.http, host, c.host)
		}
		if _, ok := reserved[c.reserved]; c.reserved != 0 && !ok || c.reserved == 0 && len(reserved) != 0 {
			t.Errorf("%s/%s: reserved %v", c.http, c.ssh, reserved)
		}
	}
}
