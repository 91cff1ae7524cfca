package probe

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"testing"
	"unsafe"
)

func TestParseProxyURLValid(t *testing.T) {
	cases := []struct {
		in, redacted, scheme, hostPort string
		user, pass                     string
	}{
		{"10.0.0.7:3128", "http://10.0.0.7:3128", "http", "10.0.0.7:3128", "", ""},
		{"http://Proxy.Example.COM:8080/", "http://proxy.example.com:8080", "http", "proxy.example.com:8080", "", ""},
		{"HTTP://proxy.example.com", "http://proxy.example.com:80", "http", "proxy.example.com:80", "", ""},
		{"https://p.example", "https://p.example:443", "https", "p.example:443", "", ""},
		{"socks5://u:p@127.0.0.1:1080", "socks5://" + UserTag("u") + "@127.0.0.1:1080", "socks5", "127.0.0.1:1080", "u", "p"},
		{"socks5h://h", "socks5h://h:1080", "socks5h", "h:1080", "", ""},
		{"socks4://uid@[::1]:1080", "socks4://" + UserTag("uid") + "@[::1]:1080", "socks4", "[::1]:1080", "uid", ""},
		{"socks4a://[2001:DB8::1]", "socks4a://[2001:db8::1]:1080", "socks4a", "[2001:db8::1]:1080", "", ""},
		{"http://us%40er:p%3Ass@h:08080", "http://" + UserTag("us@er") + "@h:8080", "http", "h:8080", "us@er", "p:ss"},
		{"http://user:p@ss/w#rd?@h:1", "http://" + UserTag("user") + "@h:1", "http", "h:1", "user", "p@ss/w#rd?"},
		{"  http://h:1  ", "http://h:1", "http", "h:1", "", ""},
		{"socks5://" + UserTag("u") + "@[::1]:1080", "socks5://" + UserTag("u") + "@[::1]:1080", "socks5", "[::1]:1080", "", ""},
		{"http://" + strings.Repeat("a", maxHostLen) + ":1", "http://" + strings.Repeat("a", maxHostLen) + ":1", "http", strings.Repeat("a", maxHostLen) + ":1", "", ""},
	}
	for _, tc := range cases {
		p, err := ParseProxyURL(tc.in)
		if err != nil {
			t.Errorf("ParseProxyURL(%q): %v", tc.in, err)
			continue
		}
		u, pw := p.RevealCredentials()
		if p.Redacted() != tc.redacted || p.Scheme() != tc.scheme || p.HostPort() != tc.hostPort || u != tc.user || pw != tc.pass {
			t.Errorf("ParseProxyURL(%q) = %s %s %s %q %q, want %s %s %s %q %q", tc.in,
				p.Redacted(), p.Scheme(), p.HostPort(), u, pw, tc.redacted, tc.scheme, tc.hostPort, tc.user, tc.pass)
		}
		if p.HasCredentials() != (tc.user != "") {
			t.Errorf("%q: HasCredentials = %v", tc.in, p.HasCredentials())
		}
		// Host and Port are slices of the redacted URL: IPv6 without its
		// brackets, the port normalised.
		host, port, err := net.SplitHostPort(tc.hostPort)
		if err != nil {
			t.Fatal(err)
		}
		if p.Host() != host || p.Port() != port {
			t.Errorf("%q: Host %q Port %q, want %q %q", tc.in, p.Host(), p.Port(), host, port)
		}
	}
	var zero ProxyURL
	if zero.Host() != "" || zero.Port() != "" || zero.HostPort() != "" || zero.Redacted() != "" {
		t.Errorf("the zero ProxyURL: Host %q Port %q HostPort %q Redacted %q", zero.Host(), zero.Port(), zero.HostPort(), zero.Redacted())
	}
}

