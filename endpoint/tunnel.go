package endpoint

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/proxyhealth/proxyhealth/rotation"
	"github.com/proxyhealth/proxyhealth/transport"
)

// dialResult says how opening a tunnel ended when it failed.
type dialResult int

const (
	dialOK        dialResult = iota
	dialNoProxy              // nothing to pick
	dialFailed               // every attempt failed
	dialBadTarget            // the target address is unusable
	dialAbandoned            // the client left or the server is closing
)

// dialTunnel opens a connection to addr through picked upstreams, trying
// another after each failure (nothing was sent yet, so any request may be
// retried), and reports every attempt. On failure it returns the last
// failure class.
func (s *Server) dialTunnel(ctx context.Context, key, addr string) (net.Conn, rotation.Pick, dialResult, string) {
	var exclude []string
	lastClass := ""
	for attempt := 0; attempt < s.cfg.MaxAttempts; attempt++ {
		p, err := s.pick(key, exclude)
		if err != nil {
			s.log.Debug("endpoint: no upstream", "err", err)
			if attempt == 0 {
				return nil, p, dialNoProxy, "no_proxy"
			}
			break
		}
		if attempt > 0 {
			s.st.retries.Add(1)
		}
		exclude = append(exclude, p.ID)
		actx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
		start := time.Now()
		c, err := s.dialer.DialThrough(actx, p.URL, "tcp", addr)
		lat := time.Since(start)
		cancel()
		if err == nil {
			s.report(rotation.Outcome{ProxyID: p.ID, OK: true, Latency: lat})
			return c, p, dialOK, ""
		}
		switch {
		case ctx.Err() != nil:
			return nil, p, dialAbandoned, "other"
		case errors.Is(err, transport.ErrBadAddress):
			return nil, p, dialBadTarget, "bad_request"
		}
		lastClass = transport.Classify(err)
		s.log.Debug("endpoint: tunnel dial failed", "proxy", p.ID, "class", lastClass, "err", err)
		s.report(rotation.Outcome{ProxyID: p.ID, Class: lastClass, Latency: lat})
	}
	return nil, rotation.Pick{}, dialFailed, lastClass
}

// connect serves a CONNECT: open the tunnel first (so that a failure is
// an ordinary HTTP answer), then take the client connection over and
// splice.
func (s *Server) connect(w http.ResponseWriter, r *http.Request, key string) {
	if !s.enter() {
		s.fail(w, http.StatusServiceUnavailable, "closing", "the endpoint is shutting down")
		return
	}
	defer s.wg.Done()
	if _, _, err := net.SplitHostPort(r.Host); err != nil {
		s.st.badReq.Add(1)
		s.fail(w, http.StatusBadRequest, "bad_request", "CONNECT needs host:port")
		return
	}
	up, p, res, class := s.dialTunnel(r.Context(), key, r.Host)
	switch res {
	case dialNoProxy:
		s.st.noProxy.Add(1)
		s.fail(w, http.StatusServiceUnavailable, class, "no usable upstream proxy")
		return
	case dialFailed:
		s.st.upFailed.Add(1)
		s.fail(w, http.StatusBadGateway, class, "upstream proxy failed ("+class+")")
		return
	case dialBadTarget:
		s.st.badReq.Add(1)
		s.fail(w, http.StatusBadRequest, class, "CONNECT target is not a usable host:port")
		return
	case dialAbandoned:
		return
	}
	upc := s.track(up, false)
	if upc == nil {
		up.Close()
		return
	}
	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		upc.Close()
		s.st.badReq.Add(1)
		s.fail(w, http.StatusInternalServerError, "other", "cannot take over the connection for a tunnel")
		return
	}
	s.st.ok.Add(1)
	_ = client.SetDeadline(time.Time{})
	if _, err := io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		client.Close()
		upc.Close()
		return
	}
	var from io.Reader = client
	if brw.Reader.Buffered() > 0 {
		from = io.MultiReader(io.LimitReader(brw.Reader, int64(brw.Reader.Buffered())), client)
	}
	s.splice(client, from, upc, p)
}

// splice copies both ways until both ends are done, either end fails, the
// tunnel is idle for IdleTimeout, or the server closes. It reports a
// failure against p (besides the dial's success) only when the upstream
// side ends with an error before sending a single byte: a reset later in
// a tunnel may be the target's as well as the proxy's, and is not
// reported.
func (s *Server) splice(client net.Conn, fromClient io.Reader, up net.Conn, p rotation.Pick) {
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	var ended atomic.Bool
	var idle *time.Timer
	idle = time.AfterFunc(s.cfg.IdleTimeout, func() {
		if ended.Load() {
			return
		}
		since := time.Since(time.Unix(0, last.Load()))
		if since >= s.cfg.IdleTimeout {
			client.Close()
			up.Close()
			return
		}
		idle.Reset(s.cfg.IdleTimeout - since)
	})
	defer func() {
		ended.Store(true)
		idle.Stop()
	}()

	downDone := make(chan struct{})
	var downN int64
	var downErr error
	var downReadErr bool
	go func() { // tracked: splice waits for it below
		defer close(downDone)
		downN, downErr, downReadErr = s.pipe(client, up, &last, &s.st.bytesDown)
		if downErr != nil {
			client.Close()
			up.Close()
			return
		}
		closeWrite(client)
	}()
	_, upErr, _ := s.pipe(up, fromClient, &last, &s.st.bytesUp)
	if upErr != nil {
		client.Close()
		up.Close()
	} else {
		closeWrite(up)
	}
	<-downDone
	client.Close()
	up.Close()
	if downReadErr && downN == 0 && !errors.Is(downErr, net.ErrClosed) && s.ctx.Err() == nil {
		class := transport.Classify(downErr)
		s.log.Debug("endpoint: upstream ended a tunnel before any data", "proxy", p.ID, "class", class)
		s.report(rotation.Outcome{ProxyID: p.ID, Class: class})
	}
}

// pipe copies src to dst, counting bytes and noting activity. It returns
// a nil error at src's end of stream, else the first error and whether it
// came from reading src.
func (s *Server) pipe(dst io.Writer, src io.Reader, last *atomic.Int64, total *atomic.Uint64) (int64, error, bool) {
	buf := copyBufs.Get().(*[32 << 10]byte)
	defer copyBufs.Put(buf)
	var n int64
	for {
		nr, rerr := src.Read(buf[:])
		if nr > 0 {
			last.Store(time.Now().UnixNano())
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			total.Add(uint64(nw))
			if werr != nil {
				return n, werr, false
			}
		}
		if rerr == io.EOF {
			return n, nil, false
		}
		if rerr != nil {
			return n, rerr, true
		}
	}
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}
