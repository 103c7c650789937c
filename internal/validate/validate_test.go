package validate

import (
	"strconv"
	"strings"
	"testing"
)

func checkNames(t *testing.T, fn string, check func(string) error, valid, invalid []string) {
	t.Helper()
	for _, s := range valid {
		if err := check(s); err != nil {
			t.Errorf("%s(%q) = %v, want valid", fn, s, err)
		}
	}
	for _, s := range invalid {
		err := check(s)
		if err == nil {
			t.Errorf("%s(%q) accepted, want an error", fn, s)
			continue
		}
		// The message quotes the offending value so the user sees it.
		if !strings.Contains(err.Error(), strconv.Quote(s)) {
			t.Errorf("%s(%q) error %q does not quote the value", fn, s, err)
		}
	}
}

func TestAppName(t *testing.T) {
	checkNames(t, "AppName", AppName,
		[]string{"a", "shop", "my-app", "app2", "a-b-c", "x" + strings.Repeat("a", 62)},
		[]string{
			"",
			"Shop",                         // uppercase
			"2app",                         // starts with a digit
			"-app",                         // starts with a dash
			"my_app",                       // underscore
			"my.app",                       // dot
			"my app",                       // space
			"../etc",                       // path
			"app\n",                        // trailing newline
			"x" + strings.Repeat("a", 63),  // 64 characters
			"ümlaut",                       // non-ASCII
			"app;rm",                       // shell metacharacter
			"a/b",                          // slash
			strings.Repeat("a", 200),       // far too long
			"app" + strings.Repeat(" ", 1), // trailing space
		})
}

func TestProcessType(t *testing.T) {
	checkNames(t, "ProcessType", ProcessType,
		[]string{"web", "worker", "w", "1", "release-2", "a1b2", strings.Repeat("p", 63)},
		[]string{
			"",
			"Web",
			"-web",
			"web-",
			"web_2",
			"web.1",
			"web 1",
			strings.Repeat("p", 64),
		})
}

func TestEnvKey(t *testing.T) {
	checkNames(t, "EnvKey", EnvKey,
		[]string{"PORT", "DATABASE_URL", "_PRIVATE", "a", "lower_case", "X1", "_"},
		[]string{"", "1ABC", "MY-KEY", "MY KEY", "A=B", "A.B", "KEY\n", "ÄPFEL", "$HOME"})
}

func TestKeyName(t *testing.T) {
	checkNames(t, "KeyName", KeyName,
		[]string{"alice", "Alice", "alice@laptop", "ci.deploy", "bot_1", "k-2", "0", strings.Repeat("k", 64)},
		[]string{"", "-alice", ".hidden", "_x", "@me", "alice laptop", "a/b", "a:b", "a\nb", strings.Repeat("k", 65)})
}

func TestDomain(t *testing.T) {
	long63 := strings.Repeat("a", 63)
	// 4 labels of 63 characters plus 3 dots: 255 characters.
	tooLong := strings.Join([]string{long63, long63, long63, long63}, ".")
	// 253 characters exactly: 3×63 + 61 + 3 dots.
	justFits := strings.Join([]string{long63, long63, long63, strings.Repeat("b", 61)}, ".")
	if len(justFits) != 253 || len(tooLong) != 255 {
		t.Fatalf("test setup: %d, %d", len(justFits), len(tooLong))
	}

	valid := []struct{ in, want string }{
		{"example.com", "example.com"},
		{"Example.COM", "example.com"},
		{"example.com.", "example.com"},
		{"  shop.example.com  ", "shop.example.com"},
		{"localhost", "localhost"},
		{"a-b.example.com", "a-b.example.com"},
		{"my_host.example.com", "my_host.example.com"},
		{"*.example.com", "*.example.com"},
		{"*.Shop.Example.com.", "*.shop.example.com"},
		{"1.example.com", "1.example.com"},
		{"123.com", "123.com"},
		{"xn--bcher-kva.example", "xn--bcher-kva.example"},
		{long63 + ".com", long63 + ".com"},
		{justFits, justFits},
	}
	for _, tc := range valid {
		got, err := Domain(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("Domain(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}

	invalid := []struct{ in, why string }{
		{"", "1 to 253"},
		{"   ", "1 to 253"},
		{".", "1 to 253"},
		{tooLong, "1 to 253"},
		{"127.0.0.1", "IP address"},
		{"10.0.0.1.", "IP address"},
		{"8.8.8.8", "IP address"},
		{"12345", "IP address"},
		{"::1", "label"},
		{"[::1]", "label"},
		{"*.com", "label"},   // a wildcard needs at least two labels under it
		{"*", "label"},       // a bare wildcard
		{"a.*.com", "label"}, // a wildcard only as the first label
		{"**.example.com", "label"},
		{"*example.com", "label"},
		{"exa mple.com", "label"},
		{"example..com", "label"},
		{".example.com", "label"},
		{"example.com..", "label"},
		{"-example.com", "label"},
		{"example-.com", "label"},
		{"_dmarc.example.com", "label"},
		{"example_.com", "label"},
		{long63 + "a.com", "label"}, // 64-character label
		{"exämple.com", "label"},
		{"example.com/path", "label"},
		{"example.com:8080", "label"},
		{"user@example.com", "label"},
	}
	for _, tc := range invalid {
		got, err := Domain(tc.in)
		if err == nil {
			t.Errorf("Domain(%q) = %q, want an error", tc.in, got)
			continue
		}
		if !strings.Contains(err.Error(), tc.why) {
			t.Errorf("Domain(%q) error %q does not mention %q", tc.in, err, tc.why)
		}
		if got != "" {
			t.Errorf("Domain(%q) returned %q with its error", tc.in, got)
		}
	}
}
