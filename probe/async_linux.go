//go:build linux

package probe

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"reflect"
	"sync"
	"syscall"
	"time"
)

// The event loop: one goroutine with its own epoll instance runs every
// fast-path check (see CheckAsync) as a small state machine: socket,
// non-blocking connect, EPOLLOUT, SO_ERROR, the proxy handshake, the
// request, reads into the check's byte stream, close. Deadlines are a heap
// on the loop (epoll_wait sleeps until the nearest one); cancellations and
// new checks are posted through a queue and an eventfd wake-up.
//
// The response (and the SOCKS handshake) is judged by the very code Check
// uses (readResponse, socks5, socks4, judge, finish): each time bytes
// arrive, the loop replays that code from the start over all the bytes
// received so far, through a reader that reports errNeedMore at their end
// (the replay is then discarded until more bytes arrive) and io.EOF, the
// read error, a timeout or a "closed" error when the connection ended,
// timed out or was canceled, so classes and messages are Check's. The
// replay's writes are deduplicated: only bytes beyond those already sent go
// to the socket. A response head is small and usually arrives in one read,
// so a check is replayed once or twice.

// loopIdle is how long the loop goroutine stays without a check in flight
// before it exits (it restarts with the next check).
const loopIdle = 100 * time.Millisecond

// maxStream bounds the bytes a check buffers; the parsers conclude long
// before (a head is at most MaxHeaderBytes, at most maxInterim+1 heads).
const maxStream = 256 << 10

// errCanceled is what net.Dialer reports for a dial whose context was
// canceled (the same text, so that messages match Check's).
var errCanceled = errors.New("operation was canceled")

const (
	phConnecting = iota
	phHandshake
	phResponse
	phDone
)

// acheck is one check on the loop. Fields other than loop are owned by the
// loop goroutine once the check is queued.
type acheck struct {
	c        *Checker
	ctx      context.Context
	p        ProxyURL
	addr     netip.AddrPort
	done     Done
	stop     func() bool // stops the check's own context.AfterFunc
	watch    *ctxWatch   // or the shared one it counts in
	loop     *evloop
	start    time.Time
	deadline time.Time
	heapIdx  int

	fd      int
	phase   int
	r       Result
	in      []byte // every byte received
	eof     bool
	rerr    error    // terminal read error (also timeout, cancel)
	sent    int      // bytes of the replayed writes already committed
	pending []byte   // committed bytes the socket did not take yet
	hsEnd   int      // offset in in where the HTTP response starts
	dead    bool     // reset seen at connect or write: writes are dropped, reads see the reset
	local   net.Addr // cached local address, for error messages
	replays int      // replays of the response so far
	wrote   time.Time
	firstAt time.Time
}

// evloop is one event loop instance; it exits when idle and a new one
// replaces it.
type evloop struct {
	epfd, evfd int
	// poll is epfd registered with Go's own poller, so the loop goroutine
	// parks like any goroutine waiting on a socket instead of blocking a
	// thread in epoll_wait (see wait).
	poll *os.File
	raw  syscall.RawConn

	// Guarded by loopMu.
	queue, cancels []*acheck
	free           []*acheck   // finished checks to reuse (startAsync)
	cancelW        []*ctxWatch // shared watches whose context is done
	sleeping       bool
	stopped        bool

	// Owned by the loop goroutine.
	spareQ, spareC []*acheck
	// finished are the checks finished since the loop last took loopMu,
	// which nothing refers to any more but the loop's own code until the
	// events at hand are handled (it reads a check's phase after finish).
	finished []*acheck
	byFD     []*acheck
	timers   []*acheck // min-heap by deadline
	shared   *ctxWatch // the context.AfterFunc of the context checks share
	inflight int
	st       *state
	rbuf     []byte
	src      replaySrc
	w        replayWriter
	bufs     [][]byte // free stream buffers
	sa4      syscall.SockaddrInet4
	sa6      syscall.SockaddrInet6
	src4     syscall.SockaddrInet4 // Config.SourceIP, for bind
	src6     syscall.SockaddrInet6
}

var (
	loopMu  sync.Mutex
	curLoop *evloop
)

