package testenv

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// FaultProxy forwards TCP connections to the first of its targets that
// accepts one (a load balancer in front of replicas), and can be cut: Down
// resets every open connection and resets new ones until Up. Tests put it
// in front of a service that cannot be killed on its own (the in-process
// Bacalhau node's API) or in front of worker replicas.
type FaultProxy struct {
	ln      net.Listener
	targets []string

	mu    sync.Mutex
	down  bool
	next  int
	conns map[net.Conn]struct{}
}

// StartFaultProxy listens on a free loopback port and forwards to targets.
func StartFaultProxy(targets ...string) (*FaultProxy, error) {
	if len(targets) == 0 {
		return nil, errors.New("fault proxy: no target")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fault proxy: %w", err)
	}
	p := &FaultProxy{ln: ln, targets: targets, conns: map[net.Conn]struct{}{}}
	go p.serve()
	return p, nil
}

// Addr is the proxy's host:port.
func (p *FaultProxy) Addr() string { return p.ln.Addr().String() }

// Down resets every open connection and every new one until Up.
func (p *FaultProxy) Down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}

// Up forwards again.
func (p *FaultProxy) Up() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// Close stops the proxy and closes its connections.
func (p *FaultProxy) Close() error {
	p.Down()
	return p.ln.Close()
}

func (p *FaultProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

// track registers c, or reports false when the proxy is down.
func (p *FaultProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *FaultProxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

// dial tries the targets round robin, from the one after the last used.
func (p *FaultProxy) dial() (net.Conn, error) {
	p.mu.Lock()
	start := p.next
	p.next = (p.next + 1) % len(p.targets)
	p.mu.Unlock()
	var lastErr error
	for i := range p.targets {
		up, err := net.DialTimeout("tcp", p.targets[(start+i)%len(p.targets)], 2*time.Second)
		if err == nil {
			return up, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func (p *FaultProxy) forward(c net.Conn) {
	if !p.track(c) {
		_ = c.Close()
		return
	}
	defer p.untrack(c)
	up, err := p.dial()
	if err != nil {
		_ = c.Close()
		return
	}
	if !p.track(up) {
		_ = c.Close()
		_ = up.Close()
		return
	}
	defer p.untrack(up)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		_ = dst.Close()
		_ = src.Close()
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	<-done
}
