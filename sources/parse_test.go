package sources

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/proxyhealth/proxyhealth/probe"
)

func mustParse(t *testing.T, in string) List {
	t.Helper()
	l, err := Parse("list.txt", strings.NewReader(in), Limits{})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return l
}

type wantEntry struct {
	url    string
	tags   []string
	weight float64
	line   int
}

func checkEntries(t *testing.T, got []Entry, want []wantEntry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d entries %v, want %d", len(got), got, len(want))
	}
	for i, w := range want {
		g := got[i]
		u := probe.MustParseProxyURL(w.url)
		if g.URL != w.url || g.ID != u.ID() || g.Redacted != u.Redacted() || !reflect.DeepEqual(g.Tags, w.tags) || g.Weight != w.weight || g.Line != w.line {
			t.Errorf("entry %d = {URL %q ID %s Redacted %s Tags %q Weight %v Line %d}, want {%q %s %s %q %v %d}",
				i, g.URL, g.ID, g.Redacted, g.Tags, g.Weight, g.Line, w.url, u.ID(), u.Redacted(), w.tags, w.weight, w.line)
		}
	}
}

func TestParsePlain(t *testing.T) {
	in := "\ufeff# EU pool\r\n" +
		"http://10.0.0.7:3128\r\n" +
		"\n" +
		"   socks5h://alice:s3cret@gw.example:1080 #tags=eu,premium weight=2\n" +
		"https://proxy.example:443\t#weight=0.5 tags=b,a,b,,\n" +
		"10.0.0.8:8080 # an ordinary comment with tags=x\n" +
		"http://10.0.0.9:3128 #tags=us # a comment after the attributes\n" +
		"http://10.0.0.10:3128 #tagsoup is a comment\n" +
		"    # indented comment\n" +
		"socks4://10.0.0.11" // no final newline
	l := mustParse(t, in)
	checkEntries(t, l.Entries, []wantEntry{
		{"http://10.0.0.7:3128", nil, 0, 2},
		{"socks5h://alice:s3cret@gw.example:1080", []string{"eu", "premium"}, 2, 4},
		{"https://proxy.example:443", []string{"b", "a"}, 0.5, 5},
		{"10.0.0.8:8080", nil, 0, 6},
		{"http://10.0.0.9:3128", []string{"us"}, 0, 7},
		{"http://10.0.0.10:3128", nil, 0, 8},
		{"socks4://10.0.0.11", nil, 0, 10},
	})
	if l.Format != FormatPlain || l.Lines != 10 || l.Bytes != int64(len(in)) {
		t.Errorf("Format %q Lines %d Bytes %d, want plain, 10, %d", l.Format, l.Lines, l.Bytes, len(in))
	}
}

func TestParseEmpty(t *testing.T) {
	for _, in := range []string{"", "\n\n", "# only comments\n", "   "} {
		l := mustParse(t, in)
		if len(l.Entries) != 0 || l.Format != FormatPlain {
			t.Errorf("Parse(%q) = %v, want an empty plain list", in, l)
		}
	}
}

func TestParseJSON(t *testing.T) {
	in := "\n  [\n" +
		"  \"http://10.0.0.7:3128\",\n" +
		"  {\"url\": \"socks5h://alice:s3cret@gw.example:1080\", \"tags\": [\"eu\", \"premium\", \"eu\", \"\"], \"weight\": 2},\n" +
		"  {\n    \"url\": \"https://proxy.example:443\", \"tags\": null, \"weight\": null\n  },\n" +
		"  {\"weight\": 1.5, \"url\": \"10.0.0.8:8080\"}\n" +
		"]\n\n"
	l := mustParse(t, in)
	checkEntries(t, l.Entries, []wantEntry{
		{"http://10.0.0.7:3128", nil, 0, 3},
		{"socks5h://alice:s3cret@gw.example:1080", []string{"eu", "premium"}, 2, 4},
		{"https://proxy.example:443", nil, 0, 5},
		{"10.0.0.8:8080", nil, 1.5, 8},
	})
	if l.Format != FormatJSON {
		t.Errorf("Format %q, want json", l.Format)
	}
	if l := mustParse(t, "[]"); len(l.Entries) != 0 || l.Format != FormatJSON {
		t.Errorf("[] = %v, want an empty JSON list", l)
	}
}

// TestEntryNeverPrintsCredentials: printing or logging entries and lists
// shows the redacted URL only.
func TestEntryNeverPrintsCredentials(t *testing.T) {
	l := mustParse(t, "http://alice:s3cret@10.0.0.7:3128 #tags=a\n")
	for _, s := range []string{fmt.Sprint(l), fmt.Sprintf("%v %+v %#v", l.Entries, l.Entries, l.Entries), fmt.Sprint(l.Entries[0].LogValue()), fmt.Sprint(l.LogValue())} {
		if strings.Contains(s, "s3cret") || strings.Contains(s, "alice") {
			t.Errorf("printed entry shows credentials: %s", s)
		}
	}
	if !strings.Contains(fmt.Sprint(l.Entries), "~") {
		t.Errorf("entries print %v, want the redacted URL", l.Entries)
	}
}

