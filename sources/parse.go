package sources

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/proxyhealth/proxyhealth/probe"
)

// Default limits (see Limits).
const (
	// DefaultMaxBytes bounds a list's size: a file, or a fetched body
	// after decompression.
	DefaultMaxBytes int64 = 32 << 20
	// DefaultMaxLineBytes bounds one line of a plain list, and one
	// element of a JSON list (as today's list files: 64 KiB).
	DefaultMaxLineBytes = 64 << 10
	// DefaultMaxLines bounds the number of lines of a plain list
	// (comments and blank lines included).
	DefaultMaxLines = 1_000_000
	// DefaultMaxEntries bounds the number of proxies in a list.
	DefaultMaxEntries = 100_000
)

// Bounds of an entry's tags (those of the engine's events.NormalizeTags).
const (
	// MaxTags is the most tags an entry may carry.
	MaxTags = 32
	// MaxTagLen is the longest tag, in bytes.
	MaxTagLen = 64
)

// Limits bound what Parse and Fetch accept, so that memory stays bounded
// whatever the input. A zero field takes its default.
type Limits struct {
	// MaxBytes bounds the input's size in bytes (default DefaultMaxBytes).
	MaxBytes int64
	// MaxLineBytes bounds a plain line or a JSON element, in bytes
	// (default DefaultMaxLineBytes).
	MaxLineBytes int
	// MaxLines bounds the number of lines of a plain list (default
	// DefaultMaxLines).
	MaxLines int
	// MaxEntries bounds the number of proxies (default
	// DefaultMaxEntries).
	MaxEntries int
}

// withDefaults returns l with its zero (or negative) fields set to the
// defaults.
func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxLineBytes <= 0 {
		l.MaxLineBytes = DefaultMaxLineBytes
	}
	if l.MaxLines <= 0 {
		l.MaxLines = DefaultMaxLines
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultMaxEntries
	}
	return l
}

// Entry is one proxy of a list.
type Entry struct {
	// URL is the proxy URL as written in the list, credentials included.
	// Never log or show it: use Redacted (String, GoString and LogValue
	// do).
	URL string
	// ID is the proxy's ID (probe.ProxyURL.ID).
	ID string
	// Redacted is the URL without credentials (probe.ProxyURL.Redacted).
	Redacted string
	// Tags are the entry's tags, in the order written, without empty ones
	// and duplicates (nil when none).
	Tags []string
	// Weight is the entry's weight; 0 when the list does not give one.
	Weight float64
	// Line is the 1-based line where the entry is (for JSON, where its
	// element starts).
	Line int
}

// String returns the redacted URL, so that %v never shows credentials.
func (e Entry) String() string { return e.Redacted }

// GoString returns a form without credentials, so that %#v never shows
// them either.
func (e Entry) GoString() string {
	return fmt.Sprintf("sources.Entry{Redacted: %q, Tags: %q, Weight: %v, Line: %d}", e.Redacted, e.Tags, e.Weight, e.Line)
}

// LogValue implements slog.LogValuer without credentials.
func (e Entry) LogValue() slog.Value {
	return slog.GroupValue(slog.String("proxy", e.Redacted), slog.Int("line", e.Line))
}

// List formats.
const (
	// FormatPlain is a list of lines: "URL [#tags=a,b] [weight=N]".
	FormatPlain = "plain"
	// FormatJSON is a JSON array of URL strings or of objects.
	FormatJSON = "json"
)

// List is a parsed proxy list.
type List struct {
	// Entries are the proxies in the order of the list, each with a
	// distinct ID.
	Entries []Entry
	// Format is FormatPlain or FormatJSON.
	Format string
	// Lines is the number of lines read.
	Lines int
	// Bytes is the number of bytes read.
	Bytes int64
}

// String summarizes the list without its URLs.
func (l List) String() string {
	return fmt.Sprintf("%s list: %d proxies, %d lines, %d bytes", l.Format, len(l.Entries), l.Lines, l.Bytes)
}

// LogValue implements slog.LogValuer: the counts, never the URLs.
func (l List) LogValue() slog.Value {
	return slog.GroupValue(slog.String("format", l.Format), slog.Int("proxies", len(l.Entries)),
		slog.Int("lines", l.Lines), slog.Int64("bytes", l.Bytes))
}

// errOverMax is what countingReader returns past its limit.
var errOverMax = errors.New("over the size limit")