// startAsync queues the check on the event loop (starting it if needed);
// false means the loop could not be started and the caller falls back.
func startAsync(c *Checker, ctx context.Context, p ProxyURL, done Done) bool {
	addr, _ := proxyAddr(p)
	start := time.Now()
	deadline := start.Add(c.cfg.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	loopMu.Lock()
	defer loopMu.Unlock()
	l := curLoop
	if l == nil {
		var err error
		if l, err = newLoop(); err != nil {
			return false
		}
		curLoop = l
		go l.run()
	}
	var a *acheck
	if n := len(l.free); n > 0 {
		a, l.free[n-1] = l.free[n-1], nil
		l.free = l.free[:n-1]
	} else {
		a = new(acheck)
	}
	*a = acheck{c: c, ctx: ctx, p: p, addr: addr, done: done, start: start, deadline: deadline, fd: -1, heapIdx: -1, loop: l}
	l.queue = append(l.queue, a)
	l.wakeLocked()
	return true
}

// maxFreeChecks caps the finished checks a loop keeps for reuse (640
// bytes each, 640 KB at most): a check was the largest allocation of the
// probe.
const maxFreeChecks = 1024

func newLoop() (*evloop, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	r, _, e := syscall.RawSyscall(syscall.SYS_EVENTFD2, 0, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if e != 0 {
		syscall.Close(epfd)
		return nil, e
	}
	evfd := int(r)
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(evfd)}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		syscall.Close(evfd)
		syscall.Close(epfd)
		return nil, err
	}
	// Go's poller watches the epoll fd itself (an epoll fd is readable
	// while it has events ready); it must be non-blocking for os.NewFile
	// to register it.
	if err := syscall.SetNonblock(epfd, true); err != nil {
		syscall.Close(evfd)
		syscall.Close(epfd)
		return nil, err
	}
	poll := os.NewFile(uintptr(epfd), "proxyhealth-probe-epoll")
	raw, err := poll.SyscallConn()
	if err != nil {
		syscall.Close(evfd)
		poll.Close()
		return nil, err
	}
	return &evloop{epfd: epfd, evfd: evfd, poll: poll, raw: raw, st: getState(), rbuf: make([]byte, 16<<10)}, nil
}

// wait returns the ready events, waiting at most timeoutMs (-1: without a
// bound). It never blocks a thread in epoll_wait: a blocked system call
// costs the runtime a hand-off of its P to another thread and back at
// every wake-up (thousands a second at 1,000 checks/s), where a goroutine
// parked on Go's poller costs a scheduler switch; the epoll_wait calls
// here do not wait (timeout 0).
func (l *evloop) wait(events []syscall.EpollEvent, timeoutMs int) int {
	n, err := syscall.EpollWait(l.epfd, events, 0)
	if n > 0 || timeoutMs == 0 {
		if err != nil {
			return 0 // EINTR
		}
		return n
	}
	var deadline time.Time
	if timeoutMs > 0 {
		deadline = time.Now().Add(time.Duration(timeoutMs) * time.Millisecond)
	}
	_ = l.poll.SetReadDeadline(deadline)
	n = 0
	_ = l.raw.Read(func(uintptr) bool {
		m, err := syscall.EpollWait(l.epfd, events, 0)
		if err != nil || m <= 0 {
			return false // nothing ready: park until the epoll fd is readable
		}
		n = m
		return true
	}) // a passed deadline ends the wait with n == 0
	return n
}

var one = [8]byte{1}

// epollEvents is what the loop waits for on a check's socket,
// edge-triggered.
const epollEvents = syscall.EPOLLIN | syscall.EPOLLOUT | syscall.EPOLLRDHUP | (syscall.EPOLLET & 0xffffffff)

// wakeLocked wakes the loop if it sleeps in epoll_wait; loopMu is held.
func (l *evloop) wakeLocked() {
	if l.sleeping && !l.stopped {
		l.sleeping = false
		_, _ = syscall.Write(l.evfd, one[:])
	}
}

// ctxWatch is one context.AfterFunc shared by the checks in flight with
// one context: a caller that starts every check with the same long-lived
// context (the engine's, cancelled when it stops) costs the loop one
// registration instead of one per check (an allocation and an insert into,
// then a delete from, the context's children under its lock). Owned by
// the loop goroutine.
type ctxWatch struct {
	ctx  context.Context // a pointer (comparable)
	n    int             // checks in flight counted in it
	stop func() bool
}

