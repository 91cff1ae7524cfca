package proxyhealth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"sync"
)

// CredentialsFile is the file in Config.DataDir where the engine keeps the
// full URLs (with user:pass) of proxies added at run time (Engine.AddProxy,
// the API) so that Config.ResumeAddedProxies can check them again after a
// restart. It is written with mode 0600, replaced atomically, and holds
// only proxies that carry credentials; the journal and the SQLite view
// never hold credentials. Proxies listed in the configuration are not kept
// here: the configuration has their URLs.
const CredentialsFile = "credentials.json"

// credentialsVersion is the format of CredentialsFile.
const credentialsVersion = 1

// credentials is the CredentialsFile store. Every change is written
// through (temporary file, fsync, rename, fsync of the directory) before
// it is used.
type credentials struct {
	path string
	mu   sync.Mutex
	urls map[string]string // proxy ID → URL with credentials
}

type credentialsDoc struct {
	Version int               `json:"version"`
	Proxies map[string]string `json:"proxies"`
}

// openCredentials reads dir/CredentialsFile (a missing file is an empty
// store). A file that cannot be parsed is an error naming it: it is never
// overwritten silently.
func openCredentials(dir string) (*credentials, error) {
	c := &credentials{path: filepath.Join(dir, CredentialsFile), urls: map[string]string{}}
	b, err := os.ReadFile(c.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return c, nil
	case err != nil:
		return nil, fmt.Errorf("proxyhealth: read %s: %w", c.path, err)
	}
	var doc credentialsDoc
	if err := json.Unmarshal(b, &doc); err != nil || doc.Version != credentialsVersion {
		if err == nil {
			err = fmt.Errorf("version %d, want %d", doc.Version, credentialsVersion)
		}
		return nil, fmt.Errorf("%w: %s is not a credentials file this version can read (%v); move it aside to start without the run-time proxies' credentials", ErrBadConfig, c.path, err)
	}
	if doc.Proxies != nil {
		c.urls = doc.Proxies
	}
	return c, nil
}

func (c *credentials) get(id string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	u, ok := c.urls[id]
	return u, ok
}

// put stores a proxy's URL, durably, before the proxy is added.
func (c *credentials) put(id, raw string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.urls[id] == raw {
		return nil
	}
	next := maps.Clone(c.urls)
	next[id] = raw
	if err := c.write(next); err != nil {
		return err
	}
	c.urls = next
	return nil
}

// drop forgets proxies (removed, or never added).
func (c *credentials) drop(ids ...string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := maps.Clone(c.urls)
	for _, id := range ids {
		delete(next, id)
	}
	if len(next) == len(c.urls) {
		return nil
	}
	if err := c.write(next); err != nil {
		return err
	}
	c.urls = next
	return nil
}

func (c *credentials) write(urls map[string]string) error {
	b, err := json.Marshal(credentialsDoc{Version: credentialsVersion, Proxies: urls})
	if err != nil {
		return err
	}
	if err := writeFileAtomic(c.path, func(w io.Writer) error { _, err := w.Write(b); return err }); err != nil {
		return fmt.Errorf("proxyhealth: write %s: %w", c.path, err)
	}
	return nil
}
