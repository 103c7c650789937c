package pipeline

import (
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/berth-paas/berth/internal/store"
)

var (
	revA    = strings.Repeat("a", 40)
	revB    = strings.Repeat("b", 40)
	revZero = strings.Repeat("0", 40)
	rev256  = strings.Repeat("c", 64)
)

func TestParsePushedRefs(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     PushedRef
	}{
		{"main", revA + " " + revB + " refs/heads/main\n", PushedRef{revA, revB, "refs/heads/main"}},
		{"master", revA + " " + revB + " refs/heads/master\n", PushedRef{revA, revB, "refs/heads/master"}},
		{"new branch", revZero + " " + revB + " refs/heads/main\n", PushedRef{revZero, revB, "refs/heads/main"}},
		{"sha256 repository", rev256 + " " + rev256 + " refs/heads/main", PushedRef{rev256, rev256, "refs/heads/main"}},
		{"blank lines and spacing", "\n  \n" + revA + "\t" + revB + "   refs/heads/main  \n\n", PushedRef{revA, revB, "refs/heads/main"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePushedRefs(strings.NewReader(tc.in))
			if err != nil || got != tc.want {
				t.Fatalf("ParsePushedRefs = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestParsePushedRefsErrors(t *testing.T) {
	line := func(old, new, ref string) string { return old + " " + new + " " + ref + "\n" }
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", "", "nothing to deploy"},
		{"only blank lines", "\n\n  \n", "nothing to deploy"},
		{"other branch", line(revA, revB, "refs/heads/dev"), "pushing refs/heads/dev is not supported"},
		{"branch named like main", line(revA, revB, "refs/heads/mainline"), "not supported"},
		{"nested branch", line(revA, revB, "refs/heads/feature/main"), "not supported"},
		{"tag", line(revZero, revB, "refs/tags/v1"), "pushing refs/tags/v1 is not supported"},
		{"not a ref", line(revA, revB, "main"), "not supported"},
		{"deploy branch with another", line(revA, revB, "refs/heads/main") + line(revA, revB, "refs/heads/dev"), "refs/heads/dev is not supported"},
		{"other before deploy branch", line(revA, revB, "refs/heads/dev") + line(revA, revB, "refs/heads/main"), "refs/heads/dev is not supported"},
		{"delete main", line(revA, revZero, "refs/heads/main"), "deleting branch main is not supported"},
		{"delete master sha256", line(rev256, strings.Repeat("0", 64), "refs/heads/master"), "deleting branch master"},
		{"two deploy branches", line(revA, revB, "refs/heads/main") + line(revA, revB, "refs/heads/master"), "one deploy branch at a time"},
		{"same branch twice", line(revA, revB, "refs/heads/main") + line(revB, revA, "refs/heads/main"), "one deploy branch at a time"},
		{"two fields", revA + " " + revB + "\n", "malformed ref update"},
		{"four fields", line(revA, revB, "refs/heads/main extra"), "malformed ref update"},
		{"short revision", line("abc123", revB, "refs/heads/main"), "malformed ref update"},
		{"uppercase revision", line(strings.Repeat("A", 40), revB, "refs/heads/main"), "malformed ref update"},
		{"not hex", line(revA, strings.Repeat("g", 40), "refs/heads/main"), "malformed ref update"},
		{"41 digits", line(revA+"a", revB, "refs/heads/main"), "malformed ref update"},
		{"malformed after a good line", line(revA, revB, "refs/heads/main") + "garbage\n", "malformed ref update"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePushedRefs(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParsePushedRefs = %+v, %v; want an error containing %q", got, err, tc.want)
			}
			if got != (PushedRef{}) {
				t.Fatalf("ParsePushedRefs returned %+v with its error", got)
			}
		})
	}
	_, err := ParsePushedRefs(iotest.ErrReader(iotest.ErrTimeout))
	if err == nil || !strings.Contains(err.Error(), "read pushed refs") {
		t.Fatalf("read error = %v", err)
	}
}

func TestSplitCommand(t *testing.T) {
	env := map[string]string{"PORT": "5000", "GREETING": "hello world", "EMPTY": "", "TRICKY": `a;b "c" it's $PORT`}
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"./server", []string{"./server"}},
		{"./server --port $PORT", []string{"./server", "--port", "5000"}},
		{"./server --port=${PORT}", []string{"./server", "--port=5000"}},
		{"./x ${PORT}0", []string{"./x", "50000"}},
		{`./say "$GREETING"`, []string{"./say", "hello world"}},
		{`./say '$GREETING'`, []string{"./say", "$GREETING"}},
		{`./run "a b" 'c d'`, []string{"./run", "a b", "c d"}},
		{`./run a\ b`, []string{"./run", "a b"}},
		{"  ./run \t -v  ", []string{"./run", "-v"}},
		{`./run ""`, []string{"./run", ""}},
		{`./run "$EMPTY"`, []string{"./run", ""}},
		// Quoted or escaped operators are plain characters.
		{`sh -c 'migrate && serve'`, []string{"sh", "-c", "migrate && serve"}},
		{`./x "a;b" a\|b`, []string{"./x", "a;b", "a|b"}},
		// Config values are data: never re-parsed for quotes, operators or $.
		{`./x "$TRICKY"`, []string{"./x", `a;b "c" it's $PORT`}},
	} {
		got, err := splitCommand(tc.in, env)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("splitCommand(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"", "is empty"},
		{"   ", "is empty"},
		{`./run "unterminated`, "cannot split command"},
		{`./run 'unterminated`, "cannot split command"},
		// No shell runs: shell syntax is refused, never silently cut off.
		{"./migrate && ./server", "uses shell syntax"},
		{"./a; ./b", "uses shell syntax"},
		{"./a | ./b", "uses shell syntax"},
		{"./server > log", "uses shell syntax"},
		{"./server 2>&1", "uses shell syntax"},
		{"./server < in", "uses shell syntax"},
		{"./server &", "uses shell syntax"},
	} {
		got, err := splitCommand(tc.in, env)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("splitCommand(%q) = %q, %v; want an error containing %q", tc.in, got, err, tc.want)
		}
	}
}