// watch registers a's context for cancellation: in the shared watch when a
// has its context, or when the shared watch is unused; otherwise with an
// AfterFunc of its own.
func (l *evloop) watch(a *acheck) {
	if w := l.shared; w != nil && w.ctx == a.ctx { // w.ctx is a pointer: never panics
		w.n++
		a.watch = w
		return
	}
	if (l.shared == nil || l.shared.n == 0) && reflect.TypeOf(a.ctx).Kind() == reflect.Pointer {
		if l.shared != nil {
			l.shared.stop()
		}
		w := &ctxWatch{ctx: a.ctx, n: 1}
		w.stop = context.AfterFunc(a.ctx, func() { l.postWatch(w) })
		l.shared = w
		a.watch = w
		return
	}
	a.stop = context.AfterFunc(a.ctx, a.postCancel)
}

// postWatch is a shared watch's AfterFunc: it asks the loop to abort every
// check counted in it.
func (l *evloop) postWatch(w *ctxWatch) {
	loopMu.Lock()
	if !l.stopped {
		l.cancelW = append(l.cancelW, w)
		l.wakeLocked()
	}
	loopMu.Unlock()
}

// cancelWatch aborts the checks in flight counted in w, whose context is
// done.
func (l *evloop) cancelWatch(w *ctxWatch) {
	if l.shared == w {
		l.shared = nil
	}
	for _, a := range l.byFD {
		if a != nil && a.watch == w {
			l.cancel(a)
		}
	}
}

// postCancel is the context.AfterFunc of a check: it asks the loop to
// abort it.
func (a *acheck) postCancel() {
	loopMu.Lock()
	if l := a.loop; !l.stopped {
		l.cancels = append(l.cancels, a)
		l.wakeLocked()
	}
	loopMu.Unlock()
}

func (l *evloop) run() {
	events := make([]syscall.EpollEvent, 256)
	var idleSince time.Time
	for {
		for _, a := range l.finished {
			*a = acheck{} // holds nothing alive, neither the caller's done nor its context
		}
		loopMu.Lock()
		l.sleeping = false
		q, cs, ws := l.queue, l.cancels, l.cancelW
		l.queue, l.cancels, l.cancelW = l.spareQ[:0], l.spareC[:0], nil
		for i, a := range l.finished {
			if len(l.free) < maxFreeChecks {
				l.free = append(l.free, a)
			}
			l.finished[i] = nil
		}
		loopMu.Unlock()
		l.finished = l.finished[:0]
		for _, w := range ws {
			l.cancelWatch(w)
		}
		for i, a := range q {
			l.begin(a)
			q[i] = nil
		}
		for i, a := range cs {
			l.cancel(a)
			cs[i] = nil
		}
		l.spareQ, l.spareC = q[:0], cs[:0]

		now := time.Now()
		for len(l.timers) > 0 && !l.timers[0].deadline.After(now) {
			a := l.timers[0]
			l.heapRemove(a)
			l.timeout(a)
		}
		timeout := -1
		if l.inflight == 0 {
			if idleSince.IsZero() {
				idleSince = now
			}
			left := loopIdle - now.Sub(idleSince)
			if left <= 0 {
				loopMu.Lock()
				if len(l.queue) == 0 && len(l.cancels) == 0 {
					if l.shared != nil {
						l.shared.stop()
						l.shared = nil
					}
					l.stopped = true
					curLoop = nil
					syscall.Close(l.evfd)
					l.poll.Close() // closes epfd
					loopMu.Unlock()
					putState(l.st)
					return
				}
				loopMu.Unlock()
				continue
			}
			timeout = msCeil(left)
		} else {
			idleSince = time.Time{}
			if len(l.timers) > 0 {
				timeout = msCeil(l.timers[0].deadline.Sub(now))
			}
		}
		loopMu.Lock()
		if len(l.queue) > 0 || len(l.cancels) > 0 || len(l.cancelW) > 0 {
			loopMu.Unlock()
			continue
		}
		l.sleeping = true
		loopMu.Unlock()
		n := l.wait(events, timeout)
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if fd == l.evfd {
				var b [8]byte
				_, _ = syscall.Read(l.evfd, b[:])
				continue
			}
			if fd < len(l.byFD) && l.byFD[fd] != nil {
				l.event(l.byFD[fd], ev.Events)
			}
		}
	}
}

func msCeil(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int((d + time.Millisecond - 1) / time.Millisecond)
}

