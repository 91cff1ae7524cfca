package probe

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseStatusRanges(t *testing.T) {
	got, err := ParseStatusRanges("200-299, 301,404 - 404")
	want := []StatusRange{{200, 299}, {301, 301}, {404, 404}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, %v; want %v", got, err, want)
	}
	for _, bad := range []string{"", "abc", "200-", "99", "600", "300-200", "200,,201"} {
		if _, err := ParseStatusRanges(bad); !errors.Is(err, ErrBadConfig) {
			t.Errorf("ParseStatusRanges(%q) = %v, want ErrBadConfig", bad, err)
		}
	}
	if s := (StatusRange{200, 299}).String() + "," + (StatusRange{301, 301}).String(); s != "200-299,301" {
		t.Errorf("String: %s", s)
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"": ModeAuto, "auto": ModeAuto, "TCP-Connect": ModeTCPConnect} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseMode("ping"); !errors.Is(err, ErrBadConfig) {
		t.Errorf("ParseMode(ping): %v", err)
	}
	if ModeTCPConnect.String() != "tcp-connect" || Mode(7).String() != "Mode(7)" {
		t.Error("Mode.String")
	}
}

func TestParseCloseMode(t *testing.T) {
	for in, want := range map[string]CloseMode{"": CloseAuto, "auto": CloseAuto, "FIN": CloseFIN, "reset": CloseReset, " rst ": CloseReset} {
		if got, err := ParseCloseMode(in); err != nil || got != want {
			t.Errorf("ParseCloseMode(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseCloseMode("linger"); !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), "Close") {
		t.Errorf("ParseCloseMode(linger): %v", err)
	}
	for _, m := range []CloseMode{CloseAuto, CloseFIN, CloseReset} {
		if got, err := ParseCloseMode(m.String()); err != nil || got != m {
			t.Errorf("ParseCloseMode(%v.String()) = %v, %v", m, got, err)
		}
	}
	if CloseMode(9).String() != "CloseMode(9)" {
		t.Error("CloseMode.String")
	}
	for _, bad := range []CloseMode{-1, 3} {
		if err := (Config{Close: bad}).Validate(); !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), "Close") {
			t.Errorf("Validate(Close %d) = %v, want ErrBadConfig naming Close", bad, err)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{}.WithDefaults()
	if c.TargetURL != DefaultTargetURL || c.Method != "HEAD" || c.Timeout != DefaultTimeout ||
		!reflect.DeepEqual(c.ExpectedStatus, []StatusRange{{200, 299}}) {
		t.Errorf("defaults: %+v", c)
	}
	if m := (Config{BodyPattern: "ok"}).WithDefaults().Method; m != "GET" {
		t.Errorf("method with pattern = %s", m)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero config invalid: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		c    Config
		want string
	}{
		{Config{TargetURL: "ftp://x/"}, "TargetURL"},
		{Config{TargetURL: "http://u:p@x/"}, "credentials"},
		{Config{TargetURL: "http:///x"}, "empty host"},
		{Config{TargetURL: "http://x/#f"}, "fragment"},
		{Config{TargetURL: "http://x:0/"}, "bad port"},
		{Config{Method: "POST"}, "Method"},
		{Config{Method: "HEAD", BodyPattern: "ok"}, "needs Method GET"},
		{Config{BodyPattern: "("}, "regular expression"},
		{Config{ExpectedStatus: []StatusRange{{300, 200}}}, "ExpectedStatus"},
		{Config{LatencyCeiling: -1}, "LatencyCeiling"},
		{Config{Timeout: -time.Second}, "Timeout"},
		{Config{Headers: []Header{{"Bad Name", "x"}}}, "token"},
		{Config{Headers: []Header{{"X", "a\r\nb"}}}, "CR, LF"},
		{Config{Headers: []Header{{"host", "x"}}}, "managed by the checker"},
		{Config{ReuseConnections: true}, "not supported"},
		{Config{Mode: 9}, "Mode"},
	}
	for _, tc := range cases {
		err := tc.c.Validate()
		if !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want ErrBadConfig mentioning %q", tc.c, err, tc.want)
		}
		if _, err2 := NewChecker(tc.c); err2 == nil {
			t.Errorf("NewChecker(%+v) succeeded", tc.c)
		}
	}
}

// TestConfigErrorsNeverShowCredentials: a target or echo URL refused for
// carrying credentials is named without them.
func TestConfigErrorsNeverShowCredentials(t *testing.T) {
	for _, c := range []Config{
		{TargetURL: "http://alice:hunter2@target.example/"},
		{EchoURL: "http://alice:hunter2@echo.example/get"},
	} {
		_, err := NewChecker(c)
		if err == nil || !strings.Contains(err.Error(), "credentials") {
			t.Fatalf("%+v: %v", c, err)
		}
		if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "alice") {
			t.Errorf("the error shows credentials: %v", err)
		}
	}
}

func TestRequestBytes(t *testing.T) {
	c, err := NewChecker(Config{
		TargetURL: "http://Example.COM:8080/a%20b?x=1",
		Headers:   []Header{{"X-Test", "1"}, {"User-Agent", "custom"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "HEAD http://example.com:8080/a%20b?x=1 HTTP/1.1\r\nHost: example.com:8080\r\nX-Test: 1\r\nUser-Agent: custom\r\nConnection: close\r\n\r\n"
	if string(c.absReq) != want {
		t.Errorf("absolute-form request:\n%q\nwant\n%q", c.absReq, want)
	}
	if !strings.HasPrefix(string(c.originReq), "HEAD /a%20b?x=1 HTTP/1.1\r\nHost: example.com:8080\r\n") {
		t.Errorf("origin-form request: %q", c.originReq)
	}
	c, _ = NewChecker(Config{TargetURL: "https://[::1]/"})
	if got := string(c.connectReq); got != "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\nUser-Agent: proxyhealth/0.1\r\n\r\n" {
		t.Errorf("CONNECT request: %q", got)
	}
	if !strings.Contains(string(c.originReq), "Host: [::1]\r\n") {
		t.Errorf("IPv6 Host header: %q", c.originReq)
	}
}
