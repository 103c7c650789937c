package server

import (
	"fmt"
	"net"
	"strconv"
)

// portsOptions returns where the extra listeners of port mappings bind and
// which host ports berth itself takes besides the HTTP(S) proxy. Mapped
// ports listen on --ports-host when set, else on the host of --http-addr
// (":80": every interface; "127.0.0.1:8080": loopback only), so a server
// kept to loopback keeps its mapped ports there too.
func portsOptions(cfg Config) (host string, reserved map[int]string, err error) {
	if cfg.PortsHost != "" {
		if net.ParseIP(cfg.PortsHost) == nil {
			return "", nil, fmt.Errorf("--ports-host %q is not an IP address", cfg.PortsHost)
		}
		host = cfg.PortsHost
	} else if host, _, err = net.SplitHostPort(cfg.HTTPAddr); err != nil {
		host = ""
	}
	reserved = map[int]string{}
	if _, p, err := net.SplitHostPort(cfg.SSHAddr); err == nil {
		if n, err := strconv.Atoi(p); err == nil && n > 0 {
			reserved[n] = "berth's SSH server"
		}
	}
	return host, reserved, nil
}