// begin opens the check's socket and starts the non-blocking connect.
func (l *evloop) begin(a *acheck) {
	if err := a.ctx.Err(); err != nil {
		l.finish(a, netFailure("connect to proxy", a.dialErr(ctxDialErr(err))))
		return
	}
	if g := a.c.gate; g != nil && !g() {
		a.r.Gated = true
		l.finish(a, errGated)
		return
	}
	family := syscall.AF_INET
	var sa syscall.Sockaddr
	ip := a.addr.Addr()
	if ip.Is4() {
		l.sa4 = syscall.SockaddrInet4{Port: int(a.addr.Port()), Addr: ip.As4()}
		sa = &l.sa4
	} else {
		family = syscall.AF_INET6
		l.sa6 = syscall.SockaddrInet6{Port: int(a.addr.Port()), Addr: ip.As16()}
		sa = &l.sa6
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		l.finish(a, netFailure("connect to proxy", a.dialErr(os.NewSyscallError("socket", err))))
		return
	}
	a.fd = fd
	if a.c.reset {
		_ = syscall.SetsockoptLinger(fd, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 0})
	}
	if src := a.c.source; src.IsValid() {
		if err := bindSource(fd, src, &l.src4, &l.src6); err != nil {
			l.finish(a, netFailure("connect to proxy", a.dialErr(os.NewSyscallError("bind", err))))
			return
		}
	}
	if err := syscall.Connect(fd, sa); err != nil && err != syscall.EINPROGRESS && err != syscall.EINTR {
		l.finish(a, netFailure("connect to proxy", a.dialErr(os.NewSyscallError("connect", err))))
		return
	}
	ev := syscall.EpollEvent{Events: epollEvents, Fd: int32(fd)}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		l.finish(a, netFailure("connect to proxy", a.dialErr(os.NewSyscallError("epoll_ctl", err))))
		return
	}
	for fd >= len(l.byFD) {
		l.byFD = append(l.byFD, make([]*acheck, len(l.byFD)+64)...)
	}
	l.byFD[fd] = a
	l.inflight++
	l.heapPush(a)
	if a.ctx.Done() != nil {
		l.watch(a)
	}
}

func ctxDialErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return os.ErrDeadlineExceeded // "i/o timeout", as net.Dialer says
	}
	return errCanceled
}

// dialErr is err as net.Dialer reports it (with its LocalAddr as the
// Source when the checker has a SourceIP).
func (a *acheck) dialErr(err error) error {
	return &net.OpError{Op: "dial", Net: "tcp", Source: a.c.sourceAddr, Addr: a.remote(), Err: err}
}

// opErr is err as a *net.TCPConn's Read or Write reports it.
func (a *acheck) opErr(op string, err error) error {
	if a.local == nil {
		a.local = a.localAddr()
	}
	return &net.OpError{Op: op, Net: "tcp", Source: a.local, Addr: a.remote(), Err: err}
}

// localAddr is the socket's local address, as net.Conn.LocalAddr says it.
func (a *acheck) localAddr() net.Addr {
	if sa, e := syscall.Getsockname(a.fd); e == nil {
		switch sa := sa.(type) {
		case *syscall.SockaddrInet4:
			return &net.TCPAddr{IP: net.IP(sa.Addr[:]).To16(), Port: sa.Port}
		case *syscall.SockaddrInet6:
			return &net.TCPAddr{IP: net.IP(sa.Addr[:]), Port: sa.Port}
		}
	}
	return nil
}

func (a *acheck) remote() net.Addr {
	return net.TCPAddrFromAddrPort(a.addr)
}

