package probe

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// Echo timings.
const (
	// OwnIPRefresh is how long the checker's own address, learned by a
	// direct GET of Config.EchoURL, is reused before it is fetched again.
	OwnIPRefresh = 10 * time.Minute
	// OwnIPRetry is how long a failed direct GET is remembered before the
	// next check tries again (meanwhile the last known address, if any, is
	// used).
	OwnIPRetry = 30 * time.Second
)

// echoer runs the echo request of a Checker whose Config has an EchoURL.
type echoer struct {
	c    *Checker        // the echo request's checker: GET EchoURL, 2xx, body read
	sent map[string]bool // lowercase names of the headers the echo request sends
	own  ownIPCache
}

// newEchoer prepares the echo request: GET EchoURL with the check's
// User-Agent (only that one of Config.Headers: the other headers are meant
// for the target, and the echo may be a third party), "Accept:
// application/json", the same dialer, resolver and TLS configuration (and
// session cache) as the check.
func newEchoer(parent *Checker, cp *compiled, opts []Option) (*echoer, error) {
	ecfg := Config{TargetURL: cp.cfg.EchoURL, Method: "GET", Timeout: cp.cfg.Timeout, TLSConfig: cp.cfg.TLSConfig, Close: cp.cfg.Close,
		SourceIP: cp.cfg.SourceIP}
	for _, h := range cp.headers {
		if strings.EqualFold(h.Name, "user-agent") {
			ecfg.Headers = append(ecfg.Headers, h)
		}
	}
	ecfg.Headers = append(ecfg.Headers, Header{"Accept", "application/json"})
	ec, err := NewChecker(ecfg, opts...)
	if err != nil {
		return nil, err // cannot happen: compile validated EchoURL
	}
	ec.wantBody, ec.noBody = true, false
	ec.tlsBase = parent.tlsBase
	ec.tlsTarget = parent.tlsBase.Clone()
	ec.tlsTarget.ServerName = ec.t.host
	sent := map[string]bool{"host": true, "connection": true, "user-agent": true}
	for _, h := range ecfg.Headers {
		sent[strings.ToLower(h.Name)] = true
	}
	return &echoer{c: ec, sent: sent}, nil
}

// run GETs EchoURL through proxy after a passed check and fills r's echo
// fields. It never changes r's verdict or timings.
func (e *echoer) run(ctx context.Context, st *state, proxy ProxyURL, deadline time.Time, r *Result) {
	start := time.Now()
	defer func() { r.Echo = time.Since(start) }()
	var er Result
	if f := e.c.attempt(ctx, st, proxy, start, deadline, &er); f != nil {
		r.EchoMessage = sanitize("echo: "+f.msg, proxy)
		return
	}
	rep, err := parseEcho(st.body)
	if err != nil {
		r.EchoMessage = sanitize("echo: "+err.Error(), proxy)
		return
	}
	r.ExitIP = rep.origins[len(rep.origins)-1].String()
	if !rep.hasHeaders {
		r.EchoMessage = "echo: the answer has no \"headers\" object: anonymity unknown"
		return
	}
	local := st.local
	own, ownErr := e.ownIPs(ctx, st, deadline)
	if local.IsValid() {
		own = append(own[:len(own):len(own)], local)
	}
	r.Anonymity = classify(rep, own, e.sent)
	if ownErr != nil && r.Anonymity != pb.Anonymity_ANONYMITY_TRANSPARENT {
		r.EchoMessage = sanitize("echo: own IP unknown, transparent not decidable: "+ownErr.Error(), proxy)
	}
}

// ownIPCache holds the checker's own addresses, shared by all checks.
type ownIPCache struct {
	mu       sync.Mutex
	ips      []netip.Addr // last known (never modified in place)
	err      error        // last fetch's error, nil after a success
	expires  time.Time    // next fetch due
	inflight chan struct{}
}