// countingReader counts the bytes read and fails once more than max have
// been read.
type countingReader struct {
	r   io.Reader
	n   int64
	max int64
	err error // the first read error other than io.EOF
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.n > c.max {
		return 0, errOverMax
	}
	if room := c.max + 1 - c.n; int64(len(p)) > room {
		p = p[:room]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}

var utf8BOM = []byte("\ufeff")

// Parse reads a proxy list from r. name names it in errors (a file path, or
// DisplayURL of a URL). The format is detected from the first byte that is
// not white space (after an optional UTF-8 byte order mark): '[' is JSON,
// anything else a plain list; '<' (HTML, XML), '{' (a JSON object) and
// gzip data are refused as not a proxy list. See the package documentation
// for both formats.
//
// The list is refused as a whole at the first problem: a bad URL, bad
// attributes, a duplicate proxy (the same ID; the error names both lines),
// binary data, a limit exceeded. Errors are *ParseError values
// ("NAME:LINE: reason") wrapping ErrParse and, as the case may be,
// ErrTooLarge, ErrNotList, ErrDuplicate or probe.ErrBadProxyURL; a read
// error of r is a *ParseError too ("NAME: reading: …"), wrapping it. Errors never show
// credentials, nor the content of a line that does not look like a proxy
// URL. Memory stays bounded by the limits, whatever r yields.
func Parse(name string, r io.Reader, limits Limits) (List, error) {
	lim := limits.withDefaults()
	cr := &countingReader{r: r, max: lim.MaxBytes}
	br := bufio.NewReaderSize(cr, 16<<10)
	b := &builder{name: name, lim: lim, seen: map[string]int{}}
	first, _ := br.Peek(4096) // a read error shows again when reading
	first = bytes.TrimLeft(bytes.TrimPrefix(first, utf8BOM), " \t\r\n")
	var err error
	switch {
	case len(first) >= 2 && first[0] == 0x1f && first[1] == 0x8b:
		err = b.errorf(0, ErrNotList, "gzip-compressed data, not a proxy list: decompress it first")
	case len(first) > 0 && first[0] == '<':
		err = b.errorf(b.lineOfFirstByte(br), ErrNotList, "this looks like HTML or XML (it starts with '<'), not a proxy list: check the URL or path (a login or error page?)")
	case len(first) > 0 && first[0] == '{':
		err = b.errorf(b.lineOfFirstByte(br), ErrNotList, `a JSON object, not a proxy list: want a JSON array of URL strings or of {"url": …} objects, or one URL a line`)
	case len(first) > 0 && first[0] == '[':
		b.list.Format = FormatJSON
		err = b.parseJSON(br)
	default:
		b.list.Format = FormatPlain
		err = b.parsePlain(br)
	}
	b.list.Bytes = cr.n
	if err != nil || cr.err != nil {
		// A cut input (over the size limit, or a read error) may make its
		// last line look bad: the cut is the error to report.
		if cr.n > lim.MaxBytes || errors.Is(err, errOverMax) {
			return List{}, b.errorf(0, ErrTooLarge, fmt.Sprintf("larger than %s (the size limit): refused", sizeString(lim.MaxBytes)))
		}
		if cr.err != nil {
			// A read error of r (a file system or network error).
			return List{}, &ParseError{Name: name, Reason: "reading: " + cr.err.Error(), Err: cr.err}
		}
		return List{}, err
	}
	return b.list, nil
}

// sizeString prints a byte count the way limits are usually written.
func sizeString(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// builder accumulates a list's entries and checks them.
type builder struct {
	name string
	lim  Limits
	seen map[string]int // ID → line
	list List
	elem int // the JSON element being read (1-based), 0 in a plain list
}

// errorf returns a *ParseError; in a JSON element, the reason starts with
// "element N: ".
func (b *builder) errorf(line int, kind error, reason string) error {
	if b.elem > 0 {
		reason = fmt.Sprintf("element %d: %s", b.elem, reason)
	}
	return &ParseError{Name: b.name, Line: line, Reason: reason, Err: kind}
}

// lineOfFirstByte returns the line of the first non-space byte (blank
// lines may come first).
func (b *builder) lineOfFirstByte(br *bufio.Reader) int {
	buf, _ := br.Peek(4096)
	buf = bytes.TrimPrefix(buf, utf8BOM)
	i := len(buf) - len(bytes.TrimLeft(buf, " \t\r\n"))
	return bytes.Count(buf[:i], []byte{'\n'}) + 1
}

// add checks one proxy URL with its attributes and appends it.
func (b *builder) add(raw string, line int, tags []string, weight float64) error {
	if len(b.list.Entries) >= b.lim.MaxEntries {
		return b.errorf(line, ErrTooLarge, fmt.Sprintf("more than %d proxies (the limit): refused; split the list", b.lim.MaxEntries))
	}
	u, err := probe.ParseProxyURL(raw)
	if err != nil {
		return b.errorf(line, err, urlReason(raw, err))
	}
	if u.IsRedactedForm() {
		return b.errorf(line, probe.ErrBadProxyURL, fmt.Sprintf("%s is a redacted URL (as the API and the logs show it): it names a proxy but carries no credentials; write the proxy's real user:pass@ instead", cut(u.Redacted(), probe.MaxErrorExcerpt)))
	}
	id := u.ID()
	if prev, dup := b.seen[id]; dup {
		return b.errorf(line, ErrDuplicate, fmt.Sprintf("%s is already listed on line %d: each proxy once (the same host, port and user name is the same proxy)", cut(u.Redacted(), probe.MaxErrorExcerpt), prev))
	}
	b.seen[id] = line
	if es := b.list.Entries; len(es) == cap(es) {
		// Doubled, not append's 1.25 for large slices: growing to 100,000
		// entries by 1.25 allocated about five times the list (41 MB of
		// garbage at a daemon's start), by 2 about twice.
		b.list.Entries = slices.Grow(es, max(len(es), 64))
	}
	b.list.Entries = append(b.list.Entries, Entry{URL: strings.TrimSpace(raw), ID: id, Redacted: u.Redacted(), Tags: tags, Weight: weight, Line: line})
	return nil
}

// urlReason is the reason of a probe.ParseProxyURL error for raw. probe
// shows a short excerpt of what looks like host:port; a single word
// without ':' (a token, a key in a file that is not a proxy list) is not
// shown either.
func urlReason(raw string, err error) string {
	msg := strings.TrimPrefix(err.Error(), "probe: ")
	const shown = `bad proxy URL "`
	if !strings.Contains(raw, ":") && strings.HasPrefix(msg, shown) {
		if i := strings.Index(msg[len(shown):], `": `); i >= 0 {
			return "bad proxy URL (input not shown: it does not look like a proxy URL): " + msg[len(shown)+i+3:]
		}
	}
	if t := strings.TrimSpace(raw); len(t) > 2 && !strings.Contains(raw, ":") && strings.Contains(msg, t) {
		return "bad proxy URL (input not shown: it does not look like a proxy URL)"
	}
	return msg
}

// checkTags validates and deduplicates tags; it returns a reason, "" when
// they are fine.
func checkTags(in []string) ([]string, string) {
	var out []string
	for _, t := range in {
		if t == "" {
			continue
		}
		switch {
		case len(t) > MaxTagLen:
			return nil, fmt.Sprintf("a tag is longer than %d bytes", MaxTagLen)
		case !utf8.ValidString(t):
			return nil, "a tag is not valid UTF-8"
		case strings.IndexFunc(t, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) || r == ',' }) >= 0:
			return nil, "a tag contains a space, a control character or ','"
		}
		if !containsString(out, t) {
			out = append(out, t)
		}
	}
	if len(out) > MaxTags {
		return nil, fmt.Sprintf("more than %d tags", MaxTags)
	}
	return out, ""
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// checkWeight returns a reason, "" when w is a positive finite number.
func checkWeight(w float64) string {
	if !(w > 0) || math.IsInf(w, 0) {
		return "weight must be a positive number such as 2 or 0.5 (leave it out for the default)"
	}
	return ""
}

const attrSyntax = "write attributes after the URL as ' #tags=a,b weight=2'"

// parsePlain reads one URL a line.
func (b *builder) parsePlain(r io.Reader) error {
	sc := bufio.NewScanner(r)
	// The buffer holds a line and its "\r\n"; its capacity counts as a
	// limit too.
	sc.Buffer(make([]byte, 0, min(4096, b.lim.MaxLineBytes+2)), b.lim.MaxLineBytes+2)
	line := 0
	for sc.Scan() {
		line++
		if line > b.lim.MaxLines {
			return b.errorf(line, ErrTooLarge, fmt.Sprintf("more than %d lines (the limit): refused; split the list", b.lim.MaxLines))
		}
		raw := sc.Bytes()
		if len(raw) > b.lim.MaxLineBytes {
			return b.errorf(line, ErrTooLarge, fmt.Sprintf("line longer than %d bytes (the limit): not a proxy list?", b.lim.MaxLineBytes))
		}
		if line == 1 {
			raw = bytes.TrimPrefix(raw, utf8BOM)
		}
		if bytes.IndexByte(raw, 0) >= 0 || !utf8.Valid(raw) {
			return b.errorf(line, ErrNotList, "binary data (a NUL byte or invalid UTF-8), not a proxy list: check the URL or path")
		}
		if err := b.plainLine(strings.TrimSpace(string(raw)), line); err != nil {
			return err
		}
	}
	b.list.Lines = line
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return b.errorf(line+1, ErrTooLarge, fmt.Sprintf("line longer than %d bytes (the limit): not a proxy list?", b.lim.MaxLineBytes))
		}
		return err
	}
	return nil
}