// event handles epoll events of a check in flight.
func (l *evloop) event(a *acheck, events uint32) {
	if a.phase == phConnecting {
		if events&(syscall.EPOLLOUT|syscall.EPOLLERR|syscall.EPOLLHUP) == 0 {
			return
		}
		// A clean EPOLLOUT means connected; a failed or reset connect
		// also sets EPOLLERR, and SO_ERROR says why.
		soerr, err := 0, error(nil)
		if events&(syscall.EPOLLERR|syscall.EPOLLHUP) != 0 {
			soerr, err = syscall.GetsockoptInt(a.fd, syscall.SOL_SOCKET, syscall.SO_ERROR)
		}
		if err != nil {
			l.finish(a, netFailure("connect to proxy", a.dialErr(os.NewSyscallError("getsockopt", err))))
			return
		}
		switch e := syscall.Errno(soerr); e {
		case 0, syscall.EISCONN:
		case syscall.EINPROGRESS, syscall.EALREADY, syscall.EINTR:
			return
		case syscall.ECONNRESET:
			// The connection was established (a refused SYN gives
			// ECONNREFUSED) and reset before the loop looked at it.
			// Check, which looks at once, sees an established
			// connection, writes and then reads the reset: so does
			// this check, on a connection that swallows its writes.
			a.local = a.localAddr()
			a.dead = true
			a.rerr = a.opErr("read", os.NewSyscallError("read", e))
		default:
			l.finish(a, netFailure("connect to proxy", a.dialErr(os.NewSyscallError("connect", e))))
			return
		}
		l.connected(a)
		if a.phase == phDone {
			return
		}
	}
	if events&syscall.EPOLLOUT != 0 && len(a.pending) > 0 {
		if err := l.flush(a); err != nil {
			l.finish(a, netFailure("write", a.opErr("write", err)))
			return
		}
	}
	if a.dead {
		l.conclude(a)
		return
	}
	if events&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
		// Edge-triggered: read until EAGAIN, unless the check concludes
		// first (a whole response usually comes in one read, and the
		// socket is closed then).
		for a.phase != phDone {
			prev := len(a.in)
			if !l.readSome(a) {
				break
			}
			l.arrived(a, prev)
		}
	}
}

// connected starts the exchange on an established connection.
func (l *evloop) connected(a *acheck) {
	if a.c.cfg.Mode == ModeTCPConnect {
		a.r.Connect = time.Since(a.start)
		l.finish(a, nil)
		return
	}
	if a.p.scheme == SchemeHTTP {
		a.r.Connect = time.Since(a.start)
		l.sendRequest(a)
		return
	}
	a.phase = phHandshake
	l.advance(a)
}

// readSome reads once from the socket; it reports whether the check's
// stream changed (bytes, end of stream or a read error), false when the
// socket has nothing more (EAGAIN) or the stream already ended.
func (l *evloop) readSome(a *acheck) bool {
	for !a.eof && a.rerr == nil && len(a.in) < maxStream {
		n, err := syscall.Read(a.fd, l.rbuf)
		switch {
		case n > 0:
			if a.in == nil {
				a.in = l.getBuf()
			}
			if a.phase == phResponse && a.firstAt.IsZero() {
				a.firstAt = time.Now()
			}
			a.in = append(a.in, l.rbuf[:n]...)
			return true
		case err == nil:
			a.eof = true
			return true
		case err == syscall.EAGAIN:
			return false
		case err == syscall.EINTR:
		default:
			a.rerr = a.opErr("read", os.NewSyscallError("read", err))
			return true
		}
	}
	return false
}

// cheapReplays is how many replays of the response a check gets for any
// bytes that arrive; after that, only bytes that end a response head, the
// end of the stream, a read error, the deadline or a cancellation replay it.
// Each replay parses every byte received so far, so a proxy that trickles a
// long head in tiny segments would otherwise cost time quadratic in its
// length. The outcome is the same (the final replay sees every byte: a head
// too big or malformed fails as it would have), only a failure may be
// reported later, at the latest at the deadline.
const cheapReplays = 32

// arrived runs the replay after bytes arrived (prev is the stream's length
// before), unless the replay cannot conclude differently than it last did
// (see cheapReplays).
func (l *evloop) arrived(a *acheck, prev int) {
	if a.phase == phResponse && a.replays >= cheapReplays && !a.eof && a.rerr == nil &&
		!endsHead(a.in, max(prev, a.hsEnd), a.hsEnd) {
		return
	}
	l.advance(a)
}

// endsHead reports whether a byte of in from from on completes the blank
// line that ends a response head ("\n\n" or "\n\r\n"), looking no further
// back than start.
func endsHead(in []byte, from, start int) bool {
	for from < len(in) {
		k := bytes.IndexByte(in[from:], '\n')
		if k < 0 {
			return false
		}
		j := from + k
		if j-1 >= start && in[j-1] == '\n' || j-2 >= start && in[j-1] == '\r' && in[j-2] == '\n' {
			return true
		}
		from = j + 1
	}
	return false
}

