package sources

import (
	"errors"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Sentinel errors. Every error of this package wraps at least one of them;
// test with errors.Is.
var (
	// ErrParse is wrapped by every error about the content of a list (a
	// bad line, a bad JSON element, a limit exceeded while reading): the
	// list was refused as a whole.
	ErrParse = errors.New("sources: bad proxy list")
	// ErrNotList is wrapped (with ErrParse) when the content is not a
	// proxy list at all: HTML, binary data, a JSON object.
	ErrNotList = errors.New("sources: not a proxy list")
	// ErrDuplicate is wrapped (with ErrParse) when two entries name the
	// same proxy (the same probe ID).
	ErrDuplicate = errors.New("sources: duplicate proxy")
	// ErrTooLarge is wrapped when a limit is exceeded: the body or file
	// size, a line's length, the number of lines or of proxies.
	ErrTooLarge = errors.New("sources: proxy list too large")
	// ErrFetch is wrapped by every error of Fetch that is not about the
	// content: DNS, connection, TLS, timeout, redirects, HTTP status.
	ErrFetch = errors.New("sources: fetching the proxy list failed")
	// ErrTLS is wrapped (with ErrFetch) when the TLS handshake with the
	// list's server failed (unknown authority, wrong host name, expired
	// certificate, a plain-HTTP server on an https URL).
	ErrTLS = errors.New("sources: TLS error")
	// ErrRedirect is wrapped (with ErrFetch) when the server redirected
	// too often, in a loop, or from https to http.
	ErrRedirect = errors.New("sources: bad redirect")
	// ErrHeaders is wrapped when request headers cannot be built: an
	// environment variable is unset or a value is not a valid header
	// value. The message names the header and the variable, never the
	// value.
	ErrHeaders = errors.New("sources: bad request headers")
)

// ParseError is an error about the content of a proxy list, printed as
// "NAME:LINE: reason" (or "NAME: reason" when no line is concerned), the
// style of the daemon's configuration errors. It never contains
// credentials, nor the content of a line that does not look like a proxy
// URL. It wraps ErrParse and, when set, Err.
type ParseError struct {
	// Name is the list's name: a file path, or a URL as DisplayURL shows
	// it.
	Name string
	// Line is the 1-based line number, 0 when the error is not about a
	// line.
	Line int
	// Reason says what is wrong and what to do.
	Reason string
	// Err is a more precise cause (ErrTooLarge, ErrNotList, ErrDuplicate,
	// probe.ErrBadProxyURL, the reader's error) or nil.
	Err error
}

// Error returns "NAME:LINE: reason".
func (e *ParseError) Error() string {
	if e.Line > 0 {
		return e.Name + ":" + strconv.Itoa(e.Line) + ": " + e.Reason
	}
	return e.Name + ": " + e.Reason
}

// Unwrap returns ErrParse and Err.
func (e *ParseError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrParse}
	}
	return []error{ErrParse, e.Err}
}

// maxDisplayURL bounds DisplayURL's result.
const maxDisplayURL = 200

// DisplayURL returns what errors and logs may show of a list URL:
// scheme://host/path, without the user info, the query and the fragment
// (which may carry an API key), cut to 200 characters. A string that does
// not parse as a URL with a host shows as "(unparsable URL)".
func DisplayURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Scheme == "" {
		return "(unparsable URL)"
	}
	s := strings.ToLower(u.Scheme) + "://" + u.Host + u.EscapedPath()
	return cut(s, maxDisplayURL)
}

// cut shortens s to at most n runes, ending with "…" when cut, and makes it
// valid UTF-8.
func cut(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