// plainLine handles one trimmed line.
func (b *builder) plainLine(text string, line int) error {
	if text == "" || text[0] == '#' {
		return nil
	}
	url, rest := text, ""
	if i := strings.IndexAny(text, " \t"); i >= 0 {
		url, rest = text[:i], strings.TrimLeft(text[i:], " \t")
	}
	if rest != "" && rest[0] != '#' {
		if strings.HasPrefix(rest, "tags=") || strings.HasPrefix(rest, "weight=") {
			return b.errorf(line, nil, "attributes must follow '#': "+attrSyntax)
		}
		return b.errorf(line, nil, "one proxy URL per line; found spaces inside the URL (a comment after the URL starts with ' #')")
	}
	var tags []string
	var weight float64
	if attrs := strings.TrimPrefix(rest, "#"); strings.HasPrefix(attrs, "tags=") || strings.HasPrefix(attrs, "weight=") {
		if _, err := probe.ParseProxyURL(url); err != nil {
			return b.errorf(line, err, urlReason(url, err))
		}
		var reason string
		if tags, weight, reason = parseAttrs(attrs); reason != "" {
			return b.errorf(line, nil, reason)
		}
	}
	return b.add(url, line, tags, weight)
}

// parseAttrs parses "tags=a,b weight=2 [# comment]".
func parseAttrs(s string) (tags []string, weight float64, reason string) {
	seenTags, seenWeight := false, false
	for _, f := range strings.Fields(s) {
		if f[0] == '#' {
			break // a comment after the attributes
		}
		key, val, ok := strings.Cut(f, "=")
		switch {
		case ok && key == "tags" && !seenTags:
			seenTags = true
			if tags, reason = checkTags(strings.Split(val, ",")); reason != "" {
				return nil, 0, reason
			}
		case ok && key == "weight" && !seenWeight:
			seenWeight = true
			w, err := strconv.ParseFloat(val, 64)
			if err != nil {
				return nil, 0, "weight must be a positive number such as 2 or 0.5"
			}
			if reason = checkWeight(w); reason != "" {
				return nil, 0, reason
			}
			weight = w
		case ok && (key == "tags" || key == "weight"):
			return nil, 0, key + "= is given twice"
		default:
			return nil, 0, "unexpected text after the attributes (known: tags=, weight=; a comment after them starts with ' #'): " + attrSyntax
		}
	}
	return tags, weight, ""
}

