package proxy

import (
	"fmt"
	"net"
	"os"
	"syscall"
)

// boundSocket is a TCP socket bound to its address, not listening: a
// connection to it is refused.
type boundSocket struct {
	fd   int
	addr net.Addr
}

func bindSocket(address string) (*boundSocket, error) {
	ta, err := net.ResolveTCPAddr("tcp", address)
	if err != nil {
		return nil, err
	}
	family, sa := syscall.AF_INET6, syscall.Sockaddr(nil)
	if ip4 := ta.IP.To4(); ip4 != nil {
		s := &syscall.SockaddrInet4{Port: ta.Port}
		copy(s.Addr[:], ip4)
		family, sa = syscall.AF_INET, s
	} else {
		s := &syscall.SockaddrInet6{Port: ta.Port}
		copy(s.Addr[:], ta.IP.To16()) // nil: [::], both families, as net.Listen
		sa = s
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, syscall.IPPROTO_TCP)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	fail := func(op string, err error) (*boundSocket, error) {
		_ = syscall.Close(fd)
		return nil, &net.OpError{Op: "listen", Net: "tcp", Addr: ta, Err: os.NewSyscallError(op, err)}
	}
	// As net.Listen: SO_REUSEADDR, and a dual-stack [::].
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		return fail("setsockopt", err)
	}
	if family == syscall.AF_INET6 && ta.IP == nil {
		if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY, 0); err != nil {
			return fail("setsockopt", err)
		}
	}
	if err := syscall.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	got, err := syscall.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	var addr *net.TCPAddr
	switch a := got.(type) {
	case *syscall.SockaddrInet4:
		addr = &net.TCPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}
	case *syscall.SockaddrInet6:
		addr = &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
	default:
		return fail("getsockname", fmt.Errorf("address %T", got))
	}
	return &boundSocket{fd: fd, addr: addr}, nil
}

// listen starts listening and returns the socket as a net.Listener.
func (b *boundSocket) listen() (net.Listener, error) {
	if err := syscall.Listen(b.fd, syscall.SOMAXCONN); err != nil {
		_ = syscall.Close(b.fd)
		return nil, os.NewSyscallError("listen", err)
	}
	f := os.NewFile(uintptr(b.fd), "listener")
	defer f.Close() // FileListener holds a duplicate
	return net.FileListener(f)
}

func (b *boundSocket) close() error { return syscall.Close(b.fd) }