func TestSplitCommandUsesOnlyTheAppEnv(t *testing.T) {
	t.Setenv("BERTH_TEST_SERVER_SECRET", "leaked")
	got, err := splitCommand(`./run $BERTH_TEST_SERVER_SECRET "${BERTH_TEST_SERVER_SECRET}"`, map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range got {
		if strings.Contains(a, "leaked") {
			t.Fatalf("splitCommand expanded the server's environment: %q", got)
		}
	}
	if err := checkCommands(map[string]string{"web": "./server $PORT", "worker": ""}, nil); err != nil {
		t.Fatalf("checkCommands on good commands: %v", err)
	}
	if err := checkCommands(map[string]string{"web": `./server "oops`}, nil); err == nil || !strings.Contains(err.Error(), "Procfile process web") {
		t.Fatalf("checkCommands on a bad command = %v", err)
	}
}

func TestProcessOrder(t *testing.T) {
	rel := store.Release{Processes: map[string]string{"web": "", "worker": "./w", "clock": "./c", "release": "./r", "api": "./a"}}
	for _, tc := range []struct {
		name      string
		formation map[string]int
		want      []string
	}{
		{"web first then by name", map[string]int{"worker": 2, "web": 1, "clock": 1, "api": 3}, []string{"web", "api", "clock", "worker"}},
		{"zero quantities skipped", map[string]int{"web": 0, "worker": 1, "release": 0}, []string{"worker"}},
		{"types without a command skipped", map[string]int{"ghost": 2, "web": 1}, []string{"web"}},
		{"no web", map[string]int{"worker": 1, "clock": 1}, []string{"clock", "worker"}},
		{"nothing to run", map[string]int{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := processOrder(rel, tc.formation); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("processOrder = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFormatFormation(t *testing.T) {
	for _, tc := range []struct {
		in   map[string]int
		want string
	}{
		{map[string]int{"worker": 1, "web": 2}, "web=2 worker=1"},
		{map[string]int{"web": 0}, "web=0"},
		{map[string]int{"b": 10, "a": 1, "c": 0}, "a=1 b=10 c=0"},
		{map[string]int{}, ""},
		{nil, ""},
	} {
		if got := FormatFormation(tc.in); got != tc.want {
			t.Errorf("FormatFormation(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestReleasePort(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want int
	}{
		{nil, DefaultPort},
		{map[string]string{}, DefaultPort},
		{map[string]string{"PORT": "8080"}, 8080},
		{map[string]string{"PORT": "1"}, 1},
		{map[string]string{"PORT": "65535"}, 65535},
		{map[string]string{"PORT": "65536"}, DefaultPort},
		{map[string]string{"PORT": "0"}, DefaultPort},
		{map[string]string{"PORT": "-80"}, DefaultPort},
		{map[string]string{"PORT": "http"}, DefaultPort},
		{map[string]string{"PORT": ""}, DefaultPort},
		{map[string]string{"PORT": " 8080"}, DefaultPort},
		{map[string]string{"OTHER_PORT": "8080"}, DefaultPort},
	} {
		if got := releasePort(store.Release{Env: tc.env}); got != tc.want {
			t.Errorf("releasePort(%v) = %d, want %d", tc.env, got, tc.want)
		}
	}
	if DefaultPort != 5000 {
		t.Fatalf("DefaultPort = %d, the documented default is 5000", DefaultPort)
	}
}
