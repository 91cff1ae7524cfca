package probe

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestParseProxyURLErrorsShowNoSecrets feeds ParseProxyURL inputs whose
// errors used to quote credentials or arbitrary content (a line of
// /etc/shadow, a password without '@', a password containing "://", a
// secret in the path or query) and checks that the error shows none of it,
// and at most a short, redacted excerpt.
func TestParseProxyURLErrorsShowNoSecrets(t *testing.T) {
	cases := []struct {
		in      string
		secrets []string
		// excerpt is the quoted excerpt the error must show, "" for none.
		excerpt string
	}{
		// A line of /etc/shadow fed as a proxy list.
		{"root:$y$j9T$Zk3xSecretSalt$HashHashHashHashHashHash:19700:0:99999:7:::",
			[]string{"root", "j9T", "Zk3xSecretSalt", "HashHash", "19700"}, ""},
		// user:password with the host forgotten: the password looks like a port.
		{"alice:S3cretPw", []string{"alice", "S3cretPw"}, ""},
		{"http://alice:S3cretPw", []string{"alice", "S3cretPw"}, ""},
		// A password containing "://" and no scheme: not a scheme.
		{"alice:pa://S3cret@h:0", []string{"alice", "S3cret"}, `"REDACTED@h:0"`},
		// Odd characters in the credentials (url.Parse would quote it all).
		{"http://alice:S3c ret\"%zz@h:1", []string{"alice", "S3c", "ret"}, `"http://REDACTED@h:1"`},
		{"socks4://alice:S3cret@h:1", []string{"alice", "S3cret"}, `"socks4://REDACTED@h:1"`},
		// Secrets in the path, query or fragment are not echoed.
		{"http://h:80/token=S3cret", []string{"S3cret"}, `"http://h:80/…"`},
		{"http://h:80/?key=S3cret", []string{"S3cret"}, `"http://h:80/…"`},
		{"http://h:80#S3cret", []string{"S3cret"}, `"http://h:80#…"`},
		// Host characters that are not host characters: nothing shown.
		{"http://S3cr$t:80", []string{"S3cr"}, ""},
		{"http://[S3cret]:80", []string{"S3cret"}, ""},
		{"http://[::1]S3cret", []string{"S3cret"}, ""},
		{"http://h:S3cret", []string{"S3cret"}, ""},
		{"gopher+S3cret://h:1", nil, `"gopher+S3cret://h:1"`},
		// Binary junk.
		{"\x00\x01\x02S3cret\xff", []string{"S3cret"}, ""},
	}
	for _, tc := range cases {
		_, err := ParseProxyURL(tc.in)
		if err == nil {
			t.Errorf("ParseProxyURL(%q) succeeded", tc.in)
			continue
		}
		msg := err.Error()
		if !errors.Is(err, ErrBadProxyURL) {
			t.Errorf("ParseProxyURL(%q): %v does not wrap ErrBadProxyURL", tc.in, err)
		}
		for _, s := range tc.secrets {
			if strings.Contains(msg, s) {
				t.Errorf("ParseProxyURL(%q) error shows %q: %s", tc.in, s, msg)
			}
		}
		if strings.HasPrefix(tc.in, "root:") && !strings.Contains(msg, "more than one ':'") {
			t.Errorf("ParseProxyURL(%q) error %q: want \"more than one ':'\", not a hint about IPv6", tc.in, msg)
		}
		if tc.excerpt == "" {
			if !strings.Contains(msg, "input not shown") {
				t.Errorf("ParseProxyURL(%q) error %q: want no excerpt, and say so", tc.in, msg)
			}
		} else if !strings.Contains(msg, "bad proxy URL "+tc.excerpt+": ") {
			t.Errorf("ParseProxyURL(%q) error %q: want the excerpt %s", tc.in, msg, tc.excerpt)
		}
	}
}

// TestParseProxyURLErrorExcerptIsShort checks that a long input is shown
// cut to MaxErrorExcerpt characters.
func TestParseProxyURLErrorExcerptIsShort(t *testing.T) {
	long := "http://" + strings.Repeat("a", 300) + ".example:0"
	_, err := ParseProxyURL(long)
	if err == nil {
		t.Fatal("port 0 accepted")
	}
	msg := err.Error()
	start := strings.IndexByte(msg, '"')
	end := strings.Index(msg[start+1:], `"`)
	if start < 0 || end < 0 {
		t.Fatalf("no excerpt in %q", msg)
	}
	ex := msg[start+1 : start+1+end]
	if n := utf8.RuneCountInString(ex); n > MaxErrorExcerpt || !strings.HasSuffix(ex, "…") || !strings.HasPrefix(ex, "http://aaaa") {
		t.Errorf("excerpt %q (%d characters): want at most %d, cut with …", ex, n, MaxErrorExcerpt)
	}
}

// TestProxyURLErrorShowsTheSchemeAsWritten: the excerpt in an error keeps
// the scheme's spelling from the input.
func TestProxyURLErrorShowsTheSchemeAsWritten(t *testing.T) {
	_, err := ParseProxyURL("HTTP://proxy.example:3128/path")
	if err == nil || !strings.Contains(err.Error(), `"HTTP://proxy.example:3128/…"`) {
		t.Fatalf("error %v, want the excerpt \"HTTP://proxy.example:3128/…\"", err)
	}
}
