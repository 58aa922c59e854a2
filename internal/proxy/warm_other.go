//go:build !linux

package proxy

import "net"

// boundSocket is, off Linux, a listening socket whose connections wait
// in its backlog until the warming ends (on Linux it does not listen).
type boundSocket struct {
	ln   net.Listener
	addr net.Addr
}

func bindSocket(address string) (*boundSocket, error) {
	ln, err := net.Listen("tcp", address)
	if err != nil {
		return nil, err
	}
	return &boundSocket{ln: ln, addr: ln.Addr()}, nil
}

func (b *boundSocket) listen() (net.Listener, error) { return b.ln, nil }

func (b *boundSocket) close() error { return b.ln.Close() }
