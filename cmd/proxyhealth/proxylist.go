package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/proxyhealth/proxyhealth"
)

// errConfig marks configuration errors (bad files, bad values): the command
// exits with exitUsage and starts nothing.
var errConfig = errors.New("configuration error")

// configError is a configuration problem, printed as "WHERE: reason".
type configError struct {
	where  string // "FILE:LINE", "FILE" or a flag
	reason string
}

func (e *configError) Error() string {
	if e.where == "" {
		return e.reason
	}
	return e.where + ": " + e.reason
}

func (e *configError) Unwrap() error { return errConfig }

// maxProxyLine bounds one line of a proxy list.
const maxProxyLine = 64 << 10

// shortURL is the redacted form of a proxy URL for an error, cut to
// proxyhealth.MaxErrorExcerpt characters.
func shortURL(u proxyhealth.ProxyInfo) string {
	if r := []rune(u.Redacted); len(r) > proxyhealth.MaxErrorExcerpt {
		return string(r[:proxyhealth.MaxErrorExcerpt-1]) + "…"
	}
	return u.Redacted
}

// parseProxyList reads a proxy list: one URL a line (http://, https://,
// socks5://, socks5h://, socks4://, socks4a://, optional user:pass@; a bare
// host:port means http://), '#' comments (whole lines, or after a space),
// blank lines ignored. Errors are "NAME:LINE: reason" and never show
// credentials, nor more of a line than a short redacted excerpt of what
// looks like a proxy URL (see proxyhealth.ParseProxy): a file that is not a
// proxy list is not echoed.
func parseProxyList(name string, r io.Reader) ([]string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxProxyLine)
	var out []string
	seen := map[string]int{}
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if line == 1 {
			text = strings.TrimPrefix(text, "\ufeff")
		}
		if i := strings.Index(text, " #"); i >= 0 {
			text = strings.TrimSpace(text[:i])
		} else if i := strings.Index(text, "\t#"); i >= 0 {
			text = strings.TrimSpace(text[:i])
		}
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		if strings.ContainsAny(text, " \t") {
			return nil, &configError{fmt.Sprintf("%s:%d", name, line), "one proxy URL per line; found spaces inside the URL"}
		}
		u, err := proxyhealth.ParseProxy(text)
		if err != nil {
			return nil, &configError{fmt.Sprintf("%s:%d", name, line), proxyURLError(err)}
		}
		if prev, dup := seen[u.ID]; dup {
			return nil, &configError{fmt.Sprintf("%s:%d", name, line), fmt.Sprintf("%s is already listed on line %d", shortURL(u), prev)}
		}
		seen[u.ID] = line
		out = append(out, text)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &configError{fmt.Sprintf("%s:%d", name, line+1), fmt.Sprintf("line longer than %d bytes", maxProxyLine)}
		}
		return nil, &configError{name, err.Error()}
	}
	return out, nil
}

// readProxyFile reads and parses a proxy list file.
func readProxyFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &configError{path, fmt.Sprintf("cannot read the proxy list: %v", unwrapPathError(err))}
	}
	defer f.Close()
	return parseProxyList(path, f)
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// proxiesArg is one --proxies value: FILE (the source is named after the
// file without its extension) or NAME=FILE.
type proxiesArg struct {
	source string
	path   string
}

func parseProxiesArg(v string) (proxiesArg, error) {
	if name, path, ok := strings.Cut(v, "="); ok && checkSourceName(name) == nil {
		if path == "" {
			return proxiesArg{}, &configError{"--proxies " + v, "missing file after " + name + "="}
		}
		return proxiesArg{source: name, path: path}, nil
	}
	base := filepath.Base(v)
	name := strings.TrimSuffix(base, filepath.Ext(base))
	if checkSourceName(name) != nil {
		return proxiesArg{}, &configError{"--proxies " + v, fmt.Sprintf("the file name gives the source name %q, which is not allowed (1-64 letters, digits, '.', '_' or '-'); use --proxies NAME=%s", name, v)}
	}
	return proxiesArg{source: name, path: v}, nil
}