// ownIPs returns the checker's own public addresses (the origin a direct
// GET of EchoURL reports), fetching them when they are older than
// OwnIPRefresh. One check fetches at a time; the others use the last known
// addresses, or, when there are none yet, wait for the fetch until their
// deadline. The error is set when no address is known.
func (e *echoer) ownIPs(ctx context.Context, st *state, deadline time.Time) ([]netip.Addr, error) {
	oc := &e.own
	for {
		oc.mu.Lock()
		if time.Now().Before(oc.expires) || (oc.inflight != nil && oc.ips != nil) {
			ips, err := oc.ips, oc.err
			oc.mu.Unlock()
			if ips != nil {
				err = nil
			}
			return ips, err
		}
		if wait := oc.inflight; wait != nil {
			oc.mu.Unlock()
			t := time.NewTimer(time.Until(deadline))
			select {
			case <-wait:
				t.Stop()
				continue
			case <-ctx.Done():
				t.Stop()
				return nil, errors.New("waiting for the direct GET: " + ctx.Err().Error())
			case <-t.C:
				return nil, errors.New("waiting for the direct GET: deadline passed")
			}
		}
		done := make(chan struct{})
		oc.inflight = done
		oc.mu.Unlock()

		ips, err := e.fetchOwnIPs(ctx, st, deadline)

		oc.mu.Lock()
		now := time.Now()
		switch {
		case err == nil:
			oc.ips, oc.err, oc.expires = ips, nil, now.Add(OwnIPRefresh)
		case ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded):
			// Canceled: says nothing about the echo; the next check retries.
		default:
			oc.err, oc.expires = err, now.Add(OwnIPRetry)
		}
		oc.inflight = nil
		close(done)
		ips, err = oc.ips, oc.err
		oc.mu.Unlock()
		if ips != nil {
			err = nil
		} else if err == nil {
			err = errors.New("direct GET canceled")
		}
		return ips, err
	}
}

// fetchOwnIPs GETs EchoURL directly (no proxy) and returns the origin's
// addresses.
func (e *echoer) fetchOwnIPs(ctx context.Context, st *state, deadline time.Time) ([]netip.Addr, error) {
	c := e.c
	st.rd = reader{buf: st.rbuf[:]}
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	raw, err := c.dial(dctx, "tcp", c.t.hostPort)
	if err != nil {
		return nil, errors.New("direct GET of the echo URL: connect: " + err.Error())
	}
	if c.reset {
		setResetOnClose(raw)
	}
	defer raw.Close()
	_ = raw.SetDeadline(deadline)
	stop := context.AfterFunc(dctx, func() { raw.Close() })
	defer stop()
	conn := raw
	if c.t.https {
		tc := tls.Client(raw, c.tlsTarget)
		if err := tc.Handshake(); err != nil {
			return nil, errors.New("direct GET of the echo URL: TLS: " + err.Error())
		}
		conn = tc
	}
	st.rd.src = conn
	if _, err := conn.Write(c.originReq); err != nil {
		return nil, errors.New("direct GET of the echo URL: write: " + err.Error())
	}
	resp, f := readResponse(&st.rd, false, true, &st.body)
	if f != nil {
		return nil, errors.New("direct GET of the echo URL: " + f.msg)
	}
	if !c.statusOK(resp.status) {
		return nil, errors.New("direct GET of the echo URL: status " + strconv.Itoa(resp.status))
	}
	rep, err := parseEcho(resp.body)
	if err != nil {
		return nil, errors.New("direct GET of the echo URL: " + err.Error())
	}
	return rep.origins, nil
}

// echoReply is a parsed echo answer.
type echoReply struct {
	origins    []netip.Addr // at least one; the last is the exit
	headers    []echoHeader
	hasHeaders bool
}

type echoHeader struct{ name, value string }

