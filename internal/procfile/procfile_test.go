package procfile

import (
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	got, err := Parse([]byte("# comment\nweb: ./server --port $PORT\n\n  worker:  ./worker -q high  \nrelease: ./migrate\nclock:a:b\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"web": "./server --port $PORT", "worker": "./worker -q high", "release": "./migrate", "clock": "a:b"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"web ./server", "line 1: expected"},
		{"web: a\nWeb_2: b", "line 2: invalid process type"},
		{"web: a\nweb: b", "line 2: process type web is defined twice"},
		{"web:", "line 1: process type web has no command"},
		{"-web: x", "invalid process type"},
		{"web: " + strings.Repeat("x", 70<<10), "larger than"},
	} {
		_, err := Parse([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%.30q) = %v, want error containing %q", tc.in, err, tc.want)
		}
	}
}
