package endpoint

import (
	"context"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/fwdproxy"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
	"github.com/proxyhealth/proxyhealth/rotation"
)

// curl, a real client, through the endpoint: absolute-form, SOCKS5 with
// the proxy resolving the name, https through CONNECT (trusting the
// origin's certificate), proxy authentication with a session username.
func TestCurl(t *testing.T) {
	curl := testutil.Program(t, "the endpoint with a real client (curl -x, --socks5-hostname)", "curl")
	plain := newOrigin(t, false)
	secure := newOrigin(t, true)
	ca := filepath.Join(t.TempDir(), "origin.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: secure.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	up := fwdproxy.Start(t, fwdproxy.Options{User: "user", Pass: upstreamSecret})
	r := newRotator(t, up.URL())
	_, addr := startServer(t, r, Config{})
	_, authAddr := startServer(t, r, Config{Users: map[string]string{"alice": "pw1"}})

	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		args = append([]string{"-sS", "--max-time", "20", "--noproxy", "", "-w", "\n%{http_code}"}, args...)
		cmd := exec.CommandContext(ctx, curl, args...)
		cmd.Env = append(os.Environ(), "http_proxy=", "https_proxy=", "HTTP_PROXY=", "HTTPS_PROXY=", "ALL_PROXY=", "all_proxy=")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("curl %v: %v\n%s", args, err, out)
		}
		if strings.Contains(string(out), upstreamSecret) {
			t.Fatalf("curl %v received the upstream password:\n%s", args, out)
		}
		return string(out)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"absolute-form", []string{"-x", "http://" + addr, plain.URL + "/a"}, "GET /a"},
		{"socks5-hostname", []string{"--socks5-hostname", addr, plain.URL + "/b"}, "GET /b"},
		{"socks5-hostname https", []string{"--socks5-hostname", addr, "--cacert", ca, secure.URL + "/c"}, "GET /c"},
		{"CONNECT", []string{"-x", "http://" + addr, "--cacert", ca, secure.URL + "/d"}, "GET /d"},
		{"proxytunnel http", []string{"-p", "-x", "http://" + addr, plain.URL + "/e"}, "GET /e"},
		{"auth", []string{"-x", "http://" + authAddr, "-U", "alice-session-k7:pw1", plain.URL + "/f"}, "GET /f"},
		{"socks5 auth", []string{"-x", "socks5h://alice-session-k7:pw1@" + authAddr, plain.URL + "/g"}, "GET /g"},
		{"auth refused", []string{"-x", "http://" + authAddr, "-U", "alice:wrong", plain.URL + "/h"}, "\n407"},
		{"sticky header", []string{"-x", "http://" + addr, "--proxy-header", DefaultStickyHeader + ": k8", "-p", secure.URL + "/i", "--cacert", ca}, "GET /i"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := run(tc.args...)
			if !strings.Contains(out, tc.want) {
				t.Fatalf("curl %v:\n%s\nwant %q", tc.args, out, tc.want)
			}
		})
	}
	keys := map[string]int{}
	for _, p := range r.Picks() {
		if p.Strategy == rotation.Sticky {
			keys[p.Key]++
		}
	}
	if keys["k7"] != 2 || keys["k8"] != 1 {
		t.Errorf("sticky picks %v, want k7 twice (HTTP and SOCKS5 usernames) and k8 once (header)", keys)
	}
	if n := len(plain.Requests()) + len(secure.Requests()); n != 8 {
		t.Errorf("origins got %d requests, want 8", n)
	}
}
