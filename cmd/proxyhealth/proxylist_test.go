package main

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseProxyList(t *testing.T) {
	in := "\ufeff# comment\n\nhttp://10.0.0.1:3128\n  socks5://u:p@10.0.0.2:1080   # inline comment\n10.0.0.3:8080 #tags=de,res weight=2\nhttps://10.0.0.4\nsocks4://10.0.0.5:1080\n\t# indented comment\n"
	got, err := parseProxyList("list.txt", strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	var urls []string
	for _, e := range got {
		urls = append(urls, e.URL)
	}
	want := []string{"http://10.0.0.1:3128", "socks5://u:p@10.0.0.2:1080", "10.0.0.3:8080", "https://10.0.0.4", "socks4://10.0.0.5:1080"}
	if !reflect.DeepEqual(urls, want) {
		t.Errorf("got %q\nwant %q", urls, want)
	}
	if e := got[2]; strings.Join(e.Tags, ",") != "de,res" || e.Weight != 2 {
		t.Errorf("a line's tags and weight: %+v", e)
	}
}

func TestParseProxyListErrors(t *testing.T) {
	for _, c := range []struct{ in, where, substr string }{
		{"http://10.0.0.1:3128\nftp://user:hunter2@10.0.0.2:21\n", "list.txt:2", "scheme"},
		{"# c\n\n10.0.0.1\n", "list.txt:3", "port"},
		{"http://a:b@10.0.0.1:80\nhttp://a:c@10.0.0.1:80\n", "list.txt:2", "line 1"},
		{"http://10.0.0.1:80 http://10.0.0.2:80\n", "list.txt:1", "one proxy URL per line"},
		{"http://10.0.0.1:80/?x=1\n", "list.txt:1", ""},
		{strings.Repeat("a", maxProxyLine+10) + "\n", "list.txt:1", "longer"},
	} {
		_, err := parseProxyList("list.txt", strings.NewReader(c.in))
		if err == nil {
			t.Errorf("%q: no error", c.in[:min(len(c.in), 40)])
			continue
		}
		if !strings.HasPrefix(err.Error(), c.where+": ") || !strings.Contains(err.Error(), c.substr) {
			t.Errorf("error %q, want %q...%q", err, c.where, c.substr)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error %q leaks the password", err)
		}
		if !errors.Is(err, errConfig) {
			t.Errorf("error %v is not a config error", err)
		}
	}
}

func TestParseProxiesArg(t *testing.T) {
	for _, c := range []struct{ in, source, path string }{
		{"lists/residential.txt", "residential", "lists/residential.txt"},
		{"dc=lists/x.txt", "dc", "lists/x.txt"},
		{"/abs/dc.v2.list", "dc.v2", "/abs/dc.v2.list"},
	} {
		pa, err := parseProxiesArg(c.in)
		if err != nil || pa.source != c.source || pa.path != c.path {
			t.Errorf("%q: %+v %v", c.in, pa, err)
		}
	}
	if _, err := parseProxiesArg("my list.txt"); err == nil || !strings.Contains(err.Error(), "NAME=") {
		t.Errorf("bad source name from file: %v", err)
	}
	if _, err := parseProxiesArg("dc="); err == nil {
		t.Error("dc= accepted")
	}
}

func TestReadProxyFileMissing(t *testing.T) {
	_, err := readProxyFile("testdata/nope.txt")
	if err == nil || !strings.HasPrefix(err.Error(), "testdata/nope.txt: ") || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
}

// TestParseProxyListDoesNotEchoOtherFiles checks that a file that is not a
// proxy list (here a line of /etc/shadow) is refused with its position
// only, and that a duplicate with a long host name is shown cut short.
func TestParseProxyListDoesNotEchoOtherFiles(t *testing.T) {
	_, err := parseProxyList("/etc/shadow", strings.NewReader("root:$y$j9T$Zk3xSalt$HashHash:19700:0:99999:7:::\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "/etc/shadow:1: bad proxy URL (input not shown") {
		t.Errorf("shadow line: %v", err)
	}
	for _, s := range []string{"root", "Zk3xSalt", "HashHash", "19700"} {
		if err != nil && strings.Contains(err.Error(), s) {
			t.Errorf("error %q shows %q", err, s)
		}
	}
	host := strings.Repeat("h", 200) + ".example:80"
	_, err = parseProxyList("list.txt", strings.NewReader("http://u:pw@"+host+"\nhttp://u:pw2@"+host+"\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "list.txt:2: http://") || !strings.Contains(err.Error(), "… is already listed on line 1") {
		t.Errorf("duplicate: %v", err)
	}
	if err != nil && strings.Count(err.Error(), "h") > 80 {
		t.Errorf("duplicate error not cut short: %v", err)
	}
}
