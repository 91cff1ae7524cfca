package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/httpapi"
	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

// The secrets TestNoSecretLeaks plants. Each is distinctive enough that a
// hit in a binary file cannot be a coincidence; the proxy passwords carry
// characters that URL-escaping changes, so that the escaped forms are
// searched for as well.
const (
	leakUserList   = "lkUserListA7"   // config proxies: (http, needs auth)
	leakPassList   = "lkPassList!Q3$" //
	leakUserSocks  = "lkUserSocksB8"  // config proxies: (socks5h, needs auth)
	leakPassSocks  = "lkPassSocks(R4)"
	leakUserAPI    = "lkUserApiC9" // POST /v1/proxies
	leakPassAPI    = "lkPassApi*S5"
	leakUserWrong  = "lkUserWrongD1" // a proxy whose password the farm refuses (fails: 407)
	leakPassWrong  = "lkPassWrong'T6"
	leakUserDead   = "lkUserDeadE2" // a refused (closed) proxy
	leakPassDead   = "lkPassDead;U7"
	leakUserProv   = "lkUserProvF3" // a proxy in the provider's list (list URL source)
	leakPassProv   = "lkPassProv,V8"
	leakWebhookSec = "lkWebhookSecretW9"  // webhooks[0].secret
	leakWebhookQ   = "lkWebhookQueryX1"   // webhooks[0].url's query
	leakToken      = "lkApiTokenY2"       // PROXYHEALTH_TOKEN
	leakListHeader = "lkListHeaderZ3"     // list_headers X-Api-Key_env
	leakListQuery  = "lkListQueryK4"      // the list URL's query
	leakListUser   = "lkListUrlUserM5"    // the list URL's user info
	leakListPass   = "lkListUrlPassN6"    //
	leakServePass  = "lkServePassword!P7" // serve.users[0].password
	leakWrongFarm  = "lkFarmExpectsG5"    // what the farm expects from the "wrong" proxy (never given to proxyhealth)
)

// leakPairs are the user:password pairs sent as Basic credentials.
var leakPairs = [][2]string{
	{leakUserList, leakPassList}, {leakUserSocks, leakPassSocks}, {leakUserAPI, leakPassAPI},
	{leakUserWrong, leakPassWrong}, {leakUserDead, leakPassDead}, {leakUserProv, leakPassProv},
	{leakListUser, leakListPass}, {"alice", leakServePass},
}

// leakSecrets are the planted secrets (leakWrongFarm is never given to
// proxyhealth, so it is not one).
var leakSecrets = []string{leakUserList, leakPassList, leakUserSocks, leakPassSocks, leakUserAPI, leakPassAPI,
	leakUserWrong, leakPassWrong, leakUserDead, leakPassDead, leakUserProv, leakPassProv, leakWebhookSec,
	leakWebhookQ, leakToken, leakListHeader, leakListQuery, leakListUser, leakListPass, leakServePass}

// leakNeedles returns every form of every planted secret that must not
// appear: raw, URL-escaped (query and path), base64 (standard and URL
// alphabets) and the base64 of user:pass as in a Basic
// Proxy-Authorization header.
func leakNeedles() map[string]string {
	out := map[string]string{} // needle → what it is
	for _, s := range leakSecrets {
		out[s] = s
		out[url.QueryEscape(s)] = s + " (query-escaped)"
		out[url.PathEscape(s)] = s + " (path-escaped)"
		out[base64.StdEncoding.EncodeToString([]byte(s))] = s + " (base64)"
		out[strings.TrimRight(base64.URLEncoding.EncodeToString([]byte(s)), "=")] = s + " (base64url)"
	}
	for _, p := range leakPairs {
		out[base64.StdEncoding.EncodeToString([]byte(p[0]+":"+p[1]))] = p[0] + ":" + p[1] + " (Basic)"
		out[url.UserPassword(p[0], p[1]).String()] = p[0] + ":" + p[1] + " (URL user info)"
	}
	return out
}

