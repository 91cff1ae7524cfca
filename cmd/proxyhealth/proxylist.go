package main

import (
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

// parseProxyList reads a proxy list as the engine does
// (proxyhealth.ParseProxyList: one URL a line with optional
// " #tags=a,b weight=N", '#' comments, blank lines, or JSON). Errors are
// "NAME:LINE: reason" and never show credentials, nor a line of a file
// that is not a proxy list.
func parseProxyList(name string, r io.Reader) ([]proxyhealth.ProxyEntry, error) {
	list, err := proxyhealth.ParseProxyList(name, r)
	if err != nil {
		where, reason, ok := strings.Cut(err.Error(), ": ")
		if !ok || !strings.HasPrefix(where, name) {
			return nil, &configError{name, err.Error()}
		}
		return nil, &configError{where, reason}
	}
	return list, nil
}

// readProxyFile reads and parses a proxy list file.
func readProxyFile(path string) ([]proxyhealth.ProxyEntry, error) {
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
