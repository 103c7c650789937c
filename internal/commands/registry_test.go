package commands

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"
)

var (
	localCaller  = Caller{Name: "local", Local: true}
	remoteCaller = Caller{Name: "alice"}
)

func parseCmd() *Command {
	return &Command{
		Name:    "test:parse",
		MinArgs: 1,
		MaxArgs: 2,
		Flags: []Flag{
			{Name: "force", Short: "f"},
			{Name: "num", Short: "n", Value: true},
			{Name: "format", Value: true},
		},
	}
}

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		pos   []string
		flags map[string]string
	}{
		{"positional only", []string{"app"}, []string{"app"}, map[string]string{}},
		{"flags before", []string{"--force", "app"}, []string{"app"}, map[string]string{"force": "true"}},
		{"flags after", []string{"app", "--force"}, []string{"app"}, map[string]string{"force": "true"}},
		{"flags between", []string{"app", "-f", "second"}, []string{"app", "second"}, map[string]string{"force": "true"}},
		{"long with =", []string{"--format=json", "app"}, []string{"app"}, map[string]string{"format": "json"}},
		{"long = empty", []string{"--format=", "app"}, []string{"app"}, map[string]string{"format": ""}},
		{"long = keeps later =", []string{"app", "--format=a=b"}, []string{"app"}, map[string]string{"format": "a=b"}},
		{"long with separate value", []string{"--format", "json", "app"}, []string{"app"}, map[string]string{"format": "json"}},
		{"short with value", []string{"-n", "5", "app"}, []string{"app"}, map[string]string{"num": "5"}},
		{"value that looks like a flag", []string{"app", "--num", "--force"}, []string{"app"}, map[string]string{"num": "--force"}},
		{"double dash ends flags", []string{"app", "--", "--force"}, []string{"app", "--force"}, map[string]string{}},
		{"double dash after flags", []string{"-f", "--", "-n", "x"}, []string{"-n", "x"}, map[string]string{"force": "true"}},
		{"lone dash is positional", []string{"-", "app"}, []string{"-", "app"}, map[string]string{}},
		{"last value wins", []string{"app", "-n", "1", "--num=2"}, []string{"app"}, map[string]string{"num": "2"}},
		{"help skips arg counts", []string{"--help"}, nil, map[string]string{"help": "true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			call := &Call{}
			if err := parseArgs(parseCmd(), tc.args, call); err != nil {
				t.Fatalf("parseArgs(%q) = %v", tc.args, err)
			}
			if !reflect.DeepEqual(call.Args, tc.pos) {
				t.Errorf("Args = %q, want %q", call.Args, tc.pos)
			}
			for _, name := range []string{"force", "num", "format", "help"} {
				v, set := tc.flags[name]
				if call.Bool(name) != set || call.Flag(name) != v {
					t.Errorf("flag %s: Bool=%v Flag=%q, want set=%v value %q", name, call.Bool(name), call.Flag(name), set, v)
				}
			}
		})
	}
}

func TestParseArgsRepeatedFlag(t *testing.T) {
	call := &Call{}
	if err := parseArgs(parseCmd(), []string{"-n", "1", "app", "--num=2", "--num", "3"}, call); err != nil {
		t.Fatal(err)
	}
	if got := call.Flags("num"); !reflect.DeepEqual(got, []string{"1", "2", "3"}) {
		t.Fatalf("Flags(num) = %q, want every value in order", got)
	}
	if call.Flag("num") != "3" {
		t.Fatalf("Flag(num) = %q, want the last value", call.Flag("num"))
	}
	if got := call.Flags("format"); len(got) != 0 {
		t.Fatalf("Flags(format) = %q for an absent flag", got)
	}
}

func TestParseArgsFlagsFirst(t *testing.T) {
	cmd := &Command{Name: "run", MinArgs: 1, MaxArgs: -1, FlagsFirst: true, Flags: []Flag{{Name: "env", Short: "e", Value: true}, {Name: "detach", Short: "d"}}}
	call := &Call{}
	if err := parseArgs(cmd, []string{"-d", "--env", "A=1", "shop", "ls", "-la", "--env", "x", "--"}, call); err != nil {
		t.Fatal(err)
	}
	if want := []string{"shop", "ls", "-la", "--env", "x", "--"}; !reflect.DeepEqual(call.Args, want) {
		t.Fatalf("Args = %q, want %q (flags after the first argument belong to it)", call.Args, want)
	}
	if !call.Bool("detach") || call.Flag("env") != "A=1" {
		t.Fatalf("leading flags: detach=%v env=%q", call.Bool("detach"), call.Flag("env"))
	}
	// Without FlagsFirst the same flags anywhere are parsed.
	cmd.FlagsFirst = false
	call = &Call{}
	if err := parseArgs(cmd, []string{"shop", "--env", "B=2"}, call); err != nil || call.Flag("env") != "B=2" || len(call.Args) != 1 {
		t.Fatalf("without FlagsFirst: %q %q %v", call.Args, call.Flag("env"), err)
	}
}

func TestParseArgsErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown long flag", []string{"app", "--nope"}, "unknown flag --nope for test:parse"},
		{"unknown long flag with value", []string{"app", "--nope=1"}, "unknown flag --nope for test:parse"},
		{"unknown short flag", []string{"app", "-x"}, "unknown flag -x for test:parse"},
		{"missing value at end", []string{"app", "--num"}, "flag --num needs a value"},
		{"missing value short", []string{"app", "-n"}, "flag --num needs a value"},
		{"bool with value", []string{"app", "--force=yes"}, "flag --force takes no value"},
		{"too few", []string{"--force"}, "test:parse needs more arguments"},
		{"none", nil, "test:parse needs more arguments"},
		{"too many", []string{"a", "b", "c"}, "test:parse got too many arguments"},
		{"too many after --", []string{"a", "--", "b", "c"}, "test:parse got too many arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := parseArgs(parseCmd(), tc.args, &Call{})
			if err == nil || err.Error() != tc.want {
				t.Fatalf("parseArgs(%q) = %v, want %q", tc.args, err, tc.want)
			}
		})
	}
}

func TestParseArgsUnlimited(t *testing.T) {
	cmd := &Command{Name: "x:y", MaxArgs: -1}
	call := &Call{}
	args := []string{"a", "b", "c", "d", "e", "f"}
	if err := parseArgs(cmd, args, call); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(call.Args, args) {
		t.Fatalf("Args = %q", call.Args)
	}
	if err := parseArgs(&Command{Name: "x:z"}, []string{"a"}, &Call{}); err == nil {
		t.Fatal("MaxArgs 0 accepted an argument")
	}
}

// run invokes r and returns the exit code and both outputs.
func run(r *Registry, caller Caller, env map[string]string, argv ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := r.Run(context.Background(), argv, strings.NewReader(""), &out, &errb, caller, env)
	return code, out.String(), errb.String()
}

