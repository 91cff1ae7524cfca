package fakeproxy

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
)

// WithHost puts every listener (the proxies, the direct echo server, and a
// listener re-opened after Refuse) on the given loopback address, and the
// proxies serve there.
func TestWithHost(t *testing.T) {
	f := startFarm(t, 3, WithHost("127.0.0.2"))
	for i := range f.Len() {
		host, _, err := net.SplitHostPort(f.Addr(i))
		if err != nil || host != "127.0.0.2" {
			t.Fatalf("Addr(%d) = %q, want host 127.0.0.2", i, f.Addr(i))
		}
		if !strings.HasPrefix(f.URL(i), "http://127.0.0.2:") {
			t.Fatalf("URL(%d) = %q, want http://127.0.0.2:PORT", i, f.URL(i))
		}
	}
	if !strings.HasPrefix(f.EchoURL(), "http://127.0.0.2:") {
		t.Fatalf("EchoURL = %q, want it on 127.0.0.2", f.EchoURL())
	}
	if code, body := get(t, httpClient(f, 1, "", ""), "http://target.test/"); code != http.StatusOK || body != "ok" {
		t.Fatalf("through %s: %d %q, want 200 ok", f.URL(1), code, body)
	}
	if err := f.Set(2, Refuse()); err != nil {
		t.Fatal(err)
	}
	if err := f.Set(2, OK()); err != nil {
		t.Fatalf("re-open on 127.0.0.2: %v", err)
	}
	if code, _ := get(t, httpClient(f, 2, "", ""), "http://target.test/"); code != http.StatusOK {
		t.Fatalf("through %s after Refuse/OK: %d, want 200", f.URL(2), code)
	}
	if got := f.TotalChecks(); got != 2 {
		t.Fatalf("TotalChecks = %d, want 2", got)
	}
}

func TestWithHostNotAnIP(t *testing.T) {
	if _, err := Start(context.Background(), 1, WithHost("localhost")); err == nil || !strings.Contains(err.Error(), "WithHost") {
		t.Fatalf("Start(WithHost(localhost)) = %v, want an error naming WithHost", err)
	}
}