// advance replays the current phase over the bytes received; it moves on
// when the phase concluded.
func (l *evloop) advance(a *acheck) {
	st := l.st
	if a.phase == phHandshake {
		l.src = replaySrc{a: a}
		l.w = replayWriter{l: l, a: a}
		st.rd = reader{buf: st.rbuf[:], src: &l.src}
		st.deadline = a.deadline
		var f *failure
		if a.p.scheme == SchemeSOCKS5 || a.p.scheme == SchemeSOCKS5H {
			f = a.c.socks5(a.ctx, st, &l.w, a.p)
		} else {
			f = a.c.socks4(a.ctx, st, &l.w, a.p)
		}
		clear(st.wbuf) // SOCKS5 credentials
		if l.src.more {
			return
		}
		if f != nil {
			l.finish(a, f)
			return
		}
		a.hsEnd = l.src.off - st.rd.buffered()
		a.r.Connect = time.Since(a.start)
		l.sendRequest(a)
		if a.phase != phResponse || (len(a.in) == a.hsEnd && !a.eof && a.rerr == nil) {
			return
		}
	}
	if a.phase != phResponse {
		return
	}
	a.replays++
	l.src = replaySrc{a: a, off: a.hsEnd}
	st.rd = reader{buf: st.rbuf[:], src: &l.src}
	resp, f := readResponse(&st.rd, a.c.noBody, false, &st.body)
	if l.src.more {
		return
	}
	if !a.firstAt.IsZero() {
		a.r.FirstByte = a.firstAt.Sub(a.wrote)
	}
	a.r.StatusCode = resp.status
	if f == nil {
		f = a.c.judge(resp, a.p)
	}
	l.finish(a, f)
}

// sendRequest writes the HTTP request (absolute form to an HTTP proxy,
// origin form through a SOCKS tunnel).
func (l *evloop) sendRequest(a *acheck) {
	c, st := a.c, l.st
	req := c.originReq
	if a.p.scheme == SchemeHTTP {
		req = c.absReq
		if a.p.basicAuth() != "" {
			req = appendAuth(st.wbuf[:0], c.absPrefix, a.p.basicAuth())
			st.wbuf = req
		}
	}
	err := l.write(a, req)
	clear(st.wbuf) // drop the Proxy-Authorization copy, if any
	if err != nil {
		l.finish(a, netFailure("write request", a.opErr("write", err)))
		return
	}
	a.wrote = time.Now()
	a.phase = phResponse
}

// write writes b, keeping what the socket does not take for EPOLLOUT.
func (l *evloop) write(a *acheck, b []byte) error {
	if a.dead {
		return nil
	}
	if len(a.pending) > 0 {
		a.pending = append(a.pending, b...)
		return nil
	}
	for len(b) > 0 {
		n, err := syscall.Write(a.fd, b)
		if n > 0 {
			b = b[n:]
			continue
		}
		switch err {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			a.pending = append(a.pending, b...)
			return nil
		case nil:
			return io.ErrShortWrite
		case syscall.ECONNRESET, syscall.EPIPE:
			// The proxy reset the connection before this write. Check
			// writes at once after connecting or reading, so it almost
			// always writes before the reset arrives and then reads
			// it; the loop writes later and would report the write.
			// Report what Check does: the write went out, the read
			// sees the reset.
			a.dead = true
			if a.rerr == nil && !a.eof {
				a.rerr = a.opErr("read", os.NewSyscallError("read", syscall.ECONNRESET))
			}
			return nil
		}
		return os.NewSyscallError("write", err)
	}
	return nil
}

// flush writes pending bytes after EPOLLOUT.
func (l *evloop) flush(a *acheck) error {
	b := a.pending
	a.pending = nil
	err := l.write(a, b)
	clear(b)
	return err
}

// timeout ends a check whose deadline passed as Check's deadline would.
func (l *evloop) timeout(a *acheck) {
	if a.phase == phConnecting {
		l.finish(a, netFailure("connect to proxy", a.dialErr(os.ErrDeadlineExceeded)))
		return
	}
	a.rerr = a.opErr("read", os.ErrDeadlineExceeded)
	l.conclude(a)
}

// conclude replays the current phase after a.rerr was set: the replay
// always concludes then (the reader has no more bytes to wait for); the
// fallback failure only guards against a parser that would not.
func (l *evloop) conclude(a *acheck) {
	l.advance(a)
	if a.phase != phDone {
		l.finish(a, &failure{class: classifyNet(a.rerr), msg: "read: " + a.rerr.Error()})
	}
}