func TestParseProxyURLInvalid(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", "empty"},
		{"ftp://h:1", `unsupported scheme "ftp"`},
		{"h", "port required"},
		{"http://h:0", `bad port "0"`},
		{"http://h:65536", `bad port "65536"`},
		{"http://h:+80", "bad port (want a number"},
		{"http://h:", "empty port"},
		{"http://:80", "empty host"},
		{"http://" + strings.Repeat("a", maxHostLen+1) + ":80", "host too long (at most 253 characters)"},
		{"http://h:80/path", "a path is not allowed"},
		{"http://h:80/?q=1", "queries"},
		{"http://h:80#f", "fragments"},
		{"http://::1:80", "brackets"},
		{"http://[::1:80", "missing ']'"},
		{"http://[zz]:80", "invalid IPv6"},
		{"http://h h:80", "invalid character"},
		{"socks4://u:secretpw@h:1", "user ID only"},
		{"http://:secretpw@h:1", "user name is empty"},
		{"http://u:secret%zzpw@h:1", "percent-encoding"},
		{"socks5://u:" + strings.Repeat("x", 256) + "@h:1", "255 bytes"},
	}
	for _, tc := range cases {
		_, err := ParseProxyURL(tc.in)
		if err == nil {
			t.Errorf("ParseProxyURL(%q) succeeded, want error containing %q", tc.in, tc.want)
			continue
		}
		msg := err.Error()
		if !errors.Is(err, ErrBadProxyURL) || !strings.Contains(msg, tc.want) || !strings.Contains(msg, "socks4a") {
			t.Errorf("ParseProxyURL(%q) error %q: want ErrBadProxyURL, %q and the allowed forms", tc.in, msg, tc.want)
		}
		if strings.Contains(msg, "secret") || strings.Contains(msg, "xxxx") {
			t.Errorf("ParseProxyURL(%q) error leaks credentials: %q", tc.in, msg)
		}
	}
}

func TestProxyURLNeverLeaks(t *testing.T) {
	p := MustParseProxyURL("socks5://alice:hunter2@proxy.example:1080")
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "proxy", p)
	j, _ := json.Marshal(struct{ P ProxyURL }{p})
	outs := []string{
		fmt.Sprint(p), fmt.Sprintf("%v %+v %#v %s %q", p, p, p, p, p), buf.String(), string(j),
		fmt.Sprintf("%v", []ProxyURL{p}), fmt.Sprintf("%+v", struct{ P ProxyURL }{p}),
	}
	for _, s := range outs {
		if strings.Contains(s, "hunter2") || strings.Contains(s, "alice") {
			t.Errorf("credentials leaked: %s", s)
		}
		if !strings.Contains(s, "socks5://"+UserTag("alice")+"@proxy.example:1080") {
			t.Errorf("redacted URL missing: %s", s)
		}
	}
}

func TestProxyURLID(t *testing.T) {
	a := MustParseProxyURL("http://H:8080/")
	b := MustParseProxyURL("http://h:8080")
	c := MustParseProxyURL("socks5://h:8080")
	if a.ID() != b.ID() || a.ID() == c.ID() {
		t.Errorf("IDs: %s %s %s", a.ID(), b.ID(), c.ID())
	}
	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(a.ID()) {
		t.Errorf("ID %q is not 16 hex digits", a.ID())
	}
	// A URL without a user name keeps the ID journals written before the
	// user name became part of the identity hold.
	if a.ID() != "09ac6ec9effef083" { // sha256("http://h:8080")[:8] in hex
		t.Errorf("ID = %s", a.ID())
	}
	var zero ProxyURL
	if !zero.IsZero() || a.IsZero() {
		t.Error("IsZero")
	}
}

