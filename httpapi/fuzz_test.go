package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/httpapi"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
	"github.com/proxyhealth/proxyhealth/rotation"
)

// pickingEngine is the fake engine with a pool that always has a proxy to
// hand out, so that GET /v1/pick gets past the pick to its answer.
type pickingEngine struct{ *fakeEngine }

func (pickingEngine) Pick(proxyhealth.PickRequest) (proxyhealth.Picked, error) {
	return proxyhealth.Picked{Member: rotation.Member{ID: p1, Scheme: "http", Host: "10.0.0.1", Port: 3128, Source: "a"}}, nil
}

func (e pickingEngine) PickN(r proxyhealth.PickRequest, dst []proxyhealth.Picked) (int, error) {
	for i := range dst {
		dst[i], _ = e.Pick(r)
	}
	return len(dst), nil
}

// Request kinds FuzzAPIRequest sends.
const (
	fuzzAdd     = iota // POST /v1/proxies with the body
	fuzzOutcome        // POST /v1/proxies/{path}/outcome with the body
	fuzzPick           // GET /v1/pick?{body}
	fuzzJournal        // GET /v1/journal?{body}
	fuzzKinds
)

// FuzzAPIRequest sends fuzzed request bodies and query strings through the
// real handler (Server.ServeHTTP, on a fake engine and a Mem journal
// holding a small pool): the JSON bodies of POST /v1/proxies and POST
// /v1/proxies/{id}/outcome (and that {id}), and the query strings of GET
// /v1/pick and GET /v1/journal. Whatever the input, the answer is a 2xx
// or 4xx with a JSON body (never a 5xx: the fake engine does not fail),
// and a password in a proxy URL the request carries is not echoed.
func FuzzAPIRequest(f *testing.F) {
	seeds := []struct {
		kind     uint8
		id, body string
	}{
		{fuzzAdd, "", `{"url": "http://10.0.0.9:3128", "source": "a"}`},
		{fuzzAdd, "", `{"url": "socks5://user:Hunter2Secret@10.0.0.9:1080"}`},
		{fuzzAdd, "", `{"url": "http://user:Hunter2Secret@10.0.0.9:99999"}`},
		{fuzzAdd, "", `{"url": 7}`},
		{fuzzAdd, "", `{"url": "http://10.0.0.9:3128"} {}`},
		{fuzzAdd, "", `{"uri": "x"}`},
		{fuzzAdd, "", ``},
		{fuzzOutcome, p1, `{"ok": true, "latency_ms": 12.5}`},
		{fuzzOutcome, p1, `{"ok": false, "error_class": "timeout"}`},
		{fuzzOutcome, p1, `{"ok": true, "error_class": "timeout"}`},
		{fuzzOutcome, p1, `{"ok": false, "latency_ms": -1e309}`},
		{fuzzOutcome, "http://u:Hunter2Secret@10.0.0.1:3128", `{"ok": false}`},
		{fuzzOutcome, "not-an-id", `{}`},
		{fuzzPick, "", `strategy=sticky&key=s1&n=3`},
		{fuzzPick, "", `n=101&scheme=socks5`},
		{fuzzPick, "", `anonymity=elite&tag=x`},
		{fuzzPick, "", `credentials=true`},
		{fuzzPick, "", `n=%zz&strategy=%00`},
		{fuzzJournal, "", `proxy=` + p1 + `&type=check_failed&limit=2`},
		{fuzzJournal, "", `since=2025-03-04T05:00:00Z&until=1h&after=18446744073709551615`},
		{fuzzJournal, "", `limit=-1&type=nope&since=yesterday`},
	}
	for _, s := range seeds {
		f.Add(s.kind, s.id, []byte(s.body))
	}

	j := journal.NewMem()
	live := projections.NewLive(projections.LiveOptions{})
	eng := &fakeEngine{j: j}
	now := func() time.Time { return t0.Add(time.Hour) }
	eng.now = now
	srv, err := httpapi.New(pickingEngine{eng}, httpapi.Options{Status: live, Now: now})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		srv.Close()
		_ = j.Close()
	})
	// A small pool (what seedPool builds, without a *testing.T).
	envs := []*pb.Envelope{
		addedEnv(p1, "a", "http://10.0.0.1:3128"), okEnv(p1, "a", 10*time.Millisecond), changeEnv(p1, "a", unknown, healthy),
		addedEnv(p2, "a", "socks5://10.0.0.2:1080"), failEnv(p2, "a", pb.FailureClass_FAILURE_CLASS_TIMEOUT), changeEnv(p2, "a", unknown, degraded),
	}
	for i, e := range envs {
		e.AtUnixNano = t0.Add(time.Duration(i) * time.Second).UnixNano()
	}
	if _, err := j.Append(context.Background(), envs); err != nil {
		f.Fatal(err)
	}
	live.Apply(envs...)

	f.Fuzz(func(t *testing.T, kind uint8, id string, body []byte) {
		var req *http.Request
		switch kind % fuzzKinds {
		case fuzzAdd:
			req = httptest.NewRequest("POST", "/v1/proxies", strings.NewReader(string(body)))
		case fuzzOutcome:
			req = httptest.NewRequest("POST", "/v1/proxies/"+url.PathEscape(id)+"/outcome", strings.NewReader(string(body)))
		case fuzzPick:
			req = httptest.NewRequest("GET", "/v1/pick", nil)
			req.URL.RawQuery = string(body)
		case fuzzJournal:
			req = httptest.NewRequest("GET", "/v1/journal", nil)
			req.URL.RawQuery = string(body)
		}
		req.Host = "127.0.0.1"
		req.RemoteAddr = "127.0.0.1:40000"
		if req.Method == "POST" {
			req.Header.Set("Content-Type", "application/json")
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		code, out := rec.Code, rec.Body.Bytes()
		what := req.Method + " " + req.URL.String()
		if code >= 300 && code < 400 && path.Clean(req.URL.Path) != req.URL.Path {
			return // ServeMux redirects an unclean path ("/v1/proxies/../outcome") to its clean form
		}
		if code < 200 || (code >= 300 && code < 400) || code >= 500 {
			t.Fatalf("%s with %q: status %d: %s", what, body, code, out)
		}
		// JSON, or for a journal read JSON lines.
		switch ct := rec.Header().Get("Content-Type"); {
		case strings.HasPrefix(ct, "application/json"):
			if !json.Valid(out) {
				t.Fatalf("%s with %q: status %d, not JSON: %s", what, body, code, out)
			}
		case strings.HasPrefix(ct, "application/x-ndjson") && kind%fuzzKinds == fuzzJournal && code == http.StatusOK:
			for _, line := range bytes.Split(bytes.TrimSuffix(out, []byte("\n")), []byte("\n")) {
				if len(line) > 0 && !json.Valid(line) {
					t.Fatalf("%s with %q: not a JSON line: %s", what, body, line)
				}
			}
		default:
			t.Fatalf("%s with %q: status %d, Content-Type %q", what, body, code, ct)
		}
		var secrets []string
		switch kind % fuzzKinds {
		case fuzzAdd:
			var ar httpapi.AddRequest
			if json.Unmarshal(body, &ar) == nil {
				if pw := urlPassword(ar.URL); pw != "" && !strings.Contains(ar.Source+strings.Replace(ar.URL, pw, "", 1), pw) {
					secrets = append(secrets, pw)
				}
			}
		case fuzzOutcome:
			if pw := urlPassword(id); pw != "" && !strings.Contains(strings.Replace(id, pw, "", 1)+string(body), pw) {
				secrets = append(secrets, pw)
			}
		}
		for _, pw := range secrets {
			if strings.Contains(string(out), pw) {
				t.Fatalf("%s with %q: the answer echoes the password %q: %s", what, body, pw, out)
			}
		}
	})
}

// urlPassword returns the password of a proxy URL as written (between the
// first ':' of the user info and its last '@'), when it is long enough
// (8 bytes) not to turn up by chance in the server's own words; else "".
func urlPassword(raw string) string {
	_, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return ""
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return ""
	}
	_, pw, ok := strings.Cut(rest[:at], ":")
	if !ok || len(pw) < 8 {
		return ""
	}
	return pw
}