// leakCorpus collects every output the test searches.
type leakCorpus struct {
	mu    sync.Mutex
	names []string
	data  map[string][]byte
	bytes int
}

func (c *leakCorpus) add(name string, b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.data == nil {
		c.data = map[string][]byte{}
	}
	if _, ok := c.data[name]; !ok {
		c.names = append(c.names, name)
	}
	c.data[name] = append(c.data[name], b...)
	c.bytes += len(b)
}

// leakClient talks to the daemon's API with (or without) the token and
// records every answer in the corpus.
type leakClient struct {
	t      *testing.T
	base   string
	token  string
	corpus *leakCorpus
	hc     *http.Client
}

// do sends one request and records the answer (status line, headers and
// body) under "API METHOD PATH"; it returns the status and the body.
func (c *leakClient) do(method, path, body string, withToken bool) (int, []byte) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if withToken && c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	var hdr bytes.Buffer
	_ = resp.Header.Write(&hdr)
	c.corpus.add(fmt.Sprintf("API %s %s", method, path), append([]byte(resp.Status+"\n"+hdr.String()+"\n"), b...))
	return resp.StatusCode, b
}

// getJSON GETs path with the token and decodes a 200 answer.
func (c *leakClient) getJSON(path string, v any) {
	c.t.Helper()
	code, b := c.do("GET", path, "", true)
	if code != http.StatusOK {
		c.t.Fatalf("GET %s: %d %s", path, code, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		c.t.Fatalf("GET %s: %v", path, err)
	}
}

// waitPool polls GET /v1/pool until ok (the polls are not recorded: the
// final answers of every endpoint are).
func (c *leakClient) waitPool(what string, ok func(httpapi.Pool) bool) {
	c.t.Helper()
	var p httpapi.Pool
	testutil.EventuallyExplain(c.t, 20*time.Second, func() bool {
		req, _ := http.NewRequest("GET", c.base+"/v1/pool", nil)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			c.t.Fatal(err)
		}
		defer resp.Body.Close()
		p = httpapi.Pool{}
		return resp.StatusCode == 200 && json.NewDecoder(resp.Body).Decode(&p) == nil && ok(p)
	}, func() string { return fmt.Sprintf("the pool to be %s: %+v", what, p) })
}

// textAPIRE finds the API URL in the text start-up log line.
var textAPIRE = regexp.MustCompile(`msg="proxyhealth started".* api=(http://127\.0\.0\.1:\d+)/`)

