// Package sources reads proxy lists from files and URLs, safely: whatever
// the input (an HTML login page, a 10 MB line, binary garbage, a million
// lines, a redirect loop, a bad certificate), it returns either a complete,
// checked List or a clear error, within bounded memory, and never shows
// credentials, header values, a URL's query, or a line of the input that
// is not a proxy URL. The caller keeps its last good list on error.
//
// It is a low layer: it imports probe (proxy URL parsing and IDs) and the
// standard library only. The engine runs the refresher (schedule, diff,
// shrink guard, journaled source events) on top of it.
//
// # Plain lists
//
// One proxy URL a line, as probe.ParseProxyURL accepts it (http://,
// https://, socks5://, socks5h://, socks4://, socks4a://, optional
// user:pass@; a bare host:port means http://), optionally followed by
// attributes after " #" (a space or tab, then '#' directly followed by the
// first attribute):
//
//	# EU pool, updated daily
//	http://10.0.0.7:3128
//	socks5h://alice:s3cret@gw.example:1080 #tags=eu,premium weight=2
//	https://proxy.example:443 #weight=0.5
//	10.0.0.8:8080 # an ordinary comment
//	http://10.0.0.9:3128 #tags=us # a comment after the attributes
//
// Attributes are tags=a,b (up to MaxTags tags of at most MaxTagLen bytes;
// no spaces, control characters or commas inside a tag; empty tags and
// repeats dropped) and weight=N (a positive number), in any order, each at
// most once. Text after " #" that does not start with "tags=" or
// "weight=" is a comment, as are lines starting with '#'; blank lines are
// ignored, as is a UTF-8 byte order mark. Anything else after the URL is an
// error (a URL cannot contain spaces).
//
// # JSON lists
//
// A JSON array whose elements are proxy URL strings or objects with a
// required "url" and optional "tags" (array of strings) and "weight" (a
// positive number); other fields are refused. Both kinds may be mixed:
//
//	[
//	  "http://10.0.0.7:3128",
//	  {"url": "socks5h://alice:s3cret@gw.example:1080", "tags": ["eu", "premium"], "weight": 2},
//	  {"url": "https://proxy.example:443"}
//	]
//
// The format is detected from the first byte that is not white space: '['
// means JSON. JSON is decoded one element at a time, each bounded by
// Limits.MaxLineBytes; an entry's Line is the line where its element
// starts.
//
// # What is refused
//
// The list is taken whole or not at all. Parse refuses, with a *ParseError
// "NAME:LINE: reason" (the daemon's error style), wrapping ErrParse:
//
//   - a bad URL or bad attributes (probe.ErrBadProxyURL for the URL; the
//     error shows at most a short redacted excerpt of what looks like a
//     proxy URL, nothing of a line that does not);
//   - a redacted URL (scheme://~TAG@host:port, as the API shows proxies): it
//     carries no credentials;
//   - the same proxy twice (the same probe ID: host, port and user name),
//     naming both lines (ErrDuplicate), as the daemon's list files always
//     did;
//   - HTML or XML (first byte '<'), a JSON object, gzip data, NUL bytes or
//     invalid UTF-8 (ErrNotList);
//   - more than Limits.MaxBytes (32 MiB), a line or JSON element over
//     MaxLineBytes (64 KiB), more than MaxLines lines (1,000,000), more
//     than MaxEntries proxies (100,000) (ErrTooLarge).
//
// # URL sources
//
// Fetcher.Fetch gets a list over HTTP(S) with a timeout (30 s), at most 5
// redirects (a loop, or https → http, is an error: ErrRedirect), ETag and
// If-Modified-Since validators (304 gives Result.NotModified), optional
// headers (an API key: ResolveHeaders reads them from the environment; they
// are dropped when a redirect leaves the host), gzip (Content-Encoding or a
// gzip body), and the limits checked while reading (ErrTooLarge). An HTML
// answer (Content-Type text/html), a status other than 200 or 203 (401/403 hint at
// the headers) and TLS errors (ErrTLS) are reported as such. Errors show
// the URL as scheme://host/path (DisplayURL): no user info, query or
// fragment, and no header value. NextRefresh spreads refreshes
// (DefaultRefresh 10 min ± 10 %).
//
// # File sources
//
// FileSource polls a file (DefaultPollInterval 2 s) and reads it once a
// change (size, modification time, inode) has settled and the file did
// not change while being read; Watch calls back with each new list or new
// error. See FileSource for why polling rather than inotify.
package sources
