package postgres

import (
	"strings"
	"syscall"
)

// tcpUserTimeoutOpt is TCP_USER_TIMEOUT (linux/tcp.h), which package
// syscall does not name on every architecture.
const tcpUserTimeoutOpt = 0x12

// setUserTimeout sets TCP_USER_TIMEOUT on a TCP socket before it connects:
// data unacknowledged for tcpUserTimeout breaks the connection, where
// Linux would otherwise retransmit for about 15 minutes.
func setUserTimeout(network, _ string, c syscall.RawConn) error {
	if !strings.HasPrefix(network, "tcp") {
		return nil // a Unix socket
	}
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeoutOpt, int(tcpUserTimeout.Milliseconds()))
	})
	if err != nil {
		return err
	}
	return serr
}
