package rpc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-paas/berth/internal/commands"
)

const bigSize = 3<<20 + 12345 // more than one frame (maxFrame is 1 MiB)

func bigPayload() []byte {
	b := make([]byte, bigSize)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

// testCommands is what the test server runs.
type testCommands struct {
	proceed  chan struct{}      // t:stream waits on it between its two lines
	started  chan struct{}      // t:block closes it once running
	canceled chan error         // t:block sends its context's error
	gotCall  chan commands.Call // t:echo sends its call
}

func newTestRegistry(tc *testCommands) *commands.Registry {
	r := commands.NewRegistry(slog.New(slog.NewTextHandler(io.Discard, nil)))
	r.AddNamespace("t", "test commands")
	r.Add(&commands.Command{Name: "t:echo", MaxArgs: -1, Run: func(ctx context.Context, c *commands.Call) error {
		fmt.Fprintf(c.Stdout, "out: %s\n", strings.Join(c.Args, ","))
		fmt.Fprintf(c.Stderr, "err: %s\n", c.Env["X"])
		select {
		case tc.gotCall <- *c:
		default:
		}
		return nil
	}})
	r.Add(&commands.Command{Name: "t:exit", Run: func(ctx context.Context, c *commands.Call) error {
		io.WriteString(c.Stdout, "before exit\n")
		return commands.Exit(7, "seven")
	}})
	r.Add(&commands.Command{Name: "t:cat", Run: func(ctx context.Context, c *commands.Call) error {
		data, err := io.ReadAll(c.Stdin)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.Stdout, "%d:%s", len(data), bytes.ToUpper(data))
		return nil
	}})
	r.Add(&commands.Command{Name: "t:line", Run: func(ctx context.Context, c *commands.Call) error {
		line, err := bufio.NewReader(c.Stdin).ReadString('\n')
		if err != nil {
			return err
		}
		fmt.Fprintf(c.Stdout, "line: %s", line)
		return nil
	}})
	r.Add(&commands.Command{Name: "t:quiet", Run: func(ctx context.Context, c *commands.Call) error {
		io.WriteString(c.Stdout, "done\n")
		return nil
	}})
	r.Add(&commands.Command{Name: "t:big", Run: func(ctx context.Context, c *commands.Call) error {
		if _, err := c.Stdout.Write(bigPayload()); err != nil {
			return err
		}
		_, err := c.Stderr.Write(bigPayload())
		return err
	}})
	r.Add(&commands.Command{Name: "t:stream", Run: func(ctx context.Context, c *commands.Call) error {
		io.WriteString(c.Stdout, "first\n")
		select {
		case <-tc.proceed:
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Second):
			return errors.New("the client never saw the first line")
		}
		io.WriteString(c.Stdout, "second\n")
		return nil
	}})
	r.Add(&commands.Command{Name: "t:read1block", Run: func(ctx context.Context, c *commands.Call) error {
		if _, err := c.Stdin.Read(make([]byte, 1)); err != nil {
			return err
		}
		close(tc.started)
		select {
		case <-ctx.Done():
			tc.canceled <- ctx.Err()
		case <-time.After(10 * time.Second):
			tc.canceled <- errors.New("context never canceled")
		}
		return ctx.Err()
	}})
	r.Add(&commands.Command{Name: "t:block", Run: func(ctx context.Context, c *commands.Call) error {
		close(tc.started)
		select {
		case <-ctx.Done():
			tc.canceled <- ctx.Err()
		case <-time.After(10 * time.Second):
			tc.canceled <- errors.New("context never canceled")
		}
		return ctx.Err()
	}})
	return r
}

func newTestCommands() *testCommands {
	return &testCommands{
		proceed:  make(chan struct{}),
		started:  make(chan struct{}),
		canceled: make(chan error, 1),
		gotCall:  make(chan commands.Call, 1),
	}
}

// waitStarted fails the test unless the blocking command starts.
func (tc *testCommands) waitStarted(t *testing.T, name string) {
	t.Helper()
	select {
	case <-tc.started:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s never started", name)
	}
}

// waitCanceled fails the test unless the command's context ends with
// context.Canceled; why says what should have canceled it.
func (tc *testCommands) waitCanceled(t *testing.T, why string) {
	t.Helper()
	select {
	case err := <-tc.canceled:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("command context: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the command was not canceled when %s", why)
	}
}