// secretLine is a line of a file that is not a proxy list.
const secretLine = "root:$6$Zq8bN1xZ$hashhashhash:19000:0:99999:7:::"

// refuseCase is an input Parse refuses.
type refuseCase struct {
	name   string
	in     string
	lim    Limits
	kinds  []error
	line   int
	reason string // a substring of the reason ("^…": its beginning)
}

func refuseCases() []refuseCase {
	long := strings.Repeat("a", 70<<10)
	return []refuseCase{
		{"duplicate", "http://10.0.0.1:80\n#\nhttp://10.0.0.1\n", Limits{}, []error{ErrDuplicate}, 3, "http://10.0.0.1:80 is already listed on line 1"},
		{"duplicate with another password", "http://u:s3cret@10.0.0.1:80\nhttp://u:0ther@10.0.0.1:80\n", Limits{}, []error{ErrDuplicate}, 2, "already listed on line 1"},
		{"duplicate in JSON", `["http://10.0.0.1:80",` + "\n" + `{"url": "HTTP://10.0.0.1"}]`, Limits{}, []error{ErrDuplicate}, 2, "element 2: http://10.0.0.1:80 is already listed on line 1"},
		{"HTML", "\n\n  <!DOCTYPE html><html><body>Login with password hunter2</body></html>\n", Limits{}, []error{ErrNotList}, 3, "looks like HTML"},
		{"XML", "<?xml version=\"1.0\"?><proxies/>", Limits{}, []error{ErrNotList}, 1, "HTML or XML"},
		{"JSON object", `{"proxies": ["http://10.0.0.1:80"]}`, Limits{}, []error{ErrNotList}, 1, "a JSON object"},
		{"gzip data", "\x1f\x8b\x08\x00garbage", Limits{}, []error{ErrNotList}, 0, "gzip"},
		{"NUL bytes", "http://10.0.0.1:80\nsecret\x00stuff\n", Limits{}, []error{ErrNotList}, 2, "binary data"},
		{"invalid UTF-8", "http://10.0.0.1:80\n\xff\xfe\xfdsecret\n", Limits{}, []error{ErrNotList}, 2, "binary data"},
		{"line too long", "http://10.0.0.1:80\n" + long + "\n", Limits{}, []error{ErrTooLarge}, 2, "line longer than 65536 bytes"},
		{"too many lines", strings.Repeat("# c\n", 11), Limits{MaxLines: 10}, []error{ErrTooLarge}, 11, "more than 10 lines"},
		{"too many proxies", "10.0.0.1:1\n10.0.0.2:1\n10.0.0.3:1\n", Limits{MaxEntries: 2}, []error{ErrTooLarge}, 3, "more than 2 proxies"},
		{"too many proxies in JSON", `["10.0.0.1:1","10.0.0.2:1","10.0.0.3:1"]`, Limits{MaxEntries: 2}, []error{ErrTooLarge}, 1, "element 3: more than 2 proxies"},
		{"too many bytes", strings.Repeat("10.0.0.1:1 # padding\n", 10), Limits{MaxBytes: 100}, []error{ErrTooLarge}, 0, "larger than 100 bytes"},
		{"secret file line", "http://10.0.0.1:80\n" + secretLine + "\n", Limits{}, []error{probe.ErrBadProxyURL}, 2, "input not shown"},
		{"a bare word", "http://10.0.0.1:80\nAKIAsecretsecret0123\n", Limits{}, []error{probe.ErrBadProxyURL}, 2, "input not shown"},
		{"a bare word in JSON", `["http://10.0.0.1:80", "AKIAsecretsecret0123"]`, Limits{}, []error{probe.ErrBadProxyURL}, 1, "element 2: bad proxy URL (input not shown"},
		{"spaces inside", "http://u:pass word@10.0.0.1:80\n", Limits{}, nil, 1, "found spaces inside the URL"},
		{"attributes without #", "http://10.0.0.1:80 tags=a weight=2\n", Limits{}, nil, 1, "attributes must follow '#'"},
		{"bad weight", "http://10.0.0.1:80 #weight=heavy\n", Limits{}, nil, 1, "weight must be a positive number"},
		{"negative weight", "http://10.0.0.1:80 #weight=-1\n", Limits{}, nil, 1, "weight must be a positive number"},
		{"infinite weight", "http://10.0.0.1:80 #weight=Inf\n", Limits{}, nil, 1, "weight must be a positive number"},
		{"weight twice", "http://10.0.0.1:80 #weight=1 weight=2\n", Limits{}, nil, 1, "weight= is given twice"},
		{"unknown attribute", "http://10.0.0.1:80 #tags=a color=red\n", Limits{}, nil, 1, "unexpected text after the attributes"},
		{"long tag", "http://10.0.0.1:80 #tags=" + strings.Repeat("t", 65) + "\n", Limits{}, nil, 1, "a tag is longer than 64 bytes"},
		{"too many tags", "http://10.0.0.1:80 #tags=" + strings.TrimSuffix(strings.Repeat("t,", 0), ",") + tagList(33) + "\n", Limits{}, nil, 1, "more than 32 tags"},
		{"bad URL with attributes", "ftp://10.0.0.1:21 #tags=a\n", Limits{}, []error{probe.ErrBadProxyURL}, 1, "unsupported scheme"},
		{"redacted form", "http://~0123abcd@10.0.0.1:80\n", Limits{}, []error{probe.ErrBadProxyURL}, 1, "a redacted URL"},
		{"JSON unknown field", `[{"url": "http://10.0.0.1:80", "password": "s3cret"}]`, Limits{}, nil, 1, "element 1: an unknown field"},
		{"JSON near-miss field", `[{"URL": "http://10.0.0.1:80"}]`, Limits{}, nil, 1, `unknown field "URL": the fields are url, tags and weight`},
		{"JSON missing url", "[\n{\"tags\": [\"a\"]}]", Limits{}, nil, 2, `"url" is missing`},
		{"JSON url not a string", `[{"url": 42}]`, Limits{}, nil, 1, `"url" is missing or not a non-empty string`},
		{"JSON zero weight", `[{"url": "http://10.0.0.1:80", "weight": 0}]`, Limits{}, nil, 1, "weight must be a positive number"},
		{"JSON weight not a number", `[{"url": "http://10.0.0.1:80", "weight": "2"}]`, Limits{}, nil, 1, `"weight" must be a number`},
		{"JSON tags not an array", `[{"url": "http://10.0.0.1:80", "tags": "a,b"}]`, Limits{}, nil, 1, `"tags" must be an array of strings`},
		{"JSON tag with comma", `[{"url": "http://10.0.0.1:80", "tags": ["a,b"]}]`, Limits{}, nil, 1, "a tag contains a space, a control character or ','"},
		{"JSON nested array", `[["http://10.0.0.1:80"]]`, Limits{}, nil, 1, "neither a URL string nor an object"},
		{"JSON bad URL", "[\n\"" + secretLine + "\"]", Limits{}, []error{probe.ErrBadProxyURL}, 2, "element 1: bad proxy URL (input not shown"},
		{"JSON truncated", "[\"http://10.0.0.1:80\",\n\"http://10.0.0.2:80\"", Limits{}, nil, 2, "^the JSON array ends before its closing ']'"},
		{"JSON syntax error", "[\"http://10.0.0.1:80\",\n\n secret-thing ]", Limits{}, []error{ErrNotList}, 3, "invalid JSON"},
		{"JSON data after the array", "[\"http://10.0.0.1:80\"]\n[\"http://10.0.0.2:80\"]", Limits{}, []error{ErrNotList}, 2, "^more data after the JSON array"},
		{"JSON garbage after the array", "[\"http://10.0.0.1:80\"]\n" + secretLine, Limits{}, []error{ErrNotList}, 2, "more data after the JSON array"},
		{"JSON element too long", `["http://10.0.0.1:80", "` + long + `"]`, Limits{}, []error{ErrTooLarge}, 1, "longer than 65536 bytes"},
		{"JSON long whitespace", "[" + strings.Repeat(" ", 1<<20) + "]", Limits{}, []error{ErrTooLarge}, 1, "a JSON element longer than 65536 bytes"},
	}
}