// cancel ends a check whose context is done, as Check's context.AfterFunc
// closing the connection would.
func (l *evloop) cancel(a *acheck) {
	if a.phase == phDone {
		return
	}
	err := a.ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		l.heapRemove(a)
		l.timeout(a)
		return
	}
	if a.phase == phConnecting {
		l.finish(a, netFailure("connect to proxy", a.dialErr(errCanceled)))
		return
	}
	a.rerr = a.opErr("read", net.ErrClosed)
	l.conclude(a)
}

// finish closes the connection, releases the check and calls done.
func (l *evloop) finish(a *acheck, f *failure) {
	if a.phase == phDone {
		return
	}
	a.phase = phDone
	// Reusable once done unless its own context.AfterFunc could not be
	// stopped: that one may still queue it for cancellation.
	reusable := true
	if a.stop != nil {
		reusable = a.stop()
	}
	if w := a.watch; w != nil {
		a.watch = nil
		w.n--
	}
	if a.fd >= 0 {
		if a.fd < len(l.byFD) && l.byFD[a.fd] == a {
			l.byFD[a.fd] = nil
			l.inflight--
		}
		syscall.Close(a.fd)
		a.fd = -1
	}
	l.heapRemove(a)
	if a.in != nil {
		l.putBuf(a.in)
		a.in = nil
	}
	clear(a.pending)
	r := a.c.finish(a.ctx, a.p, a.start, a.r, f)
	a.done.Done(r)
	if reusable {
		l.finished = append(l.finished, a)
	}
}

func (l *evloop) getBuf() []byte {
	if n := len(l.bufs); n > 0 {
		b := l.bufs[n-1]
		l.bufs = l.bufs[:n-1]
		return b
	}
	return make([]byte, 0, 1024)
}

func (l *evloop) putBuf(b []byte) {
	if cap(b) <= 16<<10 && len(l.bufs) < 4096 {
		l.bufs = append(l.bufs, b[:0])
	}
}

// replaySrc is the reader's source during a replay: the check's bytes from
// off, then errNeedMore (more set), or the end of the connection.
type replaySrc struct {
	a    *acheck
	off  int
	more bool
}

func (s *replaySrc) Read(p []byte) (int, error) {
	if s.off < len(s.a.in) {
		n := copy(p, s.a.in[s.off:])
		s.off += n
		return n, nil
	}
	switch {
	case s.a.rerr != nil:
		return 0, s.a.rerr
	case s.a.eof:
		return 0, io.EOF
	}
	s.more = true
	return 0, errNeedMore
}

// replayWriter sends only the bytes of a replay's writes that earlier
// replays did not send.
type replayWriter struct {
	l   *evloop
	a   *acheck
	off int
}

func (w *replayWriter) Write(b []byte) (int, error) {
	end := w.off + len(b)
	if end <= w.a.sent {
		w.off = end
		return len(b), nil
	}
	nb := b[max(w.a.sent-w.off, 0):]
	w.off, w.a.sent = end, end
	if err := w.l.write(w.a, nb); err != nil {
		return 0, w.a.opErr("write", err)
	}
	return len(b), nil
}

// The deadline heap.

func (l *evloop) heapPush(a *acheck) {
	a.heapIdx = len(l.timers)
	l.timers = append(l.timers, a)
	l.heapUp(a.heapIdx)
}

func (l *evloop) heapRemove(a *acheck) {
	i := a.heapIdx
	if i < 0 {
		return
	}
	last := len(l.timers) - 1
	if i != last {
		l.heapSwap(i, last)
	}
	l.timers[last] = nil
	l.timers = l.timers[:last]
	a.heapIdx = -1
	if i != last {
		l.heapDown(i)
		l.heapUp(i)
	}
}

func (l *evloop) heapSwap(i, j int) {
	h := l.timers
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}

func (l *evloop) heapUp(i int) {
	h := l.timers
	for i > 0 {
		p := (i - 1) / 2
		if !h[i].deadline.Before(h[p].deadline) {
			return
		}
		l.heapSwap(i, p)
		i = p
	}
}

func (l *evloop) heapDown(i int) {
	h := l.timers
	for {
		m, lc, rc := i, 2*i+1, 2*i+2
		if lc < len(h) && h[lc].deadline.Before(h[m].deadline) {
			m = lc
		}
		if rc < len(h) && h[rc].deadline.Before(h[m].deadline) {
			m = rc
		}
		if m == i {
			return
		}
		l.heapSwap(i, m)
		i = m
	}
}