// startServer serves a test registry on a socket in a temporary directory.
// Cleanup stops the server and fails the test if Serve does not return
// (it waits for every connection's command).
func startServer(t *testing.T, tc *testCommands) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "berth.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &Server{Registry: newTestRegistry(tc)}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve returned %v after shutdown, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after its context was canceled")
		}
	})
	return sock
}

// testCtx bounds a call so a broken server fails the test instead of hanging it.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func call(t *testing.T, sock string, stdin io.Reader, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code, err := Call(ctx, sock, Request{Args: args}, stdin, &out, &errb)
	if err != nil {
		t.Fatalf("Call(%q): %v", args, err)
	}
	return code, out.String(), errb.String()
}

func TestCallStreamsOutputAndExitCode(t *testing.T) {
	tc := newTestCommands()
	sock := startServer(t, tc)

	var out, errb bytes.Buffer
	code, err := Call(testCtx(t), sock, Request{Args: []string{"t:echo", "a", "b c"}, Env: map[string]string{"X": "from-env"}}, strings.NewReader(""), &out, &errb)
	if err != nil || code != 0 {
		t.Fatalf("t:echo = %d, %v", code, err)
	}
	if out.String() != "out: a,b c\n" || errb.String() != "err: from-env\n" {
		t.Fatalf("stdout %q stderr %q", out.String(), errb.String())
	}
	c := <-tc.gotCall
	if !c.Caller.Local || c.Caller.Name != "local" {
		t.Fatalf("socket caller = %+v, want the local caller", c.Caller)
	}

	code, stdout, stderr := call(t, sock, strings.NewReader(""), "t:exit")
	if code != 7 || stdout != "before exit\n" || stderr != " !     seven.\n" {
		t.Fatalf("t:exit = %d %q %q", code, stdout, stderr)
	}
	code, _, stderr = call(t, sock, strings.NewReader(""), "t:nope")
	if code != 1 || !strings.Contains(stderr, "is not a berth command") {
		t.Fatalf("unknown command = %d %q", code, stderr)
	}
	code, stdout, _ = call(t, sock, strings.NewReader(""), "help")
	if code != 0 || !strings.Contains(stdout, "test commands") {
		t.Fatalf("help = %d %q", code, stdout)
	}
}

// notifyWriter signals once what was written contains want.
type notifyWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	once sync.Once
	seen chan struct{}
}