// parseEcho parses an httpbin-like answer: {"origin": "IP" or "IP, IP,
// ...", "headers": {"Name": "value" or ["value", ...], ...}}. The origin
// is required and every entry must be an IP address; a missing or null
// "headers" leaves hasHeaders false. Errors quote nothing from the body
// (a proxy may have forwarded its Proxy-Authorization to the echo).
func parseEcho(body []byte) (echoReply, error) {
	var raw struct {
		Origin  *string         `json:"origin"`
		Headers json.RawMessage `json:"headers"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return echoReply{}, errors.New(`answer is not a JSON object like {"origin": "IP", "headers": {...}} (` + strconv.Itoa(len(body)) + " bytes read)")
	}
	if raw.Origin == nil {
		return echoReply{}, errors.New("answer has no \"origin\"")
	}
	var rep echoReply
	for part := range strings.SplitSeq(*raw.Origin, ",") {
		a, err := netip.ParseAddr(strings.TrimSpace(part))
		if err != nil {
			return echoReply{}, errors.New("the answer's origin (" + strconv.Itoa(len(*raw.Origin)) + " bytes) is not a list of IP addresses")
		}
		rep.origins = append(rep.origins, a.Unmap())
	}
	if len(raw.Headers) == 0 || string(raw.Headers) == "null" {
		return rep, nil
	}
	var hs map[string]json.RawMessage
	if err := json.Unmarshal(raw.Headers, &hs); err != nil {
		return echoReply{}, errors.New("\"headers\" is not an object of strings")
	}
	rep.hasHeaders = true
	for name, v := range hs {
		var one string
		if err := json.Unmarshal(v, &one); err == nil {
			rep.headers = append(rep.headers, echoHeader{name, one})
			continue
		}
		var many []string
		if err := json.Unmarshal(v, &many); err != nil {
			return echoReply{}, errors.New("a header's value in the answer is neither a string nor a list of strings")
		}
		rep.headers = append(rep.headers, echoHeader{name, strings.Join(many, ", ")})
	}
	return rep, nil
}

// proxyHeaders are the request headers proxies add. ipHeaders (true) carry
// client addresses: they count as a proxy's mark only when they name an
// address other than the exit (an echo's own front end often records its
// peer, the exit, in X-Forwarded-For or X-Real-Ip).
var proxyHeaders = map[string]bool{
	"via": false, "proxy-connection": false, "x-proxy-id": false, "x-bluecoat-via": false,
	"proxy-agent": false, "x-proxy-connection": false,
	"x-forwarded-for": true, "forwarded": true, "x-real-ip": true, "client-ip": true,
	"x-client-ip": true, "forwarded-for": true, "x-forwarded": true, "x-originating-ip": true,
	"x-remote-ip": true, "x-remote-addr": true, "x-cluster-client-ip": true, "true-client-ip": true,
}

// classify decides the anonymity level of an echo answer, given the
// checker's own addresses (possibly none). Headers the echo request sent
// itself (sent: lowercase names; Host may well name an own address) are
// not looked at.
//
//   - TRANSPARENT: one of own appears in the origin or in any header value;
//   - ANONYMOUS: the origin lists more than one address (httpbin builds it
//     from X-Forwarded-For), or a proxy header is present (an address
//     header only when it names an address other than the exit);
//   - ELITE: neither.
func classify(rep echoReply, own []netip.Addr, sent map[string]bool) pb.Anonymity {
	isOwn := func(a netip.Addr) bool {
		for _, o := range own {
			if a == o {
				return true
			}
		}
		return false
	}
	exit := rep.origins[len(rep.origins)-1]
	for _, a := range rep.origins {
		if isOwn(a) {
			return pb.Anonymity_ANONYMITY_TRANSPARENT
		}
	}
	anonymous := len(rep.origins) > 1
	for _, h := range rep.headers {
		name := strings.ToLower(h.name)
		if sent[name] {
			continue
		}
		named, others, transparent := false, false, false
		addrsIn(h.value, func(a netip.Addr) {
			named = true
			others = others || a != exit
			transparent = transparent || isOwn(a)
		})
		if transparent {
			return pb.Anonymity_ANONYMITY_TRANSPARENT
		}
		if ip, known := proxyHeaders[name]; known && (!ip || others || !named) {
			anonymous = true
		}
	}
	if anonymous {
		return pb.Anonymity_ANONYMITY_ANONYMOUS
	}
	return pb.Anonymity_ANONYMITY_ELITE
}

// addrsIn calls fn for every IP address in a header value: tokens made of
// hex digits, dots and colons that parse as an address or address:port
// ("1.2.3.4", "1.2.3.4:80", "for=\"[2001:db8::1]:443\"").
func addrsIn(v string, fn func(netip.Addr)) {
	isAddrChar := func(c byte) bool {
		return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '.' || c == ':'
	}
	for i := 0; i < len(v); {
		if !isAddrChar(v[i]) {
			i++
			continue
		}
		j := i
		for j < len(v) && isAddrChar(v[j]) {
			j++
		}
		tok := v[i:j]
		i = j
		if len(tok) < 2 || strings.IndexByte(tok, '.') < 0 && strings.Count(tok, ":") < 2 {
			continue
		}
		if a, err := netip.ParseAddr(tok); err == nil {
			fn(a.Unmap())
		} else if ap, err := netip.ParseAddrPort(tok); err == nil {
			fn(ap.Addr().Unmap())
		}
	}
}
