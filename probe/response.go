package probe

import (
	"bytes"
	"errors"
	"io"
	"time"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// readBufSize is the response reader's buffer. A status line must fit in
// it; longer header lines are skipped (they still count towards
// MaxHeaderBytes).
const readBufSize = 4096

// maxChunkLine bounds a chunk-size line (with extensions).
const maxChunkLine = 1024

// maxInterim bounds the number of 1xx responses skipped before the final
// one.
const maxInterim = 8

// reader is a minimal buffered reader for HTTP responses and SOCKS replies.
// It records when the first byte arrived after reset.
type reader struct {
	src   io.Reader
	buf   []byte
	r, w  int
	first time.Time
}

var errLineTooLong = errors.New("line too long")

// fill reads more data, compacting the buffer first. It returns an error
// only if no byte was read.
func (rd *reader) fill() error {
	if rd.r > 0 {
		copy(rd.buf, rd.buf[rd.r:rd.w])
		rd.w -= rd.r
		rd.r = 0
	}
	if rd.w == len(rd.buf) {
		return errLineTooLong
	}
	for range 100 {
		n, err := rd.src.Read(rd.buf[rd.w:])
		if n > 0 {
			if rd.first.IsZero() {
				rd.first = time.Now()
			}
			rd.w += n
			return nil
		}
		if err != nil {
			return err
		}
	}
	return io.ErrNoProgress
}

// buffered returns the number of unread buffered bytes.
func (rd *reader) buffered() int { return rd.w - rd.r }

// readFull returns the next n bytes (n <= len(buf)); the slice is valid
// until the next call.
func (rd *reader) readFull(n int) ([]byte, error) {
	for rd.w-rd.r < n {
		if err := rd.fill(); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	b := rd.buf[rd.r : rd.r+n]
	rd.r += n
	return b, nil
}

// readLine returns the next line without its "\n" or "\r\n" and the number
// of bytes consumed. If the line does not fit in the buffer, it returns the
// first part, long = true, and discards the rest (up to limit bytes in all).
func (rd *reader) readLine(limit int) (line []byte, consumed int, long bool, err error) {
	scanned := 0
	for {
		if i := bytes.IndexByte(rd.buf[rd.r+scanned:rd.w], '\n'); i >= 0 {
			end := rd.r + scanned + i
			line = rd.buf[rd.r:end]
			rd.r = end + 1
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
			return line, len(line) + 1, false, nil
		}
		if rd.w-rd.r >= limit {
			return nil, 0, false, errHeaderTooBig
		}
		scanned = rd.w - rd.r
		if err := rd.fill(); err != nil {
			if err == errLineTooLong {
				return rd.skipLongLine(limit)
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, 0, false, err
		}
	}
}

// skipLongLine is readLine's slow path: the buffer is full without a
// newline. It keeps a copy of the line's first bytes and discards the rest.
func (rd *reader) skipLongLine(limit int) ([]byte, int, bool, error) {
	head := append([]byte(nil), rd.buf[:64]...)
	consumed := rd.w
	rd.r, rd.w = 0, 0
	for {
		if consumed > limit {
			return nil, 0, false, errHeaderTooBig
		}
		if err := rd.fill(); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, 0, false, err
		}
		if i := bytes.IndexByte(rd.buf[:rd.w], '\n'); i >= 0 {
			rd.r = i + 1
			return head, consumed + i + 1, true, nil
		}
		consumed += rd.w
		rd.r, rd.w = 0, 0
	}
}

var errHeaderTooBig = errors.New("header too big")

// response is what readResponse extracts.
type response struct {
	status int
	// body is the first MaxBodyBytes of the body (only when requested).
	body []byte
}

// readResponse reads one HTTP/1.x response: status line and headers,
// skipping 1xx interim responses (except 101), and, if wantBody, the body
// (Content-Length, chunked or until EOF), at most MaxBodyBytes of it, into
// *body (reused). noBody says the request was HEAD. Failures are classed
// PROTOCOL (malformed or too big), RESET (connection closed or reset
// early) or, for network errors, by classifyNet.
func readResponse(rd *reader, noBody, wantBody bool, body *[]byte) (response, *failure) {
	for interim := 0; ; interim++ {
		status, contentLength, chunked, f := readHead(rd)
		if f != nil {
			return response{status: status}, f
		}
		if status >= 100 && status <= 199 && status != 101 {
			if interim >= maxInterim {
				return response{status: status}, protocolf("more than %d interim 1xx responses", maxInterim)
			}
			continue
		}
		resp := response{status: status}
		if !wantBody || noBody || status == 204 || status == 304 || status == 101 {
			return resp, nil
		}
		b, f := readBody(rd, contentLength, chunked, (*body)[:0])
		*body = b
		resp.body = b
		resp.status = status
		return resp, f
	}
}

// readHead parses a status line and headers. contentLength is -1 if absent.
func readHead(rd *reader) (status int, contentLength int64, chunked bool, f *failure) {
	contentLength = -1
	total := 0
	line, n, long, err := rd.readLine(MaxHeaderBytes)
	if err != nil {
		return 0, 0, false, readFailure("status line", err, true)
	}
	total += n
	if long {
		return 0, 0, false, protocolf("status line longer than %d bytes", readBufSize)
	}
	status, ok := parseStatusLine(line)
	if !ok {
		return 0, 0, false, protocolf("malformed status line %q", clip(line, 40))
	}
	for {
		line, n, long, err := rd.readLine(MaxHeaderBytes - total)
		if err != nil {
			return status, 0, false, readFailure("headers", err, false)
		}
		total += n
		if total > MaxHeaderBytes {
			return status, 0, false, protocolf("response headers larger than %d bytes", MaxHeaderBytes)
		}
		if len(line) == 0 && !long {
			return status, contentLength, chunked, nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			return status, 0, false, protocolf("obsolete header line folding")
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isTokenBytes(line[:colon]) {
			return status, 0, false, protocolf("malformed header line %q", clip(line, 40))
		}
		if long {
			continue
		}
		name, value := line[:colon], bytes.Trim(line[colon+1:], " \t")
		switch {
		case asciiEqualFold(name, "content-length"):
			v, ok := parseDecimal(value)
			if !ok || (contentLength >= 0 && v != contentLength) {
				return status, 0, false, protocolf("bad Content-Length %q", clip(value, 30))
			}
			contentLength = v
		case asciiEqualFold(name, "transfer-encoding"):
			chunked = hasSuffixFold(value, "chunked")
		}
	}
}

// parseStatusLine parses "HTTP/1.x DDD[ reason]".
func parseStatusLine(l []byte) (int, bool) {
	if len(l) < 12 || string(l[:7]) != "HTTP/1." || l[7] < '0' || l[7] > '9' || l[8] != ' ' {
		return 0, false
	}
	if len(l) > 12 && l[12] != ' ' {
		return 0, false
	}
	code := 0
	for _, c := range l[9:12] {
		if c < '0' || c > '9' {
			return 0, false
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 || code > 599 {
		return 0, false
	}
	return code, true
}

// readBody reads up to MaxBodyBytes of the body into buf.
func readBody(rd *reader, contentLength int64, chunked bool, buf []byte) ([]byte, *failure) {
	switch {
	case chunked:
		for len(buf) < MaxBodyBytes {
			line, _, _, err := rd.readLine(maxChunkLine)
			if err == errHeaderTooBig {
				return buf, protocolf("chunk size line longer than %d bytes", maxChunkLine)
			}
			if err != nil {
				return buf, readFailure("chunked body", err, false)
			}
			if i := bytes.IndexByte(line, ';'); i >= 0 {
				line = line[:i]
			}
			size, ok := parseHex(bytes.Trim(line, " \t"))
			if !ok {
				return buf, protocolf("bad chunk size %q", clip(line, 20))
			}
			if size == 0 {
				return buf, nil
			}
			n := min(size, int64(MaxBodyBytes-len(buf)))
			var f *failure
			if buf, f = readN(rd, buf, int(n)); f != nil || n < size || len(buf) >= MaxBodyBytes {
				return buf, f
			}
			crlf, _, _, err := rd.readLine(maxChunkLine)
			if err == errHeaderTooBig {
				return buf, protocolf("missing CRLF after chunk")
			}
			if err != nil {
				return buf, readFailure("chunked body", err, false)
			}
			if len(crlf) != 0 {
				return buf, protocolf("missing CRLF after chunk")
			}
		}
		return buf, nil
	case contentLength >= 0:
		return readN(rd, buf, int(min(contentLength, MaxBodyBytes)))
	default:
		for len(buf) < MaxBodyBytes {
			if rd.buffered() == 0 {
				if err := rd.fill(); err == io.EOF {
					return buf, nil
				} else if err != nil {
					return buf, readFailure("body", err, false)
				}
			}
			k := min(rd.buffered(), MaxBodyBytes-len(buf))
			buf = append(buf, rd.buf[rd.r:rd.r+k]...)
			rd.r += k
		}
		return buf, nil
	}
}

// readN appends exactly n body bytes to buf.
func readN(rd *reader, buf []byte, n int) ([]byte, *failure) {
	for n > 0 {
		if rd.buffered() == 0 {
			if err := rd.fill(); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return buf, readFailure("body", err, false)
			}
		}
		k := min(rd.buffered(), n)
		buf = append(buf, rd.buf[rd.r:rd.r+k]...)
		rd.r += k
		n -= k
	}
	return buf, nil
}

// errNeedMore is what CheckAsync's replay reader returns at the end of the
// bytes received so far (the replay is then dropped until more arrive); it
// never reaches a Result.
var errNeedMore = errors.New("probe: need more bytes")

// needMore is the failure a replay ends with at errNeedMore: shared, so that
// an incomplete replay allocates nothing.
var needMore = &failure{class: pb.FailureClass_FAILURE_CLASS_OTHER, msg: "need more bytes"}

// readFailure classifies an error from reading a response.
func readFailure(what string, err error, beforeStatus bool) *failure {
	switch err {
	case errNeedMore:
		return needMore
	case errHeaderTooBig:
		return protocolf("response headers larger than %d bytes", MaxHeaderBytes)
	case errLineTooLong:
		return protocolf("%s: line longer than %d bytes", what, readBufSize)
	case io.ErrUnexpectedEOF, io.EOF:
		if beforeStatus {
			return &failure{class: pb.FailureClass_FAILURE_CLASS_RESET, msg: "connection closed before a status line"}
		}
		return &failure{class: pb.FailureClass_FAILURE_CLASS_RESET, msg: "connection closed in " + what}
	case io.ErrNoProgress:
		return protocolf("%s: no progress", what)
	}
	return netFailure("read "+what, err)
}

func parseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}

func parseHex(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 15 {
		return 0, false
	}
	var v int64
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | int64(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | int64(c-'a'+10)
		case c >= 'A' && c <= 'F':
			v = v<<4 | int64(c-'A'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

func isTokenBytes(b []byte) bool {
	for _, c := range b {
		if !tokenChar(c) {
			return false
		}
	}
	return len(b) > 0
}

// asciiEqualFold compares b with the lowercase ASCII string s.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

func hasSuffixFold(b []byte, s string) bool {
	return len(b) >= len(s) && asciiEqualFold(b[len(b)-len(s):], s)
}

// clip returns at most n bytes of b as a string, for messages.
func clip(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

func protocolf(format string, args ...any) *failure {
	return failuref(pb.FailureClass_FAILURE_CLASS_PROTOCOL, format, args...)
}