// TestTheUserNameIsPartOfTheIdentity: a rotating gateway's sessions
// (same host and port, different user names) are different proxies; the
// same user with another password is the same proxy with changed
// credentials; the redacted form tells them apart without showing the
// name, and parses back to the same ID without credentials.
func TestTheUserNameIsPartOfTheIdentity(t *testing.T) {
	s1 := MustParseProxyURL("http://user-session-1:pw@gw.example:7777")
	s2 := MustParseProxyURL("http://user-session-2:pw@gw.example:7777")
	s1b := MustParseProxyURL("http://user-session-1:other@gw.example:7777")
	bare := MustParseProxyURL("http://gw.example:7777")
	if s1.ID() == s2.ID() || s1.ID() == bare.ID() || s2.ID() == bare.ID() {
		t.Errorf("sessions share an ID: %s %s %s", s1.ID(), s2.ID(), bare.ID())
	}
	if s1.ID() != s1b.ID() || s1.Redacted() != s1b.Redacted() {
		t.Errorf("a new password made another proxy: %s %s", s1.Redacted(), s1b.Redacted())
	}
	if s1.Redacted() == s2.Redacted() || strings.Contains(s1.Redacted(), "session") || strings.Contains(s1.Redacted(), "pw") {
		t.Errorf("redacted forms %q %q: want distinct, without the user name or password", s1.Redacted(), s2.Redacted())
	}
	r, err := ParseProxyURL(s1.Redacted())
	if err != nil || r.ID() != s1.ID() || !r.IsRedactedForm() || r.HasCredentials() || r.Redacted() != s1.Redacted() {
		t.Errorf("the redacted form parses to %v (%v): ID %s, redacted form %v, credentials %v; want ID %s", r, err, r.ID(), r.IsRedactedForm(), r.HasCredentials(), s1.ID())
	}
	if s1.IsRedactedForm() {
		t.Error("a URL with credentials is not a redacted form")
	}
}

func TestMustParseProxyURLPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic")
		}
	}()
	MustParseProxyURL("ftp://x")
}

// TestProxyURLKeepsCredentialsAside: the engine keeps a ProxyURL per proxy
// and the probe copies one per check; the credentials most proxies lack
// live behind a pointer, and host, port and host:port are slices of the
// redacted URL, so a URL is 96 bytes, not 192.
func TestProxyURLKeepsCredentialsAside(t *testing.T) {
	if n := unsafe.Sizeof(ProxyURL{}); n > 96 {
		t.Fatalf("ProxyURL is %d bytes; keep the credentials behind their pointer", n)
	}
	p, err := ParseProxyURL("http://u:p@127.0.0.1:8080")
	if err != nil {
		t.Fatal(err)
	}
	if u, pw := p.RevealCredentials(); u != "u" || pw != "p" || p.basicAuth() != "Basic dTpw" || !p.HasCredentials() {
		t.Fatalf("credentials %q %q, auth %q", u, pw, p.basicAuth())
	}
	q, err := ParseProxyURL("http://127.0.0.1:8080")
	if err != nil {
		t.Fatal(err)
	}
	if u, pw := q.RevealCredentials(); u != "" || pw != "" || q.basicAuth() != "" || q.HasCredentials() {
		t.Fatalf("a URL without credentials reveals %q %q, auth %q", u, pw, q.basicAuth())
	}
}

// TestSchemeLike checks schemeLike against the expression it replaced
// (RFC 3986's scheme, at most 16 bytes) on every string of up to three
// bytes from an alphabet of each class, and on longer ones around the
// length limit.
func TestSchemeLike(t *testing.T) {
	re := regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]{0,15}$`)
	alphabet := []string{"a", "Z", "0", "9", "+", ".", "-", "_", ":", "/", " ", "é", "\x00"}
	var words []string
	var grow func(prefix string, n int)
	grow = func(prefix string, n int) {
		words = append(words, prefix)
		if n == 0 {
			return
		}
		for _, c := range alphabet {
			grow(prefix+c, n-1)
		}
	}
	grow("", 3)
	for _, n := range []int{15, 16, 17, 40} {
		words = append(words, "h"+strings.Repeat("t", n-1), "h"+strings.Repeat("t", n-2)+"_", "9"+strings.Repeat("t", n-1))
	}
	for _, w := range words {
		if got, want := schemeLike(w), re.MatchString(w); got != want {
			t.Errorf("schemeLike(%q) = %v, want %v", w, got, want)
		}
	}
}