// errJSONAhead is what lineTracker returns when the JSON decoder reads too
// far without completing an element.
var errJSONAhead = errors.New("too far without a complete element")

// lineTracker is the JSON decoder's reader: it maps input offsets to line
// numbers, keeping only the bytes read past the last offset asked about,
// and refuses to buffer more than maxAhead of them.
type lineTracker struct {
	r        io.Reader
	pending  []byte // bytes from offset base on, read but not yet counted
	base     int64
	lines    int // newlines before base
	maxAhead int
}

func (t *lineTracker) Read(p []byte) (int, error) {
	if len(t.pending) > t.maxAhead {
		return 0, errJSONAhead
	}
	n, err := t.r.Read(p)
	t.pending = append(t.pending, p[:n]...)
	return n, err
}

// lineAt returns the 1-based line of offset off (off must not go back).
func (t *lineTracker) lineAt(off int64) int {
	k := off - t.base
	if k < 0 {
		k = 0
	}
	if k > int64(len(t.pending)) {
		k = int64(len(t.pending))
	}
	t.lines += bytes.Count(t.pending[:k], []byte{'\n'})
	t.base += k
	t.pending = append(t.pending[:0], t.pending[k:]...)
	return t.lines + 1
}

// lines returns the number of lines read so far.
func (t *lineTracker) total() int {
	return t.lines + bytes.Count(t.pending, []byte{'\n'}) + 1
}