// TestNoSecretLeaks plants proxy credentials (in the config, a provider's
// list and through the API), a webhook secret and a secret in its URL, an
// API token, a list_headers value from the environment, secrets in a list
// URL and a rotating-endpoint user's password, drives the daemon (JSON
// logs with a token, then text logs without one) and the CLI, and searches
// every log, API answer, SSE stream, webhook body, endpoint answer, CLI
// output and every byte of the data directory for every form of every
// secret. Expected holders are excluded and their modes asserted:
// credentials.json and lists/*.json (0600), and the one answer of GET
// /v1/pick?credentials=true with the token, whose URL may carry them.
func TestNoSecretLeaks(t *testing.T) {
	farm, err := fakeproxy.Start(t.Context(), 6)
	if err != nil {
		t.Fatal(err)
	}
	defer farm.Close()
	creds := map[int][2]string{0: {leakUserList, leakPassList}, 1: {leakUserSocks, leakPassSocks}, 2: {leakUserAPI, leakPassAPI},
		3: {leakUserWrong, leakWrongFarm}, 4: {leakUserDead, leakPassDead}, 5: {leakUserProv, leakPassProv}}
	for i, c := range creds {
		if err := farm.SetCredentials(i, c[0], c[1]); err != nil {
			t.Fatal(err)
		}
		if err := farm.Set(i, fakeproxy.AuthRequired()); err != nil {
			t.Fatal(err)
		}
	}
	if err := farm.Set(4, fakeproxy.Refuse()); err != nil {
		t.Fatal(err)
	}
	proxyURL := func(i int, scheme, user, pass string) string {
		u, err := url.Parse(farm.URL(i))
		if err != nil {
			t.Fatal(err)
		}
		u.Scheme, u.User = scheme, url.UserPassword(user, pass)
		return u.String()
	}
	urlList := proxyURL(0, "http", leakUserList, leakPassList)
	urlSocks := proxyURL(1, "socks5h", leakUserSocks, leakPassSocks)
	urlAPI := proxyURL(2, "http", leakUserAPI, leakPassAPI)
	urlWrong := proxyURL(3, "http", leakUserWrong, leakPassWrong)
	urlDead := proxyURL(4, "socks5", leakUserDead, leakPassDead)
	urlProv := proxyURL(5, "http", leakUserProv, leakPassProv)

	corpus := &leakCorpus{}

	// The webhook receiver: checks the signature (the secret is in use)
	// and keeps every body for the search.
	var hookMu sync.Mutex
	hookSigned := 0
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte(leakWebhookSec))
		mac.Write(b)
		want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
		hookMu.Lock()
		if r.Header.Get("X-Proxyhealth-Signature") == want && r.URL.Query().Get("token") == leakWebhookQ {
			hookSigned++
		}
		hookMu.Unlock()
		corpus.add("webhook bodies", b)
	}))
	defer hook.Close()
	// The provider's list: served only with the key header.
	var provMu sync.Mutex
	provFetches := 0
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Api-Key") != leakListHeader || r.URL.Query().Get("key") != leakListQuery {
			http.Error(w, "no key", http.StatusUnauthorized)
			return
		}
		provMu.Lock()
		provFetches++
		provMu.Unlock()
		fmt.Fprintln(w, urlProv)
	}))
	defer provider.Close()
	listURL, err := url.Parse(provider.URL + "/proxies.txt?key=" + leakListQuery)
	if err != nil {
		t.Fatal(err)
	}
	listURL.User = url.UserPassword(leakListUser, leakListPass)

	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	hookURL := hook.URL + "/hook?token=" + leakWebhookQ
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) } // a YAML double-quoted scalar
	cfg := writeFile(t, dir, "leak.yaml", `defaults:
  echo_url: `+q(farm.EchoURL())+`
sources:
  - name: cfg
    proxies:
      - `+q(urlList)+`
      - `+q(urlSocks)+`
      - `+q(urlWrong)+`
      - `+q(urlDead)+`
  - name: provider
    url: `+q(listURL.String())+`
    refresh: 1s
    list_headers:
      X-Api-Key_env: LEAK_LIST_KEY
webhooks:
  - url: `+q(hookURL)+`
    secret: `+q(leakWebhookSec)+`
    timeout: 2s
serve:
  listen: 127.0.0.1:0
  users:
    - name: alice
      password: `+q(leakServePass)+`
`)
	args := func(format string) []string {
		return []string{"run", "--config", cfg, "--data", data, "--listen", "127.0.0.1:0", "--log-format", format,
			"--interval", "200ms", "--timeout", "1s", "--check-url", testTarget, "--unhealthy-threshold", "2"}
	}
	env := []string{"LEAK_LIST_KEY=" + leakListHeader}
	hc := &http.Client{Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()

	// Run 1: JSON logs, with a token.
	p := startBin(t, append(env, "PROXYHEALTH_TOKEN="+leakToken), args("json")...)
	base, epAddr := p.apiURL(), p.endpointAddr()
	c := &leakClient{t: t, base: base, token: leakToken, corpus: corpus, hc: hc}

	// An SSE client reads /v1/events from the start while the test drives
	// the daemon.
	sseCtx, sseStop := context.WithCancel(context.Background())
	sseDone := make(chan struct{})
	var sseEvents, sseLastID atomic.Uint64
	go func() {
		defer close(sseDone)
		req, _ := http.NewRequestWithContext(sseCtx, "GET", base+"/v1/events?last_event_id=0", nil)
		req.Header.Set("Authorization", "Bearer "+leakToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "data:") {
				sseEvents.Add(1)
			}
			if v, ok := strings.CutPrefix(sc.Text(), "id:"); ok {
				if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
					sseLastID.Store(n)
				}
			}
			corpus.add("SSE /v1/events", append(sc.Bytes(), '\n'))
		}
	}()

	// A proxy with credentials added through the API.
	if code, b := c.do("POST", "/v1/proxies", `{"url":`+q(urlAPI)+`}`, true); code != http.StatusCreated {
		t.Fatalf("POST /v1/proxies: %d %s", code, b)
	}
	// Refused additions whose error could echo the credentials.
	c.do("POST", "/v1/proxies", `{"url":`+q(proxyURL(0, "ftp", leakUserList, leakPassList))+`}`, true)
	c.do("POST", "/v1/proxies", `{"url":`+q(urlList)+`,"source":"no such source"}`, true)
	c.do("POST", "/v1/proxies", `{"url":`+q(urlAPI)+`}`, true) // a duplicate
	c.waitPool("4 healthy (config, API, provider), 2 down", func(pl httpapi.Pool) bool {
		return pl.Healthy == 4 && pl.Unhealthy+pl.Failed == 2 && pl.Sources["provider"].Healthy == 1
	})
	testutil.EventuallyExplain(t, 20*time.Second, func() bool {
		hookMu.Lock()
		defer hookMu.Unlock()
		return hookSigned > 0
	}, func() string { return "a signed webhook delivery (proxy_down)" })
	provMu.Lock()
	if provFetches == 0 {
		t.Error("the provider's list was never fetched with its key")
	}
	provMu.Unlock()

	// The rotating endpoint: a request with the user's password (the echo
	// answer shows what the target received), one with a wrong password.
	for _, pw := range []string{leakServePass, "not-the-password"} {
		tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: epAddr, User: url.UserPassword("alice", pw)})}
		ec := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		resp, err := ec.Get("http://target.proxyhealth.test" + fakeproxy.EchoPath)
		if err != nil {
			t.Fatalf("through the endpoint: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var hdr bytes.Buffer
		_ = resp.Header.Write(&hdr)
		corpus.add("endpoint answers", append([]byte(resp.Status+"\n"+hdr.String()+"\n"), b...))
		if pw == leakServePass && resp.StatusCode != 200 {
			t.Errorf("through the endpoint with the user's password: %s %s", resp.Status, b)
		}
		tr.CloseIdleConnections()
	}

	// Every GET endpoint, with every proxy where it takes one.
	var list httpapi.ProxyList
	c.getJSON("/v1/proxies?limit=1000", &list)
	if len(list.Proxies) != 6 {
		t.Fatalf("GET /v1/proxies: %d proxies, want 6", len(list.Proxies))
	}
	gets := 0
	for _, e := range httpapi.Endpoints() {
		if e.Method != "GET" || e.Path == "/v1/events" { // the SSE client reads /v1/events
			continue
		}
		paths := []string{e.Path}
		if strings.Contains(e.Path, "{id}") {
			paths = nil
			for _, px := range list.Proxies {
				paths = append(paths, strings.ReplaceAll(e.Path, "{id}", px.ID))
			}
			// A proxy named by its full URL, credentials included.
			paths = append(paths, strings.ReplaceAll(e.Path, "{id}", url.PathEscape(urlList)),
				strings.ReplaceAll(e.Path, "{id}", url.PathEscape(proxyURL(0, "http", leakUserList, "lkNotThePass"))))
		}
		for _, path := range paths {
			if code, b := c.do("GET", path, "", true); code != http.StatusOK && !strings.Contains(path, "lkNotThePass") {
				t.Errorf("GET %s: %d %s", path, code, b)
			}
			gets++
			c.do("GET", path, "", false) // without the token
		}
	}
	for _, path := range []string{"/v1/proxies?limit=1000&source=cfg", "/v1/journal?limit=1000", "/v1/journal?limit=1000&proxy=" + url.QueryEscape(urlList),
		"/v1/events?proxy=" + url.QueryEscape(urlList) + "&bogus=" + url.QueryEscape(leakPassList),
		"/v1/pick?n=6", "/v1/pick?credentials=true"} {
		c.do("GET", path, "", path != "/v1/pick?credentials=true") // credentials=true without the token: 401
	}
	// The one answer allowed to carry credentials, kept out of the corpus
	// (it is the search's positive control below).
	expected := &leakCorpus{}
	req, _ := http.NewRequest("GET", base+"/v1/pick?credentials=true&n=6", nil)
	req.Header.Set("Authorization", "Bearer "+leakToken)
	if resp, err := hc.Do(req); err != nil {
		t.Fatal(err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), url.UserPassword(leakUserList, leakPassList).String()+"@") {
			t.Errorf("GET /v1/pick?credentials=true with the token: %s %s, want the full URLs", resp.Status, b)
		}
		expected.add("GET /v1/pick?credentials=true with the token", b)
	}
	// The writing endpoints on a proxy with credentials, and the sources.
	credID := id(urlList)
	for _, path := range []string{"/v1/proxies/" + credID + "/pause", "/v1/proxies/" + credID + "/resume",
		"/v1/proxies/" + id(urlDead) + "/revive", "/v1/reload", "/v1/sources/provider/refresh", "/v1/sources/provider/confirm"} {
		c.do("POST", path, "", true)
	}
	c.do("POST", "/v1/proxies/"+url.PathEscape(urlWrong)+"/outcome", `{"ok": false, "error_class": "timeout", "latency_ms": 812}`, true)
	// A status from the running daemon.
	for _, a := range [][]string{{"status", "--server", base, "--token", leakToken}, {"status", "--server", base, "--token", leakToken, "--format", "json"},
		{"journal", "replay", "--server", base, "--token", leakToken, "--format", "json"}} {
		r := runBin(t, a...)
		corpus.add("CLI "+strings.Join(a[:1], " ")+" --server", []byte(r.stdout+r.stderr))
	}

	// The SSE client reads until it has every event journaled so far.
	var head httpapi.Pool
	c.getJSON("/v1/pool", &head)
	testutil.EventuallyExplain(t, 20*time.Second, func() bool { return sseLastID.Load() >= head.JournalSeq },
		func() string {
			return fmt.Sprintf("the SSE stream at seq %d, want %d", sseLastID.Load(), head.JournalSeq)
		})
	sseStop()
	<-sseDone
	if sseEvents.Load() == 0 {
		t.Error("the SSE client read no event")
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(30 * time.Second); code != 0 {
		t.Fatalf("SIGTERM: exit %d\n%s", code, p.stderr)
	}
	corpus.add("daemon log (json) and stdout", []byte(p.stderr.String()+p.stdout.String()))

	// Run 2: text logs, no token: credentials=true is refused.
	p2 := startBin(t, env, args("text")...)
	apiLine := p2.waitOutput("text start-up line", true, func(s string) (string, bool) {
		m := textAPIRE.FindStringSubmatch(s)
		if m == nil {
			return "", false
		}
		return m[1], true
	})
	c2 := &leakClient{t: t, base: apiLine, corpus: corpus, hc: hc}
	c2.waitPool("4 healthy again", func(pl httpapi.Pool) bool { return pl.Healthy == 4 && pl.Total == 6 })
	if code, b := c2.do("GET", "/v1/pick?credentials=true", "", false); code != http.StatusForbidden {
		t.Errorf("GET /v1/pick?credentials=true without a token: %d %s, want 403", code, b)
	}
	c2.do("GET", "/v1/proxies?limit=1000", "", false)
	c2.do("GET", "/metrics", "", false)
	p2.signal(syscall.SIGTERM)
	if code := p2.wait(30 * time.Second); code != 0 {
		t.Fatalf("SIGTERM: exit %d\n%s", code, p2.stderr)
	}
	corpus.add("daemon log (text) and stdout", []byte(p2.stderr.String()+p2.stdout.String()))

	// The CLI on the data directory.
	for _, a := range [][]string{
		{"journal", "replay", "--data", data}, {"journal", "replay", "--data", data, "--format", "json"},
		{"journal", "stats", "--data", data}, {"journal", "stats", "--data", data, "--format", "json"},
		{"journal", "verify", "--data", data},
		{"journal", "explain", urlList, "--data", data}, {"journal", "explain", urlWrong, "--data", data, "--format", "json"},
		{"journal", "explain", urlAPI, "--data", data},
		{"status", "--data", data}, {"status", "--data", data, "--format", "json"},
	} {
		r := runBin(t, a...)
		if r.code != 0 {
			t.Errorf("%v: exit %d %s", a, r.code, r.stderr)
		}
		corpus.add("CLI "+strings.Join(a, " "), []byte(r.stdout+r.stderr))
	}

	// The data directory: modes, and every byte but the expected holders.
	modes := map[string]os.FileMode{".": 0o700, "journal.db": 0o600, "view.db": 0o600, "credentials.json": 0o600, "lists/provider.json": 0o600}
	for name, want := range modes {
		fi, err := os.Stat(filepath.Join(data, name))
		if err != nil {
			t.Errorf("data directory: %v", err)
			continue
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %v, want %v", name, got, want)
		}
	}
	if b, err := os.ReadFile(filepath.Join(data, "credentials.json")); err == nil && !bytes.Contains(b, []byte(url.UserPassword(leakUserAPI, leakPassAPI).String()+"@")) {
		t.Errorf("credentials.json does not hold the API-added proxy's password: %s", b)
	}
	err = filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(data, path)
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if rel == "credentials.json" || (filepath.Dir(rel) == "lists" && strings.HasSuffix(rel, ".json")) {
			expected.add("file "+rel, b) // expected to hold credentials (modes asserted above)
			return nil
		}
		corpus.add("file "+rel, b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, must := range []string{"file journal.db", "file view.db", "daemon log (json) and stdout", "daemon log (text) and stdout",
		"SSE /v1/events", "webhook bodies", "endpoint answers", "API GET /metrics"} {
		if len(corpus.data[must]) == 0 {
			t.Errorf("nothing searched in %q", must)
		}
	}

	// The search.
	needles := leakNeedles()
	keys := make([]string, 0, len(needles))
	for k := range needles {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	hits := 0
	for _, name := range corpus.names {
		b := corpus.data[name]
		for _, k := range keys {
			if i := bytes.Index(b, []byte(k)); i >= 0 {
				hits++
				lo, hi := max(0, i-80), min(len(b), i+len(k)+80)
				t.Errorf("LEAK: %s found in %s at byte %d: %q", needles[k], name, i, b[lo:hi])
			}
		}
	}
	// Positive control: the same search finds the credentials where they
	// are expected.
	for _, name := range expected.names {
		found := false
		for _, k := range keys {
			found = found || bytes.Contains(expected.data[name], []byte(k))
		}
		if !found {
			t.Errorf("the search finds no secret in %s, which holds credentials: is it blind?", name)
		}
	}
	if len(expected.names) != 3 {
		t.Errorf("expected holders of credentials: %v, want the pick answer, credentials.json and lists/provider.json", expected.names)
	}
	hookMu.Lock()
	provMu.Lock()
	t.Logf("%d SSE events, %d signed webhook deliveries, %d list fetches; outputs: %s", sseEvents.Load(), hookSigned, provFetches, strings.Join(corpus.names, "; "))
	provMu.Unlock()
	hookMu.Unlock()
	t.Logf("searched %d outputs (%d bytes, %d GET endpoint requests with the token) for %d forms of %d secrets: %d hits",
		len(corpus.names), corpus.bytes, gets, len(needles), len(leakSecrets), hits)
}
