// Package rpc is the local door into the command registry: the berth CLI
// sends a command over DATA_DIR/berth.sock and streams its output, stdin and
// exit code through framed messages.
//
// A frame is one type byte, a big-endian uint32 length and the payload.
// Client to server: 'R' request (JSON), 'I' stdin bytes, 'E' stdin closed.
// Server to client: 'O' stdout, 'e' stderr, 'S' stdin wanted, 'X' exit code.
// The server asks for stdin only when the command first reads it, so a
// command that never reads stdin never consumes the caller's terminal.
package rpc

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"

	"github.com/berth-paas/berth/internal/commands"
)

const (
	frameRequest  = 'R'
	frameStdin    = 'I'
	frameStdinEOF = 'E'
	frameStdout   = 'O'
	frameStderr   = 'e'
	frameWant     = 'S'
	frameExit     = 'X'

	maxFrame = 1 << 20
)

// Request is the first frame a client sends.
type Request struct {
	Args []string          `json:"args"`
	Env  map[string]string `json:"env,omitempty"`
}

func writeFrame(w io.Writer, typ byte, p []byte) error {
	var hdr [5]byte
	hdr[0] = typ
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(p)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(p)
	return err
}

func readFrame(r *bufio.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("frame of %d bytes is too large", n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, err
	}
	return hdr[0], p, nil
}

// conn serialises frame writes from concurrent writers.
type conn struct {
	mu sync.Mutex
	c  net.Conn
	bw *bufio.Writer
}

func (c *conn) send(typ byte, p []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(p) > maxFrame {
		if err := writeFrame(c.bw, typ, p[:maxFrame]); err != nil {
			return err
		}
		p = p[maxFrame:]
	}
	if err := writeFrame(c.bw, typ, p); err != nil {
		return err
	}
	return c.bw.Flush()
}

type stream struct {
	c   *conn
	typ byte
}

func (s stream) Write(p []byte) (int, error) {
	if err := s.c.send(s.typ, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// stdinBuffer is the command's stdin: it asks the client for stdin on the
// first read, and buffers what arrives so that the connection reader never
// blocks on a command that reads slowly (or stopped reading) and always sees
// the client go away.
type stdinBuffer struct {
	once sync.Once
	c    *conn
	mu   sync.Mutex
	cond *sync.Cond
	buf  []byte
	err  error // io.EOF once the client closed stdin
}

func newStdinBuffer(c *conn) *stdinBuffer {
	b := &stdinBuffer{c: c}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *stdinBuffer) Read(p []byte) (int, error) {
	b.once.Do(func() { b.c.send(frameWant, nil) })
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.buf) == 0 && b.err == nil {
		b.cond.Wait()
	}
	if len(b.buf) == 0 {
		return 0, b.err
	}
	n := copy(p, b.buf)
	b.buf = b.buf[n:]
	return n, nil
}

// feed appends stdin bytes; data beyond maxStdinBuffer unread is dropped
// with an error to the reader (a command that stopped reading).
func (b *stdinBuffer) feed(p []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return
	}
	if len(b.buf)+len(p) > maxStdinBuffer {
		b.err = fmt.Errorf("stdin: more than %d MiB unread", maxStdinBuffer>>20)
	} else {
		b.buf = append(b.buf, p...)
	}
	b.cond.Broadcast()
}

// close ends stdin with err (io.EOF for a normal end).
func (b *stdinBuffer) close(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil {
		b.err = err
	}
	b.cond.Broadcast()
}

const maxStdinBuffer = 64 << 20

// Server serves the command registry on a unix socket.
type Server struct {
	Registry *commands.Registry
	Logger   *slog.Logger
}

// Listen creates the socket at path (replacing a stale one) with mode 0660.
func Listen(path string) (net.Listener, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	return l, nil
}

// Serve accepts connections until ctx is done or l fails.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept on command socket: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handle(ctx, c)
		}()
	}
}

func (s *Server) handle(ctx context.Context, nc net.Conn) {
	defer nc.Close()
	br := bufio.NewReader(nc)
	typ, p, err := readFrame(br)
	if err != nil || typ != frameRequest {
		return
	}
	var req Request
	if err := json.Unmarshal(p, &req); err != nil {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := &conn{c: nc, bw: bufio.NewWriter(nc)}
	stdin := newStdinBuffer(c)
	defer stdin.close(io.EOF)
	go func() {
		// Forward stdin; a closed connection cancels the command.
		for {
			typ, p, err := readFrame(br)
			if err != nil {
				stdin.close(io.ErrUnexpectedEOF)
				cancel()
				return
			}
			switch typ {
			case frameStdin:
				stdin.feed(p)
			case frameStdinEOF:
				stdin.close(io.EOF)
			}
		}
	}()
	caller := commands.Caller{Name: "local", Local: true}
	code := s.Registry.Run(ctx, req.Args, stdin, stream{c, frameStdout}, stream{c, frameStderr}, caller, req.Env)
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(code))
	c.send(frameExit, b[:])
}

// Call runs argv on the server behind socket, streaming output to stdout and
// stderr and stdin from stdin when the command asks for it. It returns the
// command's exit code.
func Call(ctx context.Context, socket string, req Request, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return 0, fmt.Errorf("connect to the berth server at %s (is `berth server` running?): %w", socket, err)
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	c := &conn{c: nc, bw: bufio.NewWriter(nc)}
	body, err := json.Marshal(req)
	if err != nil {
		return 0, err
	}
	if err := c.send(frameRequest, body); err != nil {
		return 0, fmt.Errorf("send command: %w", err)
	}
	br := bufio.NewReader(nc)
	var stdinOnce sync.Once
	for {
		typ, p, err := readFrame(br)
		if err != nil {
			if ctx.Err() != nil {
				return 130, ctx.Err()
			}
			return 0, fmt.Errorf("the berth server closed the connection: %w", err)
		}
		switch typ {
		case frameStdout:
			stdout.Write(p)
		case frameStderr:
			stderr.Write(p)
		case frameWant:
			stdinOnce.Do(func() {
				go func() {
					buf := make([]byte, 32<<10)
					for {
						n, err := stdin.Read(buf)
						if n > 0 {
							if c.send(frameStdin, buf[:n]) != nil {
								return
							}
						}
						if err != nil {
							c.send(frameStdinEOF, nil)
							return
						}
					}
				}()
			})
		case frameExit:
			if len(p) != 4 {
				return 0, errors.New("malformed exit frame")
			}
			return int(binary.BigEndian.Uint32(p)), nil
		}
	}
}