func quietRegistry() *Registry {
	return NewRegistry(slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func TestRunExitCodes(t *testing.T) {
	r := quietRegistry()
	r.AddNamespace("t", "Test commands")
	var got *Call
	r.Add(&Command{Name: "t:ok", Usage: "<app>", MinArgs: 1, MaxArgs: 1, Flags: []Flag{{Name: "verbose", Short: "v"}},
		Run: func(ctx context.Context, c *Call) error {
			got = c
			io.WriteString(c.Stdout, "ran "+c.Args[0]+"\n")
			return nil
		}})
	r.Add(&Command{Name: "t:exit", MaxArgs: 0, Run: func(ctx context.Context, c *Call) error { return Exit(42, "custom %s", "failure") }})
	r.Add(&Command{Name: "t:silent", MaxArgs: 0, Run: func(ctx context.Context, c *Call) error { return &ExitError{Code: 3} }})
	r.Add(&Command{Name: "t:wrapped", MaxArgs: 0, Run: func(ctx context.Context, c *Call) error {
		return errors.Join(errors.New("context"), Exit(9, "inner"))
	}})
	r.Add(&Command{Name: "t:usage", Usage: "<app> <thing>", MaxArgs: -1, Run: func(ctx context.Context, c *Call) error {
		return &UsageError{Msg: "thing is wrong"}
	}})
	r.Add(&Command{Name: "t:fail", MaxArgs: 0, Run: func(ctx context.Context, c *Call) error { return errors.New("disk is full") }})
	r.Add(&Command{Name: "t:local", MaxArgs: 0, LocalOnly: true, Run: func(ctx context.Context, c *Call) error {
		io.WriteString(c.Stdout, "local ran\n")
		return nil
	}})

	code, out, errOut := run(r, localCaller, nil, "t:ok", "shop", "-v")
	if code != 0 || out != "ran shop\n" || errOut != "" {
		t.Fatalf("t:ok = %d %q %q", code, out, errOut)
	}
	if got.Command.Name != "t:ok" || !got.Bool("verbose") || got.Caller != localCaller {
		t.Fatalf("call = %+v", got)
	}

	code, _, errOut = run(r, localCaller, nil, "t:exit")
	if code != 42 || errOut != " !     custom failure.\n" {
		t.Fatalf("ExitError: %d %q", code, errOut)
	}
	code, _, errOut = run(r, localCaller, nil, "t:silent")
	if code != 3 || errOut != "" {
		t.Fatalf("ExitError without message: %d %q", code, errOut)
	}
	code, _, errOut = run(r, localCaller, nil, "t:wrapped")
	if code != 9 || errOut != " !     inner.\n" {
		t.Fatalf("wrapped ExitError: %d %q", code, errOut)
	}

	code, out, errOut = run(r, localCaller, nil, "t:usage", "x")
	if code != 1 || out != "" || errOut != " !     thing is wrong\n !     Usage: berth t:usage <app> <thing>\n" {
		t.Fatalf("UsageError: %d %q %q", code, out, errOut)
	}

	code, _, errOut = run(r, localCaller, nil, "t:fail")
	if code != 1 || errOut != " !     disk is full.\n" {
		t.Fatalf("plain error: %d %q", code, errOut)
	}

	// Wrong invocations print the usage and never run the command.
	got = nil
	code, _, errOut = run(r, localCaller, nil, "t:ok")
	if code != 1 || got != nil || !strings.Contains(errOut, "t:ok needs more arguments") || !strings.Contains(errOut, "Usage: berth t:ok <app>") {
		t.Fatalf("missing argument: %d %q (ran: %v)", code, errOut, got != nil)
	}
	code, _, errOut = run(r, localCaller, nil, "t:ok", "shop", "--bogus")
	if code != 1 || got != nil || !strings.Contains(errOut, "unknown flag --bogus") {
		t.Fatalf("unknown flag: %d %q", code, errOut)
	}

	code, out, errOut = run(r, localCaller, nil, "nope:cmd")
	if code != 1 || out != "" || errOut != " !     \"nope:cmd\" is not a berth command. See 'berth help'.\n" {
		t.Fatalf("unknown command: %d %q %q", code, out, errOut)
	}
	long := strings.Repeat("x", 200)
	_, _, errOut = run(r, localCaller, nil, long)
	if strings.Contains(errOut, long) || !strings.Contains(errOut, "…") {
		t.Fatalf("an unknown command name is not shortened: %q", errOut)
	}

	code, out, errOut = run(r, remoteCaller, nil, "t:local")
	if code != 1 || out != "" || errOut != " !     t:local can only be run on the server itself.\n" {
		t.Fatalf("LocalOnly over SSH: %d %q %q", code, out, errOut)
	}
	if code, out, _ := run(r, localCaller, nil, "t:local"); code != 0 || out != "local ran\n" {
		t.Fatalf("LocalOnly locally: %d %q", code, out)
	}

	// --help prints the command's help instead of running it.
	got = nil
	code, out, _ = run(r, localCaller, nil, "t:ok", "--help")
	if code != 0 || got != nil || !strings.HasPrefix(out, "Usage: berth t:ok <app>\n") || !strings.Contains(out, "-v, --verbose") {
		t.Fatalf("--help: %d %q (ran: %v)", code, out, got != nil)
	}
}

func TestRunInterruptedCommand(t *testing.T) {
	r := quietRegistry()
	r.Add(&Command{Name: "t:wait", MaxArgs: 0, Run: func(ctx context.Context, c *Call) error {
		<-ctx.Done()
		return ctx.Err()
	}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errb bytes.Buffer
	code := r.Run(ctx, []string{"t:wait"}, nil, &out, &errb, localCaller, nil)
	if code != 1 || errb.String() != " !     t:wait was interrupted.\n" {
		t.Fatalf("interrupted: %d %q", code, errb.String())
	}
}

func TestRunEnvOnlyForLocalCallers(t *testing.T) {
	r := quietRegistry()
	var got map[string]string
	r.Add(&Command{Name: "t:env", MaxArgs: 0, Run: func(ctx context.Context, c *Call) error {
		got = c.Env
		return nil
	}})
	env := map[string]string{"GIT_QUARANTINE_PATH": "/tmp/q"}
	if code, _, _ := run(r, localCaller, env, "t:env"); code != 0 || !reflect.DeepEqual(got, env) {
		t.Fatalf("local caller: %d env %v", code, got)
	}
	got = map[string]string{"sentinel": "x"}
	if code, _, _ := run(r, remoteCaller, env, "t:env"); code != 0 || got != nil {
		t.Fatalf("remote caller got env %v, want none", got)
	}
}

func TestDuplicateCommandPanics(t *testing.T) {
	r := quietRegistry()
	r.Add(&Command{Name: "a:b"})
	defer func() {
		if recover() == nil {
			t.Fatal("adding a duplicate command did not panic")
		}
	}()
	r.Add(&Command{Name: "a:b"})
}

func helpRegistry() *Registry {
	r := quietRegistry()
	noop := func(ctx context.Context, c *Call) error { return nil }
	r.AddNamespace("apps", "Manage apps")
	r.AddNamespace("config", "Manage config vars")
	r.AddNamespace("secret", "Only hidden commands")
	r.AddNamespace("server", "Host-only commands")
	r.AddNamespace("empty", "A namespace without commands")
	r.Add(&Command{Name: "apps:create", Usage: "<app>", Help: "Create an app", MinArgs: 1, MaxArgs: 1, Run: noop})
	r.Add(&Command{Name: "apps:list", Help: "List apps", Flags: []Flag{{Name: "format", Value: true, Help: "output format"}}, Run: noop})
	r.Add(&Command{Name: "apps:internal-thing", Help: "Do not show", Hidden: true, Run: noop})
	r.Add(&Command{Name: "config:set", Usage: "<app> KEY=VALUE...", Help: "Set config vars", MaxArgs: -1, Run: noop})
	r.Add(&Command{Name: "secret:x", Help: "Hidden", Hidden: true, Run: noop})
	r.Add(&Command{Name: "server:gc", Help: "Collect garbage", LocalOnly: true, Run: noop})
	return r
}

func TestHelpListsNamespaces(t *testing.T) {
	r := helpRegistry()
	for _, argv := range [][]string{nil, {"help"}, {"--help"}, {"-h"}} {
		code, out, errOut := run(r, localCaller, nil, argv...)
		if code != 0 || errOut != "" {
			t.Fatalf("%q: %d %q", argv, code, errOut)
		}
		if !strings.HasPrefix(out, "Usage: berth ") {
			t.Fatalf("%q: help does not start with usage: %q", argv, out)
		}
		for _, want := range []string{"    apps    Manage apps\n", "    config  Manage config vars\n", "    server  Host-only commands\n"} {
			if !strings.Contains(out, want) {
				t.Errorf("%q: help lacks %q:\n%s", argv, want, out)
			}
		}
		for _, hidden := range []string{"secret", "empty"} {
			if strings.Contains(out, hidden) {
				t.Errorf("%q: help lists %s, which has no visible command:\n%s", argv, hidden, out)
			}
		}
		if strings.Index(out, "apps ") > strings.Index(out, "config ") {
			t.Errorf("namespaces not sorted:\n%s", out)
		}
	}
	// Over SSH, a namespace of only local commands is not listed.
	_, out, _ := run(r, remoteCaller, nil, "help")
	if strings.Contains(out, "server") || !strings.Contains(out, "apps") {
		t.Fatalf("remote help:\n%s", out)
	}
}

func TestHelpNamespace(t *testing.T) {
	r := helpRegistry()
	want := "Usage: berth apps[:COMMAND]\n\nManage apps\n\nCommands:\n" +
		"    apps:create <app>  Create an app\n" +
		"    apps:list          List apps\n"
	for _, argv := range [][]string{{"help", "apps"}, {"apps:help"}, {"apps"}} {
		code, out, errOut := run(r, localCaller, nil, argv...)
		if code != 0 || errOut != "" || out != want {
			t.Errorf("%q = %d, stderr %q, stdout:\n%s\nwant:\n%s", argv, code, errOut, out, want)
		}
	}

	_, out, _ := run(r, remoteCaller, nil, "help", "server")
	if strings.Contains(out, "server:gc") {
		t.Fatalf("remote namespace help lists a local-only command:\n%s", out)
	}
	_, out, _ = run(r, localCaller, nil, "server:help")
	if !strings.Contains(out, "server:gc") {
		t.Fatalf("local namespace help lacks a local-only command:\n%s", out)
	}

	for _, argv := range [][]string{{"help", "nope"}, {"nope:help"}, {"help", "apps:internal-thing"}} {
		code, out, errOut := run(r, localCaller, nil, argv...)
		if code != 1 || out != "" || !strings.Contains(errOut, "No help for") {
			t.Errorf("%q = %d %q %q, want exit 1 and 'No help for'", argv, code, out, errOut)
		}
	}
}

func TestHelpPrefersNamespace(t *testing.T) {
	r := quietRegistry()
	noop := func(ctx context.Context, c *Call) error { return nil }
	r.AddNamespace("logs", "Show logs")
	r.Add(&Command{Name: "logs", Usage: "<app>", Help: "Show an app's logs", Run: noop})
	r.Add(&Command{Name: "logs:failed", Usage: "<app>", Help: "Show a failed deploy's logs", Run: noop})
	r.AddNamespace("version", "Print the version")
	r.Add(&Command{Name: "version", Help: "Print the version", Run: noop})
	r.AddNamespace("server", "Host-only commands")
	r.Add(&Command{Name: "server:gc", Help: "Collect garbage", LocalOnly: true, Run: noop})

	// A name that is both a namespace with several commands and a command:
	// the namespace's help, which lists the command too.
	code, out, _ := run(r, localCaller, nil, "help", "logs")
	if code != 0 || !strings.HasPrefix(out, "Usage: berth logs[:COMMAND]") || !strings.Contains(out, "logs:failed <app>") || !strings.Contains(out, "    logs <app>  ") {
		t.Fatalf("help logs = %d:\n%s", code, out)
	}
	// A namespace holding only its namespace-named command: that command's help.
	code, out, _ = run(r, localCaller, nil, "help", "version")
	if code != 0 || out != "Usage: berth version\n\nPrint the version\n" {
		t.Fatalf("help version = %d %q", code, out)
	}
	// A namespace with nothing the caller may run has no help for it.
	code, out, errOut := run(r, remoteCaller, nil, "help", "server")
	if code != 1 || out != "" || !strings.Contains(errOut, "No help for") {
		t.Fatalf("remote help server = %d %q %q", code, out, errOut)
	}
	if code, out, _ := run(r, localCaller, nil, "help", "server"); code != 0 || !strings.Contains(out, "server:gc") {
		t.Fatalf("local help server = %d %q", code, out)
	}
}

func TestHelpCommand(t *testing.T) {
	r := helpRegistry()
	code, out, _ := run(r, localCaller, nil, "help", "apps:list")
	want := "Usage: berth apps:list\n\nList apps\n\nFlags:\n    --format VALUE           output format\n"
	if code != 0 || out != want {
		t.Fatalf("help apps:list = %d\n%q\nwant\n%q", code, out, want)
	}
	code, out, _ = run(r, localCaller, nil, "help", "config:set")
	if code != 0 || out != "Usage: berth config:set <app> KEY=VALUE...\n\nSet config vars\n" {
		t.Fatalf("help config:set = %d %q", code, out)
	}
}

func TestCommandsHidesHiddenAndLocalOnly(t *testing.T) {
	r := helpRegistry()
	names := func(cs []*Command) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.Name)
		}
		return out
	}
	if got, want := names(r.Commands(localCaller)), []string{"apps:create", "apps:list", "config:set", "server:gc"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("local Commands = %v, want %v", got, want)
	}
	if got, want := names(r.Commands(remoteCaller)), []string{"apps:create", "apps:list", "config:set"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("remote Commands = %v, want %v", got, want)
	}
	// Hidden commands still run.
	if c, ok := r.Lookup("apps:internal-thing"); !ok || c.Name != "apps:internal-thing" {
		t.Fatal("Lookup of a hidden command failed")
	}
	if code, _, _ := run(r, localCaller, nil, "secret:x"); code != 0 {
		t.Fatalf("hidden command exit %d", code)
	}
}

func TestSentence(t *testing.T) {
	for in, want := range map[string]string{
		"disk full":       "disk full.",
		"done.":           "done.",
		"really?":         "really?",
		"stop!":           "stop!",
		"":                "failed",
		"app x not found": "app x not found.",
	} {
		if got := sentence(errors.New(in)); got != want {
			t.Errorf("sentence(%q) = %q, want %q", in, got, want)
		}
	}
}
