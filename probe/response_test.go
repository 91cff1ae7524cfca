package probe

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// chunkReader returns at most n bytes per Read.
type chunkReader struct {
	r io.Reader
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(p) > c.n {
		p = p[:c.n]
	}
	return c.r.Read(p)
}

func parse(src io.Reader, noBody, wantBody bool) (response, *failure) {
	st := getState()
	defer putState(st)
	st.rd.src = src
	resp, f := readResponse(&st.rd, noBody, wantBody, &st.body)
	resp.body = append([]byte(nil), resp.body...)
	return resp, f
}

func TestReadResponse(t *testing.T) {
	const (
		ok      pb.FailureClass = pb.FailureClass_FAILURE_CLASS_UNSPECIFIED
		proto                   = pb.FailureClass_FAILURE_CLASS_PROTOCOL
		reset                   = pb.FailureClass_FAILURE_CLASS_RESET
		longHdr                 = "X-Long: "
	)
	cases := []struct {
		name     string
		in       string
		noBody   bool
		status   int
		body     string
		class    pb.FailureClass
		wantBody bool
	}{
		{"minimal", "HTTP/1.1 204\r\n\r\n", true, 204, "", ok, false},
		{"reason", "HTTP/1.0 200 OK fine\r\nA: b\r\n\r\n", true, 200, "", ok, false},
		{"bare LF", "HTTP/1.1 200 OK\nA: b\n\n", true, 200, "", ok, false},
		{"interim", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\nX: y\r\n\r\nHTTP/1.1 302 Found\r\n\r\n", true, 302, "", ok, false},
		{"101 is final", "HTTP/1.1 101 Switching\r\n\r\n", false, 101, "", ok, true},
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA", false, 200, "hello", ok, true},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\n\r\n", false, 200, "hello!", ok, true},
		{"chunked wins", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n", false, 200, "ab", ok, true},
		{"until close", "HTTP/1.1 200 OK\r\n\r\nall of it", false, 200, "all of it", ok, true},
		{"HEAD ignores CL", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", true, 200, "", ok, true},
		{"body not wanted", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc", false, 200, "", ok, false},
		{"long header skipped", "HTTP/1.1 200 OK\r\n" + longHdr + strings.Repeat("v", 6000) + "\r\nContent-Length: 2\r\n\r\nok", false, 200, "ok", ok, true},
		{"empty", "", true, 0, "", reset, false},
		{"EOF in headers", "HTTP/1.1 200 OK\r\nA: b\r\n", true, 200, "", reset, false},
		{"EOF in body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", false, 200, "abc", reset, true},
		{"EOF in chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", false, 200, "ab", reset, true},
		{"not HTTP", "SSH-2.0-OpenSSH\r\n\r\n", true, 0, "", proto, false},
		{"HTTP/2", "HTTP/2 200\r\n\r\n", true, 0, "", proto, false},
		{"bad code", "HTTP/1.1 2x0 OK\r\n\r\n", true, 0, "", proto, false},
		{"code 600", "HTTP/1.1 600 X\r\n\r\n", true, 0, "", proto, false},
		{"no space after code", "HTTP/1.1 200OK\r\n\r\n", true, 0, "", proto, false},
		{"header without colon", "HTTP/1.1 200 OK\r\nnocolon\r\n\r\n", true, 200, "", proto, false},
		{"space in name", "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", true, 200, "", proto, false},
		{"folding", "HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", true, 200, "", proto, false},
		{"bad CL", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false, 200, "", proto, true},
		{"conflicting CL", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", false, 200, "", proto, true},
		{"bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false, 200, "", proto, true},
		{"chunk no CRLF", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\naXX\r\n0\r\n\r\n", false, 200, "a", proto, true},
		{"too many interim", strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 20), true, 100, "", proto, false},
		{"headers too big", "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-A: "+strings.Repeat("a", 1000)+"\r\n", 20) + "\r\n", true, 200, "", proto, false},
		{"status line too long", "HTTP/1.1 200 " + strings.Repeat("r", 5000) + "\r\n\r\n", true, 0, "", proto, false},
	}
	for _, tc := range cases {
		for _, mode := range []string{"whole", "one byte", "7 bytes"} {
			var src io.Reader = strings.NewReader(tc.in)
			switch mode {
			case "one byte":
				src = iotest.OneByteReader(src)
			case "7 bytes":
				src = &chunkReader{src, 7}
			}
			resp, f := parse(src, tc.noBody, tc.wantBody)
			class := ok
			if f != nil {
				class = f.class
			}
			if class != tc.class || resp.status != tc.status || (class == ok && string(resp.body) != tc.body) {
				t.Errorf("%s (%s): got status %d body %q class %v (%v), want %d %q %v", tc.name, mode, resp.status, resp.body, class, f, tc.status, tc.body, tc.class)
			}
		}
	}
}

func TestReadResponseBodyLimit(t *testing.T) {
	big := strings.Repeat("x", MaxBodyBytes+1000)
	for _, in := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: " + "66536" + "\r\n\r\n" + big,
		"HTTP/1.1 200 OK\r\n\r\n" + big,
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\n" + big,
	} {
		resp, f := parse(strings.NewReader(in), false, true)
		if f != nil || len(resp.body) != MaxBodyBytes {
			t.Errorf("body limit: len %d, failure %v", len(resp.body), f)
		}
	}
}

func TestSanitize(t *testing.T) {
	p := MustParseProxyURL("http://user1:pw123@h:1")
	got := sanitize("failed with pw123 and "+p.basicAuth(), p)
	if strings.Contains(got, "pw123") || strings.Contains(got, p.basicAuth()) || got != "failed with REDACTED and REDACTED" {
		t.Errorf("sanitize: %q", got)
	}
	long := sanitize(strings.Repeat("é", 300), ProxyURL{})
	if len(long) > MaxMessageBytes || !strings.HasSuffix(long, "...") || !strings.HasPrefix(long, "é") {
		t.Errorf("truncation: len %d %q", len(long), long)
	}
	if !bytes.Equal([]byte(strings.TrimSuffix(long, "...")), []byte(strings.Repeat("é", len(strings.TrimSuffix(long, "..."))/2))) {
		t.Errorf("truncation split a rune: %q", long)
	}
}

// FuzzReadResponse: the parser never panics, and either returns a final
// status (101 or 200-599) with at most MaxBodyBytes of body, or fails with
// class PROTOCOL or RESET.
func FuzzReadResponse(f *testing.F) {
	seeds := []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
		"HTTP/1.0 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n",
		"HTTP/1.1 200 OK\r\n\r\nbody until close",
		"HTTP/1.1 200 OK\nContent-Length: 3\n\nabc",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffff\r\nab",
		"SSH-2.0-garbage\r\n\r\n",
		"\x05\x00",
		"",
	}
	for i, s := range seeds {
		f.Add([]byte(s), i%2 == 0, i%3 != 0, uint8(i))
	}
	f.Fuzz(func(t *testing.T, in []byte, noBody, wantBody bool, chunk uint8) {
		var src io.Reader = bytes.NewReader(in)
		if chunk > 0 {
			src = &chunkReader{src, int(chunk)}
		}
		resp, fl := parse(src, noBody, wantBody)
		if len(resp.body) > MaxBodyBytes {
			t.Fatalf("body of %d bytes", len(resp.body))
		}
		if fl != nil {
			if fl.class != pb.FailureClass_FAILURE_CLASS_PROTOCOL && fl.class != pb.FailureClass_FAILURE_CLASS_RESET {
				t.Fatalf("class %v (%s), want PROTOCOL or RESET", fl.class, fl.msg)
			}
			if fl.msg == "" {
				t.Fatal("empty failure message")
			}
			return
		}
		if resp.status != 101 && (resp.status < 200 || resp.status > 599) {
			t.Fatalf("status %d without failure", resp.status)
		}
	})
}
