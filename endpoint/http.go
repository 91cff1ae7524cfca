package endpoint

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/proxyhealth/proxyhealth/rotation"
	"github.com/proxyhealth/proxyhealth/transport"
)

// hopHeaders are the hop-by-hop headers (RFC 9110 7.6.1) a proxy never
// forwards, plus Proxy-Connection (sent by old clients).
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopHeaders deletes the hop-by-hop headers and those that
// Connection names.
func removeHopHeaders(h http.Header) {
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				h.Del(f)
			}
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}

// serveHTTP serves one client request: CONNECT, or an absolute-form
// request to forward.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get(s.cfg.StickyHeader)
	user, pass, hasCreds := parseBasic(r.Header.Get("Proxy-Authorization"))
	user, userKey := splitSession(user)
	if s.authRequired() && (!hasCreds || !s.checkUser(user, pass)) {
		s.st.auth.Add(1)
		s.log.Debug("endpoint: proxy authentication failed", "client", r.RemoteAddr, "had_credentials", hasCreds)
		w.Header().Set("Proxy-Authenticate", `Basic realm="proxyhealth"`)
		s.fail(w, http.StatusProxyAuthRequired, "auth", "proxy authentication required: send Proxy-Authorization Basic with a configured user")
		return
	}
	if key == "" {
		key = userKey
	}
	switch {
	case r.Method == http.MethodConnect:
		s.connect(w, r, key)
	case r.URL.IsAbs() && (r.URL.Scheme == "http" || r.URL.Scheme == "https") && r.URL.Host != "":
		s.forward(w, r, key)
	default:
		s.st.badReq.Add(1)
		s.fail(w, http.StatusBadRequest, "bad_request", "this is a forward proxy: send absolute-form requests (GET http://host/path) or CONNECT host:port")
	}
}

// fail answers a request the endpoint could not forward. msg is the
// endpoint's own wording, never an upstream's error text.
func (s *Server) fail(w http.ResponseWriter, code int, class, msg string) {
	h := w.Header()
	h.Set(ErrorHeader, class)
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, "proxyhealth endpoint: "+msg+"\n")
}

// pickRequest is the pick for a request with the given sticky key.
func (s *Server) pickRequest(key string, exclude []string) rotation.Request {
	req := rotation.Request{
		Strategy: s.cfg.Strategy, Source: s.cfg.Source, Scheme: s.cfg.Scheme, Tag: s.cfg.Tag,
		Exclude: exclude,
	}
	if key != "" {
		req.Strategy, req.Key = rotation.Sticky, key
	}
	return req
}

// pick picks an upstream; a Picked without a URL is an error.
func (s *Server) pick(key string, exclude []string) (rotation.Pick, error) {
	p, err := s.r.Pick(s.pickRequest(key, exclude))
	if err == nil && p.URL == nil {
		err = errors.New("endpoint: the rotator picked " + p.ID + " without a URL")
	}
	return p, err
}

func (s *Server) report(o rotation.Outcome) {
	if err := s.r.ReportOutcome(o); err != nil {
		s.log.Debug("endpoint: report outcome", "proxy", o.ProxyID, "err", err)
	}
}

// idempotent follows net/http's rule for replaying a request.
func idempotent(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	_, k1 := r.Header["Idempotency-Key"]
	_, k2 := r.Header["X-Idempotency-Key"]
	return k1 || k2
}

// bodyTracker passes a request body through, counting bytes and noting
// whether it was touched (then it cannot be sent again). Close is a no-op:
// the server closes the client's body.
type bodyTracker struct {
	r       io.Reader
	touched atomic.Bool
	n       *atomic.Uint64
}

func (b *bodyTracker) Read(p []byte) (int, error) {
	b.touched.Store(true)
	n, err := b.r.Read(p)
	b.n.Add(uint64(n))
	return n, err
}

func (b *bodyTracker) Close() error { return nil }