func (w *notifyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

func TestOutputIsStreamedBeforeTheCommandEnds(t *testing.T) {
	tc := newTestCommands()
	sock := startServer(t, tc)
	w := &notifyWriter{want: "first\n", seen: make(chan struct{})}
	go func() {
		select {
		case <-w.seen:
			close(tc.proceed)
		case <-time.After(10 * time.Second):
		}
	}()
	code, err := Call(testCtx(t), sock, Request{Args: []string{"t:stream"}}, strings.NewReader(""), w, io.Discard)
	if err != nil || code != 0 {
		t.Fatalf("t:stream = %d, %v (the first line must reach the client while the command runs)", code, err)
	}
	if got := w.buf.String(); got != "first\nsecond\n" {
		t.Fatalf("stdout = %q", got)
	}
}

// trackingReader records whether anyone read from it.
type trackingReader struct {
	r    io.Reader
	read atomic.Bool
}

func (t *trackingReader) Read(p []byte) (int, error) {
	t.read.Store(true)
	return t.r.Read(p)
}

func TestStdin(t *testing.T) {
	tc := newTestCommands()
	sock := startServer(t, tc)

	// A command that reads all of stdin gets every byte and its end.
	in := strings.Repeat("hello stdin ", 10000) // > one 32 KiB client chunk
	stdin := &trackingReader{r: strings.NewReader(in)}
	code, out, errOut := call(t, sock, stdin, "t:cat")
	if code != 0 || out != fmt.Sprintf("%d:%s", len(in), strings.ToUpper(in)) {
		t.Fatalf("t:cat = %d, stderr %q, stdout of %d bytes", code, errOut, len(out))
	}
	if !stdin.read.Load() {
		t.Fatal("stdin was never read for a command that reads it")
	}

	// A command that reads one line ends even though stdin stays open.
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	go pw.Write([]byte("one line\n"))
	code, out, _ = call(t, sock, pr, "t:line")
	if code != 0 || out != "line: one line\n" {
		t.Fatalf("t:line = %d %q", code, out)
	}
}

func TestStdinNotRequestedWhenUnused(t *testing.T) {
	tc := newTestCommands()
	sock := startServer(t, tc)
	pr, pw := io.Pipe() // never written, never closed while the call runs
	t.Cleanup(func() { pw.Close() })
	stdin := &trackingReader{r: pr}
	done := make(chan struct{})
	var code int
	var err error
	var out bytes.Buffer
	ctx := testCtx(t)
	go func() {
		defer close(done)
		code, err = Call(ctx, sock, Request{Args: []string{"t:quiet"}}, stdin, &out, io.Discard)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a command that never reads stdin did not complete while the client's stdin stayed open")
	}
	if err != nil || code != 0 || out.String() != "done\n" {
		t.Fatalf("t:quiet = %d, %v, %q", code, err, out.String())
	}
	time.Sleep(50 * time.Millisecond)
	if stdin.read.Load() {
		t.Fatal("the client read its stdin for a command that never reads it")
	}
}

func TestLargeOutput(t *testing.T) {
	tc := newTestCommands()
	sock := startServer(t, tc)
	code, out, errOut := call(t, sock, strings.NewReader(""), "t:big")
	want := bigPayload()
	if code != 0 || !bytes.Equal([]byte(out), want) || !bytes.Equal([]byte(errOut), want) {
		t.Fatalf("t:big = %d, stdout %d bytes, stderr %d bytes, want %d each, intact", code, len(out), len(errOut), len(want))
	}
}

// rawRequest opens a connection and sends a request frame by hand.
func rawRequest(t *testing.T, sock string, args ...string) net.Conn {
	t.Helper()
	nc, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	body, _ := json.Marshal(Request{Args: args})
	if err := writeFrame(nc, frameRequest, body); err != nil {
		t.Fatal(err)
	}
	return nc
}

func TestProtocolFrames(t *testing.T) {
	tc := newTestCommands()
	sock := startServer(t, tc)

	// t:big: stdout and stderr arrive in frames of at most maxFrame, the
	// exit frame last, and stdin is never asked for.
	nc := rawRequest(t, sock, "t:big")
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(nc)
	counts := map[byte]int{}
	sizes := map[byte]int{}
	for {
		typ, p, err := readFrame(br)
		if err != nil {
			t.Fatalf("after %v: %v", counts, err)
		}
		counts[typ]++
		sizes[typ] += len(p)
		if len(p) > maxFrame {
			t.Fatalf("frame of %d bytes", len(p))
		}
		if typ == frameExit {
			if binary.BigEndian.Uint32(p) != 0 {
				t.Fatalf("exit code %d", binary.BigEndian.Uint32(p))
			}
			break
		}
	}
	if counts[frameStdout] < 4 || counts[frameStderr] < 4 || sizes[frameStdout] != bigSize || sizes[frameStderr] != bigSize {
		t.Fatalf("frames %v, sizes %v: want >= 4 frames and %d bytes per stream", counts, sizes, bigSize)
	}
	if counts[frameWant] != 0 {
		t.Fatal("the server asked for stdin for a command that never reads it")
	}
	// After the exit frame the server closes the connection.
	if _, _, err := readFrame(br); !errors.Is(err, io.EOF) {
		t.Fatalf("after exit: %v, want EOF", err)
	}

	// t:cat: the server asks for stdin (once) before reading it.
	nc = rawRequest(t, sock, "t:cat")
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	br = bufio.NewReader(nc)
	typ, _, err := readFrame(br)
	if err != nil || typ != frameWant {
		t.Fatalf("first frame from t:cat = %q, %v; want a stdin request", typ, err)
	}
	writeFrame(nc, frameStdin, []byte("abc"))
	writeFrame(nc, frameStdin, []byte("def"))
	writeFrame(nc, frameStdinEOF, nil)
	var out bytes.Buffer
	for {
		typ, p, err := readFrame(br)
		if err != nil {
			t.Fatal(err)
		}
		if typ == frameWant {
			t.Fatal("stdin requested twice")
		}
		if typ == frameStdout {
			out.Write(p)
		}
		if typ == frameExit {
			break
		}
	}
	if out.String() != "6:ABCDEF" {
		t.Fatalf("t:cat over raw frames = %q", out.String())
	}
}

func TestClientDisconnectCancelsCommand(t *testing.T) {
	tc := newTestCommands()
	sock := startServer(t, tc)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		code int
		err  error
	}
	res := make(chan result, 1)
	go func() {
		code, err := Call(ctx, sock, Request{Args: []string{"t:block"}}, strings.NewReader(""), io.Discard, io.Discard)
		res <- result{code, err}
	}()
	tc.waitStarted(t, "t:block")
	cancel()
	select {
	case r := <-res:
		if !errors.Is(r.err, context.Canceled) || r.code != 130 {
			t.Fatalf("Call after cancel = %d, %v; want 130 and context.Canceled", r.code, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Call did not return after its context was canceled")
	}
	tc.waitCanceled(t, "the client went away")
}

func TestRawDisconnectCancelsCommand(t *testing.T) {
	tc := newTestCommands()
	sock := startServer(t, tc)
	nc := rawRequest(t, sock, "t:block")
	tc.waitStarted(t, "t:block")
	nc.Close()
	tc.waitCanceled(t, "the connection closed")
}

func TestServerShutdownCancelsCommand(t *testing.T) {
	tc := newTestCommands()
	sock := filepath.Join(t.TempDir(), "berth.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- (&Server{Registry: newTestRegistry(tc)}).Serve(ctx, l) }()
	callDone := make(chan int, 1)
	callCtx := testCtx(t)
	go func() {
		code, _ := Call(callCtx, sock, Request{Args: []string{"t:block"}}, strings.NewReader(""), io.Discard, io.Discard)
		callDone <- code
	}()
	<-tc.started
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	if err := <-tc.canceled; !errors.Is(err, context.Canceled) {
		t.Fatalf("command context on shutdown: %v", err)
	}
	select {
	case code := <-callDone:
		if code != 1 {
			t.Fatalf("interrupted command exit code %d, want 1", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client never got the interrupted command's exit")
	}
	if _, err := net.Dial("unix", sock); err == nil {
		t.Fatal("the socket still accepts connections after shutdown")
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "berth.sock")
	if err := os.WriteFile(sock, []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := Listen(sock)
	if err != nil {
		t.Fatalf("Listen over a stale file: %v", err)
	}
	defer l.Close()
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode %v, want a socket with 0660", fi.Mode())
	}
}

func TestCallWithoutServer(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	_, err := Call(testCtx(t), sock, Request{Args: []string{"help"}}, nil, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "is `berth server` running?") {
		t.Fatalf("Call without a server = %v", err)
	}
}

func TestFrames(t *testing.T) {
	var buf bytes.Buffer
	for _, p := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("y"), maxFrame)} {
		if err := writeFrame(&buf, frameStdout, p); err != nil {
			t.Fatal(err)
		}
	}
	br := bufio.NewReader(&buf)
	for _, n := range []int{0, 1, maxFrame} {
		typ, p, err := readFrame(br)
		if err != nil || typ != frameStdout || len(p) != n {
			t.Fatalf("readFrame = %q, %d bytes, %v; want %d bytes", typ, len(p), err, n)
		}
	}
	var hdr [5]byte
	hdr[0] = frameStdout
	binary.BigEndian.PutUint32(hdr[1:], maxFrame+1)
	if _, _, err := readFrame(bufio.NewReader(bytes.NewReader(hdr[:]))); err == nil || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("oversized frame: %v", err)
	}
	// A truncated payload is an error, not a short frame.
	binary.BigEndian.PutUint32(hdr[1:], 10)
	if _, _, err := readFrame(bufio.NewReader(bytes.NewReader(append(hdr[:], "abc"...)))); err == nil {
		t.Fatal("truncated frame accepted")
	}
}

// A command that read only part of its stdin still sees the client leave.
func TestDisconnectWithUnreadStdinCancelsCommand(t *testing.T) {
	tc := newTestCommands()
	sock := startServer(t, tc)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Call(ctx, sock, Request{Args: []string{"t:read1block"}}, strings.NewReader(strings.Repeat("x", 100)), io.Discard, io.Discard)
	tc.waitStarted(t, "t:read1block")
	cancel()
	tc.waitCanceled(t, "the client left")
}
