package sources

import (
	"bytes"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/proxyhealth/proxyhealth/probe"
)

// FuzzParse: Parse never panics, accepts only lists of distinct valid
// proxies within the limits, refuses with an error wrapping ErrParse, and
// no error contains a line of the input that is not a proxy URL, nor a
// password.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"http://10.0.0.1:80\nsocks5://u:p@h:1080 #tags=a,b weight=2\n# c\n\n10.0.0.2:3128 # x\n",
		`["http://10.0.0.1:80", {"url": "socks5h://u:p@h", "tags": ["a"], "weight": 0.5}]`,
		"<html><body>secret</body></html>",
		"{\"a\": 1}",
		secretLine + "\n" + secretLine,
		"http://10.0.0.1:80\nhttp://10.0.0.1\n",
		"\x1f\x8b\x08",
		"10.0.0.1:80 #tags=" + strings.Repeat("x,", 40),
		"[\"http://10.0.0.1:80\"\n,\n{\"url\":\"h:1\",\"weight\":-1}]",
		"http://user:correct-horse-battery@10.0.0.1:99999\n",
		"\ufeff  [ ]  ",
		"[1, 2, 3]",
		"http://a:b@c:d@e:1 #weight=1e400",
		"A://00000000",
		"AKIAIOSFODNN7EXAMPLE\n",
	} {
		f.Add([]byte(seed))
	}
	lim := Limits{MaxLineBytes: 256, MaxLines: 64, MaxEntries: 16, MaxBytes: 8 << 10}
	// The fixed text of the errors: a line of the input that happens to
	// be part of it ("a,b weight=2") is not shown from the input.
	var vocabulary strings.Builder
	for _, c := range refuseCases() {
		if _, err := Parse("list.txt", strings.NewReader(c.in), c.lim); err != nil {
			vocabulary.WriteString(err.Error() + "\n")
		}
	}
	vocab := vocabulary.String()
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := Parse("fuzz.txt", bytes.NewReader(data), lim)
		if err == nil {
			if len(l.Entries) > lim.MaxEntries {
				t.Fatalf("%d entries over the limit %d", len(l.Entries), lim.MaxEntries)
			}
			seen := map[string]bool{}
			for _, e := range l.Entries {
				u, perr := probe.ParseProxyURL(e.URL)
				if perr != nil || u.ID() != e.ID || u.Redacted() != e.Redacted || seen[e.ID] || u.IsRedactedForm() {
					t.Fatalf("accepted entry %v: %v (duplicate %v)", e, perr, seen[e.ID])
				}
				seen[e.ID] = true
				if len(e.Tags) > MaxTags || e.Weight < 0 || e.Line < 1 {
					t.Fatalf("accepted entry %#v", e)
				}
			}
			return
		}
		if !errors.Is(err, ErrParse) {
			t.Fatalf("error %v does not wrap ErrParse", err)
		}
		// probe's excerpt of a URL-looking line is allowed (checked below
		// with looksLikeURL); cut it out so that it does not combine with
		// the quotes around it into another line.
		msg := excerptRE.ReplaceAllString(err.Error(), `bad proxy URL ""`)
		for _, line := range strings.Split(string(data), "\n") {
			line = strings.TrimSpace(line)
			if len(line) < 12 {
				continue
			}
			first := strings.Fields(line)[0]
			u, perr := probe.ParseProxyURL(first)
			if perr != nil && !looksLikeURL(line) && strings.Contains(msg, line) && !strings.Contains(vocab, line) {
				t.Fatalf("error %q shows the line %q, which is not a proxy URL", msg, line)
			}
			if perr == nil {
				if _, pass := u.RevealCredentials(); len(pass) >= 12 && strings.Contains(msg, pass) {
					t.Fatalf("error %q shows a password", msg)
				}
			}
		}
	})
}

var excerptRE = regexp.MustCompile(`bad proxy URL "[^"]*"`)

// looksLikeURL reports whether s could be shown as an excerpt of a proxy
// URL: a ':' (a port or a scheme) and only the characters of a URL's
// scheme and authority. Anything else (a word, prose, a line of a secret
// file) must never appear in an error.
func looksLikeURL(s string) bool {
	return strings.Contains(s, ":") && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:/@[]%+~?#") == ""
}
