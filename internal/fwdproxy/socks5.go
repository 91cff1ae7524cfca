package fwdproxy

import (
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// SOCKS5 is a real SOCKS5 proxy on loopback (no authentication, CONNECT
// to an IPv4 address or a name) that counts the connections clients open
// to it.
type SOCKS5 struct {
	ln       net.Listener
	newConns atomic.Int64
	mu       sync.Mutex
	conns    map[net.Conn]bool
	wg       sync.WaitGroup
	once     sync.Once
}

// StartSOCKS5 runs a SOCKS5 proxy on a fresh 127.0.0.1 port; it is closed
// when the test ends.
func StartSOCKS5(t testing.TB) *SOCKS5 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("fwdproxy: listen for the SOCKS5 proxy on 127.0.0.1: %v", err)
	}
	s := &SOCKS5{ln: ln, conns: map[net.Conn]bool{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.newConns.Add(1)
			if !s.track(c) {
				c.Close()
				return
			}
			s.wg.Add(1)
			go func() { defer s.wg.Done(); s.serve(c) }()
		}
	}()
	t.Cleanup(s.Close)
	return s
}

// URL returns the proxy's URL with the given scheme ("socks5" or
// "socks5h").
func (s *SOCKS5) URL(scheme string) string { return scheme + "://" + s.ln.Addr().String() }

// NewConns is how many connections clients have opened to the proxy.
func (s *SOCKS5) NewConns() int64 { return s.newConns.Load() }

// Close stops the proxy, ends its connections and waits for them; StartSOCKS5
// has it called when the test ends, and calling it again does nothing.
func (s *SOCKS5) Close() {
	s.once.Do(func() {
		s.ln.Close()
		s.mu.Lock()
		open := s.conns
		s.conns = nil
		s.mu.Unlock()
		for c := range open {
			c.Close()
		}
		s.wg.Wait()
	})
}

// track records c so Close can end it; it reports false once the proxy
// is closed.
func (s *SOCKS5) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		return false
	}
	s.conns[c] = true
	return true
}

func (s *SOCKS5) untrack(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// serve speaks SOCKS5 on c: it accepts "no authentication", reads one
// CONNECT, dials the target and copies both ways until either side ends.
func (s *SOCKS5) serve(c net.Conn) {
	defer s.untrack(c)
	b := make([]byte, 262)
	if _, err := io.ReadFull(c, b[:2]); err != nil {
		return
	}
	if _, err := io.ReadFull(c, b[:b[1]]); err != nil {
		return
	}
	if _, err := c.Write([]byte{5, 0}); err != nil {
		return
	}
	if _, err := io.ReadFull(c, b[:4]); err != nil {
		return
	}
	var host string
	switch b[3] {
	case 1:
		if _, err := io.ReadFull(c, b[:4]); err != nil {
			return
		}
		host = net.IP(b[:4]).String()
	case 3:
		if _, err := io.ReadFull(c, b[:1]); err != nil {
			return
		}
		n := int(b[0])
		if _, err := io.ReadFull(c, b[:n]); err != nil {
			return
		}
		host = string(b[:n])
	default:
		return
	}
	if _, err := io.ReadFull(c, b[:2]); err != nil {
		return
	}
	port := int(b[0])<<8 | int(b[1])
	up, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(port)), dialTimeout)
	if err != nil {
		_, _ = c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0}) // connection refused
		return
	}
	if !s.track(up) {
		up.Close()
		return
	}
	defer s.untrack(up)
	if _, err := c.Write([]byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0}); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(up, c)
		up.Close()
		close(done)
	}()
	_, _ = io.Copy(c, up)
	c.Close()
	<-done
}
