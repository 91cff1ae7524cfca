package sources

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// Fetch defaults.
const (
	// DefaultTimeout bounds a whole fetch: connection, TLS, headers and
	// body.
	DefaultTimeout = 30 * time.Second
	// DefaultMaxRedirects is how many redirects a fetch follows.
	DefaultMaxRedirects = 5
	// DefaultRefresh is how often a URL source is fetched again.
	DefaultRefresh = 10 * time.Minute
	// DefaultRefreshJitter spreads refreshes by ±10 % (see NextRefresh).
	DefaultRefreshJitter = 0.1
	// userAgent is sent with every fetch.
	userAgent = "proxyhealth (proxy list refresh)"
)

// NextRefresh returns the delay before a source's next fetch:
// interval·(1 + jitter·(2·sample − 1)), sample in [0, 1) (a random or
// hashed number, so that sources added together do not refresh together).
// A zero interval means DefaultRefresh; jitter is clamped to [0, 1].
func NextRefresh(interval time.Duration, jitter, sample float64) time.Duration {
	if interval <= 0 {
		interval = DefaultRefresh
	}
	jitter = min(max(jitter, 0), 1)
	sample = min(max(sample, 0), 1)
	return time.Duration(float64(interval) * (1 + jitter*(2*sample-1)))
}

// Fetcher fetches proxy lists over HTTP(S). The zero value is ready to
// use; a Fetcher is safe for concurrent use and holds no connections
// between fetches (keep-alives are off: a list is fetched every few
// minutes).
type Fetcher struct {
	// Timeout bounds a whole fetch (default DefaultTimeout).
	Timeout time.Duration
	// MaxRedirects is how many redirects a fetch follows (default
	// DefaultMaxRedirects; negative: none).
	MaxRedirects int
	// Limits bound the body (MaxBytes applies to the body as sent and
	// after decompression) and the list.
	Limits Limits
	// TLSConfig is the TLS configuration for https URLs (nil: the
	// system's roots, TLS 1.2 at least).
	TLSConfig *tls.Config
	// Transport, when set, replaces the default transport (a clone of
	// the system's settings: proxies from HTTPS_PROXY/NO_PROXY, no
	// keep-alives, no transparent decompression). The timeout, the
	// redirect policy and the limits apply all the same.
	Transport http.RoundTripper
}

// Request is one fetch of a list.
type Request struct {
	// URL is the list's http:// or https:// URL. Its user info, query
	// and fragment never appear in errors (see DisplayURL).
	URL string
	// Headers are sent with the request (an API key, resolved by the
	// caller, see ResolveHeaders). Their values never appear in errors.
	// They are not sent on when a redirect leads to another host.
	Headers map[string]string
	// ETag and LastModified are the validators of the last good fetch
	// (Result.ETag, Result.LastModified): sent as If-None-Match and
	// If-Modified-Since, they let the server answer 304 Not Modified.
	ETag         string
	LastModified string
}

// Result is the outcome of a successful fetch.
type Result struct {
	// List is the parsed list (empty when NotModified).
	List List
	// ETag and LastModified are the server's validators, to pass in the
	// next Request (when NotModified and the server sent none, those of
	// the Request).
	ETag         string
	LastModified string
	// NotModified is true when the server answered 304 Not Modified: the
	// list is unchanged since the fetch that gave the validators.
	NotModified bool
}

// FetchError is an error of Fetch that is not about the list's content:
// "URL: reason", URL as DisplayURL shows it. It wraps ErrFetch and maybe
// ErrTLS, ErrRedirect, ErrTooLarge, ErrNotList, ErrHeaders,
// context.Canceled or context.DeadlineExceeded.
type FetchError struct {
	// URL is the list's URL as DisplayURL shows it.
	URL string
	// Reason says what went wrong and what to do.
	Reason string
	kinds  []error
}

// Error returns "URL: reason".
func (e *FetchError) Error() string { return e.URL + ": " + e.Reason }

// Unwrap returns the sentinels the error wraps.
func (e *FetchError) Unwrap() []error { return e.kinds }

// secrets is what a fetch's errors must not show.
type secrets []string

func (s secrets) scrub(msg string) string {
	for _, v := range s {
		if len(v) >= 3 {
			msg = strings.ReplaceAll(msg, v, "REDACTED")
		}
	}
	return msg
}

