package main

import (
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// fuzzMarker marks the secrets of FuzzConfigFile's seeds.
const fuzzMarker = "hunter2"

// FuzzConfigFile loads fuzzed bytes as the YAML config file (readConfigFile
// then runSettings.load, as `proxyhealth run --config` does). Loading must
// not panic and either succeed or fail with a *configError that names the
// file ("FILE" or "FILE:LINE: ..."). When every occurrence of "hunter2" in
// the file is inside a value the loader promises not to show (a webhook's
// secret, the password of a webhook, check, echo, list or proxy URL, a
// list header, a serve user's password), the error does not contain it.
func FuzzConfigFile(f *testing.F) {
	seeds := []string{
		"",
		"# only a comment\n",
		"listen: 127.0.0.1:0\nconcurrency: 10\nretention: 2h\n",
		"defaults:\n  interval: 10ms\n",
		"defaults:\n  check_url: http://u:hunter2-1@example.com/\n",
		"defaults:\n  echo_url: ftp://u:hunter2-2@example.com/\n",
		"webhooks:\n  - url: http://u:hunter2-3@hooks.example.com/x\n    secret: hunter2-4\n    timeout: 1h\n",
		"webhooks:\n  - url: gopher://u:hunter2-5@h/\n",
		"webhooks:\n  - url: https://hooks.example.com/\n    secret: hunter2-6\n    secret_env: X\n",
		"sources:\n  - name: a\n    proxies:\n      - http://user:hunter2-7@10.0.0.1:99999\n      - socks5://u:hunter2-8@10.0.0.2\n",
		"sources:\n  - name: b\n    url: http://u:hunter2-9@lists.example.com/l.txt\n    list_headers:\n      Authorization: Bearer hunter2-10\n    refresh: 0s\n",
		"serve:\n  listen: 0.0.0.0:0\n  users:\n    - name: alice\n      password: hunter2-11\n      password_env: 1BAD\n",
		"sources: &a\n  - name: x\n    <<: *a\n",
		"sources:\n  - name: c\n    interval: [1, 2]\n    tags: {a: b}\n",
		"- just\n- a list\n",
		"intervall: 30s\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "proxyhealth.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := loadArgs(t, nil, "--config", path)
		if err == nil {
			return
		}
		var ce *configError
		if !errors.As(err, &ce) {
			t.Fatalf("error %T %q is not a *configError", err, err)
		}
		if !strings.HasPrefix(ce.where, path) && !strings.HasPrefix(ce.where, "--") {
			t.Fatalf("error %q does not name the file (%s) first", err, path)
		}
		if onlyInSecrets(data) && strings.Contains(err.Error(), fuzzMarker) {
			t.Fatalf("error %q shows a secret (file %q)", err, data)
		}
	})
}

// onlyInSecrets reports whether the file holds fuzzMarker and every
// occurrence of it, as written, lies in a value the loader does not show.
func onlyInSecrets(data []byte) bool {
	total := strings.Count(string(data), fuzzMarker)
	if total == 0 {
		return false
	}
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil {
		return false
	}
	inSecrets := 0
	ok := true
	var walk func(n *yaml.Node, path []string)
	walk = func(n *yaml.Node, path []string) {
		switch n.Kind {
		case yaml.DocumentNode, yaml.SequenceNode:
			for _, c := range n.Content {
				walk(c, append(path, "[]"))
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				if strings.Contains(k.Value, fuzzMarker) {
					ok = false
				}
				walk(v, append(path, k.Value))
			}
		case yaml.ScalarNode:
			c := strings.Count(n.Value, fuzzMarker)
			if c == 0 {
				return
			}
			if !secretScalar(path, n.Value) {
				ok = false
				return
			}
			inSecrets += c
		case yaml.AliasNode:
			ok = false // the value would be counted twice
		}
	}
	walk(&doc, nil)
	return ok && inSecrets == total
}

// secretScalar reports whether a scalar at path (keys, "[]" for list
// items) holds fuzzMarker only where the loader promises not to show it.
func secretScalar(path []string, v string) bool {
	key := ""
	if len(path) > 0 {
		key = path[len(path)-1]
	}
	parent := ""
	if len(path) > 1 {
		parent = path[len(path)-2]
	}
	gp := ""
	if len(path) > 2 {
		gp = path[len(path)-3]
	}
	switch {
	case key == "secret" && gp == "webhooks",
		key == "password" && gp == "users",
		parent == "list_headers":
		return true
	case key == "url" || key == "check_url" || key == "echo_url",
		key == "[]" && parent == "proxies":
		u, err := url.Parse(v)
		if err != nil || u.User == nil {
			return false
		}
		pw, _ := u.User.Password()
		// The marker only in the password, and the password written
		// without escapes.
		return strings.Count(pw, fuzzMarker) == strings.Count(v, fuzzMarker) && strings.Contains(v, ":"+pw+"@")
	}
	return false
}
