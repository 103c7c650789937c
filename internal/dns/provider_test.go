package dns

import (
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig("rfc2136", []string{"server=127.0.0.1", "zone=Example.COM.", "key-name=berth", "key-secret=c2VjcmV0"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Settings["server"] != "127.0.0.1:53" || c.Zone() != "example.com" || c.Settings["key-alg"] != "hmac-sha256" || c.Resolver() != "127.0.0.1:53" {
		t.Fatalf("normalised: %+v", c)
	}
	if p := c.Public(); p["key-secret"] != "********" || p["key-name"] != "berth" {
		t.Fatalf("Public: %v", p)
	}
	if _, err := c.New(); err != nil {
		t.Fatal(err)
	}
	cf, err := ParseConfig("cloudflare", []string{"api-token=abc", "zone=example.com"})
	if err != nil || cf.Resolver() != "" {
		t.Fatalf("cloudflare: %v %v", cf, err)
	}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"route53", nil, "unknown DNS provider"},
		{"rfc2136", []string{"server=x", "zone=example.com", "key-name=k"}, "key-secret is required"},
		{"rfc2136", []string{"server=x", "zone=example.com", "key-name=k", "key-secret=!!"}, "must be base64"},
		{"rfc2136", []string{"server=x:99999", "zone=example.com", "key-name=k", "key-secret=eA=="}, "port must be"},
		{"rfc2136", []string{"server=a b", "zone=example.com", "key-name=k", "key-secret=eA=="}, "invalid server"},
		{"rfc2136", []string{"server=x", "zone=*.example.com", "key-name=k", "key-secret=eA=="}, "invalid zone"},
		{"rfc2136", []string{"server=x", "zone=example.com", "key-name=k", "key-secret=eA==", "key-alg=rot13"}, "invalid key-alg"},
		{"rfc2136", []string{"server=x", "zone=example.com", "key-name=k", "key-secret=eA==", "color=blue"}, "unknown setting"},
		{"rfc2136", []string{"server"}, "use KEY=VALUE"},
		{"cloudflare", []string{"api-token=a b", "zone=example.com"}, "must not contain spaces"},
	} {
		_, err := ParseConfig(c.name, c.args)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %v: %v, want %q", c.name, c.args, err, c.want)
		}
	}
}

func TestParseAddresses(t *testing.T) {
	got, err := ParseAddresses("203.0.113.7, 2001:db8::7,203.0.113.7 ::ffff:198.51.100.1")
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, a := range got {
		s = append(s, a.String())
	}
	if strings.Join(s, " ") != "203.0.113.7 2001:db8::7 198.51.100.1" {
		t.Fatalf("ParseAddresses: %v", s)
	}
	for _, bad := range []string{"example.com", "300.1.1.1", "fe80::1%eth0"} {
		if _, err := ParseAddresses(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
