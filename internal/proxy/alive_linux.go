package proxy

import (
	"net"
	"syscall"
)

// connAlive reports whether an idle upstream connection is still open: a
// non-blocking peek sees neither EOF, an error nor unsolicited bytes.
func connAlive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := true
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
			alive = true
		case err != nil, n == 0, n > 0:
			// An error, EOF, or bytes nobody asked for.
			alive = false
		}
		return true
	})
	return err == nil && alive
}