const jsonShape = `want a JSON array of proxy URL strings or of {"url": "…", "tags": ["…"], "weight": 2} objects`

// parseJSON reads a JSON array, one element at a time.
func (b *builder) parseJSON(r io.Reader) error {
	t := &lineTracker{r: r, maxAhead: 4*b.lim.MaxLineBytes + 4096}
	dec := json.NewDecoder(t)
	syntax := func(err error) error {
		var se *json.SyntaxError
		switch {
		case errors.As(err, &se):
			return b.errorf(t.lineAt(se.Offset), ErrNotList, "invalid JSON (a syntax error here): "+jsonShape)
		case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
			return b.errorf(t.total(), nil, "the JSON array ends before its closing ']' (a truncated download?)")
		case errors.Is(err, errJSONAhead):
			return b.errorf(t.lineAt(t.base), ErrTooLarge, fmt.Sprintf("a JSON element longer than %d bytes (the limit)", b.lim.MaxLineBytes))
		}
		return err
	}
	if _, err := dec.Token(); err != nil { // '['
		return syntax(err)
	}
	n := 0
	for dec.More() {
		n++
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return syntax(err)
		}
		end := dec.InputOffset()
		line := t.lineAt(end - int64(len(raw)))
		t.lineAt(end)
		b.elem = n
		if len(raw) > b.lim.MaxLineBytes {
			return b.errorf(line, ErrTooLarge, fmt.Sprintf("longer than %d bytes (the limit)", b.lim.MaxLineBytes))
		}
		if err := b.jsonElement(raw, line); err != nil {
			return err
		}
		b.elem = 0
	}
	if _, err := dec.Token(); err != nil { // ']'
		return syntax(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err == nil || errors.As(err, new(*json.SyntaxError)) {
			return b.errorf(t.lineAt(dec.InputOffset()), ErrNotList, "more data after the JSON array's closing ']': "+jsonShape)
		}
		return syntax(err)
	}
	b.list.Lines = t.total()
	return nil
}

// jsonElement handles one element of a JSON list.
func (b *builder) jsonElement(raw json.RawMessage, line int) error {
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return b.errorf(line, nil, "invalid JSON string")
		}
		return b.add(s, line, nil, 0)
	case '{':
	default:
		return b.errorf(line, nil, "neither a URL string nor an object: "+jsonShape)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return b.errorf(line, nil, "invalid JSON object")
	}
	for k := range obj {
		if k != "url" && k != "tags" && k != "weight" {
			// Field names are not shown (the input may be some other JSON
			// file), except near misses of the known ones.
			for _, known := range []string{"url", "tags", "weight", "tag"} {
				if strings.EqualFold(k, known) {
					return b.errorf(line, nil, fmt.Sprintf("unknown field %q: the fields are url, tags and weight, in lower case", k))
				}
			}
			return b.errorf(line, nil, "an unknown field (the fields are url, tags and weight)")
		}
	}
	var url string
	if v, ok := obj["url"]; !ok || json.Unmarshal(v, &url) != nil || url == "" {
		return b.errorf(line, nil, `"url" is missing or not a non-empty string`)
	}
	// Check the URL before the attributes: its error shows nothing of an
	// input that is no proxy URL.
	if _, err := probe.ParseProxyURL(url); err != nil {
		return b.errorf(line, err, urlReason(url, err))
	}
	var tags []string
	if v, ok := obj["tags"]; ok && string(v) != "null" {
		var in []string
		if err := json.Unmarshal(v, &in); err != nil {
			return b.errorf(line, nil, `"tags" must be an array of strings`)
		}
		var reason string
		if tags, reason = checkTags(in); reason != "" {
			return b.errorf(line, nil, reason)
		}
	}
	var weight float64
	if v, ok := obj["weight"]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &weight); err != nil {
			return b.errorf(line, nil, `"weight" must be a number`)
		}
		if reason := checkWeight(weight); reason != "" {
			return b.errorf(line, nil, reason)
		}
	}
	return b.add(url, line, tags, weight)
}