// forward sends an absolute-form request through picked upstreams, trying
// another after a failure while the request can be sent again: always when
// the upstream was never reached or answered 407 and the body was not
// read, and for idempotent requests without a body after any connection
// failure. A response of the target (any status) ends the loop.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, key string) {
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.Close = false
	removeHopHeaders(out.Header)
	out.Header.Del(s.cfg.StickyHeader)
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header.Set("User-Agent", "") // net/http would add its own
	}
	var body *bodyTracker
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		body = &bodyTracker{r: r.Body, n: &s.st.bytesUp}
		out.Body = body
	} else {
		out.Body = nil
	}
	resendable := func() bool { return body == nil || !body.touched.Load() }

	var exclude []string
	lastClass := ""
	for attempt := 0; attempt < s.cfg.MaxAttempts; attempt++ {
		p, err := s.pick(key, exclude)
		if err != nil {
			if lastClass == "" {
				s.st.noProxy.Add(1)
				s.log.Debug("endpoint: no upstream", "err", err)
				s.fail(w, http.StatusServiceUnavailable, "no_proxy", "no usable upstream proxy")
				return
			}
			break
		}
		if attempt > 0 {
			s.st.retries.Add(1)
		}
		exclude = append(exclude, p.ID)
		resp, reached, err := s.roundTrip(out, p)
		if r.Context().Err() != nil {
			// The client left or the server is closing: nobody's fault.
			if resp != nil {
				resp.Body.Close()
			}
			return
		}
		switch {
		case err != nil:
			lastClass = transport.Classify(err)
			s.log.Debug("endpoint: forward failed", "proxy", p.ID, "class", lastClass, "reached", reached, "err", err)
			if !resendable() || reached && (body != nil || !idempotent(r)) {
				attempt = s.cfg.MaxAttempts // give up
			}
			continue
		case resp.StatusCode == http.StatusProxyAuthRequired:
			resp.Body.Close()
			lastClass = transport.ClassProxyAuthRequired
			s.log.Debug("endpoint: upstream wants credentials", "proxy", p.ID)
			if !resendable() {
				attempt = s.cfg.MaxAttempts
			}
			continue
		}
		s.st.ok.Add(1)
		s.copyResponse(w, resp)
		return
	}
	s.st.upFailed.Add(1)
	s.fail(w, http.StatusBadGateway, lastClass, "upstream proxy failed ("+lastClass+")")
}

// roundTrip makes one attempt through p and reports its outcome: a 407 or
// an error counts against p, any other response is p doing its job.
// reached tells whether a connection to the upstream was obtained (the
// request may have been sent).
func (s *Server) roundTrip(out *http.Request, p rotation.Pick) (*http.Response, bool, error) {
	start := time.Now()
	resp, reached, err := s.send(out, p)
	lat := time.Since(start)
	if out.Context().Err() != nil {
		return resp, reached, err
	}
	switch {
	case err != nil:
		s.report(rotation.Outcome{ProxyID: p.ID, Class: transport.Classify(err), Latency: lat})
	case resp.StatusCode == http.StatusProxyAuthRequired:
		s.report(rotation.Outcome{ProxyID: p.ID, Class: transport.ClassProxyAuthRequired, Latency: lat})
	default:
		s.report(rotation.Outcome{ProxyID: p.ID, OK: true, Latency: lat})
	}
	return resp, reached, err
}

// send sends out through p once: on the lean path when it may take it
// (see leanEligible), else by http.Transport.
func (s *Server) send(out *http.Request, p rotation.Pick) (*http.Response, bool, error) {
	if leanEligible(out, p.URL, out.Body != nil) {
		return s.leanRoundTrip(out.Context(), out, p.URL)
	}
	var reached atomic.Bool
	ctx := context.WithValue(out.Context(), upstreamKey{}, p.URL)
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { reached.Store(true) },
	})
	rt := s.rt
	switch p.URL.Scheme {
	case "socks4", "socks4a":
		rt = s.rtNoKA
	}
	resp, err := rt.RoundTrip(out.WithContext(ctx))
	return resp, reached.Load(), err
}

var copyBufs = sync.Pool{New: func() any { return new([32 << 10]byte) }}

// copyResponse writes the target's response to the client, without
// hop-by-hop headers, flushing as it goes when the length is unknown.
func (s *Server) copyResponse(w http.ResponseWriter, resp *http.Response) {
	defer resp.Body.Close()
	removeHopHeaders(resp.Header)
	h := w.Header()
	for k, vv := range resp.Header {
		h[k] = vv
	}
	w.WriteHeader(resp.StatusCode)
	flush := resp.ContentLength < 0
	rc := http.NewResponseController(w)
	buf := copyBufs.Get().(*[32 << 10]byte)
	defer copyBufs.Put(buf)
	for {
		n, err := resp.Body.Read(buf[:])
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			s.st.bytesDown.Add(uint64(n))
			if flush {
				_ = rc.Flush()
			}
		}
		if err != nil {
			if err != io.EOF {
				// The response is cut short: abort the client's connection
				// so that it does not take a truncated body as whole.
				s.log.Debug("endpoint: response body cut", "err", err)
				panic(http.ErrAbortHandler)
			}
			return
		}
	}
}