func TestParseRefuses(t *testing.T) {
	for _, tt := range refuseCases() {
		t.Run(tt.name, func(t *testing.T) {
			l, err := Parse("list.txt", strings.NewReader(tt.in), tt.lim)
			if err == nil {
				t.Fatalf("Parse accepted it: %v", l)
			}
			if len(l.Entries) != 0 {
				t.Errorf("Parse returned %d entries with its error, want none", len(l.Entries))
			}
			var pe *ParseError
			if !errors.As(err, &pe) || !errors.Is(err, ErrParse) {
				t.Fatalf("error %v (%T) is not a *ParseError wrapping ErrParse", err, err)
			}
			for _, k := range tt.kinds {
				if !errors.Is(err, k) {
					t.Errorf("error %v does not wrap %v", err, k)
				}
			}
			okReason := strings.Contains(pe.Reason, tt.reason)
			if prefix, ok := strings.CutPrefix(tt.reason, "^"); ok {
				okReason = strings.HasPrefix(pe.Reason, prefix)
			}
			if pe.Line != tt.line || pe.Name != "list.txt" || !okReason {
				t.Errorf("error %q: want line %d and a reason containing %q", err, tt.line, tt.reason)
			}
			want := "list.txt: "
			if tt.line > 0 {
				want = fmt.Sprintf("list.txt:%d: ", tt.line)
			}
			if !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %q does not start with %q", err, want)
			}
			for _, secret := range []string{"s3cret", "0ther", "hunter2", "hashhash", "secret", "pass word", "aaaaaaaa", "color=red"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q shows %q from the input", err, secret)
				}
			}
		})
	}
}