// Fetch fetches and parses the list at req.URL. It sends req.Headers, the
// validators (answering NotModified on 304), "Accept-Encoding: gzip", and
// follows at most MaxRedirects redirects (a loop, or https → http, is an
// error). It refuses a non-2xx status, an HTML answer (Content-Type
// text/html), a body over Limits.MaxBytes (compressed or not, checked while
// reading), and whatever Parse refuses. Gzip is accepted as
// Content-Encoding and as a gzip body.
//
// Transport and TLS errors wrap ErrFetch (and ErrTLS, ErrRedirect) in a
// *FetchError; content errors are Parse's *ParseError (wrapping ErrParse),
// named after DisplayURL(req.URL). No error shows the URL's user info,
// query or fragment, nor a header value.
func (f *Fetcher) Fetch(ctx context.Context, req Request) (Result, error) {
	display := DisplayURL(req.URL)
	u, err := url.Parse(req.URL)
	sec := secrets{req.URL}
	if err == nil {
		sec = append(sec, u.RawQuery, u.Fragment, u.User.String())
		if p, ok := u.User.Password(); ok {
			sec = append(sec, p, url.QueryEscape(p))
		}
	}
	for _, v := range req.Headers {
		sec = append(sec, v)
	}
	fail := func(reason string, kinds ...error) error {
		return &FetchError{URL: display, Reason: sec.scrub(reason), kinds: append([]error{ErrFetch}, kinds...)}
	}
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Result{}, fail("not an http:// or https:// URL with a host: check the source's url")
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, req.URL, nil)
	if err != nil {
		return Result{}, fail("cannot build the request: check the source's url")
	}
	for k, v := range req.Headers {
		if reason := checkHeader(k, v); reason != "" {
			return Result{}, fail(reason, ErrHeaders)
		}
		hreq.Header.Set(k, v)
	}
	if hreq.Header.Get("Accept") == "" {
		hreq.Header.Set("Accept", "text/plain, application/json;q=0.9, */*;q=0.5")
	}
	hreq.Header.Set("Accept-Encoding", "gzip")
	if hreq.Header.Get("User-Agent") == "" {
		hreq.Header.Set("User-Agent", userAgent)
	}
	conditional := req.ETag != "" || req.LastModified != ""
	if req.ETag != "" {
		hreq.Header.Set("If-None-Match", req.ETag)
	}
	if req.LastModified != "" {
		hreq.Header.Set("If-Modified-Since", req.LastModified)
	}

	tr := f.Transport
	if tr == nil {
		own := f.newTransport()
		defer own.CloseIdleConnections()
		tr = own
	}
	timeout := f.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	client := &http.Client{Transport: tr, Timeout: timeout, CheckRedirect: f.redirectPolicy(req.Headers)}
	resp, err := client.Do(hreq)
	if err != nil {
		reason, kinds := transportReason(err, timeout)
		return Result{}, fail(reason, kinds...)
	}
	defer resp.Body.Close()

	switch {
	case resp.StatusCode == http.StatusNotModified && conditional:
		res := Result{NotModified: true, ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified")}
		if res.ETag == "" && res.LastModified == "" {
			res.ETag, res.LastModified = req.ETag, req.LastModified
		}
		return res, nil
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return Result{}, fail(fmt.Sprintf("answered %s: check the source's headers (an API key?)", resp.Status))
	case resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNonAuthoritativeInfo:
		return Result{}, fail(fmt.Sprintf("answered %s, not 200 OK: check the source's url", statusText(resp)))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err == nil && (mt == "text/html" || mt == "application/xhtml+xml") {
			return Result{}, &ParseError{Name: display, Reason: "answered HTML (Content-Type " + mt + "), not a proxy list: a login or error page? check the source's url and headers", Err: ErrNotList}
		}
	}
	lim := f.Limits.withDefaults()
	if resp.ContentLength > lim.MaxBytes {
		return Result{}, fail(fmt.Sprintf("the body is %d bytes (Content-Length), over the %s limit: refused", resp.ContentLength, sizeString(lim.MaxBytes)), ErrTooLarge)
	}
	wire := &countingReader{r: resp.Body, max: lim.MaxBytes}
	br := bufio.NewReader(wire)
	var body io.Reader = br
	switch enc := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding"))); enc {
	case "", "identity", "gzip", "x-gzip":
		if magic, _ := br.Peek(2); enc != "" && enc != "identity" || len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
			gz, err := gzip.NewReader(br)
			if err != nil {
				if wire.err != nil || wire.n > lim.MaxBytes {
					return Result{}, f.bodyError(fail, wire, lim, timeout)
				}
				return Result{}, &ParseError{Name: display, Reason: "the gzip-compressed body is corrupt: check the source", Err: ErrNotList}
			}
			defer gz.Close()
			body = gz
		}
	default:
		return Result{}, fail("the body is compressed with an unsupported Content-Encoding (only gzip is accepted)")
	}
	list, err := Parse(display, body, lim)
	if wire.err != nil || wire.n > lim.MaxBytes {
		return Result{}, f.bodyError(fail, wire, lim, timeout)
	}
	if err != nil {
		var pe *ParseError
		if errors.As(err, &pe) {
			pe.Reason = sec.scrub(pe.Reason)
		}
		return Result{}, err
	}
	return Result{List: list, ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified")}, nil
}

// bodyError reports a failure while reading the body as sent.
func (f *Fetcher) bodyError(fail func(string, ...error) error, wire *countingReader, lim Limits, timeout time.Duration) error {
	if wire.n > lim.MaxBytes {
		return fail(fmt.Sprintf("the body is over the %s limit: refused", sizeString(lim.MaxBytes)), ErrTooLarge)
	}
	reason, kinds := transportReason(wire.err, timeout)
	return fail("reading the body: "+reason, kinds...)
}

func statusText(resp *http.Response) string {
	if resp.Status != "" {
		return cut(resp.Status, 80)
	}
	return fmt.Sprintf("%d", resp.StatusCode)
}

// newTransport returns the default transport of a fetch.
func (f *Fetcher) newTransport() *http.Transport {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.TLSConfig != nil {
		tc = f.TLSConfig.Clone()
	}
	return &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSClientConfig:        tc,
		TLSHandshakeTimeout:    10 * time.Second,
		DisableKeepAlives:      true,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 64 << 10,
	}
}

// redirectPolicy follows at most MaxRedirects redirects, refuses loops
// and https → http, and drops the caller's headers when the host changes.
func (f *Fetcher) redirectPolicy(headers map[string]string) func(*http.Request, []*http.Request) error {
	maxRedirects := f.MaxRedirects
	if maxRedirects == 0 {
		maxRedirects = DefaultMaxRedirects
	}
	return func(r *http.Request, via []*http.Request) error {
		for _, v := range via {
			if v.URL.String() == r.URL.String() {
				return fmt.Errorf("%w: a redirect loop: %s leads back to %s after %d redirects; check the source's url", ErrRedirect, DisplayURL(via[len(via)-1].URL.String()), DisplayURL(r.URL.String()), len(via))
			}
		}
		if len(via) > maxRedirects {
			return fmt.Errorf("%w: more than %d redirects (a redirect loop?); check the source's url", ErrRedirect, max(maxRedirects, 0))
		}
		if via[len(via)-1].URL.Scheme == "https" && r.URL.Scheme != "https" {
			return fmt.Errorf("%w: a redirect from https to %s://%s refused: the list and the headers would travel unencrypted", ErrRedirect, r.URL.Scheme, r.URL.Host)
		}
		if !strings.EqualFold(r.URL.Host, via[0].URL.Host) {
			for k := range headers {
				r.Header.Del(k)
			}
		}
		return nil
	}
}

// transportReason explains an error of the HTTP client.
func transportReason(err error, timeout time.Duration) (string, []error) {
	if errors.Is(err, ErrRedirect) {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return strings.TrimPrefix(err.Error(), ErrRedirect.Error()+": "), []error{ErrRedirect}
	}
	if errors.Is(err, context.Canceled) {
		return "canceled", []error{context.Canceled}
	}
	cause := err
	var ue *url.Error
	if errors.As(err, &ue) {
		cause = ue.Err
	}
	var (
		cve   *tls.CertificateVerificationError
		uae   x509.UnknownAuthorityError
		he    x509.HostnameError
		cie   x509.CertificateInvalidError
		rhe   tls.RecordHeaderError
		alert tls.AlertError
		dns   *net.DNSError
		ne    net.Error
	)
	switch {
	case errors.As(cause, &cve), errors.As(cause, &uae), errors.As(cause, &he), errors.As(cause, &cie):
		return "TLS error: the server's certificate is not trusted (" + tlsDetail(cause) + "); check the url, or the CA the server uses", []error{ErrTLS}
	case errors.As(cause, &rhe), strings.Contains(cause.Error(), "server gave HTTP response to HTTPS client"):
		return "TLS error: the server does not speak TLS (an http:// server on an https:// URL?)", []error{ErrTLS}
	case errors.As(cause, &alert), strings.Contains(cause.Error(), "tls: "):
		return "TLS error: " + tlsDetail(cause), []error{ErrTLS}
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("no complete answer within %v (timeout): the server is slow or unreachable", timeout), []error{context.DeadlineExceeded}
	case errors.As(cause, &dns):
		return "cannot resolve the host name: " + dns.Err, nil
	case errors.Is(cause, syscall.ECONNREFUSED):
		return "connection refused: nothing listens there", nil
	case errors.Is(cause, io.ErrUnexpectedEOF) || errors.Is(cause, io.EOF):
		return "the connection closed before the answer was complete", nil
	}
	return cut(cause.Error(), 300), nil
}

// tlsDetail is the innermost message of a TLS error, cut short.
func tlsDetail(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return cut(strings.TrimPrefix(err.Error(), "tls: failed to verify certificate: "), 200)
}

// checkHeader returns a reason, "" when the header may be sent. It never
// shows the value.
func checkHeader(name, value string) string {
	if name == "" || strings.IndexFunc(name, func(r rune) bool { return r <= ' ' || r >= 0x7f || strings.ContainsRune("()<>@,;:\\\"/[]?={}", r) }) >= 0 {
		return "a header name is not a valid HTTP header name: check the source's headers"
	}
	if value == "" {
		return fmt.Sprintf("header %s has an empty value: check the source's headers (an unset environment variable?)", cut(name, 64))
	}
	if strings.ContainsAny(value, "\r\n\x00") {
		return fmt.Sprintf("header %s: the value contains a line break or NUL: check the source's headers", cut(name, 64))
	}
	return ""
}