func tagList(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "t%d", i)
	}
	return b.String()
}

// errReader yields data, then fails.
type errReader struct {
	data []byte
	err  error
}

func (r *errReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestParseReadErrorIsReported: a reader failing in the middle of a line
// gives its error, not a bad-URL error about the cut line.
func TestParseReadErrorIsReported(t *testing.T) {
	cause := errors.New("connection reset by peer")
	_, err := Parse("list.txt", &errReader{data: []byte("http://10.0.0.1:80\nhttp://10.0.0"), err: cause}, Limits{})
	if !errors.Is(err, cause) || !errors.Is(err, ErrParse) || !strings.Contains(err.Error(), "list.txt: reading: connection reset") {
		t.Fatalf("error %v, want the read error wrapped, naming the list", err)
	}
	_, err = Parse("list.txt", &errReader{data: []byte(`["http://10.0.0.1:80", "http://10.`), err: cause}, Limits{})
	if !errors.Is(err, cause) {
		t.Fatalf("JSON: error %v, want the read error", err)
	}
}

// TestParseCutBySizeLimit: a list cut by MaxBytes in the middle of a line
// reports the size limit, not the cut line.
func TestParseCutBySizeLimit(t *testing.T) {
	in := "http://10.0.0.1:80\nhttp://10.0.0.2:80\n"
	_, err := Parse("list.txt", strings.NewReader(in), Limits{MaxBytes: int64(len(in) - 5)})
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "larger than 33 bytes") {
		t.Fatalf("error %v, want the size limit", err)
	}
	if _, err := Parse("list.txt", strings.NewReader(in), Limits{MaxBytes: int64(len(in))}); err != nil {
		t.Fatalf("a list of exactly MaxBytes: %v", err)
	}
}

// TestParseLineLimitIsInclusive: a line of exactly MaxLineBytes is
// accepted, one byte more is not.
func TestParseLineLimitIsInclusive(t *testing.T) {
	url := "http://10.0.0.1:80"
	pad := " # " + strings.Repeat("x", 100-len(url)-3)
	line := url + pad
	if len(line) != 100 {
		t.Fatalf("test line is %d bytes", len(line))
	}
	if _, err := Parse("l", strings.NewReader(line+"\n"), Limits{MaxLineBytes: 100}); err != nil {
		t.Fatalf("a 100-byte line with MaxLineBytes 100: %v", err)
	}
	if _, err := Parse("l", strings.NewReader(line+"\r\n"+strings.Replace(line, ".1:", ".3:", 1)), Limits{MaxLineBytes: 100}); err != nil {
		t.Fatalf("100-byte lines with CRLF and MaxLineBytes 100: %v", err)
	}
	for _, in := range []string{line + "x\n", line + "x\r\n", line + "x", "http://10.0.0.2:80\n" + line + "xy"} {
		if _, err := Parse("l", strings.NewReader(in), Limits{MaxLineBytes: 100}); !errors.Is(err, ErrTooLarge) {
			t.Errorf("a %d-byte input with a line over MaxLineBytes 100: %v, want ErrTooLarge", len(in), err)
		}
	}
}

// TestParseJSONLines: JSON entries carry the line where their element
// starts, with many elements on few lines and elements over many lines.
func TestParseJSONLines(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("[")
	want := []wantEntry{}
	line := 1
	for i := range 2000 {
		if i > 0 {
			b.WriteString(",")
		}
		if i%3 == 0 {
			b.WriteString("\n")
			line++
		}
		u := fmt.Sprintf("http://10.0.%d.%d:80", i/250, i%250)
		if i%5 == 0 {
			fmt.Fprintf(&b, "{\n\"url\":\n%q}", u)
			want = append(want, wantEntry{u, nil, 0, line})
			line += 2
		} else {
			fmt.Fprintf(&b, "%q", u)
			want = append(want, wantEntry{u, nil, 0, line})
		}
	}
	b.WriteString("\n]\n")
	l := mustParse(t, b.String())
	checkEntries(t, l.Entries, want)
}
